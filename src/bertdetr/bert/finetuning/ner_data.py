"""The data half of ``bertdetr bert ner``: CoNLL files read into sentences, and sentences cut into
windows of word pieces (the features), as transformers' ``run_ner.py`` prepares them.

**Files** (``--data-dir``: ``train.txt``, ``dev.txt``, ``test.txt``): one token a line with its tag
after it, tab or space separated, a blank line between sentences. A line with more columns (the
CoNLL-2003 layout: token, part of speech, chunk, tag) keeps the first as the token and the last as
the tag; ``-DOCSTART-`` lines are skipped. Chinese data has one character a line. The test file
may have tokens alone (no gold tags): then every line of it has one column.

**Tags**: ``O``, or ``B-``/``I-`` (BIO) and ``E-``/``S-`` (BIOES) then a type; anything else is an
error naming the file and line. The label list is read from the training data (sorted, as
``run_ner.py``'s ``get_label_list``) or from the fine-tuned model.

**Windows**: each word is tokenized on its own (``FullTokenizer``); its first piece carries its
label and the rest are ignored by the loss (label -100) and by prediction. A word that tokenizes to
nothing (a control character, say) is given one [UNK] piece, so that every word gets a prediction.
A sentence whose pieces do not fit ``max_seq_length - 2`` is cut into consecutive windows of whole
words, so every word is predicted once (a single word longer than a window keeps its first pieces).

Dimension letters: T sequence length (``max_seq_length``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.errors import BertDetrError
from bertdetr.fileio import TextCheck

__all__ = ["Sentence", "TAG_PATTERN", "read_conll", "get_label_list", "NerWindow", "sentence_windows",
           "windows_to_tensors", "IGNORE_INDEX"]

TAG_PATTERN = re.compile(r"O|[BIES]-\S+")
"""A tag of the BIO or BIOES scheme: ``O``, or a prefix, ``-`` and a type."""

IGNORE_INDEX = -100
"""The label of positions the loss and the predictions skip ([CLS], [SEP], later pieces, padding),
as transformers' ``CrossEntropyLoss(ignore_index=-100)``."""


@dataclass
class Sentence:
    """One sentence of a CoNLL file."""

    words: list[str]
    """Its tokens, one per line of the file."""
    tags: list[str] | None
    """Their gold tags (None: a test file without tags)."""
    line: int
    """The line of the file where it starts (from 1)."""


def read_conll(path: str | os.PathLike, tags_required: bool = True) -> list[Sentence]:
    """The sentences of a CoNLL file. ``tags_required`` False (the test set): a file whose every
    line is a token alone is read without tags. Errors name the file and line: a line with no tag
    (in a file with tags), a tag outside BIO/BIOES."""
    path = os.fspath(path)
    check = TextCheck(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    has_tags: bool | None = None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            parts = check.decode(raw, n).split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    sentences.append(Sentence(words, tags if has_tags else None, start))
                    words, tags = [], []
                continue
            if not words:
                start = n
            if has_tags is None:
                has_tags = len(parts) > 1 or tags_required
            if has_tags:
                if len(parts) < 2:
                    raise BertDetrError(f"{path}, line {n}: {parts[0]!r} has no tag (each line: a token, then its "
                                        "tag, tab or space separated; a blank line between sentences)")
                tag = parts[-1]
                if not TAG_PATTERN.fullmatch(tag):
                    raise BertDetrError(f"{path}, line {n}: tag {tag!r} is not of the BIO or BIOES scheme (O, or "
                                        "B-, I-, E-, S- and a type, e.g. B-PER)")
                tags.append(tag)
            elif len(parts) > 1:
                raise BertDetrError(f"{path}, line {n}: a token and a tag, but the file began with tokens alone "
                                    "(give every line a tag, or none)")
            words.append(parts[0])
    check.finish()
    if words:
        sentences.append(Sentence(words, tags if has_tags else None, start))
    return sentences


def get_label_list(sentences: Sequence[Sentence]) -> list[str]:
    """The sorted tags of ``sentences`` (``run_ner.py``'s ``get_label_list``)."""
    return sorted({tag for s in sentences for tag in (s.tags or [])})


@dataclass
class NerWindow:
    """The features of one window of a sentence."""

    sentence: int
    """Index of the sentence."""
    first_word: int
    """Its first word (index in the sentence); its words are ``first_word`` .. + ``len(word_positions)``."""
    input_ids: list[int]
    """[CLS] pieces [SEP]."""
    label_ids: list[int]
    """Per piece: the word's label id at its first piece, ``IGNORE_INDEX`` elsewhere."""
    word_positions: list[int]
    """The position of each word's first piece."""


def _word_pieces(tokenizer, words: Sequence[str], unk_id: int, room: int) -> list[list[int]]:
    pieces = []
    for word in words:
        ids = tokenizer.tokenize_to_ids(word) or [unk_id]
        pieces.append(ids[:room])
    return pieces


def sentence_windows(sentences: Sequence[Sentence], tokenizer, label_map: dict[str, int],
                     max_seq_length: int) -> list[NerWindow]:
    """Every sentence as one or more windows (consecutive whole words, [CLS] ... [SEP], at most
    ``max_seq_length`` pieces). Gold tags missing from ``label_map`` (a dev tag the model never
    saw) get ``IGNORE_INDEX``: they still count in the metrics, not in the loss."""
    vocab = tokenizer.vocab
    cls_id, sep_id, unk_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[UNK]"]
    room = max_seq_length - 2
    windows = []
    for s_index, sentence in enumerate(sentences):
        pieces = _word_pieces(tokenizer, sentence.words, unk_id, room)
        tags = sentence.tags or [None] * len(sentence.words)
        start = 0
        while start < len(pieces):
            input_ids, label_ids, positions = [cls_id], [IGNORE_INDEX], []
            end = start
            while end < len(pieces) and len(input_ids) - 1 + len(pieces[end]) <= room:
                positions.append(len(input_ids))
                label = label_map.get(tags[end], IGNORE_INDEX) if tags[end] is not None else IGNORE_INDEX
                input_ids += pieces[end]
                label_ids += [label] + [IGNORE_INDEX] * (len(pieces[end]) - 1)
                end += 1
            input_ids.append(sep_id)
            label_ids.append(IGNORE_INDEX)
            windows.append(NerWindow(s_index, start, input_ids, label_ids, positions))
            start = end
    return windows


def windows_to_tensors(windows: Sequence[NerWindow], max_seq_length: int) -> dict[str, torch.Tensor]:
    """The windows as padded tensors: ``input_ids``, ``input_mask``, ``segment_ids``, ``label_ids``
    [N,T] (int64; labels padded with ``IGNORE_INDEX``)."""
    n = len(windows)
    input_ids = np.zeros((n, max_seq_length), np.int64)
    input_mask = np.zeros((n, max_seq_length), np.int64)
    label_ids = np.full((n, max_seq_length), IGNORE_INDEX, np.int64)
    for i, w in enumerate(windows):
        k = len(w.input_ids)
        input_ids[i, :k] = w.input_ids
        input_mask[i, :k] = 1
        label_ids[i, :k] = w.label_ids
    return {"input_ids": torch.from_numpy(input_ids), "input_mask": torch.from_numpy(input_mask),
            "segment_ids": torch.zeros((n, max_seq_length), dtype=torch.int64),
            "label_ids": torch.from_numpy(label_ids)}
