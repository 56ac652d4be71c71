"""``device=`` of DETR's Python API (``init_detector``, ``pipeline("object-detection")``,
``DetInferencer``) read as BERT's pipelines read it (``bertdetr.devices.parse_device``): transformers'
ints, and a clear error for a device that cannot be used, before any weights are read."""

import pytest
import torch

from bertdetr.cli import main
from bertdetr.detr import DetInferencer, init_detector, pipeline
from bertdetr.devices import parse_device
from bertdetr.errors import BertDetrError
from tests.conftest import DATA

MAKERS = {"init_detector": lambda folder, device: init_detector(folder, device=device),
          "pipeline": lambda folder, device: pipeline("object-detection", model=folder, device=device),
          "DetInferencer": lambda folder, device: DetInferencer(folder, device=device)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices") / "detr-small"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(DATA / "detr" / "mmdet2_detr_small.pt"),
                 "--config", str(DATA / "detr" / "mmdet2_detr_small.config.py"), "--output", str(out)]) == 0
    return out


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _model_device(made) -> torch.device:
    detector = getattr(made, "detector", made)
    return next(detector.model.parameters()).device


@pytest.mark.parametrize("api", list(MAKERS))
@pytest.mark.parametrize("device", [-1, "cpu", torch.device("cpu")], ids=["-1", "cpu", "torch.device"])
def test_the_cpu_as_transformers_and_mmdet_name_it(folder, api, device):
    assert _model_device(MAKERS[api](folder, device)).type == "cpu"


@pytest.mark.parametrize("api", list(MAKERS))
@pytest.mark.parametrize("device, error, match", [
    (0, BertDetrError, "device 0 is a GPU, and torch sees none"),
    ("cuda:1", BertDetrError, "device 'cuda:1' is a GPU, and torch sees none"),
    ("gpu", BertDetrError, r"device 'gpu' is not a device torch knows \(a GPU is \"cuda\""),
    (True, TypeError, "device must be None, an int .* got bool True"),
    (1.5, TypeError, "device must be .* got float 1.5"),
], ids=["0", "cuda:1", "gpu", "True", "float"])
def test_a_device_that_cannot_be_used_is_a_clear_error(folder, no_cuda, api, device, error, match):
    with pytest.raises(error, match=match):
        MAKERS[api](folder, device)


def test_parse_device_reads_transformers_ints(monkeypatch):
    assert parse_device(-1) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_device(1) == torch.device("cuda", 1)
    assert parse_device(None) == torch.device("cuda")
    with pytest.raises(BertDetrError, match="there is no GPU 2, torch sees 2"):
        parse_device("cuda:2")


def test_inference_commands_take_a_device_and_keep_freed_memory_on_a_cpu(folder, no_cuda, tmp_path, capsys):
    """``detr predict``/``eval`` and ``bert embed``/``tag``/``fill-mask`` read ``--device`` as the
    Python APIs do (a GPU torch does not see: a clear error before any work); on a CPU the
    process's freed memory is kept between batches (``inference_device``), as the trainers'."""
    from bertdetr.devices import inference_device
    from bertdetr.training import host_memory

    assert inference_device("cpu") == torch.device("cpu") and inference_device(None) == torch.device("cpu")
    assert host_memory._kept is not None  # asked (True where glibc's malloc and no user setting)
    photo = DATA / "detr" / "pipeline" / sorted(p.name for p in (DATA / "detr" / "pipeline").glob("*.jpg"))[0]
    lines = tmp_path / "lines.txt"
    lines.write_text("张伟住在北京\n", encoding="utf-8")
    commands = [["detr", "predict", "--checkpoint", str(folder), str(photo), "--out", str(tmp_path / "p")],
                ["detr", "eval", "--checkpoint", str(folder), "--ann", str(tmp_path / "a.json"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "e")],
                ["bert", "embed", "--model", str(tmp_path / "m"), "--input-file", str(lines), "--output",
                 str(tmp_path / "v.npy")],
                ["bert", "tag", "--model", str(tmp_path / "m"), "--input-file", str(lines), "--output",
                 str(tmp_path / "t.jsonl")],
                ["bert", "fill-mask", "--model", str(tmp_path / "m"), "a [MASK]"]]
    for command in commands:
        assert main([*command, "--device", "cuda"]) == 2, command
        assert "device 'cuda' is a GPU, and torch sees none" in capsys.readouterr().err, command
    assert main([*commands[0], "--device", "cpu", "--no-save-vis"]) == 0
    assert (tmp_path / "p" / "results.json").exists()


def test_a_command_lines_device_number_is_read_as_transformers_int(no_cuda):
    assert parse_device("-1") == torch.device("cpu")
    with pytest.raises(BertDetrError, match="device 0 is a GPU, and torch sees none"):
        parse_device("0")
