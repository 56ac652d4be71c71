"""The classification head and loss against transformers' BertForSequenceClassification, and the
weights in and out: HF sequence-classifier and masked-LM directories, Google's fine-tuned classifier
variables. Tiny random configs made here."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from bertdetr.bert.convert import convert_classifier_state
from bertdetr.bert.finetuning.classifier import create_model
from bertdetr.bert.heads import BertForSequenceClassification, classification_losses
from bertdetr.bert.model import BertConfig, BertForPreTraining, BertModel, build_bert_for_pretraining
from bertdetr.bert.weights import WeightsError, google_to_hf_name, to_hf_state_dict

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40, type_vocab_size=2)
LABELS = ["contradiction", "entailment", "neutral"]


def _batch(seed=0, B=5, T=24, vocab=120):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    lengths = torch.randint(4, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    ids = ids * mask
    segments = ((torch.arange(T)[None] >= (lengths[:, None] // 2)) & (mask > 0)).long()
    labels = torch.randint(0, 3, (B,), generator=g)
    return ids, mask, segments, labels


def _hf_classifier(path):
    return transformers.BertForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()


def test_head_is_googles_create_model():
    torch.manual_seed(0)
    m = create_model(BertConfig(**TINY), LABELS)
    assert m.output_weights.shape == (3, 32) and m.output_bias.shape == (3,)
    assert torch.all(m.output_bias == 0)
    assert m.output_weights.abs().max() <= 0.04  # truncated at 2 stddev of 0.02
    assert 0.01 < m.output_weights.std() < 0.03
    assert m.dropout.p == 0.1


def test_loss_is_mean_negative_log_softmax():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1])
    out = classification_losses(logits, labels)
    expected = [-math.log(math.exp(2) / (math.exp(2) + math.exp(0.5) + math.exp(-1))),
                -math.log(1 / (2 + math.exp(3)))]
    assert np.allclose(out["per_example_loss"].numpy(), expected, atol=1e-6)
    assert abs(out["loss"].item() - sum(expected) / 2) < 1e-6


def test_saved_classifier_loads_in_transformers_with_equal_outputs_loss_and_grads(tmp_path):
    torch.manual_seed(1)
    ours = create_model(BertConfig(**TINY), LABELS)
    with torch.no_grad():
        ours.output_bias.normal_()
    ours.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["BertForSequenceClassification"]
    assert cfg["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    hf = _hf_classifier(tmp_path)
    ours.eval()
    ids, mask, seg, labels = _batch()
    out = ours(input_ids=ids, input_mask=mask, segment_ids=seg, label_ids=labels)
    ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=seg, labels=labels)
    assert torch.allclose(out["logits"], ref.logits, atol=1e-5)
    assert torch.allclose(out["probabilities"], ref.logits.softmax(-1), atol=1e-6)
    assert abs(out["loss"].item() - ref.loss.item()) < 1e-5
    out["loss"].backward()
    ref.loss.backward()
    assert torch.allclose(ours.output_weights.grad, hf.classifier.weight.grad, atol=1e-6)
    ours_grads = to_hf_state_dict({k: p.grad for k, p in ours.bert.named_parameters()}, ours.config)
    for name, p in hf.bert.named_parameters():
        if p.grad is not None:
            assert torch.allclose(ours_grads[name], p.grad, atol=1e-5), name


def test_transformers_classifier_loads_with_equal_outputs(tmp_path):
    torch.manual_seed(2)
    hf_cfg = transformers.BertConfig(**TINY, num_labels=2, id2label={0: "neg", 1: "pos"},
                                     label2id={"neg": 0, "pos": 1})
    hf = transformers.BertForSequenceClassification(hf_cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert ours.labels == ["neg", "pos"]
    ids, mask, seg, _ = _batch(3)
    with torch.no_grad():
        assert torch.allclose(ours(input_ids=ids, input_mask=mask, segment_ids=seg)["logits"],
                              hf(input_ids=ids, attention_mask=mask, token_type_ids=seg).logits, atol=1e-5)


def test_masked_lm_directory_loads_without_pooler(tmp_path):
    """transformers' BertForMaskedLM saves no pooler: fill-mask's model and a fine-tuning start load
    it, the pooler initialised with a warning that says so; the MLM outputs are transformers'."""
    torch.manual_seed(4)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(**TINY)).eval()
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no pooler.*BertForMaskedLM.*initialised as Google's"):
        pre = BertForPreTraining.from_pretrained(tmp_path)
    pre.eval()
    ids, mask, seg, _ = _batch(5)
    positions = torch.tensor([[1, 2, 3]] * ids.shape[0])
    with torch.no_grad():
        ours = pre(input_ids=ids, input_mask=mask, segment_ids=seg, masked_lm_positions=positions)
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=seg).logits
    assert torch.allclose(ours["masked_lm_logits"], ref.gather(1, positions[..., None].expand(-1, -1, 120)), atol=1e-4)
    with pytest.warns(UserWarning, match="no pooler"):
        encoder = BertModel.from_pretrained(tmp_path).eval()
    assert isinstance(encoder, BertModel)
    with torch.no_grad():
        assert torch.allclose(encoder(ids, seg, mask).sequence_output * mask[..., None],
                              hf.bert(input_ids=ids, attention_mask=mask, token_type_ids=seg).last_hidden_state
                              * mask[..., None], atol=1e-5)


def test_cls_only_last_layer_equals_full_pooled_output():
    torch.manual_seed(6)
    m = create_model(BertConfig(**TINY), LABELS).eval()
    ids, mask, seg, _ = _batch(7)
    with torch.no_grad():
        full = m.bert(ids, seg, mask).pooled_output
        fast = m(input_ids=ids, input_mask=mask, segment_ids=seg)["logits"]
        assert torch.allclose(fast, full @ m.output_weights.T + m.output_bias, atol=1e-5)


def test_google_classifier_variables_convert(tmp_path):
    """Google's run_classifier checkpoint: bert/* plus top-level output_weights [K,D] (not
    transposed: Google multiplies with transpose_b) and output_bias."""
    assert google_to_hf_name("output_weights") == ("classifier.weight", False)
    assert google_to_hf_name("output_bias") == ("classifier.bias", False)
    torch.manual_seed(8)
    config = BertConfig(**TINY)
    body = build_bert_for_pretraining(config).bert
    state = {"bert." + k: v for k, v in to_hf_state_dict(body.state_dict(), config).items()}
    w, b = torch.randn(2, 32), torch.randn(2)
    state["classifier.weight"], state["classifier.bias"] = w, b
    model = convert_classifier_state(state, config, tmp_path / "out", str(tmp_path / "model.ckpt"))
    hf = _hf_classifier(tmp_path / "out")
    assert torch.equal(hf.classifier.weight, w) and torch.equal(hf.classifier.bias, b)
    ids, mask, seg, _ = _batch(9)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids, input_mask=mask, segment_ids=seg)["logits"],
                              hf(input_ids=ids, attention_mask=mask, token_type_ids=seg).logits, atol=1e-5)
    # converted into the checkpoint's own folder (its vocab.txt already there): written beside it
    (tmp_path / "google").mkdir()
    (tmp_path / "google" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    convert_classifier_state(state, config, tmp_path / "google", str(tmp_path / "google" / "bert_model.ckpt"))
    assert (tmp_path / "google" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    assert (tmp_path / "google" / "config.json").is_file()


def test_classifier_for_other_label_count_is_an_error(tmp_path):
    torch.manual_seed(10)
    create_model(BertConfig(**TINY), ["a", "b"]).save_pretrained(tmp_path)
    from bertdetr.bert.head_weights import load_classifier_state
    from bertdetr.bert.weights import read_hf_weights

    state, source = read_hf_weights(tmp_path)
    with pytest.raises(WeightsError, match="classifier for 2 labels, the task has 3"):
        load_classifier_state(create_model(BertConfig(**TINY), LABELS), state, source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full classifier loads without warnings
        assert load_classifier_state(create_model(BertConfig(**TINY), ["x", "y"]), state, source)



def test_training_step_reads_nothing_on_the_host_and_labels_are_checked_where_data_enters(host_reads):
    from bertdetr.errors import BertDetrError

    torch.manual_seed(0)
    m = create_model(BertConfig(**TINY), LABELS).train()
    batch = {"input_ids": torch.randint(5, 40, (3, 9)), "input_mask": torch.ones(3, 9, dtype=torch.long),
             "segment_ids": torch.zeros(3, 9, dtype=torch.long), "label_ids": torch.tensor([0, 1, 0])}
    batch["input_mask"][1, 6:] = 0
    with host_reads() as calls:
        m(**batch)["loss"].backward()
    assert calls == []
    m.check_label_ids(batch["label_ids"])
    with pytest.raises(BertDetrError, match="another label list"):
        m.check_label_ids(torch.tensor([0, len(LABELS)]))
    with pytest.raises(BertDetrError, match="another label list"):
        m.check_label_ids(torch.tensor([-1]))
