"""Export: inverse name maps, round trips (mmdet -> ours -> mmdet, hf -> ours -> hf), transformers
loading our export (test-only oracle), ONNX under onnxruntime, the CLI and its bad inputs."""

import json

import pytest
import torch

from bertdetr.cli import main
from bertdetr.detr.convert.export import export_hf, export_mmdet, invert_rules
from bertdetr.detr.data.coco import padding_masks
from bertdetr.detr.convert.mmdet_config import config_from_mmdet, load_mmdet_config
from bertdetr.detr.convert.load import from_hf
from bertdetr.detr.convert.names import rename
from tests.detr.convert.test_load import _hf_pair
from tests.detr.test_weights import _inputs


def test_invert_rules_carries_groups_and_writes_first_spelling():
    rules = [(r"a\.(?:old\.)?(\d+)\.(x|y)\.(?:out|o)_w\.(.*)", r"ours.\2.\1.w.\3"),
             (r"b\.(?:|new\.)fc(1|2)", r"fc\1")]
    inverse = invert_rules(rules)
    assert inverse == [(r"ours\.(x|y)\.(\d+)\.w\.(.*)", r"a.old.\2.\1.out_w.\3"), (r"fc(1|2)", r"b.fc\1")]
    names = {"a.old.3.y.out_w.bias": 0, "a.3.y.o_w.bias": 1, "b.new.fc2": 2, "b.fc1": 3}
    ours, _ = rename(names, rules)
    assert set(ours) == {"ours.y.3.w.bias", "fc2", "fc1"}
    assert set(rename(ours, inverse)[0]) == {"a.old.3.y.out_w.bias", "b.fc2", "b.fc1"}


def test_mmdet_round_trip_and_config(tmp_path, golden, golden_model):
    model, config = golden_model
    export_mmdet(model, config, ["a", "b", "c", "d", "e"], tmp_path)
    ckpt = torch.load(tmp_path / "model.pth", weights_only=True)
    assert ckpt["meta"]["dataset_meta"]["classes"] == ("a", "b", "c", "d", "e")
    original = golden["state_dict"]
    assert set(ckpt["state_dict"]) == set(original)
    for k, v in original.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(ckpt["state_dict"][k], v.float()), k
    assert config_from_mmdet(load_mmdet_config(tmp_path / "config.py")) == config


def test_hf_round_trip_and_transformers_loads_our_export(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    hf, _ = _hf_pair()
    hf.save_pretrained(tmp_path / "src")
    ours, cfg = from_hf(tmp_path / "src")
    names = [f"thing {i}" for i in range(5)]
    export_hf(ours, cfg, names, tmp_path / "out")
    a, b = load_file(tmp_path / "src" / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    loaded = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.id2label == dict(enumerate(names))
    x, masks = _inputs()
    with torch.no_grad():
        o, mine = loaded(pixel_values=x, pixel_mask=(~masks).long()), ours(x, masks)
    assert o.logits.abs().max() > 1
    torch.testing.assert_close(o.logits, mine["pred_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(o.pred_boxes, mine["pred_boxes"], rtol=0, atol=1e-6)


def test_mmdet_model_exported_to_transformers(tmp_path, golden, golden_model):
    transformers = pytest.importorskip("transformers")
    model, config = golden_model
    export_hf(model, config, list("abcde"), tmp_path)
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path).eval()
    masks = padding_masks(golden["img_shapes"], golden["batch_input_shape"])
    with torch.no_grad():
        o, mine = hf(pixel_values=golden["batch_inputs"], pixel_mask=(~masks).long()), model(golden["batch_inputs"], masks)
    torch.testing.assert_close(o.logits, mine["pred_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(o.pred_boxes, mine["pred_boxes"], rtol=0, atol=1e-6)


def test_onnx_with_dynamic_size_equals_pytorch(tmp_path, data_dir, golden_model, capsys):
    """Through the command line: convert, then ``detr export --format onnx``; at sizes whose
    stem max-pool parities differ (torch 2.9 refused to export those without ``SlicedMaxPool``)."""
    ort = pytest.importorskip("onnxruntime")
    model, _ = golden_model
    ckpt = tmp_path / "ckpt"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
                 "--config", str(data_dir / "detr" / "mmdet_detr_small.config.json"), "--output", str(ckpt)]) == 0
    assert main(["detr", "export", "--checkpoint", str(ckpt), "--format", "onnx",
                 "--output", str(tmp_path / "detr.onnx")]) == 0
    assert "ONNX opset 18" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "detr.onnx"))
    assert [i.name for i in session.get_inputs()] == ["images", "masks"]
    g = torch.Generator().manual_seed(0)
    for b, h, w in ((1, 100, 100), (3, 333, 250)):
        x, m = torch.randn(b, 3, h, w, generator=g), torch.zeros(b, h, w, dtype=torch.bool)
        m[-1, :, 200:] = True
        logits, boxes = session.run(None, {"images": x.numpy(), "masks": m.numpy()})
        with torch.no_grad():
            expected = model(x, m)
        torch.testing.assert_close(torch.from_numpy(logits), expected["pred_logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(boxes), expected["pred_boxes"], rtol=0, atol=1e-6)


def test_export_command_and_bad_input(tmp_path, data_dir, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(data_dir / "detr" / "mmdet_detr_small.pt"),
                 "--config", str(data_dir / "detr" / "mmdet_detr_small.config.json"), "--output", str(ckpt)]) == 0
    assert main(["detr", "export", "--checkpoint", str(ckpt), "--format", "mmdet", "--output", str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.py", "model.pth"]
    assert main(["detr", "export", "--checkpoint", str(ckpt), "--format", "hf", "--output", str(tmp_path / "h")]) == 0
    assert json.loads((tmp_path / "h" / "config.json").read_text())["model_type"] == "detr"
    capsys.readouterr()
    bad = [
        (["--checkpoint", str(ckpt), "--format", "tflite", "--output", str(tmp_path / "x")], "unknown export format 'tflite'"),
        (["--checkpoint", str(tmp_path / "nope"), "--format", "onnx", "--output", str(tmp_path / "x.onnx")],
         "not a checkpoint directory"),
        (["--checkpoint", str(ckpt), "--format", "mmdet", "--output", str(tmp_path / "m" / "model.pth" / "sub")],
         "cannot write output"),
        (["--checkpoint", str(ckpt), "--format", "hf", "--output", str(ckpt) + "/."], "is the checkpoint folder itself"),
        (["--checkpoint", str(ckpt), "--format", "mmdet", "--output", str(ckpt)], "is the checkpoint folder itself"),
    ]
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    for args, message in bad:
        assert main(["detr", "export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bertdetr: error:") and message in err, err
    assert not (tmp_path / "x").exists()
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_what_transformers_and_mmdet_cannot_hold_is_refused(tmp_path, capsys):
    import dataclasses

    from bertdetr.detr.config import BackboneConfig
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.weights import save_detr
    from tests.detr.test_weights import tiny_config

    config = dataclasses.replace(tiny_config(), backbone=BackboneConfig(depth=18, norm="batch"))
    save_detr(build_detr(config), config, tmp_path / "ckpt")
    for fmt in ("hf", "mmdet"):
        assert main(["detr", "export", "--checkpoint", str(tmp_path / "ckpt"), "--format", fmt,
                     "--output", str(tmp_path / fmt)]) == 2
        assert f"cannot export to {fmt}: backbone.norm 'batch'" in capsys.readouterr().err
    config = dataclasses.replace(tiny_config(), bbox_head=dataclasses.replace(tiny_config().bbox_head, num_reg_fcs=3))
    save_detr(build_detr(config), config, tmp_path / "ckpt3")
    assert main(["detr", "export", "--checkpoint", str(tmp_path / "ckpt3"), "--format", "hf",
                 "--output", str(tmp_path / "h3")]) == 2
    assert "num_reg_fcs 3" in capsys.readouterr().err
    assert main(["detr", "export", "--checkpoint", str(tmp_path / "ckpt3"), "--format", "mmdet",
                 "--output", str(tmp_path / "m3")]) == 0  # mmdet's FFN takes any number of FCs
    sd = torch.load(tmp_path / "m3" / "model.pth", weights_only=True)["state_dict"]
    assert {"bbox_head.reg_ffn.layers.0.0.weight", "bbox_head.reg_ffn.layers.1.0.weight",
            "bbox_head.reg_ffn.layers.2.weight"} <= set(sd)
