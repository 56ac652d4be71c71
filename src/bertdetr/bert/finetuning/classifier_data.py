"""Google's ``run_classifier.py`` data half: examples from the tasks' files and their features.

Read top to bottom as Google's file: ``InputExample``, the ``DataProcessor``s of GLUE's tasks (CoLA,
MNLI, MRPC, XNLI) and one for a user's own TSV/CSV, ``convert_single_example`` and
``file_based_convert_examples_to_features`` (the TFRecords Google writes). ``features_to_tensors``
stacks the features for the run (``bertdetr.bert.finetuning.classifier``), writing each feature's
record as it comes: the fast path the command runs, equal to
``file_based_convert_examples_to_features``, which is kept as the readable reference under Google's
name (a test checks the two write the same bytes).

Where Google's code would crash deep inside (an IndexError for a short row, a KeyError for an
unknown label), this raises ``BertDetrError`` naming the file and line. Otherwise the examples and
features are Google's, checked against goldens made by bert-tensorflow 1.0.4 itself
(``tests/data/bert/glue/make_goldens.py``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from bertdetr.bert.data.records import serialize_example, write_record
from bertdetr.bert.data.tokenization import FullTokenizer, convert_to_unicode
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output, read_json_lines


@dataclass
class InputExample:
    """A single training/test example for simple sequence classification (Google's fields, plus
    ``source``: where it was read, ``file:line``, for error messages)."""

    guid: str
    """Unique id: ``<split>-<row or id>`` as Google's processors make it."""
    text_a: str
    """The untokenized text of the first sequence (the only one for single-sequence tasks)."""
    text_b: str | None = None
    """The untokenized text of the second sequence, for sequence-pair tasks."""
    label: str | None = None
    """The label; test sets get the task's dummy label, as Google's processors give them."""
    source: str | None = None
    """``path:line`` of the row this example came from (ours; Google has none)."""


class PaddingInputExample:
    """Fake example so the number of examples is a multiple of the batch size.

    Google pads eval and predict sets with these on TPU only (``--use_tpu``), where every batch must
    be full; on CPU/GPU it writes the real examples alone, and so does this program (no TPU): the
    class is kept because ``convert_single_example`` handles it (all-zero features,
    ``is_real_example`` 0) and records made on TPU hold such examples.
    """


@dataclass
class InputFeatures:
    """A single set of features of data (Google's ``InputFeatures``)."""

    input_ids: list[int]
    """[max_seq_length] token ids: [CLS] a [SEP] (b [SEP]), then zeros."""
    input_mask: list[int]
    """[max_seq_length] 1 for real tokens, 0 for padding."""
    segment_ids: list[int]
    """[max_seq_length] 0 for [CLS], a and its [SEP]; 1 for b and its [SEP]; 0 for padding."""
    label_id: int
    """Index of the label in the task's label list."""
    is_real_example: bool = True
    """False for a ``PaddingInputExample`` (its loss and accuracy weigh 0)."""


# ---- reading the tasks' files ------------------------------------------------------------------


def _read_rows(input_file: str, delimiter: str, quotechar: str | None) -> list[tuple[int, list[str]]]:
    """(line number, row) of every row of a delimited file; every row must have as many columns as
    the first (a header, or the first data row)."""
    if not os.path.isfile(input_file):
        raise BertDetrError(f"file not found: {input_file}")
    rows: list[tuple[int, list[str]]] = []
    try:
        # utf-8-sig: a byte order mark (Excel's and Notepad's UTF-8) is no part of the first header
        with open(input_file, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quotechar=quotechar)
            for row in reader:
                rows.append((reader.line_num, row))
    except UnicodeDecodeError as e:
        raise BertDetrError(f"{input_file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise BertDetrError(f"{input_file}: cannot parse line {reader.line_num}: {e}") from None
    if rows:
        first_line, first = rows[0]
        for line, row in rows:
            if len(row) != len(first):
                raise BertDetrError(
                    f"{input_file}:{line}: row has {len(row)} column(s), expected {len(first)} "
                    f"(as line {first_line}){' (an empty line)' if not row else ''}")
    return rows


def _need_columns(input_file: str, rows: list[tuple[int, list[str]]], needed: int, what: str) -> None:
    if rows and len(rows[0][1]) < needed:
        line, row = rows[0]
        raise BertDetrError(f"{input_file}:{line}: {len(row)} column(s), but {what} needs at least {needed}")


class DataProcessor:
    """Base class for data converters for sequence classification data sets (Google's)."""

    train_file = "train.tsv"
    """The training file's name inside the data dir."""
    dev_file = "dev.tsv"
    """The evaluation file's name inside the data dir."""
    test_file: str | None = "test.tsv"
    """The prediction file's name inside the data dir (None: the task defines no test set)."""

    def get_train_examples(self, data_dir: str) -> list[InputExample]:
        """Gets a collection of ``InputExample``s for the train set."""
        return self._create_examples(self._read_file(os.path.join(data_dir, self.train_file)), "train",
                                     os.path.join(data_dir, self.train_file))

    def get_dev_examples(self, data_dir: str) -> list[InputExample]:
        """Gets a collection of ``InputExample``s for the dev set."""
        return self._create_examples(self._read_file(os.path.join(data_dir, self.dev_file)), "dev",
                                     os.path.join(data_dir, self.dev_file))

    def get_test_examples(self, data_dir: str) -> list[InputExample]:
        """Gets a collection of ``InputExample``s for prediction."""
        if self.test_file is None:
            raise BertDetrError(f"task {type(self).__name__} defines no test set (Google's neither): "
                                "--do-predict is not available")
        return self._create_examples(self._read_file(os.path.join(data_dir, self.test_file)), "test",
                                     os.path.join(data_dir, self.test_file))

    def get_labels(self) -> list[str]:
        """Gets the list of labels for this data set."""
        raise NotImplementedError

    def _create_examples(self, lines, set_type: str, input_file: str) -> list[InputExample]:
        raise NotImplementedError

    @classmethod
    def _read_file(cls, input_file: str) -> list:
        """The rows of one of the task's files, with their line numbers (GLUE's: ``_read_tsv``)."""
        return cls._read_tsv(input_file)

    @classmethod
    def _read_tsv(cls, input_file: str, quotechar: str | None = None) -> list[tuple[int, list[str]]]:
        """Reads a tab separated value file as Google: ``csv.reader(delimiter="\\t",
        quotechar=None)``, so quote characters are text. Rows come with their line numbers."""
        return _read_rows(input_file, "\t", quotechar)


class XnliProcessor(DataProcessor):
    """Processor for the XNLI data set: trains on the machine-translated MultiNLI of one language
    (``multinli/multinli.train.<language>.tsv``), evaluates on that language's rows of
    ``xnli.dev.tsv``. Google fixes the language to "zh" and defines no test set."""

    test_file = None

    def __init__(self, language: str = "zh"):
        self.language = language
        self.train_file = os.path.join("multinli", f"multinli.train.{language}.tsv")
        self.dev_file = "xnli.dev.tsv"

    def get_train_examples(self, data_dir: str) -> list[InputExample]:
        path = os.path.join(data_dir, self.train_file)
        lines = self._read_tsv(path)
        _need_columns(path, lines, 3, "XNLI's training file (premise, hypo, label)")
        examples = []
        for i, (line_no, line) in enumerate(lines):
            if i == 0:
                continue
            label = convert_to_unicode(line[2])
            # The translated MultiNLI says "contradictory" where XNLI's dev set says "contradiction".
            if label == "contradictory":
                label = "contradiction"
            examples.append(InputExample(guid=f"train-{i}", text_a=convert_to_unicode(line[0]),
                                         text_b=convert_to_unicode(line[1]), label=label,
                                         source=f"{path}:{line_no}"))
        return examples

    def get_dev_examples(self, data_dir: str) -> list[InputExample]:
        path = os.path.join(data_dir, self.dev_file)
        lines = self._read_tsv(path)
        _need_columns(path, lines, 8, "XNLI's dev file (language, gold_label, ..., sentence1, sentence2)")
        examples = []
        for i, (line_no, line) in enumerate(lines):
            if i == 0:
                continue
            if convert_to_unicode(line[0]) != self.language:
                continue
            examples.append(InputExample(guid=f"dev-{i}", text_a=convert_to_unicode(line[6]),
                                         text_b=convert_to_unicode(line[7]), label=convert_to_unicode(line[1]),
                                         source=f"{path}:{line_no}"))
        return examples

    def get_labels(self) -> list[str]:
        return ["contradiction", "entailment", "neutral"]


class MnliProcessor(DataProcessor):
    """Processor for the MultiNLI data set (GLUE version): the matched dev and test sets."""

    dev_file = "dev_matched.tsv"
    test_file = "test_matched.tsv"

    def get_dev_examples(self, data_dir: str) -> list[InputExample]:
        # Google's guid prefix for the dev set is "dev_matched".
        path = os.path.join(data_dir, self.dev_file)
        return self._create_examples(self._read_tsv(path), "dev_matched", path)

    def get_labels(self) -> list[str]:
        return ["contradiction", "entailment", "neutral"]

    def _create_examples(self, lines, set_type, input_file):
        _need_columns(input_file, lines, 10, "MNLI (sentence1, sentence2 in columns 9 and 10)")
        examples = []
        for i, (line_no, line) in enumerate(lines):
            if i == 0:
                continue
            # Test rows have no label: Google gives them "contradiction" (the first label).
            label = "contradiction" if set_type == "test" else convert_to_unicode(line[-1])
            examples.append(InputExample(guid=f"{set_type}-{convert_to_unicode(line[0])}",
                                         text_a=convert_to_unicode(line[8]), text_b=convert_to_unicode(line[9]),
                                         label=label, source=f"{input_file}:{line_no}"))
        return examples


class MrpcProcessor(DataProcessor):
    """Processor for the MRPC data set (GLUE version)."""

    def get_labels(self) -> list[str]:
        return ["0", "1"]

    def _create_examples(self, lines, set_type, input_file):
        _need_columns(input_file, lines, 5, "MRPC (Quality, #1 ID, #2 ID, #1 String, #2 String)")
        examples = []
        for i, (line_no, line) in enumerate(lines):
            if i == 0:
                continue
            label = "0" if set_type == "test" else convert_to_unicode(line[0])
            examples.append(InputExample(guid=f"{set_type}-{i}", text_a=convert_to_unicode(line[3]),
                                         text_b=convert_to_unicode(line[4]), label=label,
                                         source=f"{input_file}:{line_no}"))
        return examples


class ColaProcessor(DataProcessor):
    """Processor for the CoLA data set (GLUE version): train and dev have no header line
    (source, label, original mark, sentence); the test set has one (index, sentence)."""

    def get_labels(self) -> list[str]:
        return ["0", "1"]

    def _create_examples(self, lines, set_type, input_file):
        if set_type == "test":
            _need_columns(input_file, lines, 2, "CoLA's test set (index, sentence)")
        else:
            _need_columns(input_file, lines, 4, "CoLA (source, label, mark, sentence)")
        examples = []
        for i, (line_no, line) in enumerate(lines):
            # Only the test set has a header
            if set_type == "test" and i == 0:
                continue
            if set_type == "test":
                text_a, label = convert_to_unicode(line[1]), "0"
            else:
                text_a, label = convert_to_unicode(line[3]), convert_to_unicode(line[1])
            examples.append(InputExample(guid=f"{set_type}-{i}", text_a=text_a, text_b=None, label=label,
                                         source=f"{input_file}:{line_no}"))
        return examples


class TsvProcessor(DataProcessor):
    """A user's own task: ``train``, ``dev`` and ``test`` files (``.tsv``, ``.csv``, or ``.json`` /
    ``.jsonl`` with a JSON object a line) in the data dir, each with a header line naming its columns
    (a JSON file: the objects' fields); ``text_a``, the optional ``text_b`` and the ``label`` columns
    are chosen by name (the test file may lack the label column). The labels are those found in
    the training file, sorted (or given, e.g. by a fine-tuned model's config).

    A ``.tsv`` is read as Google reads GLUE (tabs, quote characters are text); a ``.csv`` as a
    spreadsheet writes it (commas, ``"``-quoted fields may hold commas and line breaks).
    """

    def __init__(self, data_dir: str, text_a_column: str = "sentence", text_b_column: str | None = None,
                 label_column: str = "label", labels: Sequence[str] | None = None):
        self.data_dir = data_dir
        self.text_a_column = text_a_column
        self.text_b_column = text_b_column
        self.label_column = label_column
        self.labels = list(labels) if labels is not None else None
        self.train_file = self._find("train")
        self.dev_file = self._find("dev")
        self.test_file = self._find("test")

    def _find(self, split: str) -> str:
        for ext in (".tsv", ".csv", ".json", ".jsonl"):
            if os.path.isfile(os.path.join(self.data_dir, split + ext)):
                return split + ext
        return split + ".tsv"  # reading it will say it is missing

    def _read_file(self, input_file: str) -> list[tuple[int, list[str]]]:
        if input_file.endswith(".csv"):
            return _read_rows(input_file, ",", '"')
        if input_file.endswith((".json", ".jsonl")):
            return self._read_json_rows(input_file)
        return self._read_tsv(input_file)

    def _read_json_rows(self, input_file: str) -> list[tuple[int, list[str]]]:
        """A JSON-lines file as rows: a header of the wanted fields found in it (the label field may
        be absent from a test file), then each object's values (numbers as text, as CLUE's files
        give some labels); an object without one of them is an error naming the line."""
        objects = read_json_lines(input_file)
        wanted = [c for c in (self.text_a_column, self.text_b_column, self.label_column) if c is not None]
        header = [c for c in wanted if any(c in obj for _, obj in objects)]
        rows: list[tuple[int, list[str]]] = [(objects[0][0] if objects else 1, header)]
        for n, obj in objects:
            row = []
            for name in header:
                if name not in obj:
                    raise BertDetrError(f"{input_file}:{n}: no {name!r} field (the line has "
                                        f"{', '.join(map(repr, obj)) or 'none'})")
                value = obj[name]
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise BertDetrError(f"{input_file}:{n}: field {name!r} is {value!r}, expected text (the "
                                        f"line has {', '.join(map(repr, obj))})")
                row.append(str(value))
            rows.append((n, row))
        return rows

    def get_labels(self) -> list[str]:
        if self.labels is None:
            examples = self.get_train_examples(self.data_dir)
            self.labels = sorted({e.label for e in examples})
        return self.labels

    def _create_examples(self, lines, set_type, input_file):
        if not any(row for _, row in lines):  # nothing, or only blank lines (csv reads those as empty rows)
            raise BertDetrError(f"{input_file}: empty file{' (only blank lines)' if lines else ''}: a header line "
                                "naming the columns is needed, then a line per example")
        header = [convert_to_unicode(h).strip() for h in lines[0][1]]
        wanted = {"text_a": self.text_a_column, "text_b": self.text_b_column, "label": self.label_column}
        index: dict[str, int | None] = {}
        for key, name in wanted.items():
            if name is None or (key == "label" and set_type == "test" and name not in header):
                index[key] = None
                continue
            if name not in header:
                raise BertDetrError(f"{input_file}:{lines[0][0]}: no column named {name!r} for {key} "
                                    f"(the header has {', '.join(repr(h) for h in header)})")
            index[key] = header.index(name)
        dummy = self.labels[0] if self.labels else None
        examples = []
        for i, (line_no, line) in enumerate(lines[1:], start=1):
            label = convert_to_unicode(line[index["label"]]) if index["label"] is not None else dummy
            if set_type != "test" and not label:
                raise BertDetrError(f"{input_file}:{line_no}: empty label in column {self.label_column!r}")
            examples.append(InputExample(
                guid=f"{set_type}-{i}", text_a=convert_to_unicode(line[index["text_a"]]),
                text_b=convert_to_unicode(line[index["text_b"]]) if index["text_b"] is not None else None,
                label=label, source=f"{input_file}:{line_no}"))
        return examples


PROCESSORS = {"cola": ColaProcessor, "mnli": MnliProcessor, "mrpc": MrpcProcessor, "xnli": XnliProcessor}
"""Google's ``processors`` of ``main``: GLUE task name -> processor class (plus "tsv": ``TsvProcessor``)."""


# ---- features ----------------------------------------------------------------------------------


def _truncate_seq_pair(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Truncates a sequence pair in place to the maximum length: always the longer one, one token
    at a time (a short sequence loses fewer of its tokens than an equal-percent cut would take)."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def convert_single_example(ex_index: int, example: InputExample | PaddingInputExample, label_list: Sequence[str],
                           max_seq_length: int, tokenizer: FullTokenizer) -> InputFeatures:
    """Converts a single ``InputExample`` into a single ``InputFeatures``, as Google's.

    Pairs: ``[CLS] a [SEP] b [SEP]``, segment ids 0 up to the first [SEP] and 1 after, the longer
    of a and b cut first to fit (``_truncate_seq_pair``); single sequences ``[CLS] a [SEP]``, a cut
    at the end. Then zero padding to ``max_seq_length``. (``ex_index`` is Google's, which logs
    the first five examples; unused here.)
    """
    if isinstance(example, PaddingInputExample):
        return InputFeatures(input_ids=[0] * max_seq_length, input_mask=[0] * max_seq_length,
                             segment_ids=[0] * max_seq_length, label_id=0, is_real_example=False)
    label_map = {label: i for i, label in enumerate(label_list)}
    if example.label not in label_map:
        where = example.source or f"example {example.guid}"
        raise BertDetrError(f"{where}: label {example.label!r} is not one of the task's labels "
                            f"{', '.join(repr(x) for x in label_list)}")

    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = None
    if example.text_b:
        tokens_b = tokenizer.tokenize(example.text_b)
    if tokens_b:
        # Account for [CLS], [SEP], [SEP] with "- 3"
        _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    elif len(tokens_a) > max_seq_length - 2:
        # Account for [CLS] and [SEP] with "- 2"
        tokens_a = tokens_a[0:(max_seq_length - 2)]

    tokens = ["[CLS]", *tokens_a, "[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += [*tokens_b, "[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    # The mask has 1 for real tokens and 0 for padding tokens. Only real tokens are attended to.
    input_mask = [1] * len(input_ids)
    pad = max_seq_length - len(input_ids)
    return InputFeatures(input_ids=input_ids + [0] * pad, input_mask=input_mask + [0] * pad,
                         segment_ids=segment_ids + [0] * pad, label_id=label_map[example.label],
                         is_real_example=True)


def convert_examples_to_features(examples: Iterable[InputExample], label_list: Sequence[str], max_seq_length: int,
                                 tokenizer: FullTokenizer) -> list[InputFeatures]:
    """Convert a set of ``InputExample``s to a list of ``InputFeatures``."""
    return [convert_single_example(i, ex, label_list, max_seq_length, tokenizer) for i, ex in enumerate(examples)]


def features_to_example(feature: InputFeatures) -> bytes:
    """One serialized ``tf.train.Example`` with Google's feature names."""
    return serialize_example({
        "input_ids": feature.input_ids,
        "input_mask": feature.input_mask,
        "segment_ids": feature.segment_ids,
        "label_ids": [feature.label_id],
        "is_real_example": [int(feature.is_real_example)],
    })


def file_based_convert_examples_to_features(examples: Sequence[InputExample], label_list: Sequence[str],
                                            max_seq_length: int, tokenizer: FullTokenizer,
                                            output_file: str) -> list[InputFeatures]:
    """Convert a set of ``InputExample``s to a TFRecord file (written to a temp name and renamed),
    with Google's features: ``input_ids``, ``input_mask``, ``segment_ids`` [max_seq_length],
    ``label_ids`` [1], ``is_real_example`` [1]. Returns the features too."""
    features = convert_examples_to_features(examples, label_list, max_seq_length, tokenizer)
    with atomic_output(output_file, "wb") as f:
        for feature in features:
            write_record(f, features_to_example(feature))
    return features


def features_to_tensors(features: Iterable[InputFeatures], max_seq_length: int | None = None,
                        write: Callable[[InputFeatures], None] | None = None) -> dict[str, torch.Tensor]:
    """Stacked features by Google's names: ``input_ids``, ``input_mask``, ``segment_ids`` [N,T],
    ``label_ids`` [N], ``is_real_example`` [N], stored as int32 (half of int64's memory for MNLI's
    393K examples; batches are widened to int64). Streams: ``write`` (optional) sees each feature
    as it comes, so the records are written while the arrays fill and no list of all features is
    kept."""
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("input_ids", "input_mask", "segment_ids")}
    labels, real = [], []
    for f in features:
        if write is not None:
            write(f)
        rows["input_ids"].append(np.asarray(f.input_ids, dtype=np.int32))
        rows["input_mask"].append(np.asarray(f.input_mask, dtype=np.int32))
        rows["segment_ids"].append(np.asarray(f.segment_ids, dtype=np.int32))
        labels.append(f.label_id)
        real.append(int(f.is_real_example))
    T = max_seq_length or (len(rows["input_ids"][0]) if labels else 0)
    out = {k: torch.from_numpy(np.stack(v) if v else np.zeros((0, T), np.int32)) for k, v in rows.items()}
    out["label_ids"] = torch.tensor(labels, dtype=torch.int32)
    out["is_real_example"] = torch.tensor(real, dtype=torch.int32)
    return out


__all__ = [
    "InputExample", "PaddingInputExample", "InputFeatures", "DataProcessor", "XnliProcessor", "MnliProcessor",
    "MrpcProcessor", "ColaProcessor", "TsvProcessor", "PROCESSORS", "convert_single_example",
    "convert_examples_to_features", "features_to_example", "file_based_convert_examples_to_features",
    "features_to_tensors",
]
