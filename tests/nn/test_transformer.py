import torch
from torch import nn

from bertdetr.nn.transformer import (
    FeedForward,
    MultiHeadAttention,
    PostNormDecoderLayer,
    PostNormEncoderLayer,
    key_padding_to_additive_mask,
    key_padding_to_bool_mask,
)


def _copy_from_torch(ours: MultiHeadAttention, ref: nn.MultiheadAttention):
    with torch.no_grad():
        ours.in_proj_weight.copy_(ref.in_proj_weight)
        ours.in_proj_bias.copy_(ref.in_proj_bias)
        ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def test_attention_matches_torch_multihead_attention_all_input_forms():
    g = torch.Generator().manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_(generator=g)
    ours = MultiHeadAttention(16, 4)
    _copy_from_torch(ours, ref)
    q = torch.randn(2, 5, 16, generator=g)
    k = torch.randn(2, 7, 16, generator=g)
    v = torch.randn(2, 7, 16, generator=g)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True
    mask = key_padding_to_additive_mask(pad, q.dtype, float("-inf"))
    expected = ref(q, k, v, key_padding_mask=pad, need_weights=False)[0]
    torch.testing.assert_close(ours(q, k, v, attn_mask=mask), expected, rtol=1e-5, atol=1e-6)
    # key is value (cross-attention without key positions), key is query, pure self-attention
    torch.testing.assert_close(ours(q, k, k), ref(q, k, k, need_weights=False)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours(q, q, k[:, :5]), ref(q, q, k[:, :5], need_weights=False)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours(q), ref(q, q, q, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_attention_weights_equal_torch_multihead_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = MultiHeadAttention(16, 4)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
    _copy_from_torch(ours, ref)
    q, k = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[0, 3:] = True
    mask = key_padding_to_additive_mask(pad, q.dtype, float("-inf"))
    expected = ref(q, k, k, key_padding_mask=pad, need_weights=True, average_attn_weights=False)[1]
    got = ours.attention_weights(q, k, attn_mask=mask)  # the arguments of forward
    assert got.shape == (2, 4, 3, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # separate key and value, self-attention: the same call forms as forward
    torch.testing.assert_close(ours.attention_weights(q, k, torch.randn(2, 5, 16)),
                               ref(q, k, k, need_weights=True, average_attn_weights=False)[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.attention_weights(q), ref(q, q, q, need_weights=True, average_attn_weights=False)[1],
                               rtol=1e-5, atol=1e-6)


def test_boolean_and_additive_masks_agree():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 3, 8)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    additive = key_padding_to_additive_mask(pad, x.dtype, -10000.0)
    assert additive.shape == (2, 1, 1, 3) and additive[0].flatten().tolist() == [0.0, 0.0, -10000.0]
    boolean = key_padding_to_bool_mask(pad)
    assert boolean.shape == (2, 1, 1, 3) and boolean[0].flatten().tolist() == [True, True, False]
    torch.testing.assert_close(attn(x, attn_mask=boolean), attn(x, attn_mask=additive), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn.attention_weights(x, attn_mask=boolean), attn.attention_weights(x, attn_mask=additive),
                               rtol=1e-5, atol=1e-6)
    # a masked key changes nothing: the same as attending over the kept keys only
    torch.testing.assert_close(attn(x[:1, :2], x[:1], attn_mask=boolean[:1]), attn(x[:1, :2], x[:1, :2]),
                               rtol=1e-5, atol=1e-6)


def test_encoder_layer_matches_torch_post_norm_layer():
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=False)
    ref.eval()
    attn = MultiHeadAttention(16, 4)
    _copy_from_torch(attn, ref.self_attn)
    ffn = FeedForward(16, 32, nn.ReLU())
    ffn.fc1.load_state_dict(ref.linear1.state_dict())
    ffn.fc2.load_state_dict(ref.linear2.state_dict())
    ours = PostNormEncoderLayer(attn, ffn)
    ours.norm1.load_state_dict(ref.norm1.state_dict())
    ours.norm2.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(3, 6, 16)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_positions_go_to_queries_and_keys_not_values():
    torch.manual_seed(0)
    layer = PostNormDecoderLayer(MultiHeadAttention(8, 2), MultiHeadAttention(8, 2),
                                 FeedForward(8, 16, nn.ReLU())).eval()
    tgt, mem = torch.zeros(1, 3, 8), torch.randn(1, 4, 8)
    qpos, mpos = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    out = layer(tgt, mem, qpos, mpos)
    # by hand
    sa = layer.self_attn(tgt + qpos, tgt + qpos, tgt)
    x = layer.norm1(tgt + sa)
    ca = layer.cross_attn(x + qpos, mem + mpos, mem)
    x = layer.norm2(x + ca)
    torch.testing.assert_close(out, layer.norm3(x + layer.ffn(x)))
