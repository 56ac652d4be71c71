"""``detr train --compile``: the model (backbone, transformer, head) is one graph with no graph
breaks, with and without padding, and a compiled run trains as an eager one. Inductor's code
generation is slow on a CPU, so the run compiles with AOTAutograd's eager backend (the graphs
dynamo captures and the forward/backward split, executed op by op)."""

import pytest
import torch

from bertdetr.detr.model import EvenPaddedMaxPool, build_detr, max_pool_guards_parity
from bertdetr.detr.train import compile_detr, train_detr
from bertdetr.detr.train_config import TrainConfig, load_train_setup
from bertdetr.errors import BertDetrError
from tests.detr.test_train import _config, _losses, shapes  # noqa: F401  (a fixture)
from tests.detr.test_weights import tiny_config


@pytest.mark.parametrize("padded", [True, False])
def test_the_model_is_one_graph(padded):
    torch.manual_seed(0)
    model = build_detr(tiny_config())
    images = torch.randn(2, 3, 64, 80)
    masks = None
    if padded:
        masks = torch.zeros(2, 64, 80, dtype=torch.bool)
        masks[1, :, 60:] = True
    explained = torch._dynamo.explain(model)(images, masks)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_compiled_training_trains_as_eager(shapes, tmp_path, monkeypatch):  # noqa: F811
    eager = train_detr(load_train_setup(_config(shapes, tmp_path, "eager.json", output_dir=str(tmp_path / "eager"),
                                                epochs=1, eval_every=100)))
    real, calls = torch.compile, []

    def aot_eager(fn, mode=None, **kw):
        calls.append((type(fn).__name__, mode))
        return real(fn, backend="aot_eager", **kw)

    monkeypatch.setattr(torch, "compile", aot_eager)
    compiled = train_detr(load_train_setup(_config(shapes, tmp_path, "compiled.json",
                                                   output_dir=str(tmp_path / "compiled"), epochs=1, eval_every=100,
                                                   compile=True, compile_mode="max-autotune-no-cudagraphs")))
    assert calls == [("DETR", "max-autotune-no-cudagraphs")]
    assert compiled["iterations"] == eager["iterations"] == 4
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-4)


def test_a_bad_compile_mode_is_a_clear_error():
    with pytest.raises(BertDetrError, match="train.compile_mode must be one of default, reduce-overhead"):
        TrainConfig(output_dir="x", compile=True, compile_mode="fast")


def _graphs_per_batch(net) -> list[int]:
    """Graphs compiled after each of six batches whose stem-pool output parities differ."""
    from torch._dynamo.utils import counters

    graphs = []
    for h, w in ((64, 80), (72, 56), (70, 66), (48, 98), (82, 80), (56, 64)):
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[1, :, w - 8:] = True
        net(torch.randn(2, 3, h, w), masks)["pred_logits"].sum().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    return graphs


def test_new_image_sizes_reuse_the_first_batchs_dynamic_graph(monkeypatch):
    """What ``train.compile`` says: the first batch compiles the graph (height and width dynamic)
    that later sizes reuse, whatever the parities of their sizes (on a torch whose dynamic shapes
    guard a strided max pool's, ``compile_detr`` swaps the stem's pool for ``EvenPaddedMaxPool``;
    the plain pool compiles a graph per new parity there, after torch's own static first graph).
    The CUDA-graph modes are left to torch's automatic dynamic shapes (static first)."""
    from torch._dynamo.utils import counters

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: real(fn, backend="aot_eager", **kw))
    for mode, expected in (("default", [1, 1, 1, 1, 1, 1]), ("reduce-overhead", [1, 2, 2, 2, 2, 2])):
        torch._dynamo.reset()
        counters.clear()
        torch.manual_seed(0)
        model = build_detr(tiny_config())
        assert _graphs_per_batch(compile_detr(model, mode)) == expected, mode
        assert isinstance(model.backbone.maxpool, EvenPaddedMaxPool) == max_pool_guards_parity()
    torch._dynamo.reset()
    counters.clear()
    plain = _graphs_per_batch(real(build_detr(tiny_config()), backend="aot_eager"))
    assert (plain[-1] > 2) == max_pool_guards_parity(), plain
