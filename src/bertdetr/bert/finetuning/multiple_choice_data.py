"""The data half of ``bertdetr bert multiple-choice``: C3's files read into questions, and each
question's choices made into features, as CLUE's baseline for C3 (``CLUEbenchmark/CLUE``,
``baselines/models_pytorch/mrc_pytorch/run_c3.py``: ``c3Processor``, ``convert_examples_to_features``,
``_truncate_seq_tuple``) makes them; checked against goldens made by that file
(``tests/data/bert/c3/make_goldens.py``). And SWAG (the BERT paper's multiple-choice task), as
transformers' ``run_swag.py`` reads and tokenizes it (``read_swag``, ``convert_swag_example``).

**Files** (``--data-dir``): ``c3-d-{train,dev,test}.json`` (dialogues) and ``c3-m-{train,dev,test}.json``
(mixed-genre texts), as C3 names them, or ``d-train.json``, ``m-train.json``... and ``test1.1.json`` as
CLUE's ``c3_public.zip`` does (``c3_files``), each a JSON list of documents
``[[line, ...], [{"question", "choice": [...], "answer"}, ...], "<document id>"]``; the two kinds
of a set are read together, dialogues first, as CLUE's. A set whose two files are both missing is
an error; one of them alone is read.

**Examples** (CLUE's): the document's lines joined by newlines, the question and each choice,
lowercased (whatever ``--do-lower-case``: CLUE's reader lowercases them itself); fewer than
``num_choices`` choices are filled up with "无效答案" ("invalid answer", CLUE's padding, which it
says steadies training); the label is the index of the choice equal to the answer (the last such,
as CLUE's loop leaves it). An answer that is none of the choices is an error naming the file,
document and question (CLUE's would stop with a ``KeyError``); in the test set, where answers may
be missing, such a question gets label 0.

**Features**, one row per choice: ``[CLS] document [SEP] question [SEP] choice [SEP]``, segment 0
up to the first [SEP] and 1 after; document, choice and question cut to fit, one token at a time
from the longest (``_truncate_seq_tuple``).

Dimension letters: N questions, C choices, T sequence length.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.errors import BertDetrError
from bertdetr.fileio import TextCheck

__all__ = ["ChoiceExample", "C3_KINDS", "PAD_CHOICE", "read_c3", "c3_files", "_truncate_seq_tuple",
           "convert_example_to_features", "examples_to_tensors", "SWAG_FILES", "swag_file", "read_swag",
           "truncate_longest_first", "convert_swag_example"]

C3_KINDS = ("d", "m")
"""C3's two kinds of document, in CLUE's reading order: dialogues, then mixed-genre texts."""
PAD_CHOICE = "无效答案"
"""CLUE's filler for questions with fewer choices than the task's (\"invalid answer\")."""


@dataclass
class ChoiceExample:
    """One question with its choices (CLUE's ``InputExample``s of one question: ``text_a`` the
    document, ``text_c`` the question, ``text_b`` each choice)."""

    guid: str
    """``<set>-<question index>``, as CLUE's (which adds ``-<choice>`` per row)."""
    context: str
    """The document: its lines joined by newlines, lowercased (SWAG: ``sent1``, as given)."""
    question: str
    """The question, lowercased (SWAG: ``sent2``, the start of every ending)."""
    choices: list[str]
    """``num_choices`` choices, lowercased, filled up with ``PAD_CHOICE`` (SWAG: its endings)."""
    label: int
    """The index of the right choice (0 for a test question without one)."""
    source: str = ""
    """``file, document d, question q``: where it was read, for error messages."""


def c3_files(data_dir: str, split: str) -> list[str]:
    """The C3 files of ``split`` ("train", "dev", "test") in ``data_dir``, in CLUE's order: C3's own
    names (``c3-d-train.json``, ``c3-m-train.json``: what run_c3.py reads), else the names of CLUE's
    ``c3_public.zip`` (``d-train.json``, ``m-train.json``); for the test set else one file of every
    kind, ``test.json``, or the zip's ``test1.1.json`` (CLUE 1.1's), then ``test1.0.json``. None is an
    error naming what was looked for."""
    looked: list[str] = []
    for prefix in ("c3-", ""):
        paths = [os.path.join(data_dir, f"{prefix}{kind}-{split}.json") for kind in C3_KINDS]
        looked += paths
        found = [p for p in paths if os.path.isfile(p)]
        if found:
            return found
    if split == "test":
        for name in ("test.json", "test1.1.json", "test1.0.json"):
            looked.append(os.path.join(data_dir, name))
            if os.path.isfile(looked[-1]):
                return [looked[-1]]
    raise BertDetrError(f"no C3 {split} file in {data_dir} (looked for {', '.join(map(os.path.basename, looked))})")


def _load_json(path: str):
    check = TextCheck(path)
    with open(path, "rb") as f:
        text = check.decode(f.read(), 1)
    check.finish()
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except ValueError as e:
        raise BertDetrError(f"{path}: not JSON ({e})") from None


def _document(doc, where: str) -> tuple[list[str], list[dict], str]:
    if (not isinstance(doc, list) or len(doc) < 2 or not isinstance(doc[0], list)
            or not all(isinstance(x, str) for x in doc[0]) or not isinstance(doc[1], list)):
        raise BertDetrError(f"{where}: a C3 document is [[line, ...], [question, ...], id], got {str(doc)[:80]!r}")
    return doc[0], doc[1], str(doc[2]) if len(doc) > 2 else ""


def read_c3(paths: Iterable[str], set_type: str, num_choices: int = 4) -> list[ChoiceExample]:
    """The questions of C3 files, as CLUE's ``c3Processor`` reads them (see the module's doc).
    ``set_type``: "train", "dev" or "test" (only the test set may lack answers)."""
    examples: list[ChoiceExample] = []
    for path in paths:
        data = _load_json(path)
        if not isinstance(data, list):
            raise BertDetrError(f"{path}: C3's file is a JSON list of documents, got a {type(data).__name__}")
        for d, doc in enumerate(data):
            lines, questions, doc_id = _document(doc, f"{path}, document {d}")
            for q, item in enumerate(questions):
                where = f"{path}, document {d} ({doc_id}), question {q}"
                examples.append(_example(item, lines, where, set_type, len(examples), num_choices))
    return examples


def _example(item, lines: list[str], where: str, set_type: str, index: int, num_choices: int) -> ChoiceExample:
    if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not isinstance(
            item.get("choice"), list) or not all(isinstance(c, str) for c in item["choice"]):
        raise BertDetrError(f"{where}: a question is {{\"question\": ..., \"choice\": [...], \"answer\": ...}}, "
                            f"got {str(item)[:80]!r}")
    choices = [c.lower() for c in item["choice"]]
    if not 1 <= len(choices) <= num_choices:
        raise BertDetrError(f"{where}: {len(choices)} choices; --num-choices is {num_choices}")
    choices += [PAD_CHOICE] * (num_choices - len(choices))
    answer = item.get("answer")
    label = None
    if isinstance(answer, str):
        for k, choice in enumerate(choices):
            if choice == answer.lower():
                label = k  # the last equal choice, as CLUE's loop leaves it
    if label is None:
        if set_type != "test":
            raise BertDetrError(f"{where}: the answer {answer!r} is none of the choices {item['choice']}")
        label = 0
    return ChoiceExample(guid=f"{set_type}-{index}", context="\n".join(lines).lower(),
                         question=item["question"].lower(), choices=choices, label=label, source=where)


def _truncate_seq_tuple(tokens_a: list[str], tokens_b: list[str], tokens_c: list[str], max_length: int) -> None:
    """CLUE's: cuts three sequences in place to ``max_length`` tokens in all, one token at a time
    from the longest (ties: a, then b, then c)."""
    while len(tokens_a) + len(tokens_b) + len(tokens_c) > max_length:
        if len(tokens_a) >= len(tokens_b) and len(tokens_a) >= len(tokens_c):
            tokens_a.pop()
        elif len(tokens_b) >= len(tokens_a) and len(tokens_b) >= len(tokens_c):
            tokens_b.pop()
        else:
            tokens_c.pop()


def convert_example_to_features(example: ChoiceExample, max_seq_length: int, tokenizer: FullTokenizer
                                ) -> dict[str, list[list[int]]]:
    """One question's features, CLUE's rows of its choices: ``input_ids``, ``input_mask``,
    ``segment_ids`` [C][max_seq_length] (zero-padded)."""
    rows: dict[str, list[list[int]]] = {"input_ids": [], "input_mask": [], "segment_ids": []}
    tokens_q = tokenizer.tokenize(example.question)
    tokens_ctx = tokenizer.tokenize(example.context)
    for choice in example.choices:
        tokens_a, tokens_b, tokens_c = list(tokens_ctx), tokenizer.tokenize(choice), list(tokens_q)
        # [CLS], [SEP] after the document, between question and choice, and at the end: "- 4"
        _truncate_seq_tuple(tokens_a, tokens_b, tokens_c, max_seq_length - 4)
        second = [*tokens_c, "[SEP]", *tokens_b]
        tokens = ["[CLS]", *tokens_a, "[SEP]", *second, "[SEP]"]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(second) + 1)
        input_ids = tokenizer.convert_tokens_to_ids(tokens)
        pad = max_seq_length - len(input_ids)
        rows["input_ids"].append(input_ids + [0] * pad)
        rows["input_mask"].append([1] * len(input_ids) + [0] * pad)
        rows["segment_ids"].append(segment_ids + [0] * pad)
    return rows


# ---- SWAG (the BERT paper's multiple-choice task; transformers' run_swag.py) ---------------------

SWAG_FILES = {"train": "train.csv", "dev": "val.csv", "test": "test.csv"}
"""SWAG's files (rowanz/swagaf ``data/``, the "regular" set transformers' run_swag.py loads)."""


def swag_file(data_dir: str, split: str) -> str:
    """SWAG's file of ``split`` ("train", "dev", "test") in ``data_dir``; a missing one is an error."""
    path = os.path.join(data_dir, SWAG_FILES[split])
    if not os.path.isfile(path):
        raise BertDetrError(f"no SWAG {split} file in {data_dir} (looked for {SWAG_FILES[split]})")
    return path


def read_swag(path: str, set_type: str, num_choices: int = 4) -> list[ChoiceExample]:
    """SWAG's questions (run_swag.py's columns): ``sent1`` the context, ``sent2`` the start of the
    ending, ``ending0`` .. ``ending3`` the choices, ``label`` the right one (absent from the test
    set: label 0). A missing column or a bad label is an error naming the file and line."""
    check = TextCheck(path)
    with open(path, "rb") as f:
        text = check.decode(f.read(), 1)
    check.finish()
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    endings = [f"ending{k}" for k in range(num_choices)]
    needed = ["sent1", "sent2", *endings] + (["label"] if set_type != "test" else [])
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise BertDetrError(f"{path}:1: no column {', '.join(map(repr, missing))} (SWAG's header: sent1, sent2, "
                            f"ending0..ending{num_choices - 1}, label)")
    examples = []
    for i, row in enumerate(reader):
        where = f"{path}:{reader.line_num}"
        label = 0
        if row.get("label") not in (None, ""):
            if not row["label"].strip().isdigit() or not 0 <= int(row["label"]) < num_choices:
                raise BertDetrError(f"{where}: label {row['label']!r} is not a choice index 0..{num_choices - 1}")
            label = int(row["label"])
        elif set_type != "test":
            raise BertDetrError(f"{where}: no label")
        if any(row[c] is None for c in needed):
            raise BertDetrError(f"{where}: fewer columns than the header's")
        examples.append(ChoiceExample(guid=f"{set_type}-{i}", context=row["sent1"], question=row["sent2"],
                                      choices=[row[e] for e in endings], label=label, source=where))
    return examples


def truncate_longest_first(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Cuts a pair in place to ``max_length`` tokens as transformers' tokenizers do (``truncation=
    True``, "longest_first"): a side no longer than half keeps its tokens and the other takes the
    rest; else the longer side (the second, of two equal) gets the larger half. Google's
    ``_truncate_seq_pair`` takes a token at a time from the longer and the second of two equal, which
    leaves one more token to the first than this where both are cut to about half."""
    if len(tokens_a) + len(tokens_b) <= max_length:
        return
    shorter, longer = (tokens_a, tokens_b) if len(tokens_a) <= len(tokens_b) else (tokens_b, tokens_a)
    half = max_length // 2
    if len(shorter) > half:
        del shorter[half:]
    del longer[max_length - len(shorter):]


def convert_swag_example(example: ChoiceExample, max_seq_length: int, tokenizer: FullTokenizer
                         ) -> dict[str, list[list[int]]]:
    """A SWAG question's features, as run_swag.py's tokenizer call makes them: each choice the
    pair ``[CLS] sent1 [SEP] sent2 + " " + ending [SEP]``, segment 1 for the second, cut to fit as
    transformers' tokenizers cut a pair (``truncate_longest_first``)."""
    rows: dict[str, list[list[int]]] = {"input_ids": [], "input_mask": [], "segment_ids": []}
    tokens_ctx = tokenizer.tokenize(example.context)
    for choice in example.choices:
        tokens_a, tokens_b = list(tokens_ctx), tokenizer.tokenize(f"{example.question} {choice}")
        truncate_longest_first(tokens_a, tokens_b, max_seq_length - 3)
        input_ids = tokenizer.convert_tokens_to_ids(["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"])
        pad = max_seq_length - len(input_ids)
        rows["input_ids"].append(input_ids + [0] * pad)
        rows["input_mask"].append([1] * len(input_ids) + [0] * pad)
        rows["segment_ids"].append([0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1) + [0] * pad)
    return rows


def examples_to_tensors(examples: Iterable[ChoiceExample], max_seq_length: int, tokenizer: FullTokenizer,
                        convert: Callable = convert_example_to_features) -> dict[str, torch.Tensor]:
    """Every question's features (``convert``: C3's by default, or ``convert_swag_example``)
    stacked: ``input_ids`` [N,C,T] (int32), ``input_mask``, ``segment_ids`` [N,C,T] (int8: a
    quarter of the memory; batches are widened to int64) and ``label_ids`` [N]."""
    stacks: dict[str, list[np.ndarray]] = {"input_ids": [], "input_mask": [], "segment_ids": []}
    labels = []
    for example in examples:
        rows = convert(example, max_seq_length, tokenizer)
        for key, value in rows.items():
            stacks[key].append(np.asarray(value, dtype=np.int32 if key == "input_ids" else np.int8))
        labels.append(example.label)
    out = {k: torch.from_numpy(np.stack(v)) if v else
           torch.zeros((0, 0, max_seq_length), dtype=torch.int32 if k == "input_ids" else torch.int8)
           for k, v in stacks.items()}
    out["label_ids"] = torch.tensor(labels, dtype=torch.int32)
    return out
