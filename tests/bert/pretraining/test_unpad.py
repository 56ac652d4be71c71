"""``bert pretrain --unpad``: the encoder layers on the real tokens only (``token_index``), the
same outputs, losses and gradients as the padded batch; the index made on the host with the batch."""

import pytest
import torch

from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records, packed_token_index
from bertdetr.bert.pretraining.pretrain import pretrain
from bertdetr.nn.transformer import pack_tokens, unpack_tokens
from tests.bert.pretraining.test_pretrain import _config, _losses, records  # noqa: F401  (a fixture)


def _batch(lengths, T=12, P=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    ids = torch.randint(5, 60, (B, T), generator=g) * mask
    # as make-data's records: prediction slots past a short row's tokens hold position 0, weight 0
    positions = torch.tensor([[p if p < n else 0 for p in (1, 2, 3)] for n in lengths])
    return dict(input_ids=ids, input_mask=mask, segment_ids=(torch.arange(T) >= 4).long().expand(B, T) * mask,
                masked_lm_positions=positions, masked_lm_ids=torch.randint(5, 60, (B, P), generator=g),
                masked_lm_weights=(positions > 0).float(),
                next_sentence_labels=torch.randint(0, 2, (B, 1), generator=g))


def _model(dropout=0.0):
    torch.manual_seed(0)
    return build_bert_for_pretraining(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=3,
                                                 num_attention_heads=2, intermediate_size=32,
                                                 max_position_embeddings=16, hidden_dropout_prob=dropout,
                                                 attention_probs_dropout_prob=dropout))


def test_pack_and_unpack_are_inverse_where_there_are_tokens():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    index = packed_token_index(mask)
    assert index.tolist() == [0, 1, 3, 4, 5, 6]
    x = torch.randn(3, 3, 4)
    packed = pack_tokens(x, index)
    assert packed.shape == (6, 4)
    back = unpack_tokens(packed, index, 3, 3)
    assert torch.equal(back[mask.bool()], x[mask.bool()]) and not back[~mask.bool()].any()


@pytest.mark.parametrize("lengths", [[12, 7, 3, 10], [5], [12, 1]])
def test_unpadded_outputs_losses_and_gradients_equal_the_padded_ones(lengths):
    model = _model()
    batch = _batch(lengths)
    padded = model(**batch)
    grads = torch.autograd.grad(padded["loss"], list(model.parameters()))
    packed = model(**batch, token_index=packed_token_index(batch["input_mask"]))
    for key in ("masked_lm_logits", "next_sentence_logits", "loss"):
        torch.testing.assert_close(packed[key], padded[key], rtol=1e-5, atol=1e-6, msg=key)
    for a, b in zip(grads, torch.autograd.grad(packed["loss"], list(model.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and the whole sequence output, without masked positions
    encoder = model.bert
    full = encoder(batch["input_ids"], batch["segment_ids"], batch["input_mask"]).sequence_output
    part = encoder(batch["input_ids"], batch["segment_ids"], batch["input_mask"],
                   token_index=packed_token_index(batch["input_mask"])).sequence_output
    real = batch["input_mask"].bool()
    torch.testing.assert_close(part[real], full[real], rtol=1e-5, atol=1e-6)


def test_the_stream_adds_the_index_to_padded_batches_only(records):  # noqa: F811
    shape = inspect_records([records[0]])
    plain = iter(PretrainingStream([records[0]], 8, 0, shape))
    unpadded = iter(PretrainingStream([records[0]], 8, 0, shape, unpad=True))
    seen_padded = False
    for _ in range(6):
        a, b = next(plain), next(unpadded)
        assert all(torch.equal(a[k], b[k]) for k in a)
        if "input_mask" in a:
            seen_padded = True
            assert torch.equal(b["token_index"], a["input_mask"].reshape(-1).nonzero().squeeze(1))
        else:
            assert "token_index" not in b
    assert seen_padded


def test_pretraining_with_unpad_gives_the_same_losses(records, tmp_path):  # noqa: F811
    # the records' dropout (0.1) draws differ between the layouts, so compare without it
    from dataclasses import replace

    base = _config(records, tmp_path / "padded", num_train_steps=4)
    model = replace(base.model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pretrain(replace(base, model=model))
    pretrain(replace(_config(records, tmp_path / "unpadded", num_train_steps=4, unpad=True), model=model))
    assert _losses(tmp_path / "unpadded") == pytest.approx(_losses(tmp_path / "padded"), rel=1e-5)
