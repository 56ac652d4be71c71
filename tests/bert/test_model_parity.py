"""Parity with transformers' BertModel / BertForPreTraining (the oracle), both conversion directions."""

import pytest
import torch
import torch.nn.functional as F

from bertdetr.bert.model import BertConfig, BertForPreTraining, BertModel, build_bert_for_pretraining, build_bert_model
from bertdetr.bert.weights import to_hf_state_dict

transformers = pytest.importorskip("transformers")

# (config, seq length, HF attention implementation): several shapes, both activations, a
# sequence as long as max_position_embeddings, one head of full width. Weights 5-10x larger than
# BERT's 0.02 init, so that pre-activations reach where erf and tanh GELU differ.
SIZES = [
    (dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
          max_position_embeddings=64, initializer_range=0.1), 12, "eager"),
    (dict(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=64,
          max_position_embeddings=20, type_vocab_size=3, hidden_act="gelu_tanh", initializer_range=0.1), 20, "sdpa"),
    (dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
          max_position_embeddings=16, initializer_range=0.2), 9, "sdpa"),
]
IDS = ["small-eager", "tanh-3types-fulllength", "one-head"]


def _config(d):
    return BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **d)


def _features(config: BertConfig, T: int, seed: int = 0):
    """A batch shaped as Google's TFRecords: padding in one row, padded prediction slots (weight 0)."""
    g = torch.Generator().manual_seed(seed)
    B, P = 3, 4
    # ids from 1: HF's word embedding has padding_idx = pad_token_id = 0, which zeroes the lookup
    # gradient of row 0 (Google has no such row); keeping 0 out of the inputs keeps gradients comparable.
    input_ids = torch.randint(1, config.vocab_size, (B, T), generator=g)
    input_mask = torch.ones(B, T, dtype=torch.long)
    input_mask[1, T - 3:] = 0
    segment_ids = torch.randint(0, config.type_vocab_size, (B, T), generator=g)
    positions = torch.stack([torch.randperm(T - 3, generator=g)[:P] for _ in range(B)])
    ids = torch.randint(0, config.vocab_size, (B, P), generator=g)
    weights = torch.ones(B, P)
    weights[2, 2:] = 0.0
    positions[2, 2:] = 0
    ids[2, 2:] = 0
    return dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids, masked_lm_positions=positions,
                masked_lm_ids=ids, masked_lm_weights=weights, next_sentence_labels=torch.tensor([[0], [1], [1]]))


def _hf_config(config: BertConfig, attn: str):
    return transformers.BertConfig(**config.to_hf_dict(), attn_implementation=attn)


def _compare(ours: BertForPreTraining, hf, feats):
    """Forward both, compare outputs and losses, backward both, compare every gradient."""
    V = ours.config.vocab_size
    out = ours(**feats)
    seq = ours.bert(feats["input_ids"], feats["segment_ids"], feats["input_mask"])
    pos, weights = feats["masked_lm_positions"], feats["masked_lm_weights"]
    labels = torch.full_like(feats["input_ids"], -100)
    for b in range(pos.shape[0]):
        keep = weights[b] > 0
        labels[b, pos[b][keep]] = feats["masked_lm_ids"][b][keep]
    h = hf(input_ids=feats["input_ids"], attention_mask=feats["input_mask"], token_type_ids=feats["segment_ids"],
           labels=labels, next_sentence_label=feats["next_sentence_labels"].view(-1), output_hidden_states=True)
    hf_seq = h.hidden_states[-1]
    hf_pooled = hf.bert.pooler(hf_seq)
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seq.sequence_output, hf_seq, **tol)
    torch.testing.assert_close(seq.pooled_output, hf_pooled, **tol)
    hf_mlm = h.prediction_logits.gather(1, pos[..., None].expand(-1, -1, V))
    torch.testing.assert_close(out["masked_lm_logits"], hf_mlm, **tol)
    torch.testing.assert_close(out["next_sentence_logits"], h.seq_relationship_logits, **tol)
    hf_mlm_loss = F.cross_entropy(h.prediction_logits.view(-1, V), labels.view(-1))
    torch.testing.assert_close(out["masked_lm_loss"], hf_mlm_loss, **tol)
    torch.testing.assert_close(out["loss"], h.loss, **tol)

    out["loss"].backward()
    h.loss.backward()
    grads = to_hf_state_dict({n: p.grad for n, p in ours.named_parameters()}, ours.config)
    hf_params = dict(hf.named_parameters())
    assert set(grads) == set(hf_params)
    for name, g in grads.items():
        torch.testing.assert_close(g, hf_params[name].grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("size,T,attn", SIZES, ids=IDS)
def test_hf_to_ours(tmp_path, size, T, attn):
    config = _config(size)
    torch.manual_seed(1)
    hf = transformers.BertForPreTraining(_hf_config(config, attn))
    with torch.no_grad():  # HF inits biases and the MLM bias to zero: make them matter
        for n, p in hf.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    hf.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path)
    assert ours.config == config
    _compare(ours, hf, _features(config, T))


@pytest.mark.parametrize("size,T,attn", SIZES, ids=IDS)
def test_ours_to_hf(tmp_path, size, T, attn):
    config = _config(size)
    torch.manual_seed(2)
    ours = build_bert_for_pretraining(config)
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if "bias" in n:
                p.normal_(0, 0.1)
    ours.save_pretrained(tmp_path)
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path, attn_implementation=attn)
    # The decoder must be tied to the word embeddings on HF's side too.
    assert hf.cls.predictions.decoder.weight.data_ptr() == hf.bert.embeddings.word_embeddings.weight.data_ptr()
    _compare(ours, hf, _features(config, T, seed=3))


def test_encoder_only_both_ways(tmp_path):
    config = _config(SIZES[0][0])
    torch.manual_seed(4)
    ours = build_bert_model(config).eval()
    ours.save_pretrained(tmp_path / "ours")
    hf = transformers.BertModel.from_pretrained(tmp_path / "ours").eval()
    feats = _features(config, 10)
    ids, mask, seg = feats["input_ids"], feats["input_mask"], feats["segment_ids"]
    h = hf(input_ids=ids, attention_mask=mask, token_type_ids=seg)
    o = ours(ids, seg, mask)
    torch.testing.assert_close(o.sequence_output, h.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o.pooled_output, h.pooler_output, rtol=1e-5, atol=1e-5)
    # HF BertModel's own directory (no "bert." prefix) and a pretraining directory both load.
    hf.save_pretrained(tmp_path / "hf")
    back = BertModel.from_pretrained(tmp_path / "hf").eval()
    torch.testing.assert_close(back(ids, seg, mask).sequence_output, h.last_hidden_state, rtol=1e-5, atol=1e-5)
    pre = transformers.BertForPreTraining(_hf_config(config, "sdpa")).eval()
    pre.save_pretrained(tmp_path / "pre")
    enc = BertModel.from_pretrained(tmp_path / "pre").eval()
    torch.testing.assert_close(enc(ids, seg, mask).pooled_output,
                               pre.bert(input_ids=ids, attention_mask=mask, token_type_ids=seg).pooler_output,
                               rtol=1e-5, atol=1e-5)


def test_pytorch_model_bin_weights_only(tmp_path):
    config = _config(SIZES[2][0])
    torch.manual_seed(5)
    hf = transformers.BertForPreTraining(_hf_config(config, "sdpa")).eval()
    hf.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = BertForPreTraining.from_pretrained(tmp_path).eval()
    feats = _features(config, 8)
    o = ours(input_ids=feats["input_ids"], input_mask=feats["input_mask"], segment_ids=feats["segment_ids"])
    h = hf(input_ids=feats["input_ids"], attention_mask=feats["input_mask"], token_type_ids=feats["segment_ids"])
    # masked_lm_positions=None: logits at every position, as HF's.
    torch.testing.assert_close(o["masked_lm_logits"], h.prediction_logits, rtol=1e-5, atol=1e-5)
