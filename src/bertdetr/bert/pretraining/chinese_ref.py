"""Chinese whole-word masking: which characters continue a word (HFL's Chinese-BERT-wwm).

Google's tokenizer makes every CJK character a token of its own, so Google's whole-word masking
(a ``##`` piece joins the word before it) masks single characters in Chinese text: Google's known
limitation (bert#780). HFL's Chinese-BERT-wwm and transformers' ``run_chinese_ref.py`` segment each
line into words first and mark every character of a word after its first as a continuation, as
if it were a ``##`` piece; the masking then takes whole words. The marks only steer the masking:
the records hold each character's plain id.

The functions carry the names of ``run_chinese_ref.py`` (``get_chinese_word``, ``add_sub_symbol``)
and do what they do: a word counts when it has two or more characters, all CJK; the line's tokens
are matched against the line's words greedily, longest word first, from left to right; a marked
position counts when its token is a single CJK character. Two sources of words:

- ``SegmenterMarks``: a word segmenter run on each line (``jieba_segmenter``: ``jieba.lcut(line)``,
  jieba's default dictionary and HMM, through its Rust port when installed).
- ``RefFileMarks``: a ``run_chinese_ref.py`` output file (one JSON list per non-blank line of the
  corpus: the marked positions, counted with [CLS] at 0), for segmentations made elsewhere (LTP).

Both are called once per non-blank line by ``read_documents`` (``create_pretraining_data.py``),
which shifts each marked id by ``VocabIds.shadow`` until the masking reads and clears the mark.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, Optional, Sequence

from bertdetr.bert.data.tokenization import _CJK, is_chinese_char
from bertdetr.errors import BertDetrError

__all__ = [
    "WORD_SEGMENTERS",
    "is_chinese",
    "get_chinese_word",
    "add_sub_symbol",
    "chinese_ref",
    "jieba_segmenter",
    "SegmenterMarks",
    "RefFileMarks",
    "mostly_cjk",
    "make_marks",
]

WORD_SEGMENTERS = ("jieba",)
"""Names ``--word-segmenter`` takes."""


_CJK_WORD = re.compile(f"[{_CJK.pattern[2:-2]}]*")
"""Any number of Google's CJK characters (``tokenization._CJK`` is one, in a group)."""


def is_chinese(word: str) -> bool:
    """True when every character of ``word`` is CJK (``run_chinese_ref.py``'s ``is_chinese``)."""
    return _CJK_WORD.fullmatch(word) is not None


def get_chinese_word(tokens: Sequence[str]) -> set[str]:
    """The segmenter's words that can be whole words: two or more characters, all CJK."""
    return {t for t in tokens if len(t) > 1 and is_chinese(t)}


def add_sub_symbol(bert_tokens: Sequence[str], chinese_word_set: set[str]) -> list[str]:
    """``bert_tokens`` with ``##`` before every token that continues a word of ``chinese_word_set``
    (``run_chinese_ref.py``'s ``add_sub_symbol``, on a copy): from each CJK token, the longest
    run of tokens whose joined text is a word is taken, and the scan goes on after it.

    As the original, this matches the line's words anywhere in the line, not only where the
    segmenter put them; the two differ only when a word of the line also spells across another
    word's boundary.
    """
    bert_word = list(bert_tokens)
    if not chinese_word_set:
        return bert_word
    max_word_len = max(len(w) for w in chinese_word_set)
    # Not in the original, the same result: a word can start at a token only if it starts with
    # the token's first character (most positions, inside words already taken, never get here).
    first_chars = {w[0] for w in chinese_word_set}
    start, end = 0, len(bert_word)
    while start < end:
        single_word = True
        if bert_word[start][:1] in first_chars and is_chinese(bert_word[start]):
            longest = min(end - start, max_word_len)
            for i in range(longest, 1, -1):
                whole_word = "".join(bert_word[start:start + i])
                if whole_word in chinese_word_set:
                    for j in range(start + 1, start + i):
                        bert_word[j] = "##" + bert_word[j]
                    start = start + i
                    single_word = False
                    break
        if single_word:
            start += 1
    return bert_word


def chinese_ref(bert_tokens: Sequence[str], words: Sequence[str]) -> list[int]:
    """The positions in ``bert_tokens`` (from 0) that continue a word of ``words`` (a segmenter's
    output for the same line): ``run_chinese_ref.py``'s ``prepare_ref`` for one line, which keeps a
    ``##`` position only when its token is one CJK character."""
    marked = add_sub_symbol(bert_tokens, get_chinese_word(words))
    return [i for i, token in enumerate(marked)
            if token.startswith("##") and len(token) == 3 and is_chinese_char(token[2])]


def _continuations(text: str, words: set[str]) -> list[int]:
    """``add_sub_symbol``'s scan on ``text`` (one character per token): the positions after the
    first of each word taken."""
    longest = max(len(w) for w in words)
    first_chars = {w[0] for w in words}
    out: list[int] = []
    start, end = 0, len(text)
    while start < end:
        if text[start] in first_chars:
            for i in range(min(end - start, longest), 1, -1):
                if text[start:start + i] in words:
                    out.extend(range(start + 1, start + i))
                    start += i
                    break
            else:
                start += 1
        else:
            start += 1
    return out


def jieba_segmenter() -> Callable[[str], list[str]]:
    """jieba's words of a line, as ``jieba.lcut(line)``: its default dictionary, its HMM for
    unknown words, accurate mode.

    Through ``rjieba`` (jieba-rs, the Rust port of the same dictionary and algorithm; about 20x
    faster) when it is installed, else jieba itself. The two can part on Latin text with dots
    (``e.g.``: jieba cuts ``e . g .``, rjieba ``e.g .``), never seen on Chinese words, and only
    Chinese words of two or more characters are used here (tested equal on generated text).
    """
    try:
        import rjieba
    except ImportError:
        rjieba = None
    if rjieba is not None:
        return lambda line: rjieba.cut(line, hmm=True)
    try:
        import jieba
    except ImportError:
        raise BertDetrError("--word-segmenter jieba needs rjieba or jieba (pip install rjieba)") from None
    import logging

    jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict ..." lines on every worker
    tokenizer = jieba.Tokenizer()  # this process's own (jieba's default one is global)
    return lambda line: tokenizer.lcut(line, cut_all=False, HMM=True)


class SegmenterMarks:
    """The continuation positions of a line from a word segmenter's words for it:
    ``chinese_ref(tokens, segment(line))``, computed on a string with one character per token.

    The tokenizer makes every CJK character a token of its own (the character, or [UNK]), so a
    word can only match a run of single-character tokens: the line's tokens become one string, a
    single CJK character token as itself and any other token as a NUL, which no word contains.
    Positions in the string are then token positions, and ``add_sub_symbol``'s greedy scan is
    slicing and set lookups on it (tested equal to ``chinese_ref`` on the token lists).
    """

    def __init__(self, segment: Callable[[str], list[str]], inv_vocab: dict):
        self.segment = segment
        size = max(inv_vocab) + 1 if inv_vocab else 0
        self.chars = ["\0"] * size
        for i, token in inv_vocab.items():
            if len(token) == 1 and is_chinese_char(token):
                self.chars[i] = token

    def __call__(self, line: str, ids: Sequence[int]) -> list[int]:
        words = get_chinese_word(self.segment(line))
        if not words:  # no word of two CJK characters: nothing to join (most non-Chinese lines)
            return []
        return _continuations("".join([self.chars[i] for i in ids]), words)

    def finish(self) -> None:
        pass


class RefFileMarks:
    """The continuation positions of each non-blank line, read from a ``run_chinese_ref.py``
    output: line k of the ref file (a JSON list of positions, [CLS] at 0) is for the k-th
    non-blank line of the corpus. Its positions must fall on the line's tokens; the counts of
    lines must agree (``finish``)."""

    def __init__(self, path: str | os.PathLike, corpus: str | os.PathLike):
        self.path = os.fspath(path)
        self.corpus = os.fspath(corpus)
        try:
            self._file = open(self.path, "rb")
        except OSError as e:
            raise BertDetrError(f"cannot read the ref file {self.path}: {e.strerror or e}") from None
        self.line = 0

    def _error(self, message: str) -> BertDetrError:
        self._file.close()
        return BertDetrError(f"{self.path}, line {self.line}: {message}")

    def __call__(self, line: str, ids: Sequence[int]) -> list[int]:
        raw = self._file.readline()
        self.line += 1
        if not raw:
            self._file.close()
            raise BertDetrError(
                f"{self.path} ends after line {self.line - 1}, but {self.corpus} has more non-blank lines "
                "(one ref line is needed for each, in order, as run_chinese_ref.py writes)")
        try:
            positions = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._error(f"not a JSON list of positions: {raw[:60]!r}") from None
        if not isinstance(positions, list) or any(
                isinstance(p, bool) or not isinstance(p, int) for p in positions):
            raise self._error(f"not a JSON list of integer positions: {raw[:60]!r}")
        n = len(ids)
        bad = [p for p in positions if not 1 <= p <= n]
        if bad:
            raise self._error(
                f"position {bad[0]} is outside the line's {n} tokens (positions count [CLS] as 0, "
                f"so they run from 1 to {n}): is this the ref file of {self.corpus}, made with "
                "the same vocabulary and casing?")
        return [p - 1 for p in positions]

    def finish(self) -> None:
        rest = self._file.readline()
        self._file.close()
        if rest:
            raise BertDetrError(
                f"{self.path} has more lines than {self.corpus} has non-blank lines ({self.line}): "
                "one ref line is needed for each non-blank line, in order")


def mostly_cjk(path: str | os.PathLike, limit: int = 1 << 16) -> bool:
    """True when most of the letters in the first ``limit`` bytes of ``path`` are CJK characters
    (for the warning that whole-word masking without a segmenter masks single characters)."""
    with open(path, "rb") as f:
        text = f.read(limit).decode("utf-8", "ignore")
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    return sum(1 for c in letters if is_chinese_char(c)) * 2 > len(letters)


def make_marks(word_segmenter: Optional[str], ref_file: Optional[str], corpus: str, inv_vocab: dict):
    """The marks of one shard: from ``word_segmenter`` (a name of ``WORD_SEGMENTERS``), from
    ``ref_file``, or None."""
    if word_segmenter == "jieba":
        return SegmenterMarks(jieba_segmenter(), inv_vocab)
    if word_segmenter is not None:
        raise BertDetrError(f"unknown word segmenter {word_segmenter!r}; choose from {', '.join(WORD_SEGMENTERS)}")
    if ref_file is not None:
        return RefFileMarks(ref_file, corpus)
    return None
