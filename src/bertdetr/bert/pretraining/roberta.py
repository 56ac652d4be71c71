"""RoBERTa-style pretraining data (Liu et al. 2019): sequences of whole sentences without the
next-sentence task, and dynamic masking.

- ``make-data --no-next-sentence``: sequences [CLS] whole sentences [SEP], no NSP pairs and no
  ``next_sentence_labels`` (``bert pretrain`` trains masked LM alone on them). By default they run
  on from one document into the next with a [SEP] between (RoBERTa's FULL-SENTENCES,
  ``create_full_sentences``); with ``--no-cross-documents`` each stays in its document
  (DOC-SENTENCES, ``create_doc_sentences``). The target length is drawn as Google's
  (``short_seq_prob``); a single sentence longer than the sequence is truncated as Google
  truncates a pair.
- ``make-data --dynamic-masking``: the records hold the unmasked sequence (``input_ids``,
  ``input_mask``, ``segment_ids``, ``next_sentence_labels`` unless ``--no-next-sentence``) and,
  with ``--do-whole-word-mask``, ``word_continues`` (1 where a token continues the word before it:
  a ``##`` piece, or a Chinese character marked by ``--word-segmenter``/``--ref-file``). The trainer
  masks every batch afresh (``DynamicMasking``): Google's rules (``masked_lm_prob`` of the tokens,
  rounded half to even, at least 1, at most ``max_predictions_per_seq``; whole words shuffled and
  taken while they fit; each chosen position 80% [MASK], 10% kept, 10% a random vocabulary word),
  with draws seeded by (seed, reader, batch), so a resumed run masks exactly as an uninterrupted
  one. The random stream is numpy's, not Google's ``random.Random``: the rules are Google's, the
  draws are not.

``create_pretraining_data.create_training_instances`` calls the sequence makers with ``finish``:
a chunk of tokens -> its ``TrainingInstance`` (truncated, then masked or marked).
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from bertdetr.bert.data.records import frame_record, serialize_example

__all__ = ["create_full_sentences", "create_doc_sentences", "word_continues", "DynamicRecordEncoder", "DynamicMasking",
           "DYNAMIC_FEATURES"]

DYNAMIC_FEATURES = ("input_ids", "input_mask", "segment_ids")
"""Features every record of ``--dynamic-masking`` has (plus ``next_sentence_labels`` with the
next-sentence task, ``word_continues`` with whole-word masking)."""


def _target_length(config, rng) -> int:
    """The tokens a sequence aims for: usually all it can hold, with probability
    ``short_seq_prob`` a random shorter length (Google's draw, ``rng.randint(2, max_num_tokens)``)."""
    max_num_tokens = config.max_seq_length - 2  # [CLS], [SEP]
    if rng.random() < config.short_seq_prob:
        return 2 + rng.randbelow(max_num_tokens - 1)
    return max_num_tokens


def create_full_sentences(all_documents: list, config, sep_id: int, rng, finish: Callable) -> Iterator:
    """RoBERTa's FULL-SENTENCES over the documents in their order: whole sentences packed into a
    chunk until it reaches the target length, running on into the next document after a [SEP];
    ``finish(chunk)`` makes each sequence. A new target length is drawn for each sequence."""
    target = _target_length(config, rng)
    chunk: list = []
    for document in all_documents:
        if chunk:
            chunk.append(sep_id)  # RoBERTa's extra separator between documents
        for segment in document:
            chunk.extend(segment)
            if len(chunk) >= target:
                yield finish(chunk)
                chunk = []
                target = _target_length(config, rng)
    if chunk:
        yield finish(chunk)


def create_doc_sentences(document: list, config, rng, finish: Callable) -> Iterator:
    """RoBERTa's DOC-SENTENCES of one document: whole sentences packed into chunks of about the
    target length (drawn once per document, as Google's ``create_instances_from_document`` does),
    never across documents; ``finish(chunk)`` makes each sequence."""
    target = _target_length(config, rng)
    chunk: list = []
    for i, segment in enumerate(document):
        chunk.extend(segment)
        if i == len(document) - 1 or len(chunk) >= target:
            yield finish(chunk)
            chunk = []


def word_continues(tokens: list, len_a: int, vocab) -> list[int]:
    """Dynamic masking with whole words: per position of [CLS] A [SEP] B [SEP], 1 where the token
    continues the word before it (a ``##`` piece, or a character marked as continuing a Chinese
    word: id + ``vocab.shadow``, its plain id restored here in ``tokens``), else 0 ([CLS], [SEP])."""
    is_subword, shadow = vocab.is_subword, vocab.shadow
    out = [0] * len(tokens)
    for i in range(1, len(tokens) - 1):
        if i == len_a + 1:
            continue
        token = tokens[i]
        if token >= shadow:
            tokens[i] = token - shadow
            out[i] = 1
        elif is_subword[token]:
            out[i] = 1
    return out


class DynamicRecordEncoder:
    """The records of ``--dynamic-masking``: the unmasked sequence, zero-padded to
    ``max_seq_length``, with ``next_sentence_labels`` when ``next_sentence`` and
    ``word_continues`` when ``whole_word``."""

    def __init__(self, max_seq_length: int, next_sentence: bool, whole_word: bool):
        self.max_seq_length, self.next_sentence, self.whole_word = max_seq_length, next_sentence, whole_word

    def records(self, instances: Sequence) -> list[bytes]:
        out = []
        L = self.max_seq_length
        for inst in instances:
            n = len(inst.input_ids)
            pad = [0] * (L - n)
            features = {"input_ids": inst.input_ids + pad, "input_mask": [1] * n + pad,
                        "segment_ids": inst.segment_ids + pad}
            if self.next_sentence:
                features["next_sentence_labels"] = [1 if inst.is_random_next else 0]
            if self.whole_word:
                features["word_continues"] = list(inst.word_continues) + pad
            out.append(frame_record(serialize_example(features)))
        return out


class DynamicMasking:
    """Masks a batch of unmasked sequences as Google's ``create_masked_lm_predictions`` would
    (module doc), with numpy draws.

    ``mask(batch, rng)``: ``batch`` holds int64 arrays ``input_ids``, ``input_mask`` [B,T] (and
    ``word_continues`` [B,T] for whole words); returns the masked ``input_ids`` [B,T] and
    ``masked_lm_positions``, ``masked_lm_ids`` [B,P] (int64) and ``masked_lm_weights`` [B,P]
    (float32), P = ``max_predictions_per_seq``. Candidates: every real token but [CLS] and [SEP]
    (their ids: the tokenizer never makes them from text).
    """

    def __init__(self, vocab: dict, masked_lm_prob: float, max_predictions_per_seq: int):
        self.cls_id, self.sep_id, self.mask_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
        self.word_ids = np.array(list(vocab.values()), dtype=np.int64)  # Google's vocab_words, as ids
        self.masked_lm_prob = masked_lm_prob
        self.max_predictions = max_predictions_per_seq

    def mask(self, batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        input_ids = batch["input_ids"].copy()
        B, T = input_ids.shape
        P = self.max_predictions
        lengths = batch["input_mask"].sum(1)
        candidate = (batch["input_mask"] == 1) & (input_ids != self.cls_id) & (input_ids != self.sep_id)
        # Google: min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
        wanted = np.minimum(P, np.maximum(1, np.round(lengths * self.masked_lm_prob).astype(np.int64)))
        continues = batch.get("word_continues")
        positions = np.zeros((B, P), np.int64)
        counts = np.zeros(B, np.int64)
        for b in range(B):
            chosen = self._choose(np.flatnonzero(candidate[b]), continues[b] if continues is not None else None,
                                  int(wanted[b]), rng)
            positions[b, :len(chosen)] = chosen
            counts[b] = len(chosen)
        weights = (np.arange(P)[None, :] < counts[:, None])
        masked_ids = np.where(weights, np.take_along_axis(input_ids, positions, 1), 0)
        # each chosen position, in the order chosen: 80% [MASK], else half kept, half a random word
        u = rng.random((B, P))
        coin = rng.random((B, P))
        words = self.word_ids[rng.integers(0, len(self.word_ids), (B, P))]
        replacement = np.where(u < 0.8, self.mask_id, np.where(coin < 0.5, masked_ids, words))
        rows = np.repeat(np.arange(B), P).reshape(B, P)
        input_ids[rows[weights], positions[weights]] = replacement[weights]
        order = np.argsort(np.where(weights, positions, T), axis=1, kind="stable")  # ascending, as Google's
        return {"input_ids": input_ids,
                "masked_lm_positions": np.where(weights, np.take_along_axis(positions, order, 1), 0),
                "masked_lm_ids": np.where(weights, np.take_along_axis(masked_ids, order, 1), 0),
                "masked_lm_weights": weights.astype(np.float32)}

    @staticmethod
    def _choose(candidates: np.ndarray, continues: np.ndarray | None, wanted: int,
                rng: np.random.Generator) -> list[int]:
        """Google's choice: the candidate groups (a continuing token joins the group before it)
        shuffled, taken in that order while they fit, one that would overshoot passed over."""
        if continues is None:  # every token its own group: the first `wanted` of a shuffle
            return list(rng.permutation(candidates)[:wanted])
        groups: list[list[int]] = []
        for i in candidates.tolist():
            if groups and continues[i]:
                groups[-1].append(i)
            else:
                groups.append([i])
        chosen: list[int] = []
        for k in rng.permutation(len(groups)):
            if len(chosen) >= wanted:
                break
            if len(chosen) + len(groups[k]) > wanted:
                continue
            chosen.extend(groups[k])
        return chosen
