"""The task heads on BERT, beside the model they extend (as transformers' ``modeling_bert.py``
keeps every head next to ``BertModel``): Google's ``run_classifier.py`` and ``run_squad.py``
``create_model``s as modules, with their losses.

- ``BertForSequenceClassification``: the pooled [CLS] vector, dropout, ``output_weights`` [K,D] and
  ``output_bias`` [K] (``classification_losses``).
- ``BertForQuestionAnswering``: the sequence output times ``cls/squad/output_weights`` [2,D]: start
  and end logits (``squad_losses``).
- ``BertForTokenClassification``: the sequence output, dropout, ``output_weights`` [K,D]: a label
  per token, for named entities (``token_classification_losses``; Google has no such program:
  transformers' head and loss).
- ``BertCrfForNer``: the token classifier's emissions scored by a linear-chain CRF
  (``bertdetr.nn.crf``; CLUENER2020's BERT+CRF baseline), Viterbi decoding.
- ``BertSpanForNer``: start and end pointers per token over the entity types (CLUENER2020's
  BERT+Span baseline, ``span_losses``).
- ``BertForMultipleChoice``: each choice's pooled [CLS] vector, dropout, ``output_weights`` [1,D]:
  a score per choice, softmax over a question's choices (``classification_losses``; CLUE's C3
  baseline and transformers' head).

Each loads and saves the directory transformers' class of the same name does (``from_pretrained``,
``save_pretrained``, through ``bertdetr.bert.head_weights``). The programs that fine-tune them, with
Google's ``create_model`` that builds them, are ``bertdetr.bert.finetuning.classifier`` and
``bertdetr.bert.finetuning.squad``.

Dimension letters: B batch, T sequence length, D hidden size, K labels, C choices.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bertdetr.bert.head_weights import (
    CLASSIFIER_WEIGHT,
    CRF_NAMES,
    SPAN_START_WEIGHT,
    SQUAD_WEIGHT,
    has_crf,
    is_token_classifier,
    other_head_of,
    load_classifier_state,
    load_multiple_choice_state,
    load_question_answering_state,
    load_span_state,
    load_token_classifier_state,
    save_multiple_choice,
    save_question_answering,
    save_sequence_classifier,
    save_span_classifier,
    span_labels,
    save_token_classifier,
    token_classifier_labels,
)
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model, check_tensors
from bertdetr.bert.weights import WeightsError, pretrained_loader, read_labels, read_pretrained
from bertdetr.errors import BertDetrError
from bertdetr.nn.crf import CRF

# ---- sequence classification (Google's run_classifier.create_model) -----------------------------


def classification_losses(logits: torch.Tensor, label_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Google's loss: ``per_example_loss`` = -sum(one_hot(label) * log_softmax(logits)) [B] and its
    plain mean ``loss`` (padding examples are not down-weighted in training, as Google's).
    ``logits [B,K]``, ``label_ids [B]`` or [B,1]."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    per_example_loss = -log_probs.gather(-1, label_ids.reshape(-1, 1)).squeeze(-1)
    return {"loss": per_example_loss.mean(), "per_example_loss": per_example_loss}


class _LabelledHead(nn.Module):
    """What the two heads with labels share: ``bert``, ``labels`` (strings in id order), dropout,
    ``output_weights`` [K,D] (truncated normal, stddev 0.02: Google's fixed
    ``tf.truncated_normal_initializer(stddev=0.02)``, not initializer_range) and a zero
    ``output_bias`` [K]."""

    def __init__(self, bert: BertModel, labels: Sequence[str], dropout: float, what: str):
        super().__init__()
        if not labels:
            raise BertDetrError(f"a {what} needs at least one label")
        self.config = bert.config
        self.bert = bert
        self.labels = list(labels)
        self.dropout = nn.Dropout(dropout)
        self.output_weights = nn.Parameter(torch.empty(len(labels), bert.config.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(len(labels)))
        nn.init.trunc_normal_(self.output_weights, std=0.02, a=-0.04, b=0.04)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def check_label_ids(self, label_ids: torch.Tensor) -> None:
        """Raises ``BertDetrError`` unless every label id is in ``[0, num_labels)`` (or -100, the
        ignored positions of token labels); reads the values, so call it on host data before
        training, not per step."""
        real = label_ids[label_ids != -100]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.num_labels):
            raise BertDetrError(f"label_ids outside [0, {self.num_labels}): the records were made with "
                                "another label list")


class BertForSequenceClassification(_LabelledHead):
    """Google's ``create_model``: BERT's pooled output, dropout 0.1, ``output_weights`` [K,D]
    (truncated normal, stddev 0.02) and a zero ``output_bias`` [K], log-softmax loss.

    ``forward(input_ids [B,T], input_mask [B,T], segment_ids [B,T], label_ids [B] | None) -> dict``
    with ``logits [B,K]``, ``probabilities [B,K]`` and, with labels, ``loss`` and
    ``per_example_loss [B]`` (Google's ``(loss, per_example_loss, logits, probabilities)``).
    ``labels`` are the label strings in id order (saved as the model's ``id2label``).

    Only the pooled [CLS] vector is read, so the encoder computes the last layer at [CLS] only
    (``BertModel``'s ``output_positions`` at [CLS]); the numbers are the full model's.
    """

    def __init__(self, bert: BertModel, labels: Sequence[str]):
        # Google hard-codes keep_prob 0.9 here, whatever the config's hidden_dropout_prob says.
        super().__init__(bert, labels, 0.1, "classifier")

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, label_ids: torch.Tensor | None = None,
                is_real_example: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_tensors(input_ids=input_ids)  # (read here before BertModel checks it)
        # Asking for position 0 ([CLS], read by the pooler anyway) is the smallest request that
        # makes BertModel skip the rest of the last layer.
        cls = input_ids.new_zeros(input_ids.shape[0], 1)
        pooled = self.bert(input_ids, token_type_ids=segment_ids, attention_mask=input_mask,
                           output_positions=cls).pooled_output
        logits = F.linear(self.dropout(pooled), self.output_weights, self.output_bias)
        out = {"logits": logits, "probabilities": F.softmax(logits.float(), dim=-1)}
        if label_ids is not None:
            # Values are checked where the data enters (check_label_ids, on the host), not here:
            # reading them in forward would sync the device every step (issue: no host syncs).
            out.update(classification_losses(logits, label_ids))
        return out

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForSequenceClassification":
        """Loads a HF-format ``BertForSequenceClassification`` directory, saved by transformers or by
        ``save_pretrained`` (labels from its ``id2label``); a directory without the head is an error."""
        found = read_pretrained(path, BertConfig, config)
        other = other_head_of(found.hf_config, found.state)
        if other:
            raise WeightsError(f"{found.source} is {other}, not a BertForSequenceClassification")
        if CLASSIFIER_WEIGHT not in found.state:
            raise WeightsError(f"{found.source} has no classifier ({CLASSIFIER_WEIGHT}): not a "
                               "BertForSequenceClassification; fine-tune it with bertdetr bert classify --init-checkpoint")
        num_labels = found.state[CLASSIFIER_WEIGHT].shape[0]
        labels = read_labels(path, num_labels, found.hf_config if found.hf_config else None)
        model = cls(build_bert_model(found.config), labels)
        load_classifier_state(model, found.state, found.source)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForSequenceClassification`` loads
        (``id2label``/``label2id`` from ``labels``)."""
        save_sequence_classifier(self, path)


# ---- question answering (Google's run_squad.create_model) ---------------------------------------


def squad_losses(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
                 end_positions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Google's loss: the mean over the batch of -log softmax at the true start, likewise at the
    end, and their mean ``loss`` (``(start_loss + end_loss) / 2``). Logits [B,T] (the softmax runs
    over all T positions, padding included, as Google's), positions [B] or [B,1] in [0, T)."""
    start_loss = F.cross_entropy(start_logits.float(), start_positions.reshape(-1))
    end_loss = F.cross_entropy(end_logits.float(), end_positions.reshape(-1))
    return {"loss": (start_loss + end_loss) / 2.0, "start_loss": start_loss, "end_loss": end_loss}


class BertForQuestionAnswering(nn.Module):
    """Google's SQuAD ``create_model``: BERT's sequence output [B,T,D] times
    ``cls/squad/output_weights`` [2,D] (truncated normal, stddev 0.02) plus ``cls/squad/output_bias``
    [2] (zeros): start and end logits [B,T] (no dropout on the head, as Google's).

    ``forward`` takes the SQuAD TFRecord features by name: ``input_ids``, ``input_mask``,
    ``segment_ids`` [B,T] and, for the loss, ``start_positions``, ``end_positions`` [B]
    (``unique_ids`` and ``is_impossible`` are accepted and unused). Returns a dict with
    ``start_logits``, ``end_logits`` [B,T] and, with positions, ``loss``, ``start_loss``, ``end_loss``.
    Logits are computed at every position, padding included: Google's loss normalises over them and
    its n-best search ranks them, so dropping padding columns would change both.
    """

    def __init__(self, bert: BertModel):
        super().__init__()
        self.config = bert.config
        self.bert = bert
        self.output_weights = nn.Parameter(torch.empty(2, bert.config.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(2))
        # Google: tf.truncated_normal_initializer(stddev=0.02), fixed (not initializer_range),
        # truncated at two standard deviations.
        nn.init.trunc_normal_(self.output_weights, std=0.02, a=-0.04, b=0.04)
        # The pooler is not read (Google's graph has it, untouched by the SQuAD loss; transformers'
        # model has none): frozen, so DistributedDataParallel does not wait for its gradient.
        bert.pooler.requires_grad_(False)

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, unique_ids: torch.Tensor | None = None,
                is_impossible: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        final_hidden = self.bert(input_ids, token_type_ids=segment_ids, attention_mask=input_mask).sequence_output
        logits = F.linear(final_hidden, self.output_weights, self.output_bias)  # [B,T,2]
        start_logits, end_logits = logits.unbind(-1)
        out = {"start_logits": start_logits, "end_logits": end_logits}
        if start_positions is not None and end_positions is not None:
            out.update(squad_losses(start_logits, end_logits, start_positions, end_positions))
        return out

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForQuestionAnswering":
        """Loads a HF-format ``BertForQuestionAnswering`` directory (``qa_outputs``), saved by
        transformers or by ``save_pretrained``; a directory without the span head is an error."""
        found = read_pretrained(path, BertConfig, config)
        model = cls(build_bert_model(found.config))
        if not load_question_answering_state(model, found.state, found.source):
            raise WeightsError(f"{found.source} has no span head ({SQUAD_WEIGHT}): not a BertForQuestionAnswering; "
                               "fine-tune it with bertdetr bert squad --init-checkpoint")
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForQuestionAnswering`` loads."""
        save_question_answering(self, path)


# ---- token classification (transformers' BertForTokenClassification: named entities) -----------


def token_classification_losses(logits: torch.Tensor, label_ids: torch.Tensor,
                                ignore_index: int = -100) -> dict[str, torch.Tensor]:
    """transformers' loss: cross-entropy over the positions whose label is not ``ignore_index``,
    their plain mean ``loss``. ``logits [B,T,K]``, ``label_ids [B,T]``."""
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), label_ids.reshape(-1),
                           ignore_index=ignore_index)
    return {"loss": loss}


class BertForTokenClassification(_LabelledHead):
    """A label per token (named entities): BERT's sequence output, dropout
    (``hidden_dropout_prob``, as transformers'), ``output_weights`` [K,D] (truncated normal, stddev
    0.02, as the other heads) and a zero ``output_bias`` [K].

    ``forward(input_ids [B,T], input_mask [B,T], segment_ids [B,T], label_ids [B,T] | None) -> dict``
    with ``logits [B,T,K]`` and, with labels, ``loss`` (``token_classification_losses``: positions
    labelled -100 are ignored). ``labels`` are the tag strings in id order (the model's ``id2label``).
    Saved and loaded as transformers' ``BertForTokenClassification`` directory (no pooler).
    """

    def __init__(self, bert: BertModel, labels: Sequence[str]):
        super().__init__(bert, labels, bert.config.hidden_dropout_prob, "token classifier")
        # The pooler is not read (transformers' model has none): no gradient reaches it, and
        # DistributedDataParallel needs to know that (as a frozen part) rather than wait for one.
        bert.pooler.requires_grad_(False)

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None,
                label_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        hidden = self.bert(input_ids, token_type_ids=segment_ids, attention_mask=input_mask).sequence_output
        logits = F.linear(self.dropout(hidden), self.output_weights, self.output_bias)
        out = {"logits": logits}
        if label_ids is not None:
            out.update(token_classification_losses(logits, label_ids))
        return out

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForTokenClassification":
        """Loads a HF-format ``BertForTokenClassification`` directory, saved by transformers or by
        ``save_pretrained`` (labels from its ``id2label``); a directory without the head is an error.
        One with a CRF (``bert ner --crf``; CLUENER2020's BERT+CRF checkpoints too, their tags
        ``CLUENER_LABELS``) comes back as a ``BertCrfForNer``."""
        found = read_pretrained(path, BertConfig, config)
        if SPAN_START_WEIGHT in found.state:
            raise WeightsError(f"{found.source} is a BertSpanForNer (bert ner --span), not a token classifier: "
                               "tag with it by bertdetr bert ner --do-predict, or load it with BertSpanForNer")
        if not is_token_classifier(found.hf_config, found.state):
            raise WeightsError(f"{found.source} is not a BertForTokenClassification (no token classifier); "
                               "fine-tune it with bertdetr bert ner --init-checkpoint")
        if issubclass(cls, BertCrfForNer) and not has_crf(found.state):
            # random transitions would decode silently otherwise (BertSpanForNer refuses alike)
            raise WeightsError(f"{found.source} has no CRF ({', '.join(CRF_NAMES)}): a plain token classifier, "
                               "not a BertCrfForNer; load it with BertForTokenClassification, or fine-tune a CRF "
                               "with bertdetr bert ner --crf --init-checkpoint")
        labels = token_classifier_labels(path, found.hf_config or None, found.state)
        # a directory with a CRF (bert ner --crf) is a BertCrfForNer whichever class reads it, so
        # that what predicts with it decodes with its CRF
        model = (BertCrfForNer if has_crf(found.state) else cls)(build_bert_model(found.config), labels)
        load_token_classifier_state(model, found.state, found.source, found.hf_config)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForTokenClassification`` loads."""
        save_token_classifier(self, path)


# ---- token classification with a CRF (CLUENER2020's BertCrfForNer) ------------------------------


def crf_sequences(logits: torch.Tensor, tag_mask: torch.Tensor, label_ids: torch.Tensor | None = None,
                  outside_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The CRF's view of a batch: each row's tagged positions (``tag_mask`` 1: [CLS], each word's
    first piece, [SEP]) moved to its front in order, so that a word's later pieces are not steps of
    the chain. Returns ``emissions [B,T,K]`` (float32), ``mask [B,T]`` (bool, on a prefix) and, with
    ``label_ids [B,T]``, ``tags [B,T]``: the gold tags there, ``outside_id`` where the label is
    -100 ([CLS] and [SEP], as CLUENER's features tag them "O"), 0 past the end. Without word pieces
    (Chinese characters: every token a word) the order is unchanged: CLUENER's sequence exactly."""
    order = torch.argsort((tag_mask == 0).to(torch.int8), dim=1, stable=True)
    emissions = logits.float().gather(1, order.unsqueeze(2).expand(-1, -1, logits.shape[2]))
    mask = tag_mask.gather(1, order).bool()
    if label_ids is None:
        return emissions, mask, None
    tags = label_ids.gather(1, order)
    tags = torch.where(tags == -100, outside_id, tags) * mask
    return emissions, mask, tags


class BertCrfForNer(BertForTokenClassification):
    """A label per token scored by a linear-chain CRF (CLUENER2020's ``BertCrfForNer``, the BERT+CRF
    baseline of Chinese NER): ``BertForTokenClassification``'s emissions and a ``CRF`` over the
    tagged positions ([CLS], each word's first piece, [SEP]; ``crf_sequences``), [CLS] and [SEP]
    tagged "O" as CLUENER's features tag them (its chain includes both ends).

    ``forward(input_ids [B,T], input_mask, segment_ids, tag_mask [B,T] | None, label_ids [B,T] |
    None) -> dict`` with ``logits [B,T,K]`` (the emissions) and, with labels, ``loss``: the negative
    log-likelihood of the gold tags, averaged over rows (CLUENER's ``-1 * crf(...)`` with the
    reference's "mean" reduction). ``tag_mask`` None: every token of ``input_mask`` is tagged
    (CLUENER's layout). ``decode(logits, tag_mask) -> [B,T]``: the best tags of the tagged positions
    in order, [CLS]'s first (Viterbi). Saved as transformers' ``BertForTokenClassification``
    directory plus ``crf.start_transitions``, ``crf.end_transitions``, ``crf.transitions`` (the names
    of CLUENER's model): transformers loads it as a token classifier of the emissions alone.
    """

    def __init__(self, bert: BertModel, labels: Sequence[str]):
        if "O" not in labels:
            raise BertDetrError(f"a CRF head tags [CLS] and [SEP] as O, and the tags {list(labels)} have no O")
        super().__init__(bert, labels)
        self.crf = CRF(len(labels))
        self.outside_id = list(labels).index("O")

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, tag_mask: torch.Tensor | None = None,
                label_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = super().forward(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)
        if label_ids is not None:
            emissions, mask, tags = crf_sequences(out["logits"], self._tag_mask(input_ids, input_mask, tag_mask),
                                                  label_ids, self.outside_id)
            out["loss"] = -self.crf(emissions, tags, mask, reduction="mean")
        return out

    @staticmethod
    def _tag_mask(input_ids: torch.Tensor, input_mask: torch.Tensor | None,
                  tag_mask: torch.Tensor | None) -> torch.Tensor:
        if tag_mask is not None:
            return tag_mask
        return input_mask if input_mask is not None else torch.ones_like(input_ids)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, tag_mask: torch.Tensor) -> torch.Tensor:
        """The best tag ids of each row's tagged positions, in order from [CLS] ([B,T]; 0 past the
        last), by Viterbi over ``logits`` (``forward``'s)."""
        emissions, mask, _ = crf_sequences(logits, tag_mask)
        return self.crf.decode(emissions, mask)


# ---- span pointers for named entities (CLUENER2020's BertSpanForNer) ----------------------------


def span_losses(start_logits: torch.Tensor, end_logits: torch.Tensor, start_ids: torch.Tensor,
                end_ids: torch.Tensor, input_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """CLUENER's: the cross-entropy of each real token's (``input_mask`` 1) start and end labels,
    each the mean over those tokens, ``loss`` their mean. ``*_logits [B,T,K]``, ``*_ids [B,T]``.
    The mean is a masked sum over a count (CLUENER selects the tokens: the same value, no read of
    the device)."""
    mask = torch.ones_like(start_ids) if input_mask is None else input_mask
    mask = mask.to(torch.float32)
    K = start_logits.shape[-1]

    def mean_ce(logits, ids):
        ce = F.cross_entropy(logits.float().reshape(-1, K), ids.reshape(-1), reduction="none")
        return (ce * mask.reshape(-1)).sum() / mask.sum().clamp(min=1)

    start_loss, end_loss = mean_ce(start_logits, start_ids), mean_ce(end_logits, end_ids)
    return {"loss": (start_loss + end_loss) / 2, "start_loss": start_loss, "end_loss": end_loss}


class PoolerStartLogits(nn.Module):
    """CLUENER's start layer: a linear map to the span labels (``dense``)."""

    def __init__(self, hidden_size: int, num_classes: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, num_classes)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states)


class PoolerEndLogits(nn.Module):
    """CLUENER's end layer: the token's vector beside its start label's distribution (``hidden_size``
    = D + K wide, kept that wide as CLUENER's), ``dense_0``, tanh, ``LayerNorm``, ``dense_1`` to the
    span labels."""

    def __init__(self, hidden_size: int, num_classes: int):
        super().__init__()
        self.dense_0 = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size)  # (torch's eps, as CLUENER's layer)
        self.dense_1 = nn.Linear(hidden_size, num_classes)

    def forward(self, hidden_states: torch.Tensor, start_labels: torch.Tensor) -> torch.Tensor:
        return self.dense_1(self.LayerNorm(torch.tanh(self.dense_0(torch.cat([hidden_states, start_labels], -1)))))


class BertSpanForNer(nn.Module):
    """Entities as start and end pointers (CLUENER2020's ``BertSpanForNer``, the third of its NER
    baselines, with its soft labels): per token a start label and an end label over "O" and the
    entity types; the end layer reads the token's vector beside its start label's distribution
    (in training the gold start label, one-hot, as CLUENER's; else the softmax of the start logits).

    ``forward(input_ids [B,T], input_mask, segment_ids, start_ids [B,T] | None, end_ids [B,T] | None)
    -> dict`` with ``start_logits``, ``end_logits`` [B,T,K] and, with labels, ``loss``,
    ``start_loss``, ``end_loss`` (``span_losses``). ``labels``: "O" then the types (CLUENER's order
    puts "O" first). Decoding is ``bert_extract_item`` (``bertdetr.bert.finetuning.ner``).
    Saved as a transformers-layout folder (``config.json`` with ``id2label``, architectures
    ``BertSpanForNer``; CLUENER's tensor names): transformers has no such class.
    """

    def __init__(self, bert: BertModel, labels: Sequence[str]):
        super().__init__()
        if len(labels) < 2 or labels[0] != "O":
            raise BertDetrError(f"a span head's labels are O then the entity types, got {list(labels)}")
        self.config, self.bert, self.labels = bert.config, bert, list(labels)
        bert.pooler.requires_grad_(False)  # (not read: as the token classifier's)
        D, K = bert.config.hidden_size, len(labels)
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.start_fc, self.end_fc = PoolerStartLogits(D, K), PoolerEndLogits(D + K, K)
        for module in (self.start_fc.dense, self.end_fc.dense_0, self.end_fc.dense_1):
            nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(module.bias)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, start_ids: torch.Tensor | None = None,
                end_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        hidden = self.dropout(self.bert(input_ids, token_type_ids=segment_ids, attention_mask=input_mask).sequence_output)
        start_logits = self.start_fc(hidden)
        if start_ids is not None and self.training:
            start_labels = F.one_hot(start_ids, self.num_labels).to(hidden.dtype)
        else:
            start_labels = F.softmax(start_logits, -1)
        end_logits = self.end_fc(hidden, start_labels)
        out = {"start_logits": start_logits, "end_logits": end_logits}
        if start_ids is not None and end_ids is not None:
            out.update(span_losses(start_logits, end_logits, start_ids, end_ids, input_mask))
        return out

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertSpanForNer":
        """Loads a folder saved by ``save_pretrained`` or by CLUENER's ``run_ner_span.py`` (no label
        names: CLUENER's span labels, with a warning)."""
        found = read_pretrained(path, BertConfig, config)
        if SPAN_START_WEIGHT not in found.state:
            raise WeightsError(f"{found.source} is not a BertSpanForNer (no {SPAN_START_WEIGHT}); "
                               "fine-tune one with bertdetr bert ner --span")
        model = cls(build_bert_model(found.config), span_labels(path, found.hf_config or None, found.state))
        load_span_state(model, found.state, found.source)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        save_span_classifier(self, path)


# ---- multiple choice (transformers' BertForMultipleChoice; CLUE's C3 baseline) ------------------


class BertForMultipleChoice(nn.Module):
    """A score per choice (C3's reading comprehension, SWAG): BERT's pooled output of each choice's
    sequence, dropout (``hidden_dropout_prob``, as transformers' and CLUE's), ``output_weights``
    [1,D] (truncated normal, stddev 0.02, as the other heads) and a zero ``output_bias`` [1]; the
    scores of a question's choices are its logits.

    ``forward(input_ids [B,C,T], input_mask [B,C,T], segment_ids [B,C,T], label_ids [B] | None)``
    -> dict with ``logits [B,C]``, ``probabilities [B,C]`` and, with labels, ``loss`` (the mean
    cross-entropy over questions) and ``per_example_loss [B]``. ``labels``: the choice indexes as
    strings ("0" .. C-1, CLUE's label list). Saved and loaded as transformers'
    ``BertForMultipleChoice`` directory; the number of choices is the data's, not the weights'.
    """

    def __init__(self, bert: BertModel, num_choices: int = 4):
        super().__init__()
        if num_choices < 2:
            raise BertDetrError(f"a multiple-choice head needs at least 2 choices, got {num_choices}")
        self.config = bert.config
        self.bert = bert
        self.num_choices = num_choices
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.output_weights = nn.Parameter(torch.empty(1, bert.config.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(1))
        nn.init.trunc_normal_(self.output_weights, std=0.02, a=-0.04, b=0.04)

    @property
    def labels(self) -> list[str]:
        return [str(k) for k in range(self.num_choices)]

    def check_label_ids(self, label_ids: torch.Tensor) -> None:
        """Raises ``BertDetrError`` unless every label id is a choice index; reads the values, so
        call it on host data before training."""
        if label_ids.numel() and (int(label_ids.min()) < 0 or int(label_ids.max()) >= self.num_choices):
            raise BertDetrError(f"label_ids outside [0, {self.num_choices}): the records were made for other choices")

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, label_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_tensors(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)
        if input_ids.dim() != 3:
            raise BertDetrError(f"input_ids must be [batch, choices, seq_length], got shape {list(input_ids.shape)}")
        B, C, T = input_ids.shape
        flat = input_ids.reshape(B * C, T)
        # Only the pooled [CLS] vector is read: the last layer is computed at [CLS] alone.
        pooled = self.bert(flat, token_type_ids=None if segment_ids is None else segment_ids.reshape(B * C, T),
                           attention_mask=None if input_mask is None else input_mask.reshape(B * C, T),
                           output_positions=flat.new_zeros(B * C, 1)).pooled_output
        logits = F.linear(self.dropout(pooled), self.output_weights, self.output_bias).reshape(B, C)
        out = {"logits": logits, "probabilities": F.softmax(logits.float(), dim=-1)}
        if label_ids is not None:
            out.update(classification_losses(logits, label_ids))
        return out

    @classmethod
    @pretrained_loader
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None,
                        num_choices: int = 4) -> "BertForMultipleChoice":
        """Loads a HF-format ``BertForMultipleChoice`` directory, saved by transformers or by
        ``save_pretrained``; a directory without the head is an error."""
        found = read_pretrained(path, BertConfig, config)
        model = cls(build_bert_model(found.config), num_choices)
        if not load_multiple_choice_state(model, found.state, found.source, found.hf_config):
            raise WeightsError(f"{found.source} is not a BertForMultipleChoice (no multiple-choice head); "
                               "fine-tune it with bertdetr bert multiple-choice --init-checkpoint")
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForMultipleChoice`` loads."""
        save_multiple_choice(self, path)


__all__ = ["BertForSequenceClassification", "classification_losses", "BertForQuestionAnswering", "squad_losses",
           "BertForTokenClassification", "token_classification_losses", "BertCrfForNer", "crf_sequences",
           "BertSpanForNer", "span_losses", "BertForMultipleChoice"]
