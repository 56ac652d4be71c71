"""Google BERT's tokenizer (``tokenization.py``), token for token, without TensorFlow.

The public names and semantics are Google's (``FullTokenizer``, ``BasicTokenizer``,
``WordpieceTokenizer``, ``load_vocab``, ``convert_to_unicode``, ...), so code written against
Google's module ports by changing the import.

Google's output (``tests/data/bert/tokenize-*.jsonl``) is the oracle, not Hugging Face's
``BertTokenizer``, which differs from Google on several inputs:

- HF's ``max_input_chars_per_word`` is 100; Google's is 200 (a 150-char word is split here,
  ``[UNK]`` in HF).
- HF's ``_is_control`` drops every ``C*`` category (private use ``Co``, unassigned ``Cn``);
  Google's current code drops only ``Cc`` and ``Cf``, so a private-use or unassigned character
  survives cleaning and makes its word ``[UNK]``.
- HF keeps ``[MASK]``/``[CLS]``... in raw text as single special tokens; Google splits them as
  punctuation and letters (``[``, ``mask``, ``]``).
"""

from __future__ import annotations

import collections
import os
import unicodedata

from bertdetr.errors import BertDetrError

__all__ = [
    "VocabError",
    "convert_to_unicode",
    "printable_text",
    "load_vocab",
    "convert_by_vocab",
    "convert_tokens_to_ids",
    "convert_ids_to_tokens",
    "whitespace_tokenize",
    "FullTokenizer",
    "BasicTokenizer",
    "WordpieceTokenizer",
]


class VocabError(BertDetrError, ValueError):
    """A vocabulary file that cannot be used (missing, empty, duplicated entries, no ``[UNK]``)."""


def convert_to_unicode(text: str | bytes) -> str:
    """Returns ``text`` as ``str``; bytes are decoded as UTF-8 ignoring invalid bytes (as Google)."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise TypeError(f"Unsupported string type: {type(text).__name__}")


# Google has two helpers for Python 2/3; on Python 3 both are the same thing.
printable_text = convert_to_unicode


def load_vocab(vocab_file: str | os.PathLike, unk_token: str = "[UNK]") -> "collections.OrderedDict[str, int]":
    """Loads a vocabulary file (one token a line) into an ordered ``token -> id`` dict.

    Google's ``load_vocab`` silently keeps the *last* id of a duplicated token and accepts a vocab
    without ``[UNK]`` (failing later with a ``KeyError`` deep inside tokenization); we reject both
    with a message naming the file and line instead, since either makes ids ambiguous.
    """
    path = os.fspath(vocab_file)
    if not os.path.exists(path):
        raise VocabError(f"vocab file not found: {path}")
    if os.path.isdir(path):
        raise VocabError(f"vocab file is a directory: {path}")
    vocab: "collections.OrderedDict[str, int]" = collections.OrderedDict()
    with open(path, "rb") as reader:
        data = reader.read()
    # Google reads with tf.gfile in text mode: lines split on "\n", each stripped of whitespace.
    lines = convert_to_unicode(data).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line does not start another token
    for index, line in enumerate(lines):
        token = line.strip()
        if token in vocab:
            raise VocabError(
                f"vocab file {path} has a duplicate entry {token!r} on lines "
                f"{vocab[token] + 1} and {index + 1}"
            )
        vocab[token] = index
    if not vocab:
        raise VocabError(f"vocab file is empty: {path}")
    if unk_token not in vocab:
        raise VocabError(f"vocab file {path} has no {unk_token} entry (needed for unknown words)")
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

    def __init__(self, vocab_file, do_lower_case: bool = True):
        self.vocab = load_vocab(vocab_file)
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
