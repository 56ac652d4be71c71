"""Post-norm transformer blocks shared by BERT (Google's ``modeling.py``) and DETR (mmdet).

Both systems use the original "Attention is all you need" post-norm layer: sublayer, dropout,
residual add, LayerNorm. They differ only in details that are arguments here:

- BERT adds no positional term inside attention (positions are in the embeddings); DETR adds
  positional encodings to queries and keys, never to values.
- BERT's feed-forward has no dropout after its activation (Google's ``modeling.py``); mmcv's
  ``FFN`` used by mmdet's DETR has one (``ffn_drop`` after the ReLU and after the second FC).

Dimension letters: B batch, F from (query) length, T to (key/value) length, D model width,
N heads, H head size (D = N * H), I feed-forward width.

The q/k/v projections are one fused ``in_proj_weight`` [3D, D] as in ``torch.nn.MultiheadAttention``
(and so in mmdet and official DETR checkpoints); BERT checkpoints' separate query/key/value
matrices are concatenated on load. Self-attention without positions is then one matmul.

Attention masks, a key mask [B,1,1,T] at every block's ``attn_mask``/``memory_mask``, built once
per forward: boolean, True at the keys to attend to (``key_padding_to_bool_mask``:
``scaled_dot_product_attention``'s convention, which lets it choose its memory-efficient kernel on
a GPU; BERT's), or additive float, 0 = attend and large negative = masked
(``key_padding_to_additive_mask``; DETR's -inf, as ``nn.MultiheadAttention``); None = no mask.
(mmdet's and DETR's padding masks are True at padding and Google's ``input_mask`` is 1 at real
tokens: each model converts its own at its edge.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gather_indexes(sequence_tensor: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Google's ``gather_indexes`` (``run_pretraining.py``): the rows of ``sequence_tensor``
    [B,T,D] at ``positions`` [B,K] -> [B,K,D] (Google flattens the result to [B*K,D])."""
    return sequence_tensor.gather(1, positions.unsqueeze(-1).expand(-1, -1, sequence_tensor.shape[-1]))


def pack_tokens(x: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
    """[B,T,D] -> [N,D]: the rows at ``token_index`` [N] (flat positions b*T + t of the real
    tokens, in order), padding dropped (unpadding, as NVIDIA's and MosaicBERT's BERT)."""
    return x.reshape(-1, x.shape[-1]).index_select(0, token_index)


def unpack_tokens(x: torch.Tensor, token_index: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """[N,D] -> [B,T,D]: ``pack_tokens`` undone, zeros at the padding."""
    return x.new_zeros(batch * length, x.shape[-1]).index_copy(0, token_index, x).view(batch, length, -1)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over N heads with fused input projections (Google's
    ``attention_layer`` in ``modeling.py``; ``torch.nn.MultiheadAttention`` in mmdet's DETR).

    ``forward(query [B,F,D], key [B,T,D] | None, value [B,T,D] | None, attn_mask) -> [B,F,D]``.
    ``key=None`` means self-attention on ``query``; ``value=None`` means ``value = key``.
    ``attn_mask``: the key mask of this module's tensor contract, [B,1,1,T] (or anything
    broadcastable to [B,N,F,T]): boolean, True where a key is attended (BERT's,
    ``key_padding_to_bool_mask``), or additive float, 0 where a key is attended and a large
    negative number where it is not (DETR's -inf, ``key_padding_to_additive_mask``); or None for
    no mask. (A padding mask is True at padding: convert it with those functions, never pass it.)
    The output is the attention context after the output projection, before any dropout/residual.
    ``attention_weights`` takes the same arguments and returns the attention probabilities.
    """

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as torch.nn.MultiheadAttention
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # [B,N,L,H]

    def _project(self, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None,
                 attn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [B,N,F,H], k, v [B,N,T,H] from the fused weights: one matmul for inputs that coincide."""
        D = self.dim
        w, b = self.in_proj_weight, self.in_proj_bias
        if key is None and value is None:
            q, k, v = F.linear(query, w, b).split(D, dim=-1)
        elif value is None or value is key:
            q = F.linear(query, w[:D], b[:D])
            k, v = F.linear(key, w[D:], b[D:]).split(D, dim=-1)
        elif key is None or key is query:
            q, k = F.linear(query, w[: 2 * D], b[: 2 * D]).split(D, dim=-1)
            v = F.linear(value, w[2 * D :], b[2 * D :])
        else:
            q = F.linear(query, w[:D], b[:D])
            k = F.linear(key, w[D : 2 * D], b[D : 2 * D])
            v = F.linear(value, w[2 * D :], b[2 * D :])
        return self._heads(q), self._heads(k), self._heads(v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = self._project(query, key, value, attn_mask)
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # [B,N,F,H]
        B, _, L, _ = ctx.shape
        return self.out_proj(ctx.transpose(1, 2).reshape(B, L, self.dim))

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor, batch: int, length: int,
                       attn_mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention of packed tokens ``x`` [N,D] (``pack_tokens``) -> [N,D], equal to
        ``forward`` on the padded batch packed: the projections run on the N real tokens only, the
        attention itself on the padded [B,N,T,H] (``scaled_dot_product_attention``, which keeps
        attention dropout; flash's varlen kernel has none)."""
        qkv = unpack_tokens(F.linear(x, self.in_proj_weight, self.in_proj_bias), token_index, batch, length)
        q, k, v = (self._heads(t) for t in qkv.split(self.dim, dim=-1))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # [B,N,T,H]
        return self.out_proj(pack_tokens(ctx.transpose(1, 2).reshape(batch, length, self.dim), token_index))

    def attention_weights(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                          attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention probabilities [B,N,F,T] that ``forward`` with these arguments weights the
        values by: softmax(q k^T / sqrt(H) + attn_mask), before attention dropout. For pictures
        of the attention (``scaled_dot_product_attention`` in ``forward`` returns no weights, and
        computing them there would cost the normal path)."""
        q, k, _ = self._project(query, key, value, attn_mask)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B,N,F,T]
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        elif attn_mask is not None:
            scores = scores + attn_mask
        return scores.softmax(-1)


class FeedForward(nn.Module):
    """``Linear(D, I) -> activation -> Dropout(activation_dropout) -> Linear(I, D)``: [B,L,D] -> [B,L,D]
    (no dropout module where ``activation_dropout`` is 0)."""

    def __init__(self, dim: int, hidden_dim: int, activation: nn.Module, activation_dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.activation = activation
        # none at all where there is none (BERT's): a Dropout(0) returns its input, but is still a
        # call dispatched per layer and step, host time on a GPU (bench/count_step_ops.py)
        self.dropout = nn.Dropout(activation_dropout) if activation_dropout else nn.Identity()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class PostNormEncoderLayer(nn.Module):
    """Self-attention and feed-forward, each followed by dropout, residual add and LayerNorm.

    ``forward(x [B,L,D], pos [B,L,D] | None, attn_mask [B,1,1,L] additive | None) -> [B,L,D]``
    (the module's mask convention). ``pos`` is added to the
    attention's queries and keys only (DETR); BERT passes ``pos=None``. The feed-forward output is
    dropped with ``ffn_dropout`` (default: ``dropout``).
    """

    def __init__(
        self,
        attn: MultiHeadAttention,
        ffn: FeedForward,
        dropout: float = 0.0,
        eps: float = 1e-5,
        ffn_dropout: float | None = None,
    ):
        super().__init__()
        dim = attn.dim
        self.self_attn = attn
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ffn = ffn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        # mmdet sets the attention-output dropout (``dropout``) and the FFN-output dropout
        # (mmcv FFN's ``ffn_drop``) separately; None = the same as ``dropout`` (BERT, official DETR).
        self.ffn_dropout = self.dropout if ffn_dropout is None else nn.Dropout(ffn_dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        query_index: torch.Tensor | None = None,
    ):
        """``query_index`` [B,K] (optional): compute the output only at these positions, -> [B,K,D],
        equal to the full output gathered there (``gather_indexes``; their queries attend to all L
        keys/values; the other positions' queries, attention output and feed-forward are
        skipped). BERT's last layer uses it when only the masked and [CLS] positions are read."""
        if query_index is not None:
            return self._forward_at(x, pos, attn_mask, query_index)
        if pos is None:
            a = self.self_attn(x, attn_mask=attn_mask)
        else:
            qk = x + pos
            a = self.self_attn(qk, qk, x, attn_mask=attn_mask)
        x = self.norm1(x + self.dropout(a))
        return self.norm2(x + self.ffn_dropout(self.ffn(x)))

    def forward_packed(self, x: torch.Tensor, token_index: torch.Tensor, batch: int, length: int,
                       attn_mask: torch.Tensor | None) -> torch.Tensor:
        """The layer on packed tokens [N,D] (``pack_tokens``; no positions: BERT) -> [N,D], equal to
        ``forward`` on the padded batch packed; all but the attention itself runs on N rows."""
        a = self.self_attn.forward_packed(x, token_index, batch, length, attn_mask)
        x = self.norm1(x + self.dropout(a))
        return self.norm2(x + self.ffn_dropout(self.ffn(x)))

    def _forward_at(self, x, pos, attn_mask, query_index):
        xq = gather_indexes(x, query_index)  # [B,K,D]
        if pos is None:
            a = self.self_attn(xq, x, attn_mask=attn_mask)  # value = key = x
        else:
            qk = x + pos
            a = self.self_attn(gather_indexes(qk, query_index), qk, x, attn_mask=attn_mask)
        x = self.norm1(xq + self.dropout(a))
        return self.norm2(x + self.ffn_dropout(self.ffn(x)))


class PostNormDecoderLayer(nn.Module):
    """DETR's decoder layer: self-attention, cross-attention, feed-forward, each post-norm.

    ``forward(tgt [B,Q,D], memory [B,T,D], query_pos [B,Q,D], memory_pos [B,T,D],
    memory_mask [B,1,1,T] additive | None) -> [B,Q,D]`` (the module's mask convention).
    ``query_pos`` is added to self-attention queries/keys and to
    cross-attention queries; ``memory_pos`` to cross-attention keys; values get no position.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        cross_attn: MultiHeadAttention,
        ffn: FeedForward,
        dropout: float = 0.0,
        eps: float = 1e-5,
        ffn_dropout: float | None = None,
    ):
        super().__init__()
        dim = self_attn.dim
        self.self_attn = self_attn
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = cross_attn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = ffn
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.ffn_dropout = self.dropout if ffn_dropout is None else nn.Dropout(ffn_dropout)  # as the encoder layer

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = tgt if query_pos is None else tgt + query_pos
        x = self.norm1(tgt + self.dropout(self.self_attn(q, q, tgt)))
        q = x if query_pos is None else x + query_pos
        k = memory if memory_pos is None else memory + memory_pos
        x = self.norm2(x + self.dropout(self.cross_attn(q, k, memory, attn_mask=memory_mask)))
        return self.norm3(x + self.ffn_dropout(self.ffn(x)))


def key_padding_to_bool_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """[B,T] bool (True = padding) -> the blocks' boolean key mask [B,1,1,T], True at the keys to
    attend to (``scaled_dot_product_attention``'s convention). With a boolean mask SDPA may take its
    memory-efficient kernel on a GPU; an additive float mask rules it out on some devices."""
    return ~key_padding_mask[:, None, None, :]


def key_padding_to_additive_mask(key_padding_mask: torch.Tensor, dtype: torch.dtype, neg: float) -> torch.Tensor:
    """[B,T] bool (True = padding) -> the blocks' additive key mask [B,1,1,T]: 0 at kept keys,
    ``neg`` at padding, the same row for every head and query. Both models build theirs here,
    once per forward: BERT from Google's ``input_mask`` (``input_mask == 0``) with Google's
    -10000.0, DETR from mmdet's padding mask with -inf (``nn.MultiheadAttention``'s
    ``key_padding_mask``). Either way a row with one kept key gives the same softmax to float
    precision.
    """
    return torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device).masked_fill(
        key_padding_mask, neg
    )[:, None, None, :]
