import functools
import json

import pytest
import torch

from bertdetr.bert.pretraining.pretrain import pretrain
from bertdetr.errors import BertDetrError
from bertdetr.training.precision import MixedPrecision
from bertdetr.training.scalars import read_scalars
from tests.bert.pretraining.test_pretrain import _config, records  # noqa: F401 (records: a fixture)


def test_fp16_trains_and_counts_overflowed_steps(records, tmp_path, monkeypatch):
    # a scale far beyond fp16's range: the first steps overflow and are skipped, not errors
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0 ** 40))
    summary = pretrain(_config(records, tmp_path / "run", fp16=True, num_train_steps=6, save_every=3))
    assert summary["step"] == 6
    scalars = read_scalars(tmp_path / "run" / "scalars.csv")
    skipped = [v for _, v in scalars["skipped_steps"]]
    assert skipped[0] == 1 and skipped == sorted(skipped) and skipped[-1] >= 2
    scales = [v for _, v in scalars["loss_scale"]]
    assert scales[0] == pytest.approx(2.0 ** 39, rel=1e-5) and scales[-1] < scales[0]
    assert all(v == v for _, v in scalars["loss"])  # finite losses all along
    state = torch.load(sorted((tmp_path / "run").glob("ckpt-*.pt"))[-1], weights_only=True)
    assert state["precision"]["skipped_steps"] == skipped[-1]


def test_fp16_without_overflow_updates_like_fp32(records, tmp_path):
    pretrain(_config(records, tmp_path / "a", fp16=True, num_train_steps=3))
    scalars = read_scalars(tmp_path / "a" / "scalars.csv")
    assert [v for _, v in scalars["skipped_steps"]] == [0, 0, 0]
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["fp16"] is True


def test_bf16_and_fp16_are_exclusive(records, tmp_path):
    with pytest.raises(BertDetrError, match="bf16 or fp16"):
        _config(records, tmp_path, bf16=True, fp16=True)
    with pytest.raises(BertDetrError, match="not both"):
        MixedPrecision(torch.device("cpu"), bf16=True, fp16=True)


def test_detr_fp16_trains_and_logs_skipped_steps(tmp_path, tmp_path_factory):
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
    from bertdetr.detr.train import train_detr
    from bertdetr.detr.train_config import load_train_setup
    from tests.detr.test_train import _config as detr_config

    shapes = tmp_path_factory.mktemp("shapes")
    make_shapes(shapes, "train", ShapesConfig(num_images=4, min_size=48, max_size=64, max_objects=2, seed=0))
    make_shapes(shapes, "val", ShapesConfig(num_images=2, min_size=48, max_size=64, max_objects=2, seed=0))
    summary = train_detr(load_train_setup(detr_config(shapes, tmp_path, epochs=1, fp16=True)))
    assert summary["iterations"] == 2
    scalars = read_scalars(tmp_path / "run" / "scalars.csv")
    skipped = [v for _, v in scalars["skipped_steps"]]
    assert len(skipped) == 2 and skipped == sorted(skipped)
    # each skipped step halves the scale (no growth within 2000 steps)
    assert [v for _, v in scalars["loss_scale"]] == [65536.0 / 2 ** k for k in skipped]
    with pytest.raises(BertDetrError, match="choose one"):
        load_train_setup(detr_config(shapes, tmp_path, bf16=True, fp16=True))


def test_cpu_bf16_check_says_no_without_onednn(monkeypatch):
    from bertdetr.training.precision import cpu_has_fast_bf16

    assert isinstance(cpu_has_fast_bf16(), bool)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert cpu_has_fast_bf16() is False
