"""The SQuAD span head and loss against transformers' BertForQuestionAnswering (the oracle), both
directions of its directories, and Google's TF SQuAD checkpoints (where TensorFlow is installed)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertdetr.bert.model import BertConfig
from bertdetr.bert.finetuning.squad import create_model
from bertdetr.bert.heads import BertForQuestionAnswering, squad_losses
from bertdetr.bert.weights import WeightsError

transformers = pytest.importorskip("transformers")

CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, initializer_range=0.1, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0)


def _batch(T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (3, T), generator=g)
    input_mask = torch.ones(3, T, dtype=torch.long)
    input_mask[1, T - 6:] = 0
    segment_ids = torch.zeros(3, T, dtype=torch.long)
    segment_ids[:, 7:] = 1
    return dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
                start_positions=torch.tensor([0, 9, 12]), end_positions=torch.tensor([0, 11, 19]))


def _model(seed=0):
    torch.manual_seed(seed)
    model = create_model(BertConfig(**CONFIG))
    with torch.no_grad():  # a trained-looking head (Google's init is 0.02; larger shows more)
        model.output_weights.normal_(0, 0.5)
        model.output_bias.normal_(0, 0.5)
    return model.eval()


def _hf(out, batch):
    return out(input_ids=batch["input_ids"], attention_mask=batch["input_mask"], token_type_ids=batch["segment_ids"],
               start_positions=batch["start_positions"], end_positions=batch["end_positions"])


def test_head_initialised_as_google():
    torch.manual_seed(0)
    model = create_model(BertConfig(**{**CONFIG, "hidden_size": 256, "num_attention_heads": 4}))
    w = model.output_weights.detach()
    assert w.shape == (2, 256) and torch.equal(model.output_bias.detach(), torch.zeros(2))
    assert w.abs().max() <= 0.04 and 0.015 < w.std() < 0.02  # truncated normal, stddev 0.02, at 2 sigma


def test_loss_is_googles_formula():
    g = torch.Generator().manual_seed(1)
    start, end = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    sp, ep = torch.tensor([0, 3, 9, 2]), torch.tensor([0, 5, 9, 2])

    def compute_loss(logits, positions):  # run_squad.py's, in torch
        one_hot = F.one_hot(positions, 10).float()
        return -torch.mean(torch.sum(one_hot * F.log_softmax(logits, dim=-1), dim=-1))

    out = squad_losses(start, end, sp, ep)
    assert torch.allclose(out["start_loss"], compute_loss(start, sp))
    assert torch.allclose(out["loss"], (compute_loss(start, sp) + compute_loss(end, ep)) / 2.0)


def test_transformers_loads_ours_and_gives_our_outputs(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "qa")
    hf, info = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "qa", output_loading_info=True,
                                                                     attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"]
    hf.eval()
    batch = _batch()
    ours, theirs = model(**batch), _hf(hf, batch)
    assert torch.allclose(ours["start_logits"], theirs.start_logits, atol=1e-5)
    assert torch.allclose(ours["end_logits"], theirs.end_logits, atol=1e-5)
    assert torch.allclose(ours["loss"], theirs.loss, atol=1e-5)
    ours["loss"].backward()
    theirs.loss.backward()
    assert torch.allclose(model.output_weights.grad, hf.qa_outputs.weight.grad, atol=1e-5)
    assert torch.allclose(model.bert.embeddings.word_embeddings.weight.grad[1:],
                          hf.bert.embeddings.word_embeddings.weight.grad[1:], atol=1e-5)


def test_we_load_transformers_directories(tmp_path):
    torch.manual_seed(3)
    hf_config = transformers.BertConfig(**BertConfig(**CONFIG).to_hf_dict("BertForQuestionAnswering"))
    hf = transformers.BertForQuestionAnswering(hf_config).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = BertForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    batch = _batch(seed=2)
    ours, theirs = model(**batch), _hf(hf, batch)
    assert torch.allclose(ours["start_logits"], theirs.start_logits, atol=1e-5)
    assert torch.allclose(ours["loss"], theirs.loss, atol=1e-5)
    # And back: our save of it is what transformers saved.
    model.save_pretrained(tmp_path / "ours")
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "ours" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_directory_without_a_span_head_is_an_error(tmp_path):
    from bertdetr.bert.model import build_bert_model

    build_bert_model(BertConfig(**CONFIG)).save_pretrained(tmp_path / "encoder")
    with pytest.raises(WeightsError, match="no span head .*qa_outputs"):
        BertForQuestionAnswering.from_pretrained(tmp_path / "encoder")


def test_google_squad_checkpoint_converts(tmp_path):
    """A checkpoint with the variables of Google's run_squad create_model (cls/squad/*), written
    with TensorFlow, converts to a directory that transformers loads with the same logits."""
    tf = pytest.importorskip("tensorflow")
    from tests.bert.test_model_tf import google_variables, write_tf_checkpoint

    from bertdetr.bert.model import build_bert_for_pretraining
    from bertdetr.cli import main

    model = _model()
    body = build_bert_for_pretraining(model.config)
    body.bert.load_state_dict(model.bert.state_dict())
    variables = {k: v for k, v in google_variables(body).items() if k.startswith("bert/")}
    variables["cls/squad/output_weights"] = model.output_weights.detach().numpy()
    variables["cls/squad/output_bias"] = model.output_bias.detach().numpy()
    variables["global_step"] = np.array(100, dtype=np.int64)
    (tmp_path / "google").mkdir()
    write_tf_checkpoint(str(tmp_path / "google" / "model.ckpt-100"), variables)
    with open(tmp_path / "google" / "bert_config.json", "w") as f:
        json.dump(model.config.to_google_dict(), f)
    assert tf is not None
    assert main(["bert", "convert", "--tf-checkpoint", str(tmp_path / "google" / "model.ckpt-100"),
                 "--output", str(tmp_path / "out")]) == 0
    hf = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    batch = _batch()
    assert torch.allclose(model(**batch)["start_logits"], _hf(hf, batch).start_logits, atol=1e-5)
