import hashlib
import json

import pytest

from bertdetr.detr.data import check_images, load_coco
from bertdetr.detr.shapes import CLASSES, ShapesConfig, make_shapes
from bertdetr.errors import BertDetrError


def test_shapes_dataset_is_valid_coco_and_deterministic(tmp_path):
    cfg = ShapesConfig(num_images=6, min_size=48, max_size=64, seed=3)
    path = make_shapes(tmp_path / "a", "train", cfg)
    index = load_coco(path, tmp_path / "a" / "images")
    assert index.class_names == list(CLASSES)
    assert index.stats["boxes"] >= 6 and index.stats["clipped"] == 0 and index.stats["empty_dropped"] == 0
    _, bad = check_images(index)
    assert bad == 0
    make_shapes(tmp_path / "b", "train", cfg)
    digest = lambda d: hashlib.md5(b"".join(p.read_bytes() for p in sorted((tmp_path / d / "images").iterdir()))).hexdigest()
    assert digest("a") == digest("b")
    assert json.loads((tmp_path / "a" / "train.json").read_text()) == json.loads((tmp_path / "b" / "train.json").read_text())
    val = json.loads(open(make_shapes(tmp_path / "a", "val", cfg)).read())
    assert val["images"][0]["file_name"].startswith("val_")


def test_bad_config():
    with pytest.raises(BertDetrError, match="max_objects"):
        ShapesConfig(max_objects=0)
