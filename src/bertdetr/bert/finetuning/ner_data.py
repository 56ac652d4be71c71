"""The data half of ``bertdetr bert ner``: CoNLL files read into sentences, and sentences cut into
windows of word pieces (the features), as transformers' ``run_ner.py`` prepares them.

**Files** (``--data-dir``: ``train.txt``, ``dev.txt``, ``test.txt``): one token a line with its tag
after it, tab or space separated (ASCII ones: a full-width or no-break space is a token), a blank
line between sentences. A line with more columns (the CoNLL-2003 layout: token, part of speech,
chunk, tag) keeps the first as the token and the last as the tag; ``-DOCSTART-`` lines are
skipped. Chinese data has one character a line. The test file may have tokens alone (no gold
tags): then every line of it has one column.

**CLUENER's layout** (``train.json``, ``dev.json``, ``test.json`` of CLUENER2020, or any data in
it): a JSON object a line, ``{"id": 0, "text": "...", "label": {"name": {"周荫如": [[15, 17]]}}}``,
each entity's first and last character (inclusive) under its type and text. Read as CLUENER's
PyTorch baseline reads it (``CluenerProcessor``'s ``_read_json``): every character a word, BIOS
tags (``S-`` a one-character entity, ``B-`` then ``I-`` a longer one); a line without ``label`` has
no entities; an entity overlapping another is overwritten by the one after it, as there (a
warning counts them). An entity whose text is not at its offsets is an error naming the file and
line (CLUENER's baseline stops on an assertion).

**Tags**: ``O``, or ``B-``/``I-`` (BIO) and ``E-``/``S-`` (BIOES) then a type, or ``M-`` for a
middle token (BMES, as Chinese NER sets such as ResumeNER and OntoNotes 4's are tagged: read as
``I-``); anything else is an error naming the file and line. The label list is read from the training data (sorted, as
``run_ner.py``'s ``get_label_list``) or from the fine-tuned model.

**Windows**: each word is tokenized on its own (``FullTokenizer``); its first piece carries its
label and the rest are ignored by the loss (label -100) and by prediction. A word that tokenizes to
nothing (a control character or a full-width space, say) is given one [UNK] piece, so that every
word gets a prediction. A sentence whose pieces do not fit ``max_seq_length - 2`` is cut into
consecutive windows of whole words, so every word is predicted once (a single word longer than a
window keeps its first pieces).

Dimension letters: T sequence length (``max_seq_length``).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.errors import BertDetrError
from bertdetr.bert.finetuning.ner_metrics import get_entities
from bertdetr.fileio import TextCheck, read_json_lines

__all__ = ["Sentence", "TAG_PATTERN", "read_conll", "read_cluener", "cluener_label", "get_label_list", "NerWindow", "sentence_windows",
           "windows_to_tensors", "IGNORE_INDEX", "get_span_labels", "span_tensors", "bert_extract_item", "spans_to_tags"]

TAG_PATTERN = re.compile(r"O|[BIEMS]-\S+")
"""A tag of the BIO, BIOES or BMES scheme: ``O``, or a prefix, ``-`` and a type."""

_COLUMN_GAP = re.compile(r"[ \t]+")
"""What separates a CoNLL line's columns: ASCII spaces and tabs only, as transformers' ``run_ner``
splits them. ``str.split()`` would also split on U+3000 and U+00A0, which Chinese corpora have as
tokens: the line would lose its token and its tag be read as the token."""

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
    key: object = None
    """CLUENER's layout: the line's ``id`` (its index in the file when it has none)."""
    entities: dict | None = None
    """CLUENER's layout: the line's ``label`` as given, {type: {text: [[first, last], ...]}}."""


def read_conll(path: str | os.PathLike, tags_required: bool = True) -> list[Sentence]:
    """The sentences of a CoNLL file. ``tags_required`` False (the test set): a file whose every
    line is a token alone is read without tags. Errors name the file and line: a line with no tag
    (in a file with tags), a tag outside BIO/BIOES/BMES."""
    path = os.fspath(path)
    check = TextCheck(path, strict=True)  # a dropped byte would drop a token (one character a line)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    has_tags: bool | None = None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            parts = _COLUMN_GAP.split(check.decode(raw, n).strip(" \t\r\n"))
            parts = parts if parts != [""] else []
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
                    raise BertDetrError(f"{path}, line {n}: tag {tag!r} is not of the BIO, BIOES or BMES scheme (O, "
                                        "or B-, I-, M-, E-, S- and a type, e.g. B-PER)")
                tags.append(tag)
            elif len(parts) > 1:
                raise BertDetrError(f"{path}, line {n}: a token and a tag, but the file began with tokens alone "
                                    "(give every line a tag, or none)")
            words.append(parts[0])
    check.finish()
    if words:
        sentences.append(Sentence(words, tags if has_tags else None, start))
    return sentences


def _span_tags(text: str, label: dict, where: str) -> tuple[list[str], int]:
    """BIOS tags of ``text`` from CLUENER's ``label``, and how many entities overwrote tags of
    another (CLUENER's reader writes them in the order given, later over earlier)."""
    if not isinstance(label, dict):
        raise BertDetrError(f"{where}: 'label' must be an object {{type: {{text: [[first, last]]}}}}, got {label!r}")
    tags = ["O"] * len(text)
    overlaps = 0
    for type_, entities in label.items():
        if not type_ or any(c.isspace() for c in type_) or not isinstance(entities, dict):
            raise BertDetrError(f"{where}: label type {type_!r} must be a name without spaces holding "
                                f"{{text: [[first, last]]}}, got {entities!r}")
        for name, spans in entities.items():
            if not isinstance(spans, list) or not all(
                    isinstance(sp, list) and len(sp) == 2 and all(type(i) is int for i in sp) for sp in spans):
                raise BertDetrError(f"{where}: {type_} {name!r}: offsets must be a list of [first, last] pairs, "
                                    f"got {spans!r}")
            for first, last in spans:
                if not 0 <= first <= last < len(text) or text[first:last + 1] != name:
                    found = text[first:last + 1] if 0 <= first <= last else ""
                    raise BertDetrError(f"{where}: {type_} {name!r} is not at [{first}, {last}] of the text (there: "
                                        f"{found!r}; offsets count characters from 0, the last one included)")
                overlaps += any(t != "O" for t in tags[first:last + 1])
                if first == last:
                    tags[first] = f"S-{type_}"
                else:
                    tags[first:last + 1] = [f"B-{type_}"] + [f"I-{type_}"] * (last - first)
    return tags, overlaps


def read_cluener(path: str | os.PathLike, tags_required: bool = True) -> list[Sentence]:
    """The lines of a file in CLUENER's layout, each a sentence of characters with BIOS tags.
    ``tags_required`` False (the test set): a file where no line has ``label`` is read without tags."""
    path = os.fspath(path)
    rows = read_json_lines(path, strict=True)  # a dropped byte would shift the entities' offsets
    has_tags = tags_required or any("label" in obj for _, obj in rows)
    sentences, overlaps = [], 0
    for index, (n, obj) in enumerate(rows):
        where = f"{path}:{n}"
        text = obj.get("text")
        if not isinstance(text, str):
            raise BertDetrError(f"{where}: no 'text' string (CLUENER's layout: {{\"text\": \"...\", \"label\": "
                                '{"name": {"周荫如": [[15, 17]]}}})')
        if not text:
            raise BertDetrError(f"{where}: empty 'text'")
        tags = None
        if has_tags:
            tags, overlapped = _span_tags(text, obj.get("label") or {}, where)  # null: none, as CLUENER's
            overlaps += overlapped
        sentences.append(Sentence(list(text), tags, n, key=obj.get("id", index), entities=obj.get("label")))
    if overlaps:
        warnings.warn(f"{path}: {overlaps} entities overlap an earlier one and overwrite its tags (as CLUENER's "
                      "reader does)", stacklevel=2)
    return sentences


def cluener_label(text: str, tags: Sequence[str]) -> dict[str, dict[str, list[list[int]]]]:
    """The entities of predicted ``tags`` (chunks as ``ner_metrics.get_entities`` reads them) in
    CLUENER's layout: {type: {text: [[first, last], ...]}}, as its baseline writes a submission."""
    label: dict[str, dict[str, list[list[int]]]] = {}
    for type_, first, last in get_entities(list(tags)):
        label.setdefault(type_, {}).setdefault(text[first:last + 1], []).append([first, last])
    return label


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


def windows_to_tensors(windows: Sequence[NerWindow], max_seq_length: int,
                       tag_mask: bool = False) -> dict[str, torch.Tensor]:
    """The windows as padded tensors: ``input_ids``, ``input_mask``, ``segment_ids``, ``label_ids``
    [N,T] (int64; labels padded with ``IGNORE_INDEX``) and, with ``tag_mask`` (for a CRF head),
    ``tag_mask`` [N,T]: 1 at [CLS], each word's first piece and [SEP], the CRF's positions."""
    n = len(windows)
    input_ids = np.zeros((n, max_seq_length), np.int64)
    input_mask = np.zeros((n, max_seq_length), np.int64)
    label_ids = np.full((n, max_seq_length), IGNORE_INDEX, np.int64)
    tags = np.zeros((n, max_seq_length), np.int64)
    for i, w in enumerate(windows):
        k = len(w.input_ids)
        input_ids[i, :k] = w.input_ids
        input_mask[i, :k] = 1
        label_ids[i, :k] = w.label_ids
        tags[i, [0, *w.word_positions, k - 1]] = 1
    out = {"input_ids": torch.from_numpy(input_ids), "input_mask": torch.from_numpy(input_mask),
           "segment_ids": torch.zeros((n, max_seq_length), dtype=torch.int64),
           "label_ids": torch.from_numpy(label_ids)}
    if tag_mask:
        out["tag_mask"] = torch.from_numpy(tags)
    return out


def get_span_labels(sentences: Sequence[Sentence]) -> list[str]:
    """A span head's labels: "O", then the sorted entity types of ``sentences``' tags (CLUENER's
    span processors put "O" first)."""
    return ["O", *sorted({tag.split("-", 1)[1] for s in sentences for tag in (s.tags or []) if "-" in tag})]


def span_tensors(windows: Sequence[NerWindow], sentences: Sequence[Sentence], labels: Sequence[str],
                 max_seq_length: int) -> dict[str, torch.Tensor]:
    """The windows' features for a span head (CLUENER's ``ner_span.py``): ``input_ids``,
    ``input_mask``, ``segment_ids`` and ``start_ids``, ``end_ids`` [N,T]: an entity's type id (its
    index in ``labels``) at its first word's first piece and at its last word's first piece, 0
    elsewhere. Entities are read from the gold tags (``get_entities``) within each window (one
    cut by a window boundary counts in each as its part there); types not in ``labels`` are left
    out; sentences without tags give zeros."""
    out = windows_to_tensors(windows, max_seq_length)
    del out["label_ids"]
    start_ids, end_ids = np.zeros((len(windows), max_seq_length), np.int64), np.zeros((len(windows), max_seq_length), np.int64)
    type_ids = {label: i for i, label in enumerate(labels)}
    for row, w in enumerate(windows):
        tags = sentences[w.sentence].tags
        if not tags:
            continue
        for type_, first, last in get_entities(list(tags[w.first_word:w.first_word + len(w.word_positions)])):
            if type_ in type_ids:
                start_ids[row, w.word_positions[first]] = type_ids[type_]
                end_ids[row, w.word_positions[last]] = type_ids[type_]
    out["start_ids"], out["end_ids"] = torch.from_numpy(start_ids), torch.from_numpy(end_ids)
    return out


def bert_extract_item(start_pred: Sequence[int], end_pred: Sequence[int]) -> list[tuple[int, int, int]]:
    """CLUENER's decoding of a span head (``processors/utils_ner.py``): for each position with a
    start label s > 0, the first position from it on whose end label is s closes the span; returns
    ``(s, first, last)``. Spans may nest or overlap, as CLUENER's (``spans_to_tags`` keeps the
    later). CLUENER's takes the argmax of the logits and strips [CLS] and [SEP] first: here the
    callers pass the labels at each word's first piece."""
    spans = []
    for i, s in enumerate(start_pred):
        if s == 0:
            continue
        for j in range(i, len(end_pred)):
            if end_pred[j] == s:
                spans.append((int(s), i, j))
                break
    return spans


def spans_to_tags(spans: Sequence[tuple[int, int, int]], num_words: int, labels: Sequence[str]) -> list[str]:
    """Span predictions as BIO tags of ``num_words`` words (a later span overwrites an earlier one
    where they overlap), so that the tag-based metrics and outputs read them."""
    tags = ["O"] * num_words
    for s, first, last in spans:
        tags[first] = f"B-{labels[s]}"
        for k in range(first + 1, last + 1):
            tags[k] = f"I-{labels[s]}"
    return tags
