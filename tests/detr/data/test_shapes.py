import hashlib
import json

import pytest

from bertdetr.detr.data.coco import check_images, load_coco
from bertdetr.detr.data.shapes import CLASSES, ShapesConfig, make_shapes
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


def _object_hues(tmp_path, class_colors: bool) -> dict[str, list[float]]:
    """The hue of each object's centre pixel, by class."""
    import colorsys

    from PIL import Image

    cfg = ShapesConfig(num_images=40, min_size=64, max_size=96, min_object=0.3, max_object=0.5, seed=5,
                       class_colors=class_colors)
    coco = json.loads(open(make_shapes(tmp_path / str(class_colors), "train", cfg)).read())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    hues: dict[str, list[float]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        image = Image.open(tmp_path / str(class_colors) / "images" / files[a["image_id"]]).convert("RGB")
        # a cross's centre and a triangle's lower middle are inside the shape
        r, g, b = image.getpixel((int(x + w / 2), int(y + h * (0.75 if names[a["category_id"]] == "triangle" else 0.5))))
        hues.setdefault(names[a["category_id"]], []).append(colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0])
    return hues


def test_class_colors_give_each_class_its_own_hue(tmp_path):
    """Shapes may overlap a little, so most (not all) sampled pixels show their own shape."""
    def circular_distance(a, b):
        return min(abs(a - b), 1 - abs(a - b))

    hues = _object_hues(tmp_path, True)
    assert set(hues) == set(CLASSES)
    centres = {"circle": 0.0, "square": 0.25, "triangle": 0.5, "cross": 0.75}
    for name, hs in hues.items():
        near = sum(circular_distance(h, centres[name]) <= 0.06 for h in hs)
        assert near >= 0.8 * len(hs), (name, hs)
    # random colours: a class's hues spread over the circle
    spread = _object_hues(tmp_path, False)
    assert any(sum(circular_distance(h, centres[n]) > 0.1 for h in hs) >= len(hs) // 2 for n, hs in spread.items())


def test_cli_make_shapes_options(tmp_path):
    from bertdetr.cli import main

    assert main(["detr", "make-shapes", "--out", str(tmp_path / "a"), "--train-images", "3", "--val-images", "0",
                 "--min-size", "64", "--max-size", "64", "--min-object", "0.5", "--max-object", "0.5",
                 "--class-colors", "--seed", "2"]) == 0
    coco = json.loads((tmp_path / "a" / "train.json").read_text())
    assert len(coco["images"]) == 3 and not (tmp_path / "a" / "val.json").exists()
    assert {round(a["bbox"][2]) for a in coco["annotations"]} == {32}  # half of the 64-pixel side
    ref = make_shapes(tmp_path / "b", "train", ShapesConfig(num_images=3, min_size=64, max_size=64, min_object=0.5,
                                                            max_object=0.5, seed=2, class_colors=True))
    assert json.loads(open(ref).read())["annotations"] == coco["annotations"]
    assert (tmp_path / "a" / "images" / "train_000000.png").read_bytes() == \
        (tmp_path / "b" / "images" / "train_000000.png").read_bytes()
