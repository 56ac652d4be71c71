"""Google's ``run_squad.py`` data half (SQuAD 1.1 and 2.0): examples from the files, their features.

Read top to bottom as Google's file: ``SquadExample`` and ``read_squad_examples`` (whitespace
words, character-to-word offsets, answers that cannot be found skipped), ``InputFeatures`` and
``convert_examples_to_features`` (question + sliding document windows, ``_improve_answer_span``,
``_check_is_max_context``) with the TFRecords Google writes (``FeatureWriter``: ``write_features``).
``features_to_tensors`` stacks the features for the run (``bertdetr.bert.finetuning.squad``).

Where Google's code would crash deep inside (a KeyError for a file that is not SQuAD, an
IndexError for an answer outside its context, an endless loop for a window with no room) this
raises ``BertDetrError`` naming the file and the question. Otherwise examples and features are
Google's, checked against goldens made by bert-tensorflow 1.0.4 itself
(``tests/data/bert/squad/make_goldens.py``).
"""

from __future__ import annotations

import bisect
import collections
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch

from bertdetr.bert.data.records import serialize_example, write_record
from bertdetr.bert.data.tokenization import _CJK, FullTokenizer, whitespace_tokenize
from bertdetr.errors import BertDetrError
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
    """The paragraph split on whitespace, each CJK character a word of its own (shared by all the
    questions of a paragraph)."""
    orig_answer_text: str | None = None
    """Training: the answer as annotated ("" for an unanswerable question); None in prediction."""
    start_position: int | None = None
    """Training: index in ``doc_tokens`` of the answer's first word (-1: no answer)."""
    end_position: int | None = None
    """Training: index in ``doc_tokens`` of the answer's last word (-1: no answer)."""
    is_impossible: bool = False
    """SQuAD 2.0 training: the question has no answer in the paragraph."""
    glued: frozenset = frozenset()
    """Indexes of the ``doc_tokens`` that follow the one before with no whitespace between (a CJK
    character and its neighbours): texts of several tokens are joined without a space there."""


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
# Departure from Google's: a CJK character is a word of its own, as in HFL's CMRC 2018 / DRCD
# baselines. Google's reader makes a whole unspaced Chinese paragraph one "word", so an answer is a
# span of the paragraph only after _improve_answer_span, and a predicted span is cut back out of the
# whole paragraph by get_final_text, which gives the paragraph itself whenever its character
# mapping fails. Text without CJK characters is split exactly as Google's.
_CJK_CHARS = _CJK.pattern[2:-2]
_WORD = re.compile(f"[{_CJK_CHARS}]|[^ \t\r\n\u202f{_CJK_CHARS}]+")


def _words(context: str) -> tuple[list[str], list[int], frozenset]:
    """Google's whitespace words of a paragraph (CJK characters split off), the character offset
    where each starts, and the indexes of the words glued to the one before (no whitespace).

    Google's ``char_to_word_offset[i]`` (the word at or before character i) is
    ``bisect_right(starts, i) - 1``: computed only for answers, not for every character."""
    words, starts, glued = [], [], []
    end = -1
    for m in _WORD.finditer(context):
        if m.start() == end:
            glued.append(len(words))
        words.append(m.group())
        starts.append(m.start())
        end = m.end()
    return words, starts, frozenset(glued)


def join_doc_tokens(doc_tokens: Sequence[str], glued: frozenset, start: int, end: int) -> str:
    """Google's ``" ".join(doc_tokens[start:end + 1])``, without the space before a token of
    ``glued`` (so no text gains a space between CJK characters)."""
    if not glued:
        return " ".join(doc_tokens[start:end + 1])
    return "".join(doc_tokens[i] if i == start or i in glued else " " + doc_tokens[i] for i in range(start, end + 1))


class _QuestionPlace:
    """Where a question is, for messages: its path in the JSON, its id and, found only when a
    message is made, the line of the file where its id is written."""

    def __init__(self, path: str, where: str, qas_id: str):
        self.path, self.where, self.qas_id = path, where, qas_id

    def __str__(self) -> str:
        line = None
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            for spelling in (json.dumps(self.qas_id, ensure_ascii=False), json.dumps(self.qas_id)):
                pos = text.find(spelling)
                if pos >= 0:
                    line = text.count("\n", 0, pos) + 1
                    break
        except (OSError, ValueError):
            pass
        place = self.where if line is None else self.where.replace(f"{self.path}: ", f"{self.path}, line {line}: ", 1)
        return f"{place} (id {self.qas_id!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


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
        with open(input_file, encoding="utf-8-sig") as f:  # a byte order mark (Notepad's UTF-8) is skipped
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
            doc_tokens, starts, glued = _words(context)
            for k, qa in enumerate(qas):
                qwhere = f"{pwhere}.qas[{k}]"
                _need(qa, dict, qwhere, "a question")
                qas_id = _need(qa.get("id"), str, qwhere, "\"id\"")
                qwhere = _QuestionPlace(input_file, qwhere, qas_id)
                question_text = _need(qa.get("question"), str, qwhere, "\"question\"")
                impossible = qa.get("is_impossible", False)
                if impossible is True and not version_2_with_negative:
                    raise SquadFormatError(f"{qwhere}: an unanswerable question (\"is_impossible\": true): this is "
                                           "SQuAD 2.0 data; give --version-2-with-negative")
                example = SquadExample(qas_id, question_text, doc_tokens, glued=glued)
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
    if text not in context and _CJK.search(context):
        # Chinese data (CMRC 2018, DRCD): an answer that is nowhere in its paragraph is an error.
        # Elsewhere Google skips it below with the answers it cannot find at their offset (kept:
        # Google's run on SQuAD does), which is where an answer in the paragraph but not at its
        # offset goes in Chinese data too.
        raise SquadFormatError(f"{where}: answer {text!r} is nowhere in its paragraph")
    start = bisect.bisect_right(starts, offset) - 1
    end = bisect.bisect_right(starts, offset + len(text) - 1) - 1
    # Only answers whose text can be recovered exactly from the document are kept (Google: "likely
    # due to weird Unicode stuff so we will just skip the example").
    actual_text = join_doc_tokens(example.doc_tokens, example.glued, start, end)
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
    minimum of its left and right context, plus 0.01 x the window's length; first wins ties).

    The readable reference, under Google's name: ``convert_examples_to_features`` runs
    ``_max_context_spans`` (every token at once, one pass over the windows, where this is a pass per
    token and window); a test checks the two agree on every token of many window layouts."""
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


__all__ = [
    "SquadExample", "SquadFile", "SquadFormatError", "load_squad_file", "read_squad_examples", "skipped_message",
    "InputFeatures", "check_window_settings", "convert_examples_to_features", "feature_to_example",
    "write_features", "written_features", "features_to_tensors",
]
