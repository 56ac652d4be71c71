"""The README's recipe for fine-tuning a COCO-trained DETR on one's own 3-class dataset, followed on
generated data: convert official DETR's checkpoint, train with --init-checkpoint and --reset-head
(the 92-logit COCO head replaced by a 4-logit one), keep the best model, predict with it. The
architecture here is tiny (the recipe's is R50), the steps are the recipe's."""

import json

import torch

from bertdetr.cli import main
from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
from bertdetr.detr.model import build_detr
from bertdetr.detr.train_config import model_config_from_dict
from tests.detr.convert.test_load import _to_official
from tests.detr.test_train import TINY_MODEL


def _three_classes(path):
    """The generated 4-class set as a user's 3-class one (the crosses and their boxes removed)."""
    data = json.loads(path.read_text())
    keep = [c for c in data["categories"] if c["name"] != "cross"]
    ids = {c["id"] for c in keep}
    data["categories"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in ids]
    path.write_text(json.dumps(data))
    return [c["name"] for c in keep]


def test_fine_tune_a_converted_coco_model_on_a_three_class_dataset(tmp_path):
    # a "COCO model": official DETR's layout, 92 logits (91 categories + no-object)
    torch.manual_seed(0)
    coco = build_detr(model_config_from_dict(TINY_MODEL).with_num_classes(91)).eval()
    torch.save({"model": _to_official(coco.state_dict())}, tmp_path / "detr-coco.pth")
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(tmp_path / "detr-coco.pth"),
                 "--output", str(tmp_path / "detr-coco"), "--num-heads", "4"]) == 0

    data = tmp_path / "mydata"
    for split, n in (("train", 12), ("val", 4)):
        make_shapes(data, split, ShapesConfig(num_images=n, min_size=48, max_size=64, max_objects=2, seed=1))
        names = _three_classes(data / f"{split}.json")
    config = {"data": {"train_ann": "mydata/train.json", "train_images": "mydata/images",
                       "val_ann": "mydata/val.json", "val_images": "mydata/images",
                       "train_scales": [48, 64], "max_size": 96, "crop_resize": [56], "crop_size": [32, 48],
                       "test_size": 64},
              "model": TINY_MODEL,
              "train": {"output_dir": "runs/mydata", "init_checkpoint": "detr-coco", "reset_head": True,
                        "epochs": 3, "lr_drop": [2], "batch_size": 2, "save_best": True, "num_workers": 0,
                        "progress": False}}
    (tmp_path / "finetune.json").write_text(json.dumps(config))
    assert main(["detr", "train", str(tmp_path / "finetune.json")]) == 0
    run = tmp_path / "runs" / "mydata"
    classes = json.loads((run / "model" / "classes.json").read_text())
    assert classes["class_names"] == names and len(names) == 3
    assert json.loads((run / "model" / "config.json").read_text())["bbox_head"]["num_classes"] == 3
    assert (run / "best.json").is_file()
    assert main(["detr", "predict", "--checkpoint", str(run / "model"), str(data / "images"), "--out",
                 str(tmp_path / "predictions"), "--test-size", "64", "--max-size", "96", "--threshold", "0"]) == 0
    results = json.loads((tmp_path / "predictions" / "results.json").read_text())
    assert results and {r["category_id"] for r in results} <= {c for c in classes["category_ids"]}
