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
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
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
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(tmp_path / "nope.pth"),
                 "--output", str(tmp_path / "p")]) == 2
    assert "needs --config" in capsys.readouterr().err
    assert main(["detr", "convert", "--from", "official", "--checkpoint", str(tmp_path / "nope.pth"),
                 "--output", str(tmp_path / "p")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_config_command_writes_preset(tmp_path):
    out = tmp_path / "my.json"
    assert main(["detr", "config", "--preset", "r18", "--num-classes", "4", "--output", str(out)]) == 0
    assert load_detr_config(out) == DETRConfig.r18(num_classes=4)
