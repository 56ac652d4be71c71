"""The plain, character-by-character algorithm of Google BERT's tokenizer, kept as the reference.

``bertdetr.bert.data.tokenization`` computes the same function much faster (whole-line regular
expressions, word caches). This is the project's first, straightforward implementation of
Google's semantics, free of those tricks, so that ``tests/bert/test_tokenization.py`` and
``bench/bench_tokenizer.py`` can compare the fast code with it on any input. It agrees with
Google's own output on ``tests/data/bert/tokenize-*.jsonl`` (a test checks it).
"""

from __future__ import annotations

import collections
import os
import unicodedata


def convert_to_unicode(text: str | bytes) -> str:
    """Returns ``text`` as ``str``; bytes are decoded as UTF-8 ignoring invalid bytes (as Google)."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise TypeError(f"Unsupported string type: {type(text).__name__}")


# Google has two helpers for Python 2/3; on Python 3 both are the same thing.
printable_text = convert_to_unicode


def load_vocab(vocab_file) -> "collections.OrderedDict[str, int]":
    """One token a line, stripped; as Google, a duplicated token keeps its last index and nothing
    is checked (the library's ``load_vocab`` rejects such files instead)."""
    vocab: "collections.OrderedDict[str, int]" = collections.OrderedDict()
    with open(os.fspath(vocab_file), "rb") as reader:
        lines = convert_to_unicode(reader.read()).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    return vocab


def convert_by_vocab(vocab, items):
    """Maps a sequence of tokens or ids through ``vocab`` (a dict)."""
    return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
    return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
    return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text: str) -> list[str]:
    """Strips and splits on whitespace (Python's ``str.split``, as Google)."""
    text = text.strip()
    if not text:
        return []
    return text.split()


class FullTokenizer:
    """End-to-end tokenization: ``BasicTokenizer`` then ``WordpieceTokenizer``."""

    def __init__(self, vocab_file, do_lower_case: bool = True, vocab=None):
        # ``vocab`` lets the tests share one loaded vocabulary between many tokenizers.
        self.vocab = vocab if vocab is not None else load_vocab(vocab_file)
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text) -> list[str]:
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            split_tokens.extend(self.wordpiece_tokenizer.tokenize(token))
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return convert_by_vocab(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids):
        return convert_by_vocab(self.inv_vocab, ids)


class BasicTokenizer:
    """Text cleaning, CJK spacing, lowercasing + accent stripping, punctuation splitting."""

    def __init__(self, do_lower_case: bool = True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text) -> list[str]:
        text = convert_to_unicode(text)
        text = self._clean_text(text)
        # Added by Google in Nov 2018 for the multilingual and Chinese models; harmless for
        # English since the English vocab has few CJK characters.
        text = self._tokenize_chinese_chars(text)
        orig_tokens = whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text: str) -> str:
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _run_split_on_punc(self, text: str) -> list[str]:
        output: list[list[str]] = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text: str) -> str:
        output = []
        for char in text:
            if self._is_chinese_char(ord(char)):
                output.append(" ")
                output.append(char)
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)

    @staticmethod
    def _is_chinese_char(cp: int) -> bool:
        """CJK Unified Ideographs blocks only (not Hiragana/Katakana/Hangul), as Google."""
        return (
            (0x4E00 <= cp <= 0x9FFF)
            or (0x3400 <= cp <= 0x4DBF)
            or (0x20000 <= cp <= 0x2A6DF)
            or (0x2A700 <= cp <= 0x2B73F)
            or (0x2B740 <= cp <= 0x2B81F)
            or (0x2B820 <= cp <= 0x2CEAF)
            or (0xF900 <= cp <= 0xFAFF)
            or (0x2F800 <= cp <= 0x2FA1F)
        )

    def _clean_text(self, text: str) -> str:
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            if _is_whitespace(char):
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece, continuation pieces prefixed with ``##``."""

    def __init__(self, vocab, unk_token: str = "[UNK]", max_input_chars_per_word: int = 200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text) -> list[str]:
        """Tokenizes already whitespace-separated ``text`` (the output of ``BasicTokenizer``)."""
        text = convert_to_unicode(text)
        output_tokens = []
        for token in whitespace_tokenize(text):
            if len(token) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(token):
                end = len(token)
                cur_substr = None
                while start < end:
                    substr = token[start:end]
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


def _is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return and Unicode category Zs."""
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """Categories Cc and Cf, except tab/newline/CR (which count as whitespace)."""
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """Every non-alphanumeric ASCII character (``$``, ``^``, ``` ` ``` are not Unicode P*) and
    every Unicode P* category."""
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")
