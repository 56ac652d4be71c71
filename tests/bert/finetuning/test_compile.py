"""``--compile`` of the fine-tuning programs, as ``bert pretrain``'s: the whole step compiled (each
head's forward and loss, with their backward, and the update: clipping, the skip of a non-finite
step, Google's optimizer) with no graph breaks, and the same training as eager. The runs compile
with AOTAutograd's eager backend (``tests/bert/pretraining/test_compile.py``: inductor's code
generation is slow on a CPU)."""

import json

import pytest
import torch

from bertdetr.bert.finetuning.classifier import create_model
from bertdetr.bert.heads import BertForMultipleChoice, BertForQuestionAnswering, BertForTokenClassification
from bertdetr.bert.model import BertConfig, build_bert_model
from bertdetr.bert.weights import read_hf_weights
from bertdetr.cli import main
from tests.bert.finetuning.test_finetune import _ner_args
from tests.bert.pretraining.test_compile import _aot_eager

_CONFIG = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16)


def _heads():
    g = torch.Generator().manual_seed(0)
    yield create_model(_CONFIG, ["a", "b", "c"]), dict(label_ids=torch.tensor([0, 2]),
                                                       is_real_example=torch.tensor([1, 1]))
    yield BertForTokenClassification(build_bert_model(_CONFIG), ["O", "B-X", "I-X"]), dict(
        label_ids=torch.randint(0, 3, (2, 8), generator=g))
    yield BertForQuestionAnswering(build_bert_model(_CONFIG)), dict(start_positions=torch.tensor([1, 2]),
                                                                    end_positions=torch.tensor([3, 4]))


@pytest.mark.parametrize("which", range(3), ids=["classifier", "ner", "squad"])
def test_each_head_and_its_loss_are_one_graph(which):
    model, labels = list(_heads())[which]
    g = torch.Generator().manual_seed(1)
    batch = dict(input_ids=torch.randint(0, 50, (2, 8), generator=g), segment_ids=torch.zeros(2, 8, dtype=torch.long),
                 input_mask=torch.tensor([[1] * 8, [1] * 5 + [0] * 3]), **labels)
    explained = torch._dynamo.explain(model)(**batch)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_the_multiple_choice_head_and_its_loss_are_one_graph():
    model = BertForMultipleChoice(build_bert_model(_CONFIG), num_choices=3)
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 3, 8, dtype=torch.long)
    mask[1, :, 5:] = 0
    batch = dict(input_ids=torch.randint(0, 50, (2, 3, 8), generator=g), segment_ids=torch.zeros(2, 3, 8, dtype=torch.long),
                 input_mask=mask, label_ids=torch.tensor([0, 2]))
    explained = torch._dynamo.explain(model)(**batch)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_compiled_fine_tuning_trains_as_eager(tmp_path, monkeypatch):
    eager = tmp_path / "eager"
    assert main(_ner_args(tmp_path, eager, "--train-batch-size", "50")) == 0
    calls = _aot_eager(monkeypatch)
    compiled = tmp_path / "compiled"
    assert main(_ner_args(tmp_path, compiled, "--train-batch-size", "50", "--compile",
                          "--compile-mode", "reduce-overhead")) == 0
    assert [name for name, _, _ in calls] == ["BertForTokenClassification", "clip_and_update"]
    assert {mode for _, mode, _ in calls} == {"reduce-overhead"} and calls[1][2]  # the update: fullgraph
    a, b = read_hf_weights(str(eager / "model"))[0], read_hf_weights(str(compiled / "model"))[0]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    f1 = [json.loads((d / "eval_metrics.json").read_text())["eval_f1"] for d in (eager, compiled)]
    assert f1[1] == pytest.approx(f1[0], abs=0.02)


def test_a_bad_compile_mode_is_a_clear_error(tmp_path, capsys):
    code = main(_ner_args(tmp_path, tmp_path / "o", "--compile", "--compile-mode", "fastest"))
    assert code == 2 and "--compile-mode must be one of default, reduce-overhead" in capsys.readouterr().err


def test_a_run_resumed_compiled_keeps_a_tensor_lr(tmp_path, monkeypatch):
    """Stopped at step 4 (eager) and resumed with --compile: the weights of the compiled run that was
    not stopped. The compiled update's lr stays a tensor though the checkpoint holds a float (a
    float would be compiled in as a constant: a new graph at each lr)."""
    _aot_eager(monkeypatch)
    args = ["--train-batch-size", "50", "--save-checkpoints-steps", "4"]
    assert main(_ner_args(tmp_path, tmp_path / "whole", *args, "--compile")) == 0
    assert main(_ner_args(tmp_path, tmp_path / "split", *args, "--stop-at-step", "4")) == 0
    from bertdetr.bert.finetuning import finetune as finetune_module

    lrs, real = [], finetune_module.finetune_step

    def watching(t, *rest):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        return real(t, *rest)

    monkeypatch.setattr(finetune_module, "finetune_step", watching)
    assert main(_ner_args(tmp_path, tmp_path / "split", *args, "--compile", "--resume")) == 0
    assert len(lrs) == 4 and all(isinstance(lr, torch.Tensor) and lr.dim() == 0 for lr in lrs)
    a, b = read_hf_weights(str(tmp_path / "whole" / "model"))[0], read_hf_weights(str(tmp_path / "split" / "model"))[0]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_batches_cut_to_their_longest_row_compile_once_more_then_reuse_the_dynamic_graph(monkeypatch):
    """What ``compile`` says: a batch of another length compiles the model once more, with dynamic
    shapes, and later lengths reuse that graph (the update's graph never recompiles: its flat
    buffers keep their sizes). Counted over the model and the update of a compiled step."""
    from torch._dynamo.utils import counters

    from bertdetr.bert.optimization import compile_step, create_optimizer

    _aot_eager(monkeypatch)
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = create_model(_CONFIG, ["a", "b", "c"])
    optimizer, _ = create_optimizer(model, 1e-3, 10, 1)
    net, update = compile_step(model, optimizer, True)
    graphs, g = [], torch.Generator().manual_seed(1)
    for length in (9, 16, 5, 12, 7, 14):
        mask = torch.ones(2, length, dtype=torch.long)
        mask[1, length // 2:] = 0
        out = net(input_ids=torch.randint(0, 50, (2, length), generator=g), input_mask=mask,
                  segment_ids=torch.zeros(2, length, dtype=torch.long), label_ids=torch.tensor([0, 2]))
        out["loss"].backward()
        optimizer.prepare()
        update(out["loss"].detach()[None], 1.0)
        optimizer.zero_grad(set_to_none=True)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [2, 3, 3, 3, 3, 3]


def test_multiple_choice_batches_of_other_lengths_reuse_one_dynamic_graph(monkeypatch):
    """[B,C,T] batches cut to their longest row: as the classifier's, one more compile with T
    dynamic, then reused."""
    from torch._dynamo.utils import counters

    _aot_eager(monkeypatch)
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    net = torch.compile(BertForMultipleChoice(build_bert_model(_CONFIG), num_choices=3))
    graphs, g = [], torch.Generator().manual_seed(1)
    for length in (9, 16, 5, 12):
        mask = torch.ones(2, 3, length, dtype=torch.long)
        mask[1, :, length // 2:] = 0
        out = net(input_ids=torch.randint(0, 50, (2, 3, length), generator=g), input_mask=mask,
                  segment_ids=torch.zeros(2, 3, length, dtype=torch.long), label_ids=torch.tensor([0, 2]))
        out["loss"].backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 2, 2, 2]
