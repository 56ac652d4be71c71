import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertdetr.bert.model import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    build_bert_for_pretraining,
    build_bert_model,
    gather_indexes,
    masked_lm_loss,
    next_sentence_loss,
)
from bertdetr.bert.weights import WeightsError, google_to_hf_name, read_tf_checkpoint
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=12)


def tiny(**kw) -> BertConfig:
    return BertConfig(**{**TINY, **kw})


def features(B=2, T=8, P=3, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        input_ids=torch.randint(0, V, (B, T), generator=g),
        input_mask=torch.ones(B, T, dtype=torch.long),
        segment_ids=torch.zeros(B, T, dtype=torch.long),
        masked_lm_positions=torch.randint(0, T, (B, P), generator=g),
        masked_lm_ids=torch.randint(0, V, (B, P), generator=g),
        masked_lm_weights=torch.ones(B, P),
        next_sentence_labels=torch.zeros(B, 1, dtype=torch.long),
    )


# ---- config ----

def test_google_bert_config_json_roundtrip(tmp_path):
    google = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
              "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
              "type_vocab_size": 2, "vocab_size": 30522}  # bert-base-uncased's bert_config.json
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(google))
    c = BertConfig.from_json_file(path)
    assert c == BertConfig()  # the defaults are bert-base
    assert c.hidden_act == "gelu" and c.layer_norm_eps == 1e-12
    assert c.to_google_dict() == google
    (tmp_path / "config.json").write_text(json.dumps(c.to_hf_dict()))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bert"
    assert BertConfig.from_json_file(tmp_path / "config.json") == c


def test_hf_config_json_and_activations(tmp_path):
    c = tiny(hidden_act="gelu_tanh", layer_norm_eps=1e-7)
    d = c.to_hf_dict()
    assert d["model_type"] == "bert" and d["hidden_act"] == "gelu_pytorch_tanh"
    assert BertConfig.from_dict(d) == c
    for hf_name, ours in (("gelu", "gelu"), ("gelu_new", "gelu_tanh"), ("gelu_pytorch_tanh", "gelu_tanh")):
        assert BertConfig.from_dict({**TINY, "hidden_act": hf_name}).hidden_act == ours
    with pytest.raises(BertDetrError, match="'relu'"):
        BertConfig.from_dict({**TINY, "hidden_act": "relu"})
    with pytest.raises(BertDetrError, match="relative_key"):
        BertConfig.from_dict({**TINY, "position_embedding_type": "relative_key"})
    with pytest.raises(BertDetrError, match="roberta"):
        BertConfig.from_dict({**TINY, "model_type": "roberta"})
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(BertDetrError, match="not valid JSON"):
        BertConfig.from_json_file(bad)


@pytest.mark.parametrize("field,value,message", [
    ("hidden_size", 30, "hidden_size 30 is not divisible by num_attention_heads 4"),
    ("vocab_size", 0, "vocab_size must be a positive integer, got 0"),
    ("num_hidden_layers", -1, "num_hidden_layers must be a positive integer, got -1"),
    ("hidden_act", "swish", "'swish'"),
    ("hidden_dropout_prob", 1.0, "hidden_dropout_prob must be in"),
    ("initializer_range", 0.0, "initializer_range"),
])
def test_config_validation_names_the_value(field, value, message):
    kw = {**TINY, "num_attention_heads": 4, field: value}
    with pytest.raises(BertDetrError, match=message):
        BertConfig(**kw)


def test_gelu_tanh_is_googles_formula_and_gelu_is_erf():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    google_tanh = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))
    erf = x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    act = {n: build_bert_model(tiny(hidden_act=n)).layers[0].ffn.activation for n in ("gelu", "gelu_tanh")}
    torch.testing.assert_close(act["gelu_tanh"](x), google_tanh)
    torch.testing.assert_close(act["gelu"](x), erf)
    assert (google_tanh - erf).abs().max() > 1e-4  # the two are different functions


# ---- initialisation ----

def test_google_truncated_normal_init():
    c = tiny(vocab_size=2000, hidden_size=64, intermediate_size=256, num_attention_heads=4)
    m = build_bert_for_pretraining(c)
    std = c.initializer_range
    for name, p in m.named_parameters():
        if "norm" in name and name.endswith("weight"):
            assert torch.all(p == 1), name
        elif name.endswith(("bias", "output_bias")):
            assert torch.all(p == 0), name
        else:  # every kernel and table: truncated at 2 stddev
            assert p.abs().max() <= 2 * std, name
    w = m.bert.embeddings.word_embeddings.weight
    # A normal truncated at +-2 sigma has stddev 0.8796 sigma (HF's untruncated normal: 1.0 sigma).
    assert abs(w.std().item() / std - 0.8796) < 0.01
    assert w.abs().max() > 1.9 * std


# ---- losses ----

def test_masked_lm_loss_is_googles_weighted_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    ids = torch.tensor([[1, 2, 0], [6, 0, 0]])
    weights = torch.tensor([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    # run_pretraining.get_masked_lm_output, step by step
    log_probs = F.log_softmax(logits.view(-1, 7), dim=-1)
    one_hot = F.one_hot(ids.view(-1), 7).to(log_probs.dtype)
    per_example = -(log_probs * one_hot).sum(-1)
    expected = (weights.view(-1) * per_example).sum() / (weights.sum() + 1e-5)
    torch.testing.assert_close(masked_lm_loss(logits, ids, weights), expected)
    # no predictions at all: finite zero, not nan
    assert masked_lm_loss(logits, ids, torch.zeros_like(weights)).item() == 0.0
    nsp = torch.randn(4, 2, generator=g)
    labels = torch.tensor([[0], [1], [1], [0]])
    expected = -(F.log_softmax(nsp, -1) * F.one_hot(labels.view(-1), 2)).sum(-1).mean()
    torch.testing.assert_close(next_sentence_loss(nsp, labels), expected)


def test_pretraining_forward_dict_and_tied_output_layer():
    torch.manual_seed(0)
    m = build_bert_for_pretraining(tiny()).eval()
    f = features()
    out = m(**f)
    assert set(out) == {"loss", "masked_lm_loss", "next_sentence_loss", "masked_lm_logits", "next_sentence_logits"}
    assert out["masked_lm_logits"].shape == (2, 3, 50) and out["next_sentence_logits"].shape == (2, 2)
    torch.testing.assert_close(out["loss"], out["masked_lm_loss"] + out["next_sentence_loss"])
    # Logits at positions are the rows of the all-position logits (gather first == gather after).
    every = m(input_ids=f["input_ids"], input_mask=f["input_mask"], segment_ids=f["segment_ids"])["masked_lm_logits"]
    pos = f["masked_lm_positions"]
    torch.testing.assert_close(out["masked_lm_logits"], every.gather(1, pos[..., None].expand(-1, -1, 50)))
    # The output layer is the word embedding table: its gradient gets the MLM term.
    out["masked_lm_loss"].backward()
    emb_grad = m.bert.embeddings.word_embeddings.weight.grad
    unused_rows = sorted(set(range(50)) - set(f["input_ids"].flatten().tolist()))
    assert emb_grad[unused_rows].abs().sum() > 0
    assert not any("decoder" in n for n in m.state_dict())  # stored once


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    m = build_bert_model(tiny()).eval()
    ids = torch.randint(0, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    a = m(ids).sequence_output
    b = m(padded, attention_mask=mask).sequence_output[:, :6]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(m(padded).sequence_output[:, :6], a, atol=1e-4)  # the mask matters


# ---- bad input: each a BertDetrError naming the value ----

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_bert_for_pretraining(tiny()).eval()


SHAPE_ERRORS = [  # forward checks these itself (they cost no host read)
    (lambda f: f.update(input_mask=torch.ones(2, 7, dtype=torch.long)), r"input_mask has shape \[2, 7\], expected \[2, 8\]"),
    (lambda f: f.update(segment_ids=torch.zeros(2, 9, dtype=torch.long)), r"segment_ids has shape \[2, 9\], expected \[2, 8\]"),
    (lambda f: f.update(masked_lm_ids=torch.zeros(2, 4, dtype=torch.long)), r"masked_lm_ids has shape \[2, 4\], expected \[2, 3\]"),
    (lambda f: f.update(masked_lm_weights=torch.ones(2, 2)), r"masked_lm_weights has shape \[2, 2\]"),
    (lambda f: f.update(input_ids=f["input_ids"].float()), r"input_ids must be an integer tensor"),
    (lambda f: f.update(masked_lm_positions=f["masked_lm_positions"].float()), r"masked_lm_positions must be an integer tensor"),
]
VALUE_ERRORS = [  # check_inputs / check_pretraining_features: values, read on the host
    (lambda f: f["input_ids"].__setitem__((0, 1), 50), r"input_ids contains 50, outside \[0, 50\) \(vocab_size 50\)"),
    (lambda f: f["input_ids"].__setitem__((1, 0), -3), r"input_ids contains -3"),
    (lambda f: f["segment_ids"].__setitem__((0, 2), 2), r"segment_ids contains 2, outside \[0, 2\) \(type_vocab_size 2\)"),
    (lambda f: f["masked_lm_positions"].__setitem__((1, 1), 8), r"masked_lm_positions contains 8, outside \[0, 8\)"),
    (lambda f: f["masked_lm_positions"].__setitem__((1, 1), -1), r"masked_lm_positions contains -1"),
    (lambda f: f["masked_lm_ids"].__setitem__((0, 0), 77), r"masked_lm_ids contains 77"),
    (lambda f: f.update(next_sentence_labels=torch.tensor([0, 2])), r"next_sentence_labels contains 2"),
]


@pytest.mark.parametrize("change,message", SHAPE_ERRORS)
def test_bad_shapes_in_forward(model, change, message):
    f = features()
    change(f)
    with pytest.raises(BertDetrError, match=message):
        model(**f)


@pytest.mark.parametrize("change,message", SHAPE_ERRORS + VALUE_ERRORS)
def test_bad_inputs_in_check_inputs(model, change, message):
    f = features()
    change(f)
    with pytest.raises(BertDetrError, match=message):
        model.check_inputs(**f)


def test_bert_model_check_inputs(model):
    ids = torch.tensor([[1, 2, 50]])
    with pytest.raises(BertDetrError, match=r"input_ids contains 50, outside \[0, 50\) \(vocab_size 50\)"):
        model.bert.check_inputs(ids)
    with pytest.raises(BertDetrError, match=r"token_type_ids contains 3"):
        model.bert.check_inputs(ids.clamp(max=49), torch.tensor([[0, 1, 3]]))
    with pytest.raises(BertDetrError, match=r"output_positions contains 3, outside \[0, 3\)"):
        model.bert.check_inputs(ids.clamp(max=49), output_positions=torch.tensor([[3]]))
    model.bert.check_inputs(ids.clamp(max=49), torch.tensor([[0, 1, 1]]), torch.ones(1, 3), torch.tensor([[2]]))


def test_sequence_longer_than_max_positions(model):
    f = features(T=13)
    with pytest.raises(BertDetrError, match="sequence length 13 exceeds max_position_embeddings 12"):
        model(**f)
    with pytest.raises(BertDetrError, match="sequence length 13"):
        model.bert(f["input_ids"])


def test_pretraining_step_reads_nothing_on_the_host(host_reads):
    """A training step (forward, losses, backward) must not read tensor values on the host: on a
    GPU each such read is a sync that stalls the step. Two ways to see one without a GPU: count
    the Tensor methods that read values (as the DETR criterion's test does), and run the step on
    the meta device, where every op whose result depends on values (item, nonzero, bool(), a
    boolean index...) fails since meta tensors have no values."""
    torch.manual_seed(0)
    config = tiny(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    m = build_bert_for_pretraining(config).train()
    f = features(B=3, T=9)
    f["input_mask"][1, 5:] = 0  # padding: the paths a padded batch takes
    f["input_mask"][2, 7:] = 0
    f["masked_lm_weights"][2, 2] = 0.0
    with host_reads() as calls:
        m(**f)["loss"].backward()
    assert calls == []
    with host_reads() as calls:  # the counting sees reads: the value checks, which forward no longer runs
        m.check_inputs(**f)
    assert calls

    meta = build_bert_for_pretraining(config).train().to("meta")
    out = meta(**{k: v.to("meta") for k, v in f.items()})
    out["loss"].backward()
    assert meta.bert.embeddings.word_embeddings.weight.grad.is_meta
    with pytest.raises((RuntimeError, NotImplementedError)):
        meta.check_inputs(**{k: v.to("meta") for k, v in f.items()})  # a value read fails there


# ---- weights: errors by name ----

def test_config_disagreeing_with_checkpoint(tmp_path):
    torch.manual_seed(0)
    build_bert_for_pretraining(tiny()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "vocab_size": 60}))
    with pytest.raises(WeightsError, match=r"vocab_size 60.*bert\.embeddings\.word_embeddings\.weight "
                                           r"\(checkpoint \[50, 16\], model \[60, 16\]\)"):
        BertForPreTraining.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    with pytest.raises(WeightsError, match=r"unexpected tensors.*bert\.encoder\.layer\.1\.attention\.self\.query\.weight"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(WeightsError, match=r"missing tensors: bert\.encoder\.layer\.2\.attention\.self\.query\.weight"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 16}))
    with pytest.raises(WeightsError, match=r"position_embeddings\.weight \(checkpoint \[12, 16\], model \[16, 16\]\)"):
        BertModel.from_pretrained(tmp_path)


def test_missing_heads_warn_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    enc = build_bert_model(tiny()).eval()
    enc.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"no pretraining heads \(cls\.predictions\.bias.*cls\.seq_relationship\.weight"):
        m = BertForPreTraining.from_pretrained(tmp_path)
    ids = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(m.eval().bert(ids).sequence_output, enc(ids).sequence_output)
    m.save_pretrained(tmp_path / "full")
    again = BertForPreTraining.from_pretrained(tmp_path / "full")
    for (n, a), (_, b) in zip(m.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_unreadable_weights(tmp_path):
    with pytest.raises(WeightsError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(tiny().to_hf_dict()))
    with pytest.raises(WeightsError, match="no model.safetensors or pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read weights"):
        BertModel.from_pretrained(tmp_path)


def test_google_variable_names():
    assert google_to_hf_name("bert/encoder/layer_11/attention/self/query/kernel") == (
        "bert.encoder.layer.11.attention.self.query.weight", True)
    assert google_to_hf_name("bert/embeddings/LayerNorm/gamma") == ("bert.embeddings.LayerNorm.weight", False)
    assert google_to_hf_name("bert/embeddings/word_embeddings") == ("bert.embeddings.word_embeddings.weight", False)
    assert google_to_hf_name("cls/predictions/output_bias") == ("cls.predictions.bias", False)
    assert google_to_hf_name("cls/seq_relationship/output_weights") == ("cls.seq_relationship.weight", False)


def test_tf_checkpoint_errors_are_clear(tmp_path, capsys):
    # Without TensorFlow: the message says how to get it; with it: the path that cannot be read.
    with pytest.raises(BertDetrError, match=r"bertdetr\[tf\]|cannot read TF checkpoint"):
        read_tf_checkpoint(tmp_path / "nothing.ckpt")
    assert main(["bert", "convert", "--tf-checkpoint", str(tmp_path / "nothing.ckpt"), "--output",
                 str(tmp_path / "out")]) == 2
    assert "bertdetr: error:" in capsys.readouterr().err


def test_sharded_safetensors_and_old_layernorm_names(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    m = build_bert_for_pretraining(tiny()).eval()
    m.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    # pytorch-pretrained-bert era names (LayerNorm gamma/beta), split over two shards with an index
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in state.items()}
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / file)
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    back = BertForPreTraining.from_pretrained(tmp_path)
    for (n, a), b in zip(m.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), n


def test_masks_accept_bool_and_float(model):
    f = features()
    f["input_mask"] = f["input_mask"].bool()
    a = model(**f)["loss"]
    f["input_mask"] = f["input_mask"].float()
    f["masked_lm_weights"] = f["masked_lm_weights"].to(torch.float64)
    assert np.isclose(a.item(), model(**f)["loss"].item())


# ---- the last layer at the read positions only ----

@pytest.mark.parametrize("with_pos", [False, True])
def test_encoder_layer_query_index_equals_full_output_gathered(with_pos):
    from bertdetr.nn.transformer import FeedForward, MultiHeadAttention, PostNormEncoderLayer

    torch.manual_seed(0)
    layer = PostNormEncoderLayer(MultiHeadAttention(16, 4), FeedForward(16, 24, torch.nn.GELU())).eval()
    x = torch.randn(2, 7, 16)
    pos = torch.randn(2, 7, 16) if with_pos else None
    mask = torch.zeros(2, 1, 1, 7)
    mask[1, ..., 5:] = -10000.0
    idx = torch.tensor([[0, 3, 3, 6], [0, 1, 4, 2]])
    full = layer(x, pos, mask)
    at = layer(x, pos, mask, query_index=idx)
    torch.testing.assert_close(at, full.gather(1, idx[..., None].expand(-1, -1, 16)), rtol=1e-5, atol=1e-6)


def test_bert_output_positions_equal_full_output_gathered():
    torch.manual_seed(0)
    m = build_bert_model(tiny()).eval()
    f = features(T=9)
    f["input_mask"][1, 6:] = 0
    f["masked_lm_positions"][1] = torch.tensor([5, 0, 2])
    full = m(f["input_ids"], f["segment_ids"], f["input_mask"])
    part = m(f["input_ids"], f["segment_ids"], f["input_mask"], output_positions=f["masked_lm_positions"])
    pos = f["masked_lm_positions"]
    assert part.sequence_output is None and full.gathered_output is None  # one meaning per field
    torch.testing.assert_close(part.gathered_output, full.sequence_output.gather(1, pos[..., None].expand(-1, -1, 16)),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(part.gathered_output, gather_indexes(full.sequence_output, pos), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(part.pooled_output, full.pooled_output, rtol=1e-5, atol=1e-6)
    with pytest.raises(BertDetrError, match=r"output_positions contains 9, outside \[0, 9\)"):
        m.check_inputs(f["input_ids"], output_positions=torch.tensor([[9], [0]]))
