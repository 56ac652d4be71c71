"""BERT as Google's ``modeling.py`` builds it, with the pretraining heads of ``run_pretraining.py``.

Read top to bottom: the config, the small modules (embeddings, pooler, masked-LM and next-sentence
heads), Google's head functions and losses (``get_masked_lm_output``, ``get_next_sentence_output``),
then the two full models and their ``build_*`` functions. Google's function names are kept where
the computation is theirs (``embedding_lookup``, ``embedding_postprocessor``,
``create_attention_mask_from_input_mask``, ``transformer_model``, ``gather_indexes``, ...). The encoder layer is
the shared post-norm block of ``bertdetr.nn.transformer`` (fused q/k/v projection, SDPA); BERT uses
it with no positional term inside attention and no dropout after the feed-forward activation.

Dimension letters in tensor contracts: B batch, T sequence (to-) length, F from-length (= T here),
P masked positions per sequence (``max_predictions_per_seq``), D hidden size, N heads,
H head size (D = N * H), I intermediate (feed-forward) size, V vocabulary size, S segment
(token type) vocabulary size.

Weights are named as this module builds them; ``bertdetr.bert.weights`` (the loading machinery
below the models, as transformers' ``modeling_utils.py``) maps them to and from Hugging Face's
names for ``from_pretrained`` / ``save_pretrained``, and Google's TF variables onto those.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertdetr.bert.data.records import PRETRAINING_FEATURES  # forward's keyword arguments
from bertdetr.bert.weights import load_state_into, pretrained_loader, read_pretrained, save_pretrained
from bertdetr.errors import BertDetrError, require_field_types
from bertdetr.nn.transformer import (
    FeedForward,
    MultiHeadAttention,
    PostNormEncoderLayer,
    gather_indexes,
    key_padding_to_additive_mask,
    key_padding_to_bool_mask,
    pack_tokens,
    unpack_tokens,
)

# Google's attention_layer adds (1 - mask) * -10000.0 to the scores of masked keys (not -inf):
# a softmax row with at least one kept key is the same to float precision either way.
MASK_ADDER = -10000.0

# Activation names. "gelu" is the exact erf form: what HF's "gelu" computes and what the released
# Google checkpoints were trained with (modeling.py's gelu used tf.erf when they were released, and
# their bert_config.json says "gelu"). Google's *current* modeling.py computes the tanh
# approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) under that same name "gelu"; here that
# is "gelu_tanh" (HF calls it "gelu_new" / "gelu_pytorch_tanh").
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}  # name -> F.gelu(approximate=...)
_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


@dataclass
class BertConfig:
    """The fields of Google's ``bert_config.json`` (and of HF's BERT ``config.json``)."""

    vocab_size: int = 30522
    """Entries of the WordPiece vocabulary (rows of the word embedding table and MLM output)."""
    hidden_size: int = 768
    """D: width of the embeddings and of every encoder layer."""
    num_hidden_layers: int = 12
    """Encoder layers."""
    num_attention_heads: int = 12
    """N: attention heads per layer; must divide hidden_size."""
    intermediate_size: int = 3072
    """I: width of the feed-forward layer inside each encoder layer."""
    hidden_act: str = "gelu"
    """Activation of the feed-forward and MLM transform: "gelu" (erf) or "gelu_tanh" (see ACTIVATIONS)."""
    hidden_dropout_prob: float = 0.1
    """Dropout on embeddings and on every sublayer output before its residual add."""
    attention_probs_dropout_prob: float = 0.1
    """Dropout on the attention probabilities."""
    max_position_embeddings: int = 512
    """Rows of the learned position table: the longest sequence the model accepts."""
    type_vocab_size: int = 2
    """S: segment (token type) ids; 2 in every released checkpoint (Google's class default is 16)."""
    initializer_range: float = 0.02
    """Stddev of the truncated normal (cut at 2 stddev) all weight matrices start from."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon: Google's layer_norm uses tf.contrib's 1e-12 (not torch's 1e-5)."""

    def __post_init__(self):
        require_field_types(self, "BertConfig.")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BertDetrError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise BertDetrError(
                f"BertConfig.hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise BertDetrError(
                f"BertConfig.hidden_act {self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise BertDetrError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
        if not self.initializer_range > 0:
            raise BertDetrError(f"BertConfig.initializer_range must be > 0, got {self.initializer_range!r}")
        if not self.layer_norm_eps > 0:
            raise BertDetrError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """From Google's ``bert_config.json`` fields or HF's ``config.json`` (``model_type: bert``).

        HF-only keys that do not change the computation (``pad_token_id``, ``architectures``, ...)
        are ignored; ones this model cannot honour (relative positions, decoder) are errors.
        """
        if d.get("model_type", "bert") != "bert":
            raise BertDetrError(f"config model_type is {d['model_type']!r}, not 'bert'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise BertDetrError(
                f"config position_embedding_type {d['position_embedding_type']!r} is not supported (only 'absolute')"
            )
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise BertDetrError("config describes a BERT decoder (is_decoder/add_cross_attention); only the encoder is supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        if "vocab_size" not in kwargs:
            raise BertDetrError("config has no vocab_size")
        act = kwargs.get("hidden_act", "gelu")
        if act not in _HF_ACT and act not in ACTIVATIONS:
            raise BertDetrError(f"config hidden_act {act!r} is not supported; use 'gelu' or 'gelu_tanh'")
        # Google's and HF's "gelu" both load as the erf form (see ACTIVATIONS).
        kwargs["hidden_act"] = _HF_ACT.get(act, act)
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Reads Google's ``bert_config.json`` or HF's ``config.json``."""
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except OSError as e:
            raise BertDetrError(f"cannot read config {path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise BertDetrError(f"config {path} is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise BertDetrError(f"config {path} is not a JSON object")
        try:
            return cls.from_dict(d)
        except BertDetrError as e:
            raise BertDetrError(f"config {path}: {e}") from None

    def to_google_dict(self) -> dict[str, Any]:
        """Google's ``bert_config.json`` fields. Google has no layer_norm_eps (always 1e-12) and
        only the name "gelu", which its current code computes as the tanh form (see ACTIVATIONS)."""
        d = dataclasses.asdict(self)
        d.pop("layer_norm_eps")
        d["hidden_act"] = "gelu"
        return d

    def to_hf_dict(self, architecture: str = "BertForPreTraining") -> dict[str, Any]:
        """HF's ``config.json`` for ``transformers.BertConfig``."""
        d = dataclasses.asdict(self)
        d["hidden_act"] = "gelu" if self.hidden_act == "gelu" else "gelu_pytorch_tanh"
        # pad_token_id only makes HF zero that embedding row at init and drop its lookup gradient;
        # Google has neither. 0 is [PAD] in Google's vocabularies and HF's default.
        d.update(model_type="bert", architectures=[architecture], position_embedding_type="absolute",
                 pad_token_id=0)
        return d


def init_google_(module: nn.Module, initializer_range: float) -> None:
    """Google's initialisation, applied to every submodule of ``module``.

    Every kernel and embedding table: truncated normal, stddev ``initializer_range``, redrawn beyond
    2 stddev (``tf.truncated_normal_initializer``); biases zero; LayerNorm gamma 1, beta 0. (HF's
    ``_init_weights`` instead draws an untruncated normal(0, initializer_range) and zeroes the
    ``pad_token_id`` row of the word embeddings.)
    """
    std = initializer_range

    def trunc(w: torch.Tensor) -> None:
        nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)

    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            trunc(m.weight)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, MultiHeadAttention):
            # Google's query, key and value kernels are three separate truncated normals: the same
            # distribution as one draw over the fused [3D, D] matrix.
            trunc(m.in_proj_weight)
            nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, MaskedLMHead):
            nn.init.zeros_(m.output_bias)


class BertEmbeddings(nn.Module):
    """Google's ``embedding_lookup`` then ``embedding_postprocessor``.

    ``forward(input_ids [B,T], token_type_ids [B,T]) -> [B,T,D]``: word + token type + position
    embeddings (positions 0..T-1), LayerNorm, dropout.
    """

    def __init__(self, vocab_size: int, dim: int, max_positions: int, type_vocab_size: int,
                 dropout: float, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, dim)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def embedding_lookup(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B,T] -> [B,T,D]: rows of the word embedding table (Google's ``embedding_lookup``)."""
        return self.word_embeddings(input_ids)

    def embedding_postprocessor(self, input_tensor: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """[B,T,D] -> [B,T,D]: + token type and position embeddings, LayerNorm, dropout (Google's
        ``embedding_postprocessor``)."""
        T = input_tensor.shape[1]
        x = input_tensor + self.token_type_embeddings(token_type_ids)
        # Google slices the first T rows of the position table; broadcasting over B saves a lookup.
        x = x + self.position_embeddings.weight[:T]
        return self.dropout(self.norm(x))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding_postprocessor(self.embedding_lookup(input_ids), token_type_ids)


class Pooler(nn.Module):
    """Google's ``get_pooled_output`` (the "pooler" scope of ``BertModel``): dense + tanh on the
    first ([CLS]) token. [B,T,D] (or any [B,*,D] whose first row is [CLS]) -> [B,D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(sequence_output[:, 0]))


class MaskedLMHead(nn.Module):
    """``run_pretraining.get_masked_lm_output`` up to the logits.

    ``forward(masked_output [B,P,D], embedding_weight [V,D]) -> logits [B,P,V]``, where
    ``masked_output`` is the sequence output at the masked positions, gathered *first* (Google's
    ``gather_indexes``, done by ``BertModel(output_positions=...)``), so the transform and the
    vocabulary projection run on B*P rows instead of B*T (HF's BertForPreTraining projects every
    position). The output layer is the word embedding table (tied; passed in, so it is stored
    once) plus its own bias.
    """

    def __init__(self, dim: int, vocab_size: int, activation: nn.Module, eps: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.activation = activation
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, masked_output: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.activation(self.dense(masked_output)))
        return F.linear(x, embedding_weight, self.output_bias)


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    # log-softmax in fp32 under bf16/fp16 autocast: the vocabulary-wide normaliser is where
    # half precision hurts. fp32 and fp64 logits are used as they are (no copy).
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def masked_lm_loss(logits: torch.Tensor, label_ids: torch.Tensor, label_weights: torch.Tensor) -> torch.Tensor:
    """Google's masked LM loss: sum(weights * nll) / (sum(weights) + 1e-5).

    ``logits [B,P,V]``, ``label_ids [B,P]``, ``label_weights [B,P]`` (1.0 for real predictions, 0.0
    for the padding slots of ``max_predictions_per_seq``) -> scalar. The 1e-5 keeps a batch with no
    predictions finite; it makes the loss a hair below a plain mean.
    """
    nll = F.cross_entropy(_upcast(logits).flatten(0, 1), label_ids.reshape(-1), reduction="none")
    w = label_weights.reshape(-1).to(nll.dtype)
    return (w * nll).sum() / (w.sum() + 1e-5)


def next_sentence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Google's next-sentence loss: mean cross-entropy. ``logits [B,2]``, ``labels [B]`` or [B,1]
    (0 = B follows A, 1 = random B) -> scalar."""
    return F.cross_entropy(_upcast(logits), labels.reshape(-1))


def get_masked_lm_output(
    head: MaskedLMHead,
    input_tensor: torch.Tensor,
    output_weights: torch.Tensor,
    label_ids: torch.Tensor | None = None,
    label_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Google's ``get_masked_lm_output``: ``masked_lm_logits`` [B,P,V] and, with ``label_ids``
    [B,P], ``masked_lm_loss`` (``label_weights`` [B,P] default to 1).

    ``input_tensor`` [B,P,D] is the sequence output already gathered at the masked positions:
    Google gathers inside this function (``gather_indexes``); here the encoder's last layer
    computes only those rows (``BertModel(output_positions=...)``), which is the same numbers.
    ``output_weights`` [V,D] is the word embedding table (tied).
    """
    logits = head(input_tensor, output_weights)
    out = {"masked_lm_logits": logits}
    if label_ids is not None:
        if label_weights is None:
            label_weights = torch.ones_like(label_ids, dtype=torch.float32)
        out["masked_lm_loss"] = masked_lm_loss(logits, label_ids, label_weights)
    return out


def get_next_sentence_output(head: nn.Linear, input_tensor: torch.Tensor,
                             labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Google's ``get_next_sentence_output``: ``next_sentence_logits`` [B,2] from the pooled
    output [B,D] (``cls/seq_relationship``, a [2,D] matrix and bias) and, with ``labels`` [B]
    or [B,1], ``next_sentence_loss``."""
    logits = head(input_tensor)
    out = {"next_sentence_logits": logits}
    if labels is not None:
        out["next_sentence_loss"] = next_sentence_loss(logits, labels)
    return out


@dataclass
class BertOutput:
    sequence_output: torch.Tensor | None
    """[B,T,D] the last encoder layer (Google's ``get_sequence_output``); None when
    ``output_positions`` was given (the last layer then runs at those positions only)."""
    pooled_output: torch.Tensor
    """[B,D] dense + tanh on [CLS] (Google's ``get_pooled_output``)."""
    gathered_output: torch.Tensor | None = None
    """[B,K,D] the last encoder layer at ``output_positions`` (Google's ``gather_indexes`` of the
    sequence output), when they were given; else None."""


# Value checks (is every id inside its table?) read the tensors on the host: on a GPU each is a
# device-to-host sync that stalls the step (a dozen per step, measured host-bound on an H100).
# So ``forward`` checks only shapes and dtypes, which cost nothing; values are checked once where
# data enters, on the host before it goes to the device: ``check_pretraining_features`` on every
# batch of ``bertdetr.bert.pretraining.dataset``, ``check_inputs`` by fill-mask/embed, and by anyone calling
# the models with ids from elsewhere (a bad id otherwise fails as torch's index error, or on a GPU
# as a device-side assert).

def _check_integer(name: str, ids: torch.Tensor) -> None:
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise BertDetrError(f"{name} must be an integer tensor, got {ids.dtype}")


def _check_ids(name: str, ids: torch.Tensor, upper: int, what: str) -> None:
    """Host read: every value of ``ids`` in [0, upper)."""
    _check_integer(name, ids)
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            raise BertDetrError(f"{name} contains {bad}, outside [0, {upper}) ({what})")


def _check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...], of: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise BertDetrError(f"{name} has shape {list(t.shape)}, expected {list(shape)} (as {of})")


def check_tensors(**inputs) -> None:
    """Each of ``inputs`` (by its argument name) a tensor or None: a list of ids (what a tokenizer
    gives without return_tensors="pt") is a TypeError naming it, not an AttributeError from inside."""
    for name, value in inputs.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (e.g. torch.tensor([ids])), got {type(value).__name__}")


def _check_encoder_shapes(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                          attention_mask: torch.Tensor | None, output_positions: torch.Tensor | None) -> None:
    check_tensors(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                  output_positions=output_positions)
    if input_ids.dim() != 2:
        raise BertDetrError(f"input_ids must be [batch, seq_length], got shape {list(input_ids.shape)}")
    _check_integer("input_ids", input_ids)
    B, T = input_ids.shape
    if T > config.max_position_embeddings:
        raise BertDetrError(f"sequence length {T} exceeds max_position_embeddings {config.max_position_embeddings}")
    if token_type_ids is not None:
        _check_shape("token_type_ids", token_type_ids, (B, T), "input_ids")
        _check_integer("token_type_ids", token_type_ids)
    if attention_mask is not None:
        _check_shape("attention_mask", attention_mask, (B, T), "input_ids")
    if output_positions is not None:
        if output_positions.dim() != 2 or output_positions.shape[0] != B:
            raise BertDetrError(f"output_positions has shape {list(output_positions.shape)}, expected [{B}, K]")
        _check_integer("output_positions", output_positions)


def _check_encoder_values(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                          positions: torch.Tensor | None,
                          names: tuple[str, str] = ("token_type_ids", "output_positions")) -> None:
    """Host reads: ids inside the vocabularies, positions inside the sequence (``names``: what the
    caller calls the token types and the positions)."""
    _check_ids("input_ids", input_ids, config.vocab_size, f"vocab_size {config.vocab_size}")
    if token_type_ids is not None:
        _check_ids(names[0], token_type_ids, config.type_vocab_size, f"type_vocab_size {config.type_vocab_size}")
    if positions is not None:
        T = input_ids.shape[1]
        _check_ids(names[1], positions, T, f"seq_length {T}")


def create_attention_mask_from_input_mask(input_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Google's ``create_attention_mask_from_input_mask`` and the adder of its ``attention_layer``
    in one: ``input_mask`` [B,T] (1 real token, 0 padding; int, float or bool) -> the shared
    blocks' additive key mask [B,1,1,T], -10000.0 at padding (Google's [B,F,T] mask is the same
    row for every from-position; broadcasting keeps one)."""
    return key_padding_to_additive_mask(input_mask == 0, dtype, MASK_ADDER)


class BertModel(nn.Module):
    """Google's ``BertModel``: embeddings, post-norm encoder layers (``transformer_model``), pooler.

    ``forward(input_ids [B,T], token_type_ids [B,T] | None, attention_mask [B,T] | None,
    output_positions [B,K] | None) -> BertOutput``. ``attention_mask`` is Google's ``input_mask``
    (1 real token, 0 padding); None means all ones, and ``token_type_ids`` None means all zeros,
    as Google's defaults. ``forward`` checks shapes, not values (see ``check_inputs``).
    """

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings, layers: list[PostNormEncoderLayer],
                 pooler: Pooler):
        super().__init__()
        self.config = config
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)
        self.pooler = pooler

    def check_inputs(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                     attention_mask: torch.Tensor | None = None, output_positions: torch.Tensor | None = None) -> None:
        """Shapes and values of ``forward``'s inputs; raises ``BertDetrError`` naming the bad value.
        Reads the ids on the host: call it where the ids come from (on a GPU, before moving them)."""
        _check_encoder_shapes(self.config, input_ids, token_type_ids, attention_mask, output_positions)
        _check_encoder_values(self.config, input_ids, token_type_ids, output_positions)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                output_positions: torch.Tensor | None = None,
                token_index: torch.Tensor | None = None) -> BertOutput:
        """Without ``output_positions``: ``sequence_output`` [B,T,D] and ``pooled_output``. With
        ``output_positions`` [B,K]: ``gathered_output`` [B,K,D] (the sequence output at those
        positions) and ``pooled_output``; the last layer computes only those rows and [CLS] (the
        pretraining heads read nothing else), so ``sequence_output`` is None. ``token_index`` [N]
        (``packed_token_index`` of ``attention_mask``, made on the host): unpadded layers, the
        same outputs (``transformer_model``)."""
        _check_encoder_shapes(self.config, input_ids, token_type_ids, attention_mask, output_positions)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # Google adds -10000.0 at padding (create_attention_mask_from_input_mask, the reference);
        # beside the kept keys' scores exp(-10000) is 0 in float32, so the boolean mask gives the
        # same softmax, and lets scaled_dot_product_attention take its memory-efficient kernel.
        mask = None if attention_mask is None else key_padding_to_bool_mask(attention_mask == 0)
        if output_positions is None:
            x = self.transformer_model(x, mask, token_index=token_index)
            return BertOutput(sequence_output=x, pooled_output=self.pooler(x))
        cls = torch.zeros_like(output_positions[:, :1])
        x = self.transformer_model(x, mask, query_index=torch.cat([cls, output_positions], dim=1),
                                   token_index=token_index)  # [B,1+K,D]
        return BertOutput(sequence_output=None, pooled_output=self.pooler(x), gathered_output=x[:, 1:])

    def transformer_model(self, x: torch.Tensor, attention_mask: torch.Tensor | None,
                          query_index: torch.Tensor | None = None,
                          token_index: torch.Tensor | None = None) -> torch.Tensor:
        """Google's ``transformer_model``: the encoder layers on the embeddings [B,T,D] with the
        boolean key mask [B,1,1,T] (True: attend) -> [B,T,D]; with ``query_index`` [B,K], the last layer's output
        at those positions only, [B,K,D] (``gather_indexes`` of the full output: every position's
        last-layer output depends on its own query and on all keys/values, so computing queries,
        attention output and feed-forward only there gives the same numbers, saving most of a
        1/L share of the encoder).

        ``token_index`` [N] (``bert pretrain --unpad``): layers 1..L-1 run on the N real tokens only
        (``forward_packed``: projections, feed-forward and LayerNorms on N rows, the attention on
        the padded batch), the last as above on the re-padded batch (padding rows zero: masked
        keys, never read: a query at a padding position, which make-data never asks for, sees that
        zero row instead of the padded token's state). The same outputs; it pays where padding is large: on the bundled books
        at length 512 a third of the tokens are padding (BENCHMARKS.md, "Unpadding"). At 6%
        padding (length 128) an earlier packing gave 0.90x-1.08x on a CPU and 0.92x-1.00x on an
        H100, so it is off by default. The index is made on the host where the batch is
        (``dataset.packed_token_index``): the token count needs no device read.
        """
        *layers, last = self.layers
        if token_index is not None:
            B, T, _ = x.shape
            x = pack_tokens(x, token_index)
            for layer in layers:
                x = layer.forward_packed(x, token_index, B, T, attention_mask)
            x = unpack_tokens(x, token_index, B, T)
        else:
            for layer in layers:
                x = layer(x, attn_mask=attention_mask)
        return last(x, attn_mask=attention_mask, query_index=query_index)

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertModel":
        """Loads a HF-format directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)."""
        found = read_pretrained(path, BertConfig, config)
        model = build_bert_model(found.config)
        load_state_into(model, found.state, found.source, heads=False)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertModel.from_pretrained`` loads."""
        save_pretrained(self, path, "BertModel")


class BertForPreTraining(nn.Module):
    """BERT with ``run_pretraining.py``'s masked-LM and next-sentence heads and losses.

    ``forward`` takes the pretraining TFRecord features by name (Google's ``create_pretraining_data``):
    ``input_ids [B,T]``, ``input_mask [B,T]``, ``segment_ids [B,T]``, ``masked_lm_positions [B,P]``,
    ``masked_lm_ids [B,P]``, ``masked_lm_weights [B,P]``, ``next_sentence_labels [B]`` or [B,1];
    and, unpadding (``bert pretrain --unpad``), ``token_index [N]`` (``dataset.packed_token_index``).
    Returns a dict: ``masked_lm_logits [B,P,V]`` (at the masked positions; at every position,
    [B,T,V], if ``masked_lm_positions`` is None), ``next_sentence_logits [B,2]``, and when labels
    are given ``masked_lm_loss``, ``next_sentence_loss`` and ``loss`` (their sum, Google's total_loss).
    ``forward`` checks shapes, not values: ``check_inputs`` checks those, on the host.
    """

    def __init__(self, bert: BertModel, masked_lm: MaskedLMHead, next_sentence: nn.Linear):
        super().__init__()
        self.config = bert.config
        self.bert = bert
        self.masked_lm = masked_lm
        self.next_sentence = next_sentence

    def forward(
        self,
        *,
        input_ids: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        masked_lm_positions: torch.Tensor | None = None,
        masked_lm_ids: torch.Tensor | None = None,
        masked_lm_weights: torch.Tensor | None = None,
        next_sentence_labels: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        _check_features_shapes(input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
                               masked_lm_weights, next_sentence_labels)
        out = self.bert(input_ids, token_type_ids=segment_ids, attention_mask=input_mask,
                        output_positions=masked_lm_positions, token_index=token_index)
        # With positions the encoder returns the sequence output only there (gathered_output);
        # without, the MLM logits are at every position.
        at = out.sequence_output if masked_lm_positions is None else out.gathered_output
        result = get_masked_lm_output(self.masked_lm, at, self.bert.embeddings.word_embeddings.weight,
                                      masked_lm_ids, masked_lm_weights)
        result.update(get_next_sentence_output(self.next_sentence, out.pooled_output, next_sentence_labels))
        if "masked_lm_loss" in result and "next_sentence_loss" in result:
            result["loss"] = result["masked_lm_loss"] + result["next_sentence_loss"]  # Google's total_loss
        elif "masked_lm_loss" in result and next_sentence_labels is None and masked_lm_ids is not None:
            result["loss"] = result["masked_lm_loss"]  # masked LM alone: records without the NSP task
        return result

    def check_inputs(self, **features: torch.Tensor) -> None:
        """``check_pretraining_features`` with this model's config: shapes and values of
        ``forward``'s keyword arguments, read on the host (see ``BertModel.check_inputs``)."""
        check_pretraining_features(self.config, features)

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForPreTraining":
        """Loads a HF-format directory; heads missing from an encoder-only checkpoint are
        initialised as Google's (with a warning)."""
        found = read_pretrained(path, BertConfig, config)
        model = build_bert_for_pretraining(found.config)
        load_state_into(model, found.state, found.source, heads=True)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForPreTraining.from_pretrained`` loads."""
        save_pretrained(self, path, "BertForPreTraining")


def _check_features_shapes(input_ids, input_mask, segment_ids, positions, ids, weights, nsp_labels) -> None:
    """Shapes and dtypes of BertForPreTraining's features, by their names (no value reads)."""
    if input_ids.dim() != 2:
        raise BertDetrError(f"input_ids must be [batch, seq_length], got shape {list(input_ids.shape)}")
    B, T = input_ids.shape
    for name, t in (("input_mask", input_mask), ("segment_ids", segment_ids)):
        if t is not None:
            _check_shape(name, t, (B, T), "input_ids")
    if positions is None:
        if ids is not None:
            raise BertDetrError("masked_lm_ids given without masked_lm_positions")
    else:
        if positions.dim() != 2 or positions.shape[0] != B:
            raise BertDetrError(
                f"masked_lm_positions has shape {list(positions.shape)}, expected [{B}, max_predictions_per_seq]"
            )
        _check_integer("masked_lm_positions", positions)
        if ids is not None:
            _check_shape("masked_lm_ids", ids, positions.shape, "masked_lm_positions")
            _check_integer("masked_lm_ids", ids)
        if weights is not None:
            _check_shape("masked_lm_weights", weights, positions.shape, "masked_lm_positions")
    if nsp_labels is not None:
        if nsp_labels.numel() != B:
            raise BertDetrError(f"next_sentence_labels has shape {list(nsp_labels.shape)}, expected [{B}] or [{B}, 1]")
        _check_integer("next_sentence_labels", nsp_labels)


def check_pretraining_features(config: BertConfig, features: dict[str, torch.Tensor]) -> None:
    """Shapes and values of ``BertForPreTraining.forward``'s features (``PRETRAINING_FEATURES``;
    ``input_ids`` required) for a model of ``config``; raises ``BertDetrError`` naming the bad
    value. Reads values on the host: the dataset calls it on each batch before the batch goes to
    the device (see the note above ``_check_integer``)."""
    unknown = sorted(set(features) - set(PRETRAINING_FEATURES))
    if unknown or "input_ids" not in features:
        raise BertDetrError(f"pretraining features must include input_ids and be among {', '.join(PRETRAINING_FEATURES)}; "
                            f"got {', '.join(features)}")
    (input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids, masked_lm_weights,
     next_sentence_labels) = (features.get(name) for name in PRETRAINING_FEATURES)
    _check_features_shapes(input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
                           masked_lm_weights, next_sentence_labels)
    _check_encoder_shapes(config, input_ids, segment_ids, input_mask, None)
    _check_encoder_values(config, input_ids, segment_ids, masked_lm_positions, ("segment_ids", "masked_lm_positions"))
    if masked_lm_ids is not None:
        _check_ids("masked_lm_ids", masked_lm_ids, config.vocab_size, f"vocab_size {config.vocab_size}")
    if next_sentence_labels is not None:
        _check_ids("next_sentence_labels", next_sentence_labels, 2, "0 = IsNext, 1 = random")


def build_bert_model(config: BertConfig) -> BertModel:
    """BertModel from ``config``, initialised as Google's ``modeling.py``."""
    act = ACTIVATIONS[config.hidden_act]
    layers = [
        PostNormEncoderLayer(
            MultiHeadAttention(config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob),
            # Google's intermediate -> output has no dropout between them (activation_dropout 0).
            FeedForward(config.hidden_size, config.intermediate_size, nn.GELU(approximate=act)),
            dropout=config.hidden_dropout_prob,
            eps=config.layer_norm_eps,
        )
        for _ in range(config.num_hidden_layers)
    ]
    embeddings = BertEmbeddings(config.vocab_size, config.hidden_size, config.max_position_embeddings,
                                config.type_vocab_size, config.hidden_dropout_prob, config.layer_norm_eps)
    model = BertModel(config, embeddings, layers, Pooler(config.hidden_size))
    init_google_(model, config.initializer_range)
    return model


def build_bert_for_pretraining(config: BertConfig) -> BertForPreTraining:
    """BertForPreTraining from ``config``: ``build_bert_model`` plus both heads, Google's init."""
    masked_lm = MaskedLMHead(config.hidden_size, config.vocab_size,
                             nn.GELU(approximate=ACTIVATIONS[config.hidden_act]), config.layer_norm_eps)
    # Google's cls/seq_relationship/output_weights: a [2, D] matrix, truncated normal like a kernel.
    next_sentence = nn.Linear(config.hidden_size, 2)
    for head in (masked_lm, next_sentence):
        init_google_(head, config.initializer_range)
    return BertForPreTraining(build_bert_model(config), masked_lm, next_sentence)


__all__ = [
    "BertConfig", "BertModel", "BertForPreTraining", "BertOutput", "BertEmbeddings", "Pooler", "MaskedLMHead",
    "build_bert_model", "build_bert_for_pretraining", "masked_lm_loss", "next_sentence_loss",
    "get_masked_lm_output", "get_next_sentence_output", "gather_indexes", "create_attention_mask_from_input_mask",
    "check_pretraining_features", "PRETRAINING_FEATURES", "init_google_",
]
