"""``bert pretrain --compile``: the whole step compiled (the model's forward and losses, with their
backward, and the update: clipping, the skip of a non-finite step, the optimizer) with no graph
breaks, and the same training as eager. Inductor's code generation is slow on a CPU, so the runs
here compile with AOTAutograd's eager backend: the same graphs dynamo captures and the same
forward/backward split, executed op by op."""

import pytest
import torch

from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.optimization import clip_and_update, create_optimizer
from bertdetr.bert.pretraining.pretrain import pretrain
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from tests.bert.pretraining.test_pretrain import _config, _losses, records  # noqa: F401  (a fixture)


def _model():
    torch.manual_seed(0)
    return build_bert_for_pretraining(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=32,
                                                 max_position_embeddings=16))


def _batch(mask=True):
    g = torch.Generator().manual_seed(0)
    batch = dict(input_ids=torch.randint(0, 50, (2, 8), generator=g), segment_ids=torch.zeros(2, 8, dtype=torch.long),
                 masked_lm_positions=torch.tensor([[1, 3]] * 2), masked_lm_ids=torch.tensor([[5, 6]] * 2),
                 masked_lm_weights=torch.ones(2, 2), next_sentence_labels=torch.tensor([[0], [1]]))
    if mask:
        batch["input_mask"] = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    return batch


@pytest.mark.parametrize("mask", [True, False])
def test_the_model_and_its_losses_are_one_graph(mask):
    explained = torch._dynamo.explain(_model())(**_batch(mask))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.parametrize("lamb", [False, True])
def test_the_update_is_one_graph(lamb):
    model = _model()
    optimizer, _ = create_optimizer(model, 1e-3, 10, 2, lamb=lamb)
    optimizer.use_tensor_lr()
    out = model(**_batch())
    out["loss"].backward()
    optimizer.prepare()
    explained = torch._dynamo.explain(clip_and_update)(optimizer, out["loss"].detach().reshape(1), 1.0)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def _aot_eager(monkeypatch):
    """torch.compile with AOTAutograd's eager backend (no C++ code generation); counts the calls."""
    real, calls = torch.compile, []

    def compile_(fn, mode=None, **kw):
        calls.append((getattr(fn, "__name__", type(fn).__name__), mode, kw.get("fullgraph", False)))
        return real(fn, backend="aot_eager", **kw)

    monkeypatch.setattr(torch, "compile", compile_)
    return calls


def test_compiled_pretraining_trains_as_eager(records, tmp_path, monkeypatch):  # noqa: F811
    eager = pretrain(_config(records, tmp_path / "eager", num_train_steps=4))
    calls = _aot_eager(monkeypatch)
    compiled = pretrain(_config(records, tmp_path / "compiled", num_train_steps=4, compile=True,
                                compile_mode="reduce-overhead"))
    assert [name for name, _, _ in calls] == ["BertForPreTraining", "clip_and_update"]
    assert {mode for _, mode, _ in calls} == {"reduce-overhead"} and calls[1][2]  # the update: fullgraph
    assert compiled["step"] == eager["step"] == 4
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-5)
    a = torch.load(tmp_path / "eager" / "ckpt-00000004.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "compiled" / "ckpt-00000004.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_compiled_pretraining_resumes(records, tmp_path, monkeypatch):  # noqa: F811
    _aot_eager(monkeypatch)
    pretrain(_config(records, tmp_path / "full", num_train_steps=4, compile=True))
    pretrain(_config(records, tmp_path / "split", num_train_steps=4, compile=True, stop_at_step=2))
    pretrain(_config(records, tmp_path / "split", num_train_steps=4, compile=True, resume=True))
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "full"), rel=1e-6)


def test_a_bad_compile_mode_is_a_clear_error(records, tmp_path, capsys):  # noqa: F811
    with pytest.raises(BertDetrError, match="compile_mode must be one of default, reduce-overhead"):
        _config(records, tmp_path, compile=True, compile_mode="fastest")
    with pytest.raises(BertDetrError, match="a CUDA graph per batch shape, and with unpad"):
        _config(records, tmp_path, compile=True, compile_mode="reduce-overhead", unpad=True)
    _config(records, tmp_path, compile=True, unpad=True)  # the default mode compiles with dynamic shapes
    code = main(["bert", "pretrain", "--input-file", records[0], "--output-dir", str(tmp_path / "o"),
                 "--model-size", "tiny", "--vocab-file", _config(records, tmp_path).vocab_file, "--compile",
                 "--compile-mode", "fastest"])
    assert code == 2 and "compile_mode must be one of" in capsys.readouterr().err


def test_compiled_unpadded_pretraining_trains_as_eager(records, tmp_path, monkeypatch):  # noqa: F811
    pretrain(_config(records, tmp_path / "eager", num_train_steps=3, unpad=True))
    _aot_eager(monkeypatch)
    pretrain(_config(records, tmp_path / "compiled", num_train_steps=3, unpad=True, compile=True))
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-5)
