import json

import torch

from bertdetr.cli import main
from bertdetr.detr.config import DETRConfig, load_detr_config
from bertdetr.detr.weights import load_detr


def test_convert_mmdet_writes_our_checkpoint(tmp_path, data_dir, golden, golden_model, capsys):
    out = tmp_path / "ckpt"
    rc = main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
               "--config", str(data_dir / "detr" / "mmdet_detr_small.config.json"), "--output", str(out)])
    assert rc == 0 and "5 classes" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "pipeline.json"} <= {p.name for p in out.iterdir()}
    # the origin's test pipeline, at mmdet's default scale (this config names no test pipeline)
    assert json.loads((out / "pipeline.json").read_text()) == {"pipeline": "mmdet", "test_size": 800, "max_size": 1333}
    model, cfg = load_detr(out)
    ref, ref_cfg = golden_model
    assert cfg == ref_cfg
    x = golden["batch_inputs"][:1]
    with torch.no_grad():
        assert torch.equal(model(x)["pred_logits"], ref(x)["pred_logits"])


def test_convert_reset_head_and_errors(tmp_path, data_dir, capsys):
    args = ["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
            "--config", str(data_dir / "detr" / "mmdet_detr_small.config.json"), "--output", str(tmp_path / "o"),
            "--num-classes", "3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error:") and "--reset-head" in err and "bbox_head.fc_cls.weight" in err
    assert not (tmp_path / "o" / "model.safetensors").exists()
    assert main(args + ["--reset-head"]) == 0
    assert json.loads((tmp_path / "o" / "config.json").read_text())["bbox_head"]["num_classes"] == 3
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
                 "--output", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "needs --config" in err and "keeps no config in its meta" in err
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(tmp_path / "nope.pth"),
                 "--output", str(tmp_path / "p")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_config_command_writes_preset(tmp_path):
    out = tmp_path / "my.json"
    assert main(["detr", "config", "--preset", "r18", "--num-classes", "4", "--output", str(out)]) == 0
    assert load_detr_config(out) == DETRConfig.r18(num_classes=4)


# ---- classes kept on conversion; a converted COCO model evaluated on instances_val2017-style data


def test_convert_mmdet2_tree_config_keeps_meta_classes(tmp_path, data_dir, golden2, golden2_model, capsys):
    out = tmp_path / "ckpt"
    config = data_dir / "detr" / "mmdet_configs" / "mmdet2" / "configs" / "detr" / "detr_small.py"
    rc = main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet2_detr_small.pt"),
               "--config", str(config), "--output", str(out)])
    assert rc == 0 and "circle, square, triangle, cross, star" in capsys.readouterr().out
    assert json.loads((out / "classes.json").read_text()) == {
        "category_ids": [1, 2, 3, 4, 5], "class_names": ["circle", "square", "triangle", "cross", "star"]}
    model, cfg = load_detr(out)
    ref, ref_cfg = golden2_model
    assert cfg == ref_cfg
    x = golden2["batch_inputs"][:1]
    with torch.no_grad():
        assert torch.equal(model(x)["pred_logits"], ref(x)["pred_logits"])
    # --reset-head: the class FC is new, its names unknown; a stale classes.json goes
    rc = main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet2_detr_small.pt"),
               "--config", str(config), "--output", str(out), "--num-classes", "3", "--reset-head"])
    assert rc == 0 and not (out / "classes.json").exists()


def test_convert_class_list_that_does_not_fit_is_an_error(tmp_path, data_dir, golden2, capsys):
    args = ["detr", "convert", "--from", "mmdet", "--config", str(data_dir / "detr" / "mmdet2_detr_small.config.py"),
            "--output", str(tmp_path / "o")]
    assert main(args + ["--checkpoint", str(data_dir / "detr" / "mmdet2_detr_small.pt"), "--classes", "coco80"]) == 2
    assert "--classes coco80 lists 80 classes, the checkpoint's class FC has 5" in capsys.readouterr().err
    bad = dict(golden2, meta=dict(golden2["meta"], CLASSES=("a", "b")))
    torch.save(bad, tmp_path / "bad.pth")
    assert main(args + ["--checkpoint", str(tmp_path / "bad.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: the checkpoint's meta lists 2 classes") and "Traceback" not in err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_convert_bad_mmdet_config_is_a_clear_error(tmp_path, data_dir, capsys):
    cfg = tmp_path / "detr.py"
    cfg.write_text("_base_ = './missing_base.py'\n")
    args = ["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet2_detr_small.pt"),
            "--config", str(cfg), "--output", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: mmdet config not found") and "missing_base.py (a _base_ of" in err
    cfg.write_text((data_dir / "detr" / "mmdet2_detr_small.config.py").read_text().replace(
        "operation_order=('self_attn', 'norm', 'ffn', 'norm')", "operation_order=('norm', 'self_attn', 'norm', 'ffn')"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: model.bbox_head.transformer.encoder.transformerlayers.operation_order")


def _coco_val_style(root, n_images=3):
    """An instances_val2017.json-style file: COCO's 80 categories with their real ids (1..90 with gaps)."""
    import numpy as np
    from PIL import Image

    from bertdetr.detr.convert.names import COCO_CATEGORY_IDS, COCO_CLASS_NAMES

    (root / "val2017").mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "val2017" / name)
        images.append({"id": 100 + i, "file_name": name, "width": 64, "height": 48})
        for j, cat in enumerate((1, 90, 13)):
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat, "iscrowd": 0,
                         "bbox": [4.0 + 10 * j, 5.0, 20.0, 30.0], "area": 600.0})
    cats = [{"id": i, "name": n, "supercategory": "x"} for i, n in zip(COCO_CATEGORY_IDS, COCO_CLASS_NAMES)]
    path = root / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_official_training_checkpoint_converts_and_evaluates_on_coco_ids(tmp_path, capsys):
    """facebookresearch/detr's main.py checkpoint ({'model', 'optimizer', 'lr_scheduler', 'epoch', 'args':
    argparse.Namespace}) converts with COCO's classes, evaluates on a COCO-style file with id gaps and
    names its detections."""
    import argparse

    from bertdetr.detr.model import build_detr
    from tests.detr.convert.test_load import _to_official
    from tests.detr.test_weights import tiny_config

    torch.manual_seed(0)
    ref = build_detr(tiny_config(num_classes=91))
    optimizer = torch.optim.AdamW(ref.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 200)
    args = argparse.Namespace(lr=1e-4, batch_size=2, backbone="resnet50", dilation=False, coco_path="/data/coco",
                              output_dir="out", lr_drop=200, num_queries=7, aux_loss=True, device="cuda", seed=42)
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": _to_official(ref.state_dict()), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 299, "args": args}, ckpt)
    out = tmp_path / "detr-coco"
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(ckpt), "--output", str(out),
                 "--num-heads", "4"]) == 0
    assert "person, bicycle, car, motorcycle, airplane" in capsys.readouterr().out
    classes = json.loads((out / "classes.json").read_text())
    assert classes["category_ids"][:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13] and classes["category_ids"][-1] == 90
    assert classes["class_names"][-1] == "toothbrush"

    ann = _coco_val_style(tmp_path / "coco")
    assert main(["detr", "eval", "--checkpoint", str(out), "--ann", str(ann), "--images", str(tmp_path / "coco" / "val2017"),
                 "--out", str(tmp_path / "eval"), "--test-size", "48", "--max-size", "64"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results and {r["category_id"] for r in results} <= set(classes["category_ids"])
    assert {r["image_id"] for r in results} == {100, 101, 102}
    assert main(["detr", "predict", "--checkpoint", str(out), str(tmp_path / "coco" / "val2017" / "000000000000.jpg"),
                 "--out", str(tmp_path / "pred"), "--threshold", "0", "--test-size", "48", "--max-size", "64"]) == 0
    predicted = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert {r["category_id"] for r in predicted} <= set(classes["category_ids"])

    # a model whose classes are not the dataset's: the message says which
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes

    shapes = make_shapes(tmp_path / "shapes", "val", ShapesConfig(num_images=1, min_size=48, max_size=64))
    assert main(["detr", "eval", "--checkpoint", str(out), "--ann", str(shapes), "--images",
                 str(tmp_path / "shapes" / "images"), "--out", str(tmp_path / "eval2")]) == 2
    err = capsys.readouterr().err
    assert "category 1 is 'person' for the checkpoint but 'circle' in the dataset" in err


def test_checkpoint_with_other_python_objects_is_refused(tmp_path, capsys):
    import datetime

    torch.save({"model": {}, "when": datetime.timedelta(days=1)}, tmp_path / "odd.pth")
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(tmp_path / "odd.pth"),
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: refusing to read checkpoint") and "datetime.timedelta" in err
    assert "argparse.Namespace" in err and "Traceback" not in err
    torch.save({"model": {}, "when": datetime.timedelta(days=1)}, tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)  # torch's format before 1.6
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(tmp_path / "legacy.pth"),
                 "--output", str(tmp_path / "o")]) == 2
    assert "Python objects of datetime.timedelta" in capsys.readouterr().err


def test_convert_hf_keeps_id2label(tmp_path, capsys):
    from tests.detr.convert.test_load import _hf_pair

    hf, _ = _hf_pair(num_labels=5)
    hf.config.id2label = {i: name for i, name in enumerate(["cat", "dog", "cow", "owl", "bee"])}
    hf.config.label2id = {v: k for k, v in hf.config.id2label.items()}
    hf.save_pretrained(tmp_path / "hf")
    assert main(["detr", "convert", "--from", "hf", "--checkpoint", str(tmp_path / "hf"), "--output", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "classes.json").read_text()) == {
        "category_ids": [0, 1, 2, 3, 4], "class_names": ["cat", "dog", "cow", "owl", "bee"]}
    assert "from config.json's id2label: cat, dog, cow, owl, bee" in capsys.readouterr().out


def test_convert_mmdet2_without_config_reads_the_one_it_keeps(tmp_path, data_dir, golden2_model, capsys):
    """2.x checkpoints keep their config as text in meta['config'] (3.x in meta['cfg'])."""
    out = tmp_path / "ckpt"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet2_detr_small.pt"),
                 "--output", str(out)]) == 0
    assert "model config: the one kept in" in capsys.readouterr().out
    model, cfg = load_detr(out)
    ref, ref_cfg = golden2_model
    assert cfg == ref_cfg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
