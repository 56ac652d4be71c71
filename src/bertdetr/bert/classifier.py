"""``bertdetr bert classify``: Google's ``run_classifier.py``, its functions under its names.

Read top to bottom as Google's file: ``InputExample``, the ``DataProcessor``s of GLUE's tasks (CoLA,
MNLI, MRPC, XNLI) and one for a user's own TSV/CSV, ``convert_single_example`` and
``file_based_convert_examples_to_features`` (the TFRecords Google writes), ``create_model`` (the
classification head on the pooled output) and its loss, the evaluation metrics, then the run
(training, evaluation, prediction) that Google's ``main`` drives through TPUEstimator.

Where Google's code would crash deep inside (an IndexError for a short row, a KeyError for an
unknown label), this raises ``BertDetrError`` naming the file and line. Otherwise the examples and
features are Google's, checked against goldens made by bert-tensorflow 1.0.4 itself
(``tests/data/bert/glue/make_goldens.py``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.finetuning import (FinetuneConfig, export_model, finetune, model_files,  # noqa: F401
                                     read_init_checkpoint, run_checkpoint,
                                     train_batch_indices)  # re-exported: the batches of train()
from bertdetr.bert.records import serialize_example, write_record
from bertdetr.bert.tokenization import FullTokenizer, convert_to_unicode
from bertdetr.checkpoint import latest_checkpoint, load_checkpoint
from bertdetr.errors import BertDetrError, require_at_least
from bertdetr.fileio import atomic_output, check_writable


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
        with open(input_file, encoding="utf-8", newline="") as f:
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
        return self._create_examples(self._read_tsv(os.path.join(data_dir, self.train_file)), "train",
                                     os.path.join(data_dir, self.train_file))

    def get_dev_examples(self, data_dir: str) -> list[InputExample]:
        """Gets a collection of ``InputExample``s for the dev set."""
        return self._create_examples(self._read_tsv(os.path.join(data_dir, self.dev_file)), "dev",
                                     os.path.join(data_dir, self.dev_file))

    def get_test_examples(self, data_dir: str) -> list[InputExample]:
        """Gets a collection of ``InputExample``s for prediction."""
        if self.test_file is None:
            raise BertDetrError(f"task {type(self).__name__} defines no test set (Google's neither): "
                                "--do-predict is not available")
        return self._create_examples(self._read_tsv(os.path.join(data_dir, self.test_file)), "test",
                                     os.path.join(data_dir, self.test_file))

    def get_labels(self) -> list[str]:
        """Gets the list of labels for this data set."""
        raise NotImplementedError

    def _create_examples(self, lines, set_type: str, input_file: str) -> list[InputExample]:
        raise NotImplementedError

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
    """A user's own task: ``train``, ``dev`` and ``test`` files (``.tsv`` or ``.csv``) in the data
    dir, each with a header line naming its columns; ``text_a``, the optional ``text_b`` and the
    ``label`` columns are chosen by name (the test file may lack the label column). The labels are
    those found in the training file, sorted (or given, e.g. by a fine-tuned model's config).

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
        for ext in (".tsv", ".csv"):
            if os.path.isfile(os.path.join(self.data_dir, split + ext)):
                return split + ext
        return split + ".tsv"  # reading it will say it is missing

    def _read(self, input_file: str) -> list[tuple[int, list[str]]]:
        if input_file.endswith(".csv"):
            return _read_rows(input_file, ",", '"')
        return self._read_tsv(input_file)

    def get_train_examples(self, data_dir):
        path = os.path.join(data_dir, self.train_file)
        return self._create_examples(self._read(path), "train", path)

    def get_dev_examples(self, data_dir):
        path = os.path.join(data_dir, self.dev_file)
        return self._create_examples(self._read(path), "dev", path)

    def get_test_examples(self, data_dir):
        path = os.path.join(data_dir, self.test_file)
        return self._create_examples(self._read(path), "test", path)

    def get_labels(self) -> list[str]:
        if self.labels is None:
            examples = self.get_train_examples(self.data_dir)
            self.labels = sorted({e.label for e in examples})
        return self.labels

    def _create_examples(self, lines, set_type, input_file):
        if not lines:
            raise BertDetrError(f"{input_file}: empty file (a header line naming the columns is needed)")
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


# ---- the model ---------------------------------------------------------------------------------


def classification_losses(logits: torch.Tensor, label_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Google's loss: ``per_example_loss`` = -sum(one_hot(label) * log_softmax(logits)) [B] and its
    plain mean ``loss`` (padding examples are not down-weighted in training, as Google's).
    ``logits [B,K]``, ``label_ids [B]`` or [B,1]."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    per_example_loss = -log_probs.gather(-1, label_ids.reshape(-1, 1)).squeeze(-1)
    return {"loss": per_example_loss.mean(), "per_example_loss": per_example_loss}


class BertForSequenceClassification(nn.Module):
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
        super().__init__()
        if not labels:
            raise BertDetrError("a classifier needs at least one label")
        self.config = bert.config
        self.bert = bert
        self.labels = list(labels)
        # Google hard-codes keep_prob 0.9 here, whatever the config's hidden_dropout_prob says.
        self.dropout = nn.Dropout(0.1)
        self.output_weights = nn.Parameter(torch.empty(len(labels), bert.config.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(len(labels)))
        # Google: tf.truncated_normal_initializer(stddev=0.02), fixed (not initializer_range).
        nn.init.trunc_normal_(self.output_weights, std=0.02, a=-0.04, b=0.04)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def forward(self, *, input_ids: torch.Tensor, input_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, label_ids: torch.Tensor | None = None,
                is_real_example: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
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

    def check_label_ids(self, label_ids: torch.Tensor) -> None:
        """Raises ``BertDetrError`` unless every label id is in ``[0, num_labels)``; reads the values,
        so call it on host data before training, not per step."""
        if label_ids.numel() and (int(label_ids.min()) < 0 or int(label_ids.max()) >= self.num_labels):
            raise BertDetrError(f"label_ids outside [0, {self.num_labels}): the records were made with "
                                "another label list")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForSequenceClassification":
        """Loads a HF-format ``BertForSequenceClassification`` directory (labels from its
        ``id2label``)."""
        from bertdetr.bert.weights import load_sequence_classifier

        return load_sequence_classifier(path, config=config)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForSequenceClassification`` loads."""
        from bertdetr.bert.weights import save_sequence_classifier

        save_sequence_classifier(self, path)


def create_model(bert_config: BertConfig, labels: Sequence[str], bert: BertModel | None = None
                 ) -> BertForSequenceClassification:
    """Google's ``create_model`` as a module: the classifier on ``bert`` (a new BertModel with
    Google's initialisation when None). Its forward returns Google's four outputs by name."""
    return BertForSequenceClassification(bert if bert is not None else build_bert_model(bert_config), labels)


# ---- metrics -----------------------------------------------------------------------------------


def metric_fn(per_example_loss: np.ndarray, label_ids: np.ndarray, predictions: np.ndarray,
              is_real_example: np.ndarray) -> dict[str, float]:
    """Google's eval metrics: ``eval_accuracy`` and ``eval_loss``, each weighted by
    ``is_real_example`` (so TPU padding examples do not count)."""
    w = is_real_example.astype(np.float64)
    total = max(w.sum(), 1e-12)
    return {"eval_accuracy": float((w * (predictions == label_ids)).sum() / total),
            "eval_loss": float((w * per_example_loss).sum() / total)}


def f1_score(label_ids: np.ndarray, predictions: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's MRPC metric; label "1" = paraphrase); 0 when undefined."""
    tp = int(((predictions == positive) & (label_ids == positive)).sum())
    fp = int(((predictions == positive) & (label_ids != positive)).sum())
    fn = int(((predictions != positive) & (label_ids == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(label_ids: np.ndarray, predictions: np.ndarray) -> float:
    """Matthews correlation of binary labels (GLUE's CoLA metric); 0 when a marginal is empty, as
    scikit-learn returns."""
    tp = float(((predictions == 1) & (label_ids == 1)).sum())
    tn = float(((predictions == 0) & (label_ids == 0)).sum())
    fp = float(((predictions == 1) & (label_ids == 0)).sum())
    fn = float(((predictions == 0) & (label_ids == 1)).sum())
    denom = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def glue_metrics(task_name: str, label_ids: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The GLUE leaderboard metric of each task: MRPC accuracy and F1, CoLA Matthews correlation,
    accuracy for MNLI (matched), XNLI and a user's own task."""
    metrics = {"accuracy": float((label_ids == predictions).mean()) if len(label_ids) else 0.0}
    if task_name == "mrpc":
        metrics["f1"] = f1_score(label_ids, predictions)
    if task_name == "cola":
        metrics["matthews_corrcoef"] = matthews_corrcoef(label_ids, predictions)
    return metrics


# ---- the run: Google's main --------------------------------------------------------------------


@dataclass(kw_only=True)
class ClassifierConfig(FinetuneConfig):
    """Google's ``run_classifier.py`` flags (same names and defaults), plus this program's own; the
    ones ``run_squad.py`` shares are ``FinetuneConfig``'s."""

    task_name: str
    """cola, mnli, mrpc, xnli (Google's processors), or tsv (``TsvProcessor``: a user's own files)."""
    data_dir: str
    """The input data dir with the task's .tsv (or, for tsv, .csv) files."""
    max_seq_length: int = 128
    """Total input length after WordPiece tokenization: longer inputs are cut, shorter padded."""
    do_eval: bool = False
    """Evaluate on the dev set (eval_results.txt, eval_metrics.json)."""
    do_predict: bool = False
    """Class probabilities for the test set (test_results.tsv)."""
    eval_batch_size: int = 8
    """Total batch size for eval."""
    text_a_column: str = "sentence"
    """tsv task: the column of the first text."""
    text_b_column: str | None = None
    """tsv task: the column of the second text (None: single-sentence task)."""
    label_column: str = "label"
    """tsv task: the column of the label."""
    xnli_language: str = "zh"
    """xnli task: the language trained and evaluated (Google fixes "zh")."""

    def __post_init__(self):
        if self.task_name.lower() not in (*PROCESSORS, "tsv"):
            raise BertDetrError(f"Task not found: {self.task_name} (choose one of {', '.join(PROCESSORS)}, tsv)")
        self.task_name = self.task_name.lower()
        if not (self.do_train or self.do_eval or self.do_predict):
            raise BertDetrError("At least one of --do-train, --do-eval or --do-predict must be given.")
        super().__post_init__()
        require_at_least(self, ("eval_batch_size",), 1, "--")
        if self.max_seq_length < 3:
            raise BertDetrError(f"--max-seq-length {self.max_seq_length} leaves no room for [CLS] text [SEP]")
        if not os.path.isdir(self.data_dir):
            raise BertDetrError(f"data dir not found: {self.data_dir}")
        if not any(os.scandir(self.data_dir)):
            raise BertDetrError(f"data dir {self.data_dir} is empty: it needs the task's files "
                                "(train.tsv, dev.tsv, test.tsv for GLUE tasks)")


def make_processor(config: ClassifierConfig, labels: Sequence[str] | None = None) -> DataProcessor:
    if config.task_name == "tsv":
        return TsvProcessor(config.data_dir, config.text_a_column, config.text_b_column, config.label_column,
                            labels)
    if config.task_name == "xnli":
        return XnliProcessor(config.xnli_language)
    return PROCESSORS[config.task_name]()


def _model_files(config: ClassifierConfig) -> tuple[BertConfig, str]:
    """The model's BertConfig and vocab file, from the flags or beside --init-checkpoint."""
    return model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint, config.max_seq_length)


def _checkpoint_labels(config: ClassifierConfig) -> list[str] | None:
    """Label names of a fine-tuned model to evaluate: output_dir's latest checkpoint or exported
    model, or an --init-checkpoint BertForSequenceClassification directory."""
    last = latest_checkpoint(config.output_dir)
    if last:
        return list(load_checkpoint(last)["labels"])
    for d in (os.path.join(config.output_dir, "model"), config.init_checkpoint):
        labels = _id2label(os.path.join(d, "config.json")) if d and os.path.isdir(d) else None
        if labels:
            return labels
    return None


def _init_model(config: ClassifierConfig, bert_config: BertConfig, labels: list[str]) -> tuple[BertForSequenceClassification, bool]:
    """The model to fine-tune or evaluate, and whether its classifier head was loaded."""
    from bertdetr.bert.weights import load_classifier_state

    model = create_model(bert_config, labels)
    if not config.init_checkpoint:
        return model, False
    path = config.init_checkpoint
    state, source = read_init_checkpoint(path)
    head_loaded = load_classifier_state(model, state, source)
    if head_loaded and os.path.isdir(path):
        _align_head_labels(model, _id2label(os.path.join(path, "config.json")), source)
    return model, head_loaded


def _id2label(config_file: str) -> list[str] | None:
    if not os.path.isfile(config_file):
        return None
    with open(config_file, encoding="utf-8") as f:
        id2label = json.load(f).get("id2label")
    return [str(id2label[str(i)]) for i in range(len(id2label))] if id2label else None


def _align_head_labels(model: BertForSequenceClassification, ckpt_labels: list[str] | None, source: str) -> None:
    """A fine-tuned head whose checkpoint names its labels in another order than the task (say a
    transformers MNLI model with entailment first) is permuted to the task's order; other names
    are an error. Unnamed labels (transformers' LABEL_i, or 0..K-1 as ``bert convert`` writes
    for Google's checkpoints, which have no names) are taken in the task's order."""
    if ckpt_labels is None or ckpt_labels == model.labels:
        return
    if ckpt_labels in ([f"LABEL_{i}" for i in range(len(ckpt_labels))], [str(i) for i in range(len(ckpt_labels))]):
        return
    if sorted(ckpt_labels) != sorted(model.labels):
        raise BertDetrError(f"{source} was fine-tuned for labels {ckpt_labels}, the task has {model.labels}")
    order = [ckpt_labels.index(label) for label in model.labels]
    with torch.no_grad():
        model.output_weights.copy_(model.output_weights[order].clone())
        model.output_bias.copy_(model.output_bias[order].clone())


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


def _batch(data: dict[str, torch.Tensor], index, device: torch.device) -> dict[str, torch.Tensor]:
    batch = {k: v[index] for k, v in data.items()}
    # Cut the columns that are padding in every row: masked keys change no real token's output.
    T = max(1, int(batch["input_mask"].sum(1).max()))
    return {k: (v[:, :T] if v.dim() == 2 else v).to(device=device, dtype=torch.long) for k, v in batch.items()}


def _eval_batches(data: dict[str, torch.Tensor], batch_size: int, device) -> Iterator[dict[str, torch.Tensor]]:
    n = len(data["label_ids"])
    for start in range(0, n, batch_size):
        yield _batch(data, slice(start, min(start + batch_size, n)), device)


def train(model: BertForSequenceClassification, data: dict[str, torch.Tensor], config: ClassifierConfig,
          device: torch.device, num_train_steps: int, num_warmup_steps: int) -> int:
    """Fine-tunes ``model`` as Google's run_classifier (``finetuning.finetune``: AdamWeightDecay,
    weight decay 0.01, global norm clip 1.0, linear warmup then decay); checkpoints to
    ``config.output_dir``, resumable only with the same labels. Returns the step."""
    model.check_label_ids(data["label_ids"])
    return finetune(model, lambda index: _batch(data, index, device), len(data["label_ids"]), config, device,
                    num_train_steps, num_warmup_steps, {"labels": model.labels}, "classify")


@torch.no_grad()
def evaluate(model: BertForSequenceClassification, data: dict[str, torch.Tensor], batch_size: int,
             device: torch.device) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Google's evaluation: (metrics, predictions, probabilities). ``eval_accuracy`` and ``eval_loss``
    are Google's metric_fn (per example, weighted by is_real_example); ``loss`` is what Estimator
    adds: the mean over batches of each batch's mean loss."""
    was_training = model.training
    model.eval()
    losses, per_example, probs = [], [], []
    for batch in _eval_batches(data, batch_size, device):
        out = model(**batch)
        losses.append(out["loss"].item())
        per_example.append(out["per_example_loss"].cpu().numpy())
        probs.append(out["probabilities"].cpu().numpy())
    model.train(was_training)
    probabilities = np.concatenate(probs) if probs else np.zeros((0, model.num_labels), np.float32)
    predictions = probabilities.argmax(-1)
    metrics = metric_fn(np.concatenate(per_example) if per_example else np.zeros(0), data["label_ids"].numpy(),
                        predictions, data["is_real_example"].numpy())
    metrics["loss"] = float(np.mean(losses)) if losses else 0.0
    return metrics, predictions, probabilities


@torch.no_grad()
def predict(model: BertForSequenceClassification, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> np.ndarray:
    """Class probabilities [N, K] (float32), in example order."""
    model.eval()
    probs = [model(**{k: v for k, v in b.items() if k != "label_ids"})["probabilities"].cpu().numpy()
             for b in _eval_batches(data, batch_size, device)]
    return np.concatenate(probs) if probs else np.zeros((0, model.num_labels), np.float32)


def write_test_results(probabilities: np.ndarray, path: str) -> None:
    """Google's test_results.tsv: one line per example, its class probabilities tab-separated, each
    as ``str`` of a float32 (what Google's ``str(class_probability)`` of numpy's float32 prints)."""
    with atomic_output(path, "w") as f:
        for row in probabilities.astype(np.float32):
            f.write("\t".join(str(p) for p in row) + "\n")


def run_classifier(config: ClassifierConfig) -> dict:
    """Google's ``main``: features for the requested sets (their records renamed into place only
    once every set converted), then training, evaluation and prediction. Returns a summary."""
    bert_config, vocab_file = _model_files(config)
    labels = None
    if config.task_name == "tsv" and not config.do_train:
        labels = _checkpoint_labels(config)
        if labels is None:
            raise BertDetrError("task tsv without --do-train: the labels come from the fine-tuned model, but "
                                f"{config.output_dir} has no checkpoint and --init-checkpoint no id2label")
    processor = make_processor(config, labels)
    label_list = processor.get_labels()
    tokenizer = FullTokenizer(vocab_file, do_lower_case=config.do_lower_case)
    check_writable(os.path.join(config.output_dir, "eval_results.txt"))

    examples = {}
    for wanted, name, get in ((config.do_train, "train", processor.get_train_examples),
                              (config.do_eval, "eval", processor.get_dev_examples),
                              (config.do_predict, "predict", processor.get_test_examples)):
        if wanted:
            examples[name] = get(config.data_dir)
            if not examples[name]:
                raise BertDetrError(f"the {name} set of {config.data_dir} has no examples")
    # Each set's records are written as its features are made, all under temp names renamed only
    # when every set converted: a bad label in the test set leaves no train.tf_record behind.
    # On CPU/GPU Google writes the real examples only (PaddingInputExample is for TPU).
    summary: dict = {"labels": label_list, "features": {}}
    data: dict[str, dict[str, torch.Tensor]] = {}
    with contextlib.ExitStack() as stack:
        for name, exs in examples.items():
            path = os.path.join(config.output_dir, f"{name}.tf_record")
            f = stack.enter_context(atomic_output(path, "wb"))
            data[name] = features_to_tensors(
                (convert_single_example(i, ex, label_list, config.max_seq_length, tokenizer)
                 for i, ex in enumerate(exs)),
                config.max_seq_length, write=lambda feature, f=f: write_record(f, features_to_example(feature)))
            summary["features"][name] = path
    if config.features_only:
        return summary

    num_train_steps = num_warmup_steps = 0
    if config.do_train:
        n = len(examples["train"])
        num_train_steps = int(n / config.train_batch_size * config.num_train_epochs)
        num_warmup_steps = int(num_train_steps * config.warmup_proportion)
        if num_train_steps == 0:
            raise BertDetrError(f"{n} training examples in batches of {config.train_batch_size} for "
                                f"{config.num_train_epochs} epochs make no training step")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    step = 0
    start = run_checkpoint(config.output_dir, config.do_train, config.resume, "bert classify", config.overwrite)
    if start is not None:
        last, state = start
        model = create_model(bert_config, list(state["labels"]))
        if model.labels != list(label_list):
            raise BertDetrError(f"{last} was trained for labels {model.labels}, the task has {label_list}")
        model.load_state_dict(state["model"])
        step = int(state["step"])
    else:
        model, head_loaded = _init_model(config, bert_config, list(label_list))
        if not config.do_train and not head_loaded:
            warnings.warn("evaluating a classifier head that was never trained: --init-checkpoint has none and "
                          f"{config.output_dir} no checkpoint", stacklevel=2)
    model.to(device)
    with atomic_output(os.path.join(config.output_dir, "classify_config.json"), "w") as f:
        json.dump({**asdict(config), "model": asdict(bert_config), "labels": list(label_list),
                   "num_train_steps": num_train_steps, "num_warmup_steps": num_warmup_steps}, f, indent=1)

    if config.do_train:
        step = train(model, data["train"], config, device, num_train_steps, num_warmup_steps)
        summary.update(step=step, num_train_steps=num_train_steps)
        if step < num_train_steps:
            return summary  # stopped early (--stop-at-step): resume to finish
        summary["export"] = export_model(model, vocab_file, config.do_lower_case,
                                         os.path.join(config.output_dir, "model"))
    summary["step"] = step
    if config.do_eval:
        metrics, predictions, _ = evaluate(model, data["eval"], config.eval_batch_size, device)
        result = {"eval_accuracy": metrics["eval_accuracy"], "eval_loss": metrics["eval_loss"],
                  "global_step": step, "loss": metrics["loss"]}
        with atomic_output(os.path.join(config.output_dir, "eval_results.txt"), "w") as f:
            # Google writes str() of Estimator's numpy values: float32 metrics, an int64 step.
            for key in sorted(result):
                value = result[key] if key == "global_step" else np.float32(result[key])
                f.write(f"{key} = {value}\n")
        glue = glue_metrics(config.task_name, data["eval"]["label_ids"].numpy(), predictions)
        summary["eval"] = {**result, **glue, "task": config.task_name, "num_examples": len(predictions)}
        with atomic_output(os.path.join(config.output_dir, "eval_metrics.json"), "w") as f:
            json.dump(summary["eval"], f, indent=1)
    if config.do_predict:
        probabilities = predict(model, data["predict"], config.predict_batch_size, device)
        write_test_results(probabilities, os.path.join(config.output_dir, "test_results.tsv"))
        summary["predictions"] = len(probabilities)
    return summary


__all__ = [
    "ClassifierConfig", "run_classifier", "train", "evaluate", "predict", "metric_fn", "glue_metrics",
    "f1_score", "matthews_corrcoef", "BertForSequenceClassification", "create_model", "classification_losses",
    "InputExample", "PaddingInputExample", "InputFeatures", "DataProcessor", "XnliProcessor", "MnliProcessor",
    "MrpcProcessor", "ColaProcessor", "TsvProcessor", "PROCESSORS", "convert_single_example",
    "convert_examples_to_features", "file_based_convert_examples_to_features",
]
