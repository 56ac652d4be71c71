import os
import sys

import pytest

from bertdetr import demo
from bertdetr.cli import main

SMALL = ["--bert-steps", "12", "--detr-epochs", "1", "--detr-images", "16", "--finetune-epochs", "0.1"]
STEPS = ("[1] vocab", "[2] pretraining data", "[4] held-out", "masked-LM accuracy", "[5] fill-mask",
         "hidden word among the top 5 guesses", "[5b] fine-tuning", "held-out accuracy: pretrained",
         "[6] synthetic COCO", "[8] COCO mAP", "[9] predictions on the",
         f"at score >= {demo.DRAW_THRESHOLD:g}: precision")


@pytest.mark.parametrize("threads", [
    ["--threads", "1"],  # one half after the other
    ["--threads", "2"],  # DETR in a second process beside BERT, its report printed after BERT's
])
def test_demo_runs_end_to_end_on_bundled_data(tmp_path, capsys, threads):
    assert main(["demo", "--out", str(tmp_path), *SMALL, *threads]) == 0
    out = capsys.readouterr().out
    for step in STEPS:
        assert step in out, step
    assert out.index("[5b] fine-tuning") < out.index("[6] synthetic COCO")  # BERT's report, then DETR's
    assert out.count("demo done in") == 1
    assert (tmp_path / "bert" / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "detr" / "predictions" / "val_000000.png").is_file()
    assert (tmp_path / "detr" / "run" / "model").is_dir()
    assert ("alongside in a second process" in out) == (threads[1] == "2")


def test_demo_one_at_a_time_keeps_one_process(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), *SMALL, "--threads", "2", "--one-at-a-time",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "using 2 CPU thread(s)" in out and "second process" not in out
    assert not (tmp_path / "detr" / "demo.log").exists()


def test_demo_reports_a_failed_detr_half(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "_detr_process_command",
                        lambda args, threads: [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    assert main(["demo", "--out", str(tmp_path), *SMALL, "--threads", "2", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "boom" in captured.out
    assert "bertdetr: error: the DETR half stopped with exit status 3" in captured.err
    assert os.path.isfile(tmp_path / "detr" / "demo.log")


@pytest.mark.parametrize("bad, message", [
    (["--threads", "0"], "--threads must be >= 1"),
    (["--bert-steps", "0"], "must be >= 1"),
])
def test_demo_rejects_bad_numbers(tmp_path, capsys, bad, message):
    assert main(["demo", "--out", str(tmp_path), *bad]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bert").exists()


def test_demo_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert main(["demo", "--out", str(tmp_path / "out"), *SMALL]) == 2
    assert "bertdetr: error: cannot write output" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file"


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_demo_bert_trains_in_bf16_where_the_cpu_multiplies_bf16(tmp_path, capsys, monkeypatch, fast_bf16):
    import json

    import bertdetr.training.precision as precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert main(["demo", "--out", str(tmp_path), "--only", "bert", "--bert-steps", "4", "--finetune-epochs", "0",
                 "--threads", "1", "--no-progress"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("[3] pretraining"))
    assert demo.PRECISION[fast_bf16] in line and line.endswith("--bf16") == fast_bf16
    config = json.loads((tmp_path / "bert" / "run" / "train_config.json").read_text())
    assert config["bf16"] is fast_bf16
