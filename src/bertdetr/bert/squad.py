"""``bertdetr bert squad``: Google's ``run_squad.py`` (SQuAD 1.1 and 2.0), its functions under its names.

Read top to bottom as Google's file: ``SquadExample`` and ``read_squad_examples`` (whitespace
words, character-to-word offsets, answers that cannot be found skipped), ``InputFeatures`` and
``convert_examples_to_features`` (question + sliding document windows, ``_improve_answer_span``,
``_check_is_max_context``) with the TFRecords Google writes (``FeatureWriter``), ``create_model``
(the span head on the sequence output) and its loss, ``write_predictions`` (n-best spans,
``get_final_text``, the SQuAD 2.0 null answer), then the run that Google's ``main`` drives through
TPUEstimator. The official SQuAD scores are in ``bertdetr.bert.squad_metrics``.

Where Google's code would crash deep inside (a KeyError for a file that is not SQuAD, an
IndexError for an answer outside its context, an endless loop for a window with no room) this
raises ``BertDetrError`` naming the file and the question. Otherwise examples, features and
predictions are Google's, checked against goldens made by bert-tensorflow 1.0.4 itself
(``tests/data/bert/squad/make_goldens.py``).
"""

from __future__ import annotations

import bisect
import collections
import heapq
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bertdetr.bert.finetuning import FinetuneConfig
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.records import serialize_example, write_record
from bertdetr.bert.tokenization import BasicTokenizer, FullTokenizer, whitespace_tokenize
from bertdetr.errors import BertDetrError, require_at_least
from bertdetr.fileio import atomic_output

# ---- reading SQuAD files ----------------------------------------------------------------------


@dataclass
class SquadExample:
    """A single training/test example (Google's fields). For examples without an answer
    (SQuAD 2.0's unanswerable questions, in training) the start and end positions are -1."""

    qas_id: str
    """The question's ``id`` in the SQuAD file."""
    question_text: str
    """The question, untokenized."""
    doc_tokens: list[str]
    """The paragraph split on whitespace (shared by all the questions of a paragraph)."""
    orig_answer_text: str | None = None
    """Training: the answer as annotated ("" for an unanswerable question); None in prediction."""
    start_position: int | None = None
    """Training: index in ``doc_tokens`` of the answer's first word (-1: no answer)."""
    end_position: int | None = None
    """Training: index in ``doc_tokens`` of the answer's last word (-1: no answer)."""
    is_impossible: bool = False
    """SQuAD 2.0 training: the question has no answer in the paragraph."""


@dataclass
class SquadFile:
    """A SQuAD file read by ``load_squad_file``."""

    path: str
    """Where it was read from."""
    examples: list[SquadExample]
    """Its examples, in file order (Google's ``read_squad_examples``)."""
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    """Training answers whose text is not found at their offset, skipped as Google does: (id,
    the text at the offset, the answer)."""
    dataset: list = field(default_factory=list)
    """The file's ``data`` (articles), for the official evaluation."""


class SquadFormatError(BertDetrError):
    """A file that is not SQuAD, or SQuAD that the requested mode cannot use."""


# Google's is_whitespace: Python's " \t\r\n" and U+202F (NARROW NO-BREAK SPACE), nothing else (a
# no-break space U+00A0 stays inside a word here, though the tokenizer splits on it later).
_WORD = re.compile(r"[^ \t\r\n\u202f]+")


def _words(context: str) -> tuple[list[str], list[int]]:
    """Google's whitespace words of a paragraph and the character offset where each starts.

    Google's ``char_to_word_offset[i]`` (the word at or before character i) is
    ``bisect_right(starts, i) - 1``: computed only for answers, not for every character."""
    words, starts = [], []
    for m in _WORD.finditer(context):
        words.append(m.group())
        starts.append(m.start())
    return words, starts


def _need(value, kind, where: str, what: str):
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise SquadFormatError(f"{where}: {what} must be {names}, got {type(value).__name__}")
    return value


def load_squad_file(input_file: str, is_training: bool, version_2_with_negative: bool = False) -> SquadFile:
    """Google's ``read_squad_examples``, checking the file as it goes.

    Raises ``SquadFormatError`` naming the file and where in it (``data[i].paragraphs[j].qas[k]``
    and the question id) for: not JSON, not SQuAD's layout, SQuAD 2.0 unanswerable questions
    without ``version_2_with_negative``, and in training a question without exactly one answer
    (Google's ValueError) or with an answer outside its paragraph."""
    try:
        with open(input_file, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise SquadFormatError(f"cannot read SQuAD file {input_file}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SquadFormatError(f"{input_file}: not UTF-8 text (byte {e.start}): not a SQuAD JSON file") from None
    except json.JSONDecodeError as e:
        raise SquadFormatError(f"{input_file}:{e.lineno}:{e.colno}: not JSON ({e.msg}): not a SQuAD file") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadFormatError(f"{input_file}: not a SQuAD file: it needs a top-level object with a \"data\" list "
                               "of articles ({\"version\": ..., \"data\": [{\"title\": ..., \"paragraphs\": [...]}]})")
    result = SquadFile(input_file, [], [], data["data"])
    for i, entry in enumerate(data["data"]):
        where = f"{input_file}: data[{i}]"
        paragraphs = _need(_need(entry, dict, where, "an article").get("paragraphs"), list, where, "\"paragraphs\"")
        for j, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{j}]"
            _need(paragraph, dict, pwhere, "a paragraph")
            context = _need(paragraph.get("context"), str, pwhere, "\"context\"")
            qas = _need(paragraph.get("qas"), list, pwhere, "\"qas\"")
            doc_tokens, starts = _words(context)
            for k, qa in enumerate(qas):
                qwhere = f"{pwhere}.qas[{k}]"
                _need(qa, dict, qwhere, "a question")
                qas_id = _need(qa.get("id"), str, qwhere, "\"id\"")
                qwhere += f" (id {qas_id!r})"
                question_text = _need(qa.get("question"), str, qwhere, "\"question\"")
                impossible = qa.get("is_impossible", False)
                if impossible is True and not version_2_with_negative:
                    raise SquadFormatError(f"{qwhere}: an unanswerable question (\"is_impossible\": true): this is "
                                           "SQuAD 2.0 data; give --version-2-with-negative")
                example = SquadExample(qas_id, question_text, doc_tokens)
                if is_training:
                    skipped = _training_answer(example, qa, context, starts, version_2_with_negative, qwhere)
                    if skipped:
                        result.skipped.append((qas_id, *skipped))
                        continue
                result.examples.append(example)
    return result


def _training_answer(example: SquadExample, qa: dict, context: str, starts: list[int], version_2: bool,
                     where: str) -> tuple[str, str] | None:
    """Sets the training answer of ``example`` as Google does; returns (text at the offset,
    answer) for an answer Google cannot find there (and skips), else None."""
    if version_2:
        if not isinstance(qa.get("is_impossible"), bool):
            raise SquadFormatError(f"{where}: no \"is_impossible\" true/false: SQuAD 2.0 training data "
                                   "marks every question")
        example.is_impossible = qa["is_impossible"]
    answers = _need(qa.get("answers"), list, where, "\"answers\"")
    if example.is_impossible:
        example.start_position = example.end_position = -1
        example.orig_answer_text = ""
        return None
    if len(answers) != 1:
        raise SquadFormatError(f"{where}: has {len(answers)} answers; for training, each question should have "
                               "exactly 1 answer (a dev file given as --train-file?)")
    answer = _need(answers[0], dict, where, "an answer")
    text = _need(answer.get("text"), str, where, "the answer's \"text\"")
    offset = answer.get("answer_start")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise SquadFormatError(f"{where}: the answer's \"answer_start\" must be an integer, got {offset!r}")
    if not text or offset < 0 or offset + len(text) > len(context):
        raise SquadFormatError(f"{where}: answer {text!r} at character {offset} is not inside its paragraph "
                               f"({len(context)} characters)")
    start = bisect.bisect_right(starts, offset) - 1
    end = bisect.bisect_right(starts, offset + len(text) - 1) - 1
    # Only answers whose text can be recovered exactly from the document are kept (Google: "likely
    # due to weird Unicode stuff so we will just skip the example").
    actual_text = " ".join(example.doc_tokens[start:end + 1])
    cleaned_answer_text = " ".join(whitespace_tokenize(text))
    if actual_text.find(cleaned_answer_text) == -1:
        return actual_text, cleaned_answer_text
    example.orig_answer_text = text
    example.start_position, example.end_position = start, end
    return None


def read_squad_examples(input_file: str, is_training: bool, version_2_with_negative: bool = False
                        ) -> list[SquadExample]:
    """Google's ``read_squad_examples``: ``load_squad_file``'s examples; skipped answers are
    reported in one warning with their count (Google logs each)."""
    squad = load_squad_file(input_file, is_training, version_2_with_negative)
    if squad.skipped:
        warnings.warn(skipped_message(squad), stacklevel=2)
    return squad.examples


def skipped_message(squad: SquadFile) -> str:
    ids = ", ".join(qid for qid, _, _ in squad.skipped[:5]) + (", ..." if len(squad.skipped) > 5 else "")
    first = squad.skipped[0]
    return (f"{squad.path}: skipped {len(squad.skipped)} training question(s) whose answer text is not found at "
            f"its offset, as Google's run_squad.py does ({ids}; e.g. {first[1]!r} vs. {first[2]!r})")


# ---- features ---------------------------------------------------------------------------------


@dataclass
class InputFeatures:
    """A single set of features of data: one window of one example (Google's fields)."""

    unique_id: int
    """1000000000, 1000000001, ... in conversion order (Google's numbering)."""
    example_index: int
    """Index of the example in the list converted."""
    doc_span_index: int
    """Which window of the example's document."""
    tokens: list[str]
    """[CLS] question [SEP] window [SEP], unpadded."""
    token_to_orig_map: dict[int, int]
    """Position in ``tokens`` -> index in the example's ``doc_tokens`` (window tokens only)."""
    token_is_max_context: dict[int, bool]
    """Position in ``tokens`` -> whether this window is the token's "max context" window."""
    input_ids: list[int]
    """[max_seq_length] token ids, zero-padded."""
    input_mask: list[int]
    """[max_seq_length] 1 for real tokens, 0 for padding."""
    segment_ids: list[int]
    """[max_seq_length] 0 for [CLS] question [SEP] and padding, 1 for the window and its [SEP]."""
    start_position: int | None = None
    """Training: the answer's first token in ``tokens``; 0 ([CLS]) when the window misses it or
    there is none."""
    end_position: int | None = None
    """Training: the answer's last token in ``tokens``; 0 likewise."""
    is_impossible: bool | None = None
    """The example's ``is_impossible``."""


@dataclass(frozen=True)
class _DocSpan:
    start: int
    length: int


def check_window_settings(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """The windows' settings, checked before any work (Google checks only the first, in
    ``validate_flags_or_throw``; with no room for the document its loop never ends, and a
    stride beyond the room skips no token but leaves windows with no overlap)."""
    if max_query_length <= 0 or doc_stride <= 0:
        raise BertDetrError(f"--max-query-length ({max_query_length}) and --doc-stride ({doc_stride}) "
                            "must be positive")
    if max_seq_length <= max_query_length + 3:
        raise BertDetrError(f"--max-seq-length {max_seq_length} is too small for the question: it must be greater "
                            f"than --max-query-length ({max_query_length}) + 3 ([CLS] and two [SEP])")
    room = max_seq_length - max_query_length - 3
    if doc_stride > room:
        raise BertDetrError(f"--doc-stride {doc_stride} is larger than the room left for the document "
                            f"({room} tokens = --max-seq-length {max_seq_length} - --max-query-length "
                            f"{max_query_length} - 3): windows would not overlap; lower --doc-stride")


class _Document:
    """A paragraph's WordPiece tokens, computed once for all its questions (Google tokenizes the
    paragraph again for each question)."""

    __slots__ = ("words", "tok_to_orig_index", "orig_to_tok_index", "tokens", "ids")

    def __init__(self, words: list[str], tokenizer: FullTokenizer):
        self.words = words
        tok_to_orig_index: list[int] = []
        orig_to_tok_index: list[int] = []
        tokens: list[str] = []
        for i, word in enumerate(words):
            orig_to_tok_index.append(len(tokens))
            pieces = tokenizer.tokenize(word)
            tokens += pieces
            tok_to_orig_index += [i] * len(pieces)
        self.tok_to_orig_index = tok_to_orig_index
        self.orig_to_tok_index = orig_to_tok_index
        self.tokens = tokens
        self.ids = tokenizer.convert_tokens_to_ids(tokens)


def _doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[_DocSpan]:
    """Google's sliding windows: up to ``max_tokens_for_doc`` tokens, each ``doc_stride`` after
    the last (or less, so that the last window ends at the document's end)."""
    doc_spans = []
    start_offset = 0
    while start_offset < num_tokens:
        length = min(num_tokens - start_offset, max_tokens_for_doc)
        doc_spans.append(_DocSpan(start_offset, length))
        if start_offset + length == num_tokens:
            break
        start_offset += min(length, doc_stride)
    return doc_spans


def _max_context_spans(doc_spans: Sequence[_DocSpan], num_tokens: int) -> list[int]:
    """For each document token, the index of its "max context" window: ``_check_is_max_context``
    for all tokens at once (the same scores, compared in the same order: ties go to the first)."""
    if len(doc_spans) == 1:
        return [0] * num_tokens
    best_span = [-1] * num_tokens
    best_score = [0.0] * num_tokens
    for span_index, span in enumerate(doc_spans):
        end = span.start + span.length - 1
        bonus = 0.01 * span.length
        for position in range(span.start, end + 1):
            score = min(position - span.start, end - position) + bonus
            if best_span[position] < 0 or score > best_score[position]:
                best_score[position] = score
                best_span[position] = span_index
    return best_span


def _check_is_max_context(doc_spans: Sequence[_DocSpan], cur_span_index: int, position: int) -> bool:
    """Google's: whether window ``cur_span_index`` gives token ``position`` its most context (the
    minimum of its left and right context, plus 0.01 x the window's length; first wins ties)."""
    best_score = None
    best_span_index = None
    for span_index, doc_span in enumerate(doc_spans):
        end = doc_span.start + doc_span.length - 1
        if position < doc_span.start or position > end:
            continue
        score = min(position - doc_span.start, end - position) + 0.01 * doc_span.length
        if best_score is None or score > best_score:
            best_score = score
            best_span_index = span_index
    return cur_span_index == best_span_index


def _improve_answer_span(doc_tokens: Sequence[str], input_start: int, input_end: int, tokenizer: FullTokenizer,
                         orig_answer_text: str) -> tuple[int, int]:
    """Google's: the tokenized span inside the word-level answer span that equals the tokenized
    answer, e.g. "1895" inside "(1895-1943)."; the word-level span when there is none ("Japan"
    annotated inside "Japanese")."""
    tok_answer_text = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            text_span = " ".join(doc_tokens[new_start:(new_end + 1)])
            if text_span == tok_answer_text:
                return new_start, new_end
    return input_start, input_end


def convert_examples_to_features(examples: Iterable[SquadExample], tokenizer: FullTokenizer, max_seq_length: int,
                                 doc_stride: int, max_query_length: int, is_training: bool,
                                 unique_id: int = 1000000000) -> Iterator[InputFeatures]:
    """Google's ``convert_examples_to_features``, yielding the features instead of calling
    ``output_fn``: ``[CLS] question [SEP] window [SEP]``, the question cut to ``max_query_length``
    tokens, the document in windows of ``max_seq_length - len(question) - 3`` tokens every
    ``doc_stride``; in training, answer positions in the window (0, i.e. [CLS], where the window
    misses the answer or there is none).

    Faster than Google's, same features: each paragraph is tokenized once for all its questions,
    and each token's max-context window is found once per example, not once per window."""
    check_window_settings(max_seq_length, doc_stride, max_query_length)
    vocab = tokenizer.vocab
    try:
        cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    except KeyError as e:
        raise BertDetrError(f"the vocabulary has no {e.args[0]} token: not a BERT vocab.txt") from None
    documents: dict[int, _Document] = {}  # by id() of the examples' shared doc_tokens lists
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        query_ids = tokenizer.convert_tokens_to_ids(query_tokens)
        doc = documents.get(id(example.doc_tokens))
        if doc is None or doc.words is not example.doc_tokens:
            doc = documents[id(example.doc_tokens)] = _Document(example.doc_tokens, tokenizer)
        all_doc_tokens = doc.tokens

        tok_start_position = tok_end_position = None
        if is_training and example.is_impossible:
            tok_start_position = tok_end_position = -1
        if is_training and not example.is_impossible:
            tok_start_position = doc.orig_to_tok_index[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end_position = doc.orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end_position = len(all_doc_tokens) - 1
            tok_start_position, tok_end_position = _improve_answer_span(
                all_doc_tokens, tok_start_position, tok_end_position, tokenizer, example.orig_answer_text)

        # The -3 accounts for [CLS], [SEP] and [SEP].
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans = _doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)
        best_span = _max_context_spans(doc_spans, len(all_doc_tokens))
        head_tokens = ["[CLS]", *query_tokens, "[SEP]"]
        head_ids = [cls_id, *query_ids, sep_id]
        doc_offset = len(head_tokens)
        for doc_span_index, span in enumerate(doc_spans):
            s, n = span.start, span.length
            tokens = head_tokens + all_doc_tokens[s:s + n]
            tokens.append("[SEP]")
            input_ids = head_ids + doc.ids[s:s + n]
            input_ids.append(sep_id)
            real = len(input_ids)
            pad = max_seq_length - real
            positions = range(doc_offset, doc_offset + n)
            token_to_orig_map = dict(zip(positions, doc.tok_to_orig_index[s:s + n]))
            token_is_max_context = {p: b == doc_span_index for p, b in zip(positions, best_span[s:s + n])}

            start_position = end_position = None
            if is_training and not example.is_impossible:
                # For training, if the window does not contain the annotation, the target is [CLS].
                doc_end = s + n - 1
                if tok_start_position >= s and tok_end_position <= doc_end:
                    start_position = tok_start_position - s + doc_offset
                    end_position = tok_end_position - s + doc_offset
                else:
                    start_position = end_position = 0
            if is_training and example.is_impossible:
                start_position = end_position = 0

            yield InputFeatures(
                unique_id=unique_id, example_index=example_index, doc_span_index=doc_span_index, tokens=tokens,
                token_to_orig_map=token_to_orig_map, token_is_max_context=token_is_max_context,
                input_ids=input_ids + [0] * pad, input_mask=[1] * real + [0] * pad,
                segment_ids=[0] * doc_offset + [1] * (n + 1) + [0] * pad,
                start_position=start_position, end_position=end_position, is_impossible=example.is_impossible)
            unique_id += 1


def feature_to_example(feature: InputFeatures, is_training: bool) -> bytes:
    """Google's ``FeatureWriter.process_feature``: a serialized ``tf.train.Example`` with
    ``unique_ids``, ``input_ids``, ``input_mask``, ``segment_ids`` and, for training,
    ``start_positions``, ``end_positions``, ``is_impossible`` (0/1)."""
    values = {"unique_ids": [feature.unique_id], "input_ids": feature.input_ids, "input_mask": feature.input_mask,
              "segment_ids": feature.segment_ids}
    if is_training:
        values["start_positions"] = [feature.start_position]
        values["end_positions"] = [feature.end_position]
        values["is_impossible"] = [1 if feature.is_impossible else 0]
    return serialize_example(values)


def write_features(features: Iterable[InputFeatures], output_file: str, is_training: bool) -> list[InputFeatures]:
    """Writes ``features`` to the TFRecord ``output_file`` (atomically: a temp name renamed when
    complete), as Google's ``FeatureWriter``; returns them as a list."""
    with atomic_output(output_file, "wb") as f:
        return list(written_features(features, f, is_training))


def written_features(features: Iterable[InputFeatures], f, is_training: bool) -> Iterator[InputFeatures]:
    """``features``, each written to the open TFRecord file ``f`` as it passes (so a stream of
    them can be written and used at once)."""
    for feature in features:
        write_record(f, feature_to_example(feature, is_training))
        yield feature


# ---- the model ----------------------------------------------------------------------------------


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
    def from_pretrained(cls, path: str | os.PathLike, config: BertConfig | None = None) -> "BertForQuestionAnswering":
        """Loads a HF-format ``BertForQuestionAnswering`` directory (``qa_outputs``)."""
        from bertdetr.bert.weights import load_question_answering

        return load_question_answering(path, config=config)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes a HF-format directory that ``transformers.BertForQuestionAnswering`` loads."""
        from bertdetr.bert.weights import save_question_answering

        save_question_answering(self, path)


def create_model(bert_config: BertConfig, bert: BertModel | None = None) -> BertForQuestionAnswering:
    """Google's ``create_model`` as a module: the span head on ``bert`` (a new BertModel with
    Google's initialisation when None)."""
    return BertForQuestionAnswering(bert if bert is not None else build_bert_model(bert_config))


# ---- predictions ------------------------------------------------------------------------------


@dataclass
class RawResult:
    """The model's output for one feature (Google's ``RawResult``)."""

    unique_id: int
    """The feature's ``unique_id``."""
    start_logits: list[float]
    """[max_seq_length] start scores (padding positions included, as Google's)."""
    end_logits: list[float]
    """[max_seq_length] end scores."""


_PrelimPrediction = collections.namedtuple(
    "PrelimPrediction", ["feature_index", "start_index", "end_index", "start_logit", "end_logit"])
_NbestPrediction = collections.namedtuple("NbestPrediction", ["text", "start_logit", "end_logit"])


@dataclass
class SquadPredictions:
    """What ``write_predictions`` writes, by question id, in example order."""

    predictions: dict[str, str]
    """The answer text ("" for no answer, SQuAD 2.0)."""
    nbest: dict[str, list[dict]]
    """Up to ``n_best_size`` candidates: text, probability, start_logit, end_logit."""
    null_odds: dict[str, float]
    """SQuAD 2.0: null score minus the best non-null score (Google's null_odds.json); else empty."""


def compute_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[InputFeatures],
                        all_results: Iterable[RawResult], n_best_size: int, max_answer_length: int,
                        do_lower_case: bool, version_2_with_negative: bool = False,
                        null_score_diff_threshold: float = 0.0, verbose_logging: bool = False) -> SquadPredictions:
    """Google's ``write_predictions`` without the writing: for each example, the spans of the
    n-best start x n-best end positions of each of its windows that are valid (inside the
    document, at the token's max-context window, end >= start, at most ``max_answer_length``
    tokens), best by start + end logit, de-tokenised back to the paragraph's text
    (``get_final_text``); with SQuAD 2.0, "" when the smallest null score ([CLS] start + end, over
    the windows) beats the best span by more than ``null_score_diff_threshold``.

    Same numbers as Google's (the scores are added and the softmax computed in the same order).
    One difference: where Google crashes (SQuAD 2.0, no valid span in any window: its
    ``best_non_null_entry`` is None), the answer is "" and a nonce "empty" candidate with logits 0
    is added, as transformers' port of this function does."""
    example_index_to_features: dict[int, list[InputFeatures]] = collections.defaultdict(list)
    for feature in all_features:
        example_index_to_features[feature.example_index].append(feature)
    unique_id_to_result = {result.unique_id: result for result in all_results}
    out = SquadPredictions(collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict())
    basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)

    for example_index, example in enumerate(all_examples):
        features = example_index_to_features[example_index]
        prelim_predictions = []
        # The minimum null score (start + end logit of [CLS]) over the windows.
        score_null = 1000000  # large and positive
        min_null_feature_index = 0
        null_start_logit = 0
        null_end_logit = 0
        for feature_index, feature in enumerate(features):
            result = unique_id_to_result.get(feature.unique_id)
            if result is None:
                raise BertDetrError(f"no model output for feature {feature.unique_id} (question {example.qas_id})")
            start_indexes = _get_best_indexes(result.start_logits, n_best_size)
            end_indexes = _get_best_indexes(result.end_logits, n_best_size)
            if version_2_with_negative:
                feature_null_score = result.start_logits[0] + result.end_logits[0]
                if feature_null_score < score_null:
                    score_null = feature_null_score
                    min_null_feature_index = feature_index
                    null_start_logit = result.start_logits[0]
                    null_end_logit = result.end_logits[0]
            num_tokens = len(feature.tokens)
            to_orig, max_context = feature.token_to_orig_map, feature.token_is_max_context
            for start_index in start_indexes:
                # Invalid spans (in the question, in the padding, not at their max context) are
                # thrown out, as Google's.
                if start_index >= num_tokens or start_index not in to_orig or not max_context.get(start_index, False):
                    continue
                for end_index in end_indexes:
                    if end_index >= num_tokens or end_index not in to_orig or end_index < start_index:
                        continue
                    if end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim_predictions.append(_PrelimPrediction(
                        feature_index, start_index, end_index, result.start_logits[start_index],
                        result.end_logits[end_index]))
        if version_2_with_negative:
            prelim_predictions.append(_PrelimPrediction(min_null_feature_index, 0, 0, null_start_logit,
                                                        null_end_logit))
        # Google's order: its loops nest start over end; the sort is stable.
        prelim_predictions = sorted(prelim_predictions, key=lambda x: (x.start_logit + x.end_logit), reverse=True)

        seen_predictions = {}
        nbest = []
        for pred in prelim_predictions:
            if len(nbest) >= n_best_size:
                break
            feature = features[pred.feature_index]
            if pred.start_index > 0:  # a non-null prediction
                tok_tokens = feature.tokens[pred.start_index:(pred.end_index + 1)]
                orig_doc_start = feature.token_to_orig_map[pred.start_index]
                orig_doc_end = feature.token_to_orig_map[pred.end_index]
                orig_tokens = example.doc_tokens[orig_doc_start:(orig_doc_end + 1)]
                # De-tokenize WordPieces that have been split off, clean whitespace.
                tok_text = " ".join(tok_tokens).replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.strip().split())
                orig_text = " ".join(orig_tokens)
                final_text = get_final_text(tok_text, orig_text, do_lower_case, verbose_logging, basic_tokenizer)
                if final_text in seen_predictions:
                    continue
                seen_predictions[final_text] = True
            else:
                final_text = ""
                seen_predictions[final_text] = True
            nbest.append(_NbestPrediction(final_text, pred.start_logit, pred.end_logit))

        no_span = not any(entry.text for entry in nbest)
        if version_2_with_negative:
            if "" not in seen_predictions:
                nbest.append(_NbestPrediction("", null_start_logit, null_end_logit))
            if no_span:  # Google would crash below (see the docstring)
                nbest.insert(0, _NbestPrediction("empty", 0.0, 0.0))
        # In very rare edge cases there is no valid prediction: a nonce one (Google's).
        if not nbest:
            nbest.append(_NbestPrediction("empty", 0.0, 0.0))

        total_scores = []
        best_non_null_entry = None
        for entry in nbest:
            total_scores.append(entry.start_logit + entry.end_logit)
            if not best_non_null_entry and entry.text:
                best_non_null_entry = entry
        probs = _compute_softmax(total_scores)
        nbest_json = []
        for i, entry in enumerate(nbest):
            nbest_json.append(collections.OrderedDict(
                [("text", entry.text), ("probability", probs[i]), ("start_logit", entry.start_logit),
                 ("end_logit", entry.end_logit)]))

        if not version_2_with_negative:
            out.predictions[example.qas_id] = nbest_json[0]["text"]
        else:
            # "" iff the null score - the score of the best non-null span > the threshold.
            score_diff = score_null - best_non_null_entry.start_logit - (best_non_null_entry.end_logit)
            out.null_odds[example.qas_id] = score_diff
            if no_span or score_diff > null_score_diff_threshold:
                out.predictions[example.qas_id] = ""
            else:
                out.predictions[example.qas_id] = best_non_null_entry.text
        out.nbest[example.qas_id] = nbest_json
    return out


def write_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[InputFeatures],
                      all_results: Iterable[RawResult], n_best_size: int, max_answer_length: int,
                      do_lower_case: bool, output_prediction_file: str, output_nbest_file: str,
                      output_null_log_odds_file: str, version_2_with_negative: bool = False,
                      null_score_diff_threshold: float = 0.0, verbose_logging: bool = False) -> SquadPredictions:
    """Google's ``write_predictions``: ``compute_predictions``, written as Google writes them
    (``json.dumps(..., indent=4)`` and a newline; each file atomically): predictions.json,
    nbest_predictions.json and, for SQuAD 2.0, null_odds.json. Returns what it wrote."""
    out = compute_predictions(all_examples, all_features, all_results, n_best_size, max_answer_length, do_lower_case,
                              version_2_with_negative, null_score_diff_threshold, verbose_logging)
    files = [(output_prediction_file, out.predictions), (output_nbest_file, out.nbest)]
    if version_2_with_negative:
        files.append((output_null_log_odds_file, out.null_odds))
    for path, value in files:
        with atomic_output(path, "w") as f:
            f.write(json.dumps(value, indent=4) + "\n")
    return out


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    ns_chars = []
    ns_to_s_map = {}
    for i, c in enumerate(text):
        if c == " ":
            continue
        ns_to_s_map[len(ns_chars)] = i
        ns_chars.append(c)
    return "".join(ns_chars), ns_to_s_map


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool, verbose_logging: bool = False,
                   tokenizer: BasicTokenizer | None = None) -> str:
    """Google's: projects the tokenized prediction back onto the paragraph's own text.

    ``orig_text`` (the whitespace words the span came from) may hold more than the prediction
    ("Steve Smith's" for "steve smith"): it is tokenized with ``BasicTokenizer``, the prediction
    found in it, and, where both have the same characters once spaces are removed, mapped back
    character for character ("Steve Smith"). Where that fails, ``orig_text`` is returned. Google's
    heuristic kept as is, including its quirk of matching inside a word ("rie" of "Curie")."""
    tokenizer = tokenizer or BasicTokenizer(do_lower_case=do_lower_case)
    tok_text = " ".join(tokenizer.tokenize(orig_text))
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        if verbose_logging:
            warnings.warn(f"Unable to find text: {pred_text!r} in {orig_text!r}", stacklevel=2)
        return orig_text
    end_position = start_position + len(pred_text) - 1
    orig_ns_text, orig_ns_to_s_map = _strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s_map = _strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        if verbose_logging:
            warnings.warn(f"Length not equal after stripping spaces: {orig_ns_text!r} vs {tok_ns_text!r}",
                          stacklevel=2)
        return orig_text
    tok_s_to_ns_map = {tok_index: i for i, tok_index in tok_ns_to_s_map.items()}
    orig_start_position = None
    if start_position in tok_s_to_ns_map:
        orig_start_position = orig_ns_to_s_map.get(tok_s_to_ns_map[start_position])
    if orig_start_position is None:
        return orig_text
    orig_end_position = None
    if end_position in tok_s_to_ns_map:
        orig_end_position = orig_ns_to_s_map.get(tok_s_to_ns_map[end_position])
    if orig_end_position is None:
        return orig_text
    return orig_text[orig_start_position:(orig_end_position + 1)]


def _get_best_indexes(logits: Sequence[float], n_best_size: int) -> list[int]:
    """Google's: the indexes of the ``n_best_size`` largest logits, largest first, ties in index
    order (``heapq.nlargest`` is ``sorted(..., reverse=True)[:n]``, stable, without the full sort)."""
    return heapq.nlargest(n_best_size, range(len(logits)), key=logits.__getitem__)


def _compute_softmax(scores: Sequence[float]) -> list[float]:
    """Google's softmax over Python floats (its order of operations, so equal to the last bit)."""
    if not scores:
        return []
    max_score = max(scores)
    exp_scores = [math.exp(score - max_score) for score in scores]
    total_sum = 0.0
    for x in exp_scores:
        total_sum += x
    return [x / total_sum for x in exp_scores]


# ---- the run: Google's main -------------------------------------------------------------------


@dataclass(kw_only=True)
class SquadConfig(FinetuneConfig):
    """Google's ``run_squad.py`` flags (same names and defaults), plus this program's own; the ones
    ``run_classifier.py`` shares are ``FinetuneConfig``'s."""

    train_file: str | None = None
    """SQuAD json for training, e.g. train-v1.1.json."""
    predict_file: str | None = None
    """SQuAD json for predictions, e.g. dev-v1.1.json (scored when it has answers)."""
    max_seq_length: int = 384
    """Total input length after WordPiece tokenization: [CLS] question [SEP] window [SEP], padded."""
    doc_stride: int = 128
    """When splitting a long document into windows, how far each starts after the last."""
    max_query_length: int = 64
    """Questions longer than this many tokens are cut to it."""
    do_predict: bool = False
    """Predict answers for --predict-file (predictions.json, nbest_predictions.json, eval_metrics.json)."""
    n_best_size: int = 20
    """Candidates per question in nbest_predictions.json."""
    max_answer_length: int = 30
    """The longest answer (in tokens) that can be predicted."""
    verbose_logging: bool = False
    """Warn about every prediction whose text cannot be mapped back onto the paragraph."""
    version_2_with_negative: bool = False
    """SQuAD 2.0: some questions have no answer."""
    null_score_diff_threshold: float = 0.0
    """SQuAD 2.0: predict no answer if null_score - best_non_null is greater than this."""

    def __post_init__(self):
        if not (self.do_train or self.do_predict):
            raise BertDetrError("At least one of --do-train or --do-predict must be given.")
        for wanted, path, flag in ((self.do_train, self.train_file, "--train-file"),
                                   (self.do_predict, self.predict_file, "--predict-file")):
            if wanted and not path:
                raise BertDetrError(f"{flag} is needed with --do-{'train' if flag == '--train-file' else 'predict'}")
            if wanted and not os.path.isfile(path):
                raise BertDetrError(f"{flag} not found: {path}")
        super().__post_init__()
        require_at_least(self, ("n_best_size", "max_answer_length"), 1, "--")
        check_window_settings(self.max_seq_length, self.doc_stride, self.max_query_length)


def _init_model(config: SquadConfig, bert_config: BertConfig) -> tuple[BertForQuestionAnswering, bool]:
    """The model to fine-tune or to predict with, from --init-checkpoint; and whether its span
    head was loaded."""
    from bertdetr.bert.finetuning import read_init_checkpoint
    from bertdetr.bert.weights import load_question_answering_state

    model = create_model(bert_config)
    if not config.init_checkpoint:
        return model, False
    state, source = read_init_checkpoint(config.init_checkpoint)
    return model, load_question_answering_state(model, state, source)


def features_to_tensors(features: Iterable[InputFeatures], is_training: bool) -> dict[str, torch.Tensor]:
    """The features stacked by Google's record names: ``input_ids`` (int32), ``input_mask``,
    ``segment_ids`` (int8) [N,T], ``unique_ids`` [N] and, for training, ``start_positions``,
    ``end_positions`` [N] (int64). Built row by row in small dtypes, so ``features`` may be a
    stream: SQuAD's ~88k training windows take ~0.2 GB so, and GBs as ``InputFeatures``."""
    import numpy as np

    columns: dict[str, list] = collections.defaultdict(list)
    for f in features:
        columns["unique_ids"].append(f.unique_id)
        columns["input_ids"].append(np.asarray(f.input_ids, dtype=np.int32))
        columns["input_mask"].append(np.asarray(f.input_mask, dtype=np.int8))
        columns["segment_ids"].append(np.asarray(f.segment_ids, dtype=np.int8))
        if is_training:
            columns["start_positions"].append(f.start_position)
            columns["end_positions"].append(f.end_position)
    if not columns:
        raise BertDetrError("no features")
    return {k: torch.from_numpy(np.stack(v)) if isinstance(v[0], np.ndarray) else torch.tensor(v, dtype=torch.long)
            for k, v in columns.items()}


def _batch(data: dict[str, torch.Tensor], index, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v[index].to(device=device, dtype=torch.long) for k, v in data.items() if k != "unique_ids"}


@torch.no_grad()
def predict(model: BertForQuestionAnswering, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> list[RawResult]:
    """The start and end logits of every window (``RawResult``s, in order), at full length."""
    was_training = model.training
    model.eval()
    results = []
    n = len(data["input_ids"])
    for start in range(0, n, batch_size):
        index = slice(start, min(start + batch_size, n))
        out = model(**_batch(data, index, device))
        for uid, s, e in zip(data["unique_ids"][index].tolist(), out["start_logits"].float().cpu().tolist(),
                             out["end_logits"].float().cpu().tolist()):
            results.append(RawResult(uid, s, e))
    model.train(was_training)
    return results


def _scorable(dataset: list, version_2_with_negative: bool) -> bool:
    """Whether every question has gold answers to score against (a test set has none)."""
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                answers = qa.get("answers")
                if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("text"), str)
                                                            for a in answers):
                    return False
                if not answers and not version_2_with_negative:
                    return False
    return True


def run_squad(config: SquadConfig) -> dict:
    """Google's ``main``: both SQuAD files read and checked, and their features written
    (train.tf_record, eval.tf_record), before any training; then training, prediction and the
    official scores. Returns a summary."""
    import random

    from bertdetr.bert.finetuning import export_model, finetune, model_files, run_checkpoint
    from bertdetr.fileio import check_writable

    bert_config, vocab_file = model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint,
                                          config.max_seq_length)
    tokenizer = FullTokenizer(vocab_file, do_lower_case=config.do_lower_case)
    check_writable(os.path.join(config.output_dir, "predictions.json"))
    windows = (config.max_seq_length, config.doc_stride, config.max_query_length)
    summary: dict = {"features": {}}
    train_squad = predict_squad = None
    if config.do_train:
        train_squad = load_squad_file(config.train_file, True, config.version_2_with_negative)
        if train_squad.skipped:
            warnings.warn(skipped_message(train_squad), stacklevel=2)
        if not train_squad.examples:
            raise BertDetrError(f"{config.train_file} has no training examples")
        summary["skipped"] = len(train_squad.skipped)
        # Google's step count: examples (not windows) / batch size x epochs.
        num_train_steps = int(len(train_squad.examples) / config.train_batch_size * config.num_train_epochs)
        num_warmup_steps = int(num_train_steps * config.warmup_proportion)
        if num_train_steps == 0:
            raise BertDetrError(f"{config.train_file}: {len(train_squad.examples)} training examples in batches of "
                                f"{config.train_batch_size} for {config.num_train_epochs} epochs make no training step")
    if config.do_predict:
        predict_squad = load_squad_file(config.predict_file, False, config.version_2_with_negative)
        if not predict_squad.examples:
            raise BertDetrError(f"{config.predict_file} has no questions")

    train_data = eval_features = None
    if train_squad is not None:
        # Google pre-shuffles the training examples (random.Random(12345)) before writing them.
        train_examples = list(train_squad.examples)
        random.Random(12345).shuffle(train_examples)
        path = os.path.join(config.output_dir, "train.tf_record")
        with atomic_output(path, "wb") as f:
            # Kept as tensors only: SQuAD's training windows as InputFeatures would take GBs.
            train_data = features_to_tensors(written_features(
                convert_examples_to_features(train_examples, tokenizer, *windows, True), f, True), True)
        summary["features"]["train"] = (path, len(train_examples), len(train_data["unique_ids"]))
    if predict_squad is not None:
        path = os.path.join(config.output_dir, "eval.tf_record")
        eval_features = write_features(convert_examples_to_features(predict_squad.examples, tokenizer, *windows,
                                                                    False), path, False)
        summary["features"]["eval"] = (path, len(predict_squad.examples), len(eval_features))
    if config.features_only:
        return summary

    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    step = 0
    start = run_checkpoint(config.output_dir, config.do_train, config.resume, "bert squad", config.overwrite)
    if start is not None:
        model = create_model(bert_config)
        model.load_state_dict(start[1]["model"])
        step = int(start[1]["step"])
    else:
        model, head_loaded = _init_model(config, bert_config)
        if not config.do_train and not head_loaded:
            warnings.warn("predicting with a span head that was never trained: --init-checkpoint has none and "
                          f"{config.output_dir} no checkpoint", stacklevel=2)
    model.to(device)

    if train_data is not None:
        from dataclasses import asdict

        with atomic_output(os.path.join(config.output_dir, "squad_config.json"), "w") as f:
            json.dump({**asdict(config), "model": asdict(bert_config), "num_train_steps": num_train_steps,
                       "num_warmup_steps": num_warmup_steps}, f, indent=1)
        n = len(train_data["unique_ids"])
        step = finetune(model, lambda index: _batch(train_data, index, device), n, config, device,
                        num_train_steps, num_warmup_steps, {"num_features": n}, "squad")
        summary.update(step=step, num_train_steps=num_train_steps)
        if step < num_train_steps:
            return summary  # stopped early (--stop-at-step): resume to finish
        summary["export"] = export_model(model, vocab_file, config.do_lower_case,
                                         os.path.join(config.output_dir, "model"))
    summary["step"] = step
    if eval_features is not None:
        results = predict(model, features_to_tensors(eval_features, False), config.predict_batch_size, device)
        out = write_predictions(
            predict_squad.examples, eval_features, results, config.n_best_size, config.max_answer_length,
            config.do_lower_case, *(os.path.join(config.output_dir, n) for n in
                                    ("predictions.json", "nbest_predictions.json", "null_odds.json")),
            version_2_with_negative=config.version_2_with_negative,
            null_score_diff_threshold=config.null_score_diff_threshold, verbose_logging=config.verbose_logging)
        summary["predictions"] = len(out.predictions)
        if _scorable(predict_squad.dataset, config.version_2_with_negative):
            from bertdetr.bert.squad_metrics import squad_metrics

            metrics = squad_metrics(predict_squad.dataset, out.predictions, out.null_odds or None,
                                    config.version_2_with_negative)
            summary["metrics"] = {"version": "2.0" if config.version_2_with_negative else "1.1", **metrics,
                                  "global_step": step}
            with atomic_output(os.path.join(config.output_dir, "eval_metrics.json"), "w") as f:
                json.dump(summary["metrics"], f, indent=1)
    return summary
