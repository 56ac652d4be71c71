"""Everyday bad inputs across commands: each a ``bertdetr: error: ...``, exit 2, nothing written
under a final name."""

import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from bertdetr.cli import main

DATA = os.path.join(os.path.dirname(__file__), "data", "bert")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: "), err
    return err


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from bertdetr.bert.model import BertConfig, build_bert_for_pretraining

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bert")
    model = build_bert_for_pretraining(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(root / "run" / "model")
    with open(VOCAB, "rb") as f:
        (root / "run" / "model" / "vocab.txt").write_bytes(f.read())
    return root / "run"


@pytest.fixture(scope="module")
def detr_dir(tmp_path_factory):
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.train_config import model_config_from_dict
    from bertdetr.detr.weights import save_detr

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("detr")
    cfg = model_config_from_dict(
        {"preset": "r18", "num_queries": 5,
         "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
         "decoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
         "positional_encoding": {"num_feats": 16}}).with_num_classes(2)
    save_detr(build_detr(cfg), cfg, root / "ckpt")
    images = root / "images"
    images.mkdir()
    for k in range(3):
        Image.new("RGB", (64, 48), (40 * k, 100, 200)).save(images / f"im{k}.png")
    (images / "notes.txt").write_text("not an image")
    return root


def test_fill_mask_model_dir_missing_or_a_run_folder(bert_dir, tmp_path, capsys):
    err = _error(capsys, ["bert", "fill-mask", "--model", str(tmp_path / "nope"), "a [MASK] ."])
    assert "model directory not found" in err
    err = _error(capsys, ["bert", "fill-mask", "--model", str(bert_dir), "a [MASK] ."])
    assert "pretraining run folder" in err and str(bert_dir / "model") in err


def test_embed_keeps_blank_lines_aligned(bert_dir, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("hello world\n\nthe rain had ceased\n\n")
    out = tmp_path / "v.npy"
    assert main(["bert", "embed", "--model", str(bert_dir / "model"), "--input-file", str(lines),
                 "--output", str(out)]) == 0
    v = np.load(out)
    assert v.shape == (4, 32)  # one row per line, blank ones included
    np.testing.assert_allclose(v[1], v[3], rtol=0, atol=1e-6)  # both the empty text
    assert not np.allclose(v[0], v[1])


def test_pretrain_without_vocab_file_refuses(tmp_path, capsys):
    rec = tmp_path / "x.tfrecord"
    rec.write_bytes(b"")
    err = _error(capsys, ["bert", "pretrain", "--input-file", str(rec), "--output-dir", str(tmp_path / "run"),
                          "--model-size", "tiny"])
    assert "--vocab-file" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [bytes(random.Random(0).getrandbits(8) for _ in range(20000)),
                                     "some text\n\nmore text\n".encode("utf-16")])
def test_make_data_refuses_input_that_is_not_text(tmp_path, capsys, content):
    (tmp_path / "in.txt").write_bytes(content)
    err = _error(capsys, ["bert", "make-data", "--input-file", str(tmp_path / "in.txt"), "--output-file",
                          str(tmp_path / "out.tfrecord"), "--vocab-file", VOCAB, "--no-progress"])
    assert "is not text" in err or "is not UTF-8 text" in err
    assert os.listdir(tmp_path) == ["in.txt"]


@pytest.mark.parametrize("command", [
    ["bert", "make-data", "--input-file", "other.txt,in.txt", "--output-file", "./{name}.txt", "--vocab-file", VOCAB,
     "--no-progress"],
    ["bert", "make-data", "--input-file", "in.txt", "--output-file", "sub/../in.txt", "--vocab-file", VOCAB],
    ["bert", "build-vocab", "--input-file", "in.txt", "--output", "link.txt"],
    ["bert", "embed", "--model", "MODEL", "--input-file", "in.txt", "--output", "in.txt"],
    ["bert", "tag", "--model", "MODEL", "--input-file", "in.txt", "--output", "in.txt"],
], ids=["make-data-template", "make-data-spelling", "build-vocab-link", "embed", "tag"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(bert_dir, tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    text = "the rain had ceased\nhello world\n\n"
    for name in ("in.txt", "other.txt"):
        (tmp_path / name).write_text(text)
    (tmp_path / "sub").mkdir()
    os.symlink("in.txt", tmp_path / "link.txt")
    err = _error(capsys, [str(bert_dir / "model") if a == "MODEL" else a for a in command])
    assert "is an input file" in err and "would replace the input" in err
    assert (tmp_path / "in.txt").read_text() == text == (tmp_path / "other.txt").read_text()
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "link.txt", "other.txt", "sub"]


def test_predict_takes_folders_and_globs(detr_dir, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["detr", "predict", "--checkpoint", str(detr_dir / "ckpt"), str(detr_dir / "images"),
                 "--out", str(out), "--test-size", "48"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png", "im2.png", "results.json"]
    out2 = tmp_path / "pred2"
    assert main(["detr", "predict", "--checkpoint", str(detr_dir / "ckpt"), str(detr_dir / "images" / "im[01].png"),
                 "--out", str(out2), "--test-size", "48"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["im0.png", "im1.png", "results.json"]
    err = _error(capsys, ["detr", "predict", "--checkpoint", str(detr_dir / "ckpt"),
                          str(detr_dir / "images" / "zz*.png"), "--out", str(tmp_path / "p3")])
    assert "not found" in err and not (tmp_path / "p3" / "results.json").exists()


@pytest.mark.parametrize("command", ["predict", "attention"])
def test_threshold_must_be_a_score(detr_dir, tmp_path, capsys, command):
    err = _error(capsys, ["detr", command, "--checkpoint", str(detr_dir / "ckpt"),
                          str(detr_dir / "images" / "im0.png"), "--out", str(tmp_path / "o"), "--threshold", "2"])
    assert "between 0 and 1" in err
    assert not [n for n in os.listdir(tmp_path / "o") if not n.startswith(".")] if (tmp_path / "o").exists() else True


def test_attention_checks_the_point_before_writing(detr_dir, tmp_path, capsys):
    err = _error(capsys, ["detr", "attention", "--checkpoint", str(detr_dir / "ckpt"),
                          str(detr_dir / "images" / "im0.png"), "--out", str(tmp_path / "att"), "--threshold", "0",
                          "--point", "10,10", "--point", "500,20", "--test-size", "48"])
    assert "outside the image" in err
    assert not (tmp_path / "att").exists() or not list((tmp_path / "att").iterdir())


def test_predict_on_a_transformers_detr_folder_says_convert(detr_dir, tmp_path, capsys):
    hf = tmp_path / "hf-detr"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "detr", "architectures": ["DetrForObjectDetection"],
                                                "num_queries": 100}))
    err = _error(capsys, ["detr", "predict", "--checkpoint", str(hf), str(detr_dir / "images" / "im0.png"),
                          "--out", str(tmp_path / "o")])
    assert "bertdetr detr convert --from hf" in err
    err = _error(capsys, ["detr", "predict", "--checkpoint", str(tmp_path / "missing"),
                          str(detr_dir / "images" / "im0.png"), "--out", str(tmp_path / "o")])
    assert "checkpoint directory not found" in err


def test_tensorboard_missing_is_an_error_before_any_work(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    rec = os.path.join(DATA, "sample-default.tfrecord")
    err = _error(capsys, ["bert", "pretrain", "--input-file", rec, "--output-dir", str(tmp_path / "run"),
                          "--model-size", "tiny", "--vocab-file", VOCAB, "--tensorboard"])
    assert "pip install 'bertdetr[tensorboard]'" in err
    assert not (tmp_path / "run").exists()


def test_plot_curves_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from bertdetr.training.scalars import ScalarLog, plot_curves

    before = matplotlib.get_backend()
    log = ScalarLog(tmp_path)
    log.log(1, {"loss": 2.0})
    log.log(2, {"loss": 1.0})
    log.close()
    plot_curves(tmp_path / "scalars.csv", tmp_path / "c.png", ["loss"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == before


def test_pickles_where_weights_are_expected_are_refused_without_advice_to_unpickle(bert_dir, tmp_path, capsys):
    """A pytorch_model.bin or checkpoint holding Python objects besides tensors: refused, naming the
    file, and never passing on torch's advice to load it with weights_only=False."""
    import datetime
    import shutil

    from safetensors.torch import load_file

    model = tmp_path / "model"
    shutil.copytree(bert_dir / "model", model)
    state = load_file(model / "model.safetensors")  # the real weights, and one Python object beside them
    os.remove(model / "model.safetensors")
    torch.save({**state, "saved_on": datetime.date(2026, 12, 6)}, model / "pytorch_model.bin")
    err = _error(capsys, ["bert", "fill-mask", "--model", str(model), "Hello [MASK] ."])
    assert "refusing to read" in err and "pytorch_model.bin" in err and "weights_only" not in err
    records = tmp_path / "r.tfrecord"
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
    from bertdetr.bert.pretraining.make_data import make_pretraining_data

    make_pretraining_data([os.path.join(DATA, "sample_text.txt")], str(records), VOCAB,
                          PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1))
    args = ["bert", "pretrain", "--input-file", str(records), "--output-dir", str(tmp_path / "run"),
            "--num-train-steps", "2", "--num-warmup-steps", "1", "--train-batch-size", "2", "--no-progress"]
    err = _error(capsys, args + ["--init-checkpoint", str(model)])
    assert "refusing to read" in err and "weights_only" not in err
    (tmp_path / "run").mkdir()
    torch.save({"model": {}, "saved_on": datetime.date(2026, 12, 6)}, tmp_path / "run" / "ckpt-00000001.pt")
    (tmp_path / "run" / "train_config.json").write_text(json.dumps({"run": "bert pretrain"}))
    err = _error(capsys, args + ["--init-checkpoint", str(bert_dir / "model"), "--resume"])
    assert "refusing to load checkpoint" in err and "ckpt-00000001.pt" in err and "weights_only" not in err


@pytest.mark.parametrize("field,value,message", [
    ("hidden_dropout_prob", [0.1], "hidden_dropout_prob must be a number, got [0.1]"),
    ("hidden_dropout_prob", "0.1", "hidden_dropout_prob must be a number, got '0.1'"),
    ("initializer_range", {"std": 0.02}, "initializer_range must be a number, got {'std': 0.02}"),
    ("num_hidden_layers", 1.5, "num_hidden_layers must be an integer, got 1.5"),
])
def test_bert_config_fields_of_the_wrong_type(bert_dir, tmp_path, capsys, field, value, message):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(bert_dir / "model", model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, field: value}))
    err = _error(capsys, ["bert", "fill-mask", "--model", str(model), "Hello [MASK] ."])
    assert message in err and str(model / "config.json") in err


@pytest.mark.parametrize("section,field,value,message", [
    ("model", "num_queries", 10.5, "num_queries must be an integer, got 10.5"),
    ("train", "batch_size", 2.5, "train.batch_size must be an integer, got 2.5"),
    ("train", "lr", "1e-4", "train.lr must be a number, got '1e-4'"),
    ("train", "lr_drop", [10.5], "train.lr_drop must be a list of integers, got [10.5]"),
    ("data", "train_scales", ["480"], "data.train_scales must be a list of integers, got ['480']"),
    ("data", "skip_bad_images", "yes", "data.skip_bad_images must be true or false, got 'yes'"),
])
def test_detr_training_config_fields_of_the_wrong_type(tmp_path, capsys, section, field, value, message):
    cfg = {"data": {"train_ann": "train.json", "train_images": "images"}, "model": {"preset": "r18"},
           "train": {"output_dir": "run"}}
    cfg[section] = {**cfg[section], field: value}
    path = tmp_path / "detr.json"
    path.write_text(json.dumps(cfg))
    err = _error(capsys, ["detr", "train", str(path)])
    assert message in err and str(path) in err
    assert not (tmp_path / "run").exists()


def test_a_non_finite_weight_is_named_and_no_json_gets_nan(detr_dir, tmp_path, capsys):
    """A checkpoint with a NaN weight: predict refuses it naming the tensor, where it wrote
    ``"score": NaN`` (not JSON) before; and no JSON writer puts NaN in a file."""
    import shutil

    from safetensors.torch import load_file, save_file

    from bertdetr.errors import BertDetrError
    from bertdetr.fileio import write_json

    ckpt = tmp_path / "ckpt"
    shutil.copytree(detr_dir / "ckpt", ckpt)
    state = load_file(ckpt / "model.safetensors")
    state["head.fc_cls.weight"][0, 0] = float("nan")
    save_file(state, ckpt / "model.safetensors")
    err = _error(capsys, ["detr", "predict", "--checkpoint", str(ckpt), str(detr_dir / "images" / "im0.png"),
                          "--out", str(tmp_path / "pred")])
    assert "not finite numbers" in err and "head.fc_cls.weight" in err
    assert not (tmp_path / "pred" / "results.json").exists()
    with pytest.raises(BertDetrError, match=r"results.json would hold .*\[0\]\['score'\] = inf"):
        write_json(tmp_path / "results.json", [{"image_id": "a.png", "score": float("inf")}])
    assert not (tmp_path / "results.json").exists()


def test_a_failed_detr_convert_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    err = _error(capsys, ["detr", "convert", "--from", "official", "--checkpoint", str(bad), "--output",
                          str(tmp_path / "out")])
    assert "cannot read checkpoint" in err and not (tmp_path / "out").exists()


def test_predict_names_unusable_images_and_writes_the_others(detr_dir, tmp_path, capsys):
    """A 10000x1 strip (resized to nothing), a truncated file and an image over --max-pixels among
    good ones: each is named, the good ones' pictures and results are written, exit 2."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (10, 100, 200)).save(images / "good.png")
    Image.new("RGB", (10000, 1), (10, 100, 200)).save(images / "strip.png")
    (images / "broken.jpg").write_bytes((detr_dir / "images" / "im0.png").read_bytes()[:40])
    Image.new("RGB", (300, 200), (10, 100, 200)).save(images / "huge.png")
    out = tmp_path / "pred"
    err = _error(capsys, ["detr", "predict", "--checkpoint", str(detr_dir / "ckpt"), str(images), "--out", str(out),
                          "--test-size", "48", "--max-pixels", "50000"])
    assert "3 of 4 image(s) could not be used" in err
    assert "strip.png is 10000x1" in err and "under one pixel" in err
    assert "broken.jpg" in err and "cannot read image" in err
    assert "huge.png is 300x200, 60,000 pixels" in err and "--max-pixels" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "results.json"]
    assert {r["image_id"] for r in json.loads((out / "results.json").read_text())} <= {"good.png"}


def test_pixel_limit_is_checked_from_the_header(tmp_path):
    """The limit is applied before decoding, and PIL's own bomb check (twice its limit, raised on
    open) does not pre-empt a user who raised --max-pixels."""
    from bertdetr.detr.data.coco import ImageLoadError, check_image_header, load_image

    Image.new("L", (200, 100)).save(tmp_path / "a.png")
    assert check_image_header(str(tmp_path / "a.png"), 20000) == (200, 100)
    with pytest.raises(ImageLoadError, match="20,000 pixels: more than the limit of 19,999"):
        load_image(str(tmp_path / "a.png"), max_pixels=19999)
    before = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # PIL would raise DecompressionBombError on open
        assert load_image(str(tmp_path / "a.png"), max_pixels=None).size == (200, 100)
    finally:
        Image.MAX_IMAGE_PIXELS = before
    assert Image.MAX_IMAGE_PIXELS == before


def test_attention_refuses_thin_and_too_large_images(detr_dir, tmp_path, capsys):
    import argparse

    from bertdetr.detr.cli import add_subcommands
    from bertdetr.detr.data.coco import MAX_PIXELS

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers())  # the flag's default is PIL's limit
    assert parser.parse_args(["attention", "--checkpoint", "c", "i.png", "--out", "o"]).max_pixels == MAX_PIXELS
    Image.new("RGB", (5000, 2), (10, 100, 200)).save(tmp_path / "strip.png")
    err = _error(capsys, ["detr", "attention", "--checkpoint", str(detr_dir / "ckpt"), str(tmp_path / "strip.png"),
                          "--out", str(tmp_path / "att"), "--test-size", "48"])
    assert "strip.png is 5000x2" in err and "under one pixel" in err
    err = _error(capsys, ["detr", "attention", "--checkpoint", str(detr_dir / "ckpt"),
                          str(detr_dir / "images" / "im0.png"), "--out", str(tmp_path / "att"), "--max-pixels", "1000"])
    assert "64x48, 3,072 pixels: more than the limit of 1,000" in err
    assert not (tmp_path / "att").exists() or not list((tmp_path / "att").iterdir())
