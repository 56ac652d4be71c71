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

Speed. Google's code looks at every character several times in Python. The output is the same
here, computed differently (each step's comment says why it is exact):

- A line is split once on whitespace (``str.split``, in C) into *chunks*. Every step of Google's
  pipeline after its whitespace split is local to one whitespace token, and the steps before it
  only delete characters, turn whitespace into spaces or add spaces, so a line's output is the
  concatenation of its chunks' outputs.
- A chunk's output is cached (bounded caches, see ``_BoundedCache``): in real text most chunks
  ("the", "of", "(see") repeat, and a repeat costs one dict lookup.
- A new chunk is split by regular expressions (pure-ASCII chunks by a fixed one; others by character
  classes built once from this Python's ``unicodedata``, the same database Google's code reads;
  building them takes ~0.1 s, so a tokenizer's first non-ASCII chunks are split one character at
  a time, with the category of each character looked up when first met), and a new word is
  split into pieces by Google's greedy search, which never tries a substring longer than the
  longest vocabulary entry; words are cached too.

``bench/reference_tokenization.py`` keeps the plain algorithm; the tests compare the two on every
code point and on generated text, and ``bench/bench_tokenizer.py`` measures both.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import re
import sys
import unicodedata
from typing import Callable

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
    "is_chinese_char",
]


class VocabError(BertDetrError, ValueError):
    """A vocabulary file that cannot be used (missing, empty, duplicated entries, no ``[UNK]``)."""


def validate_case_matches_checkpoint(do_lower_case: bool, init_checkpoint: str | None) -> None:
    """Google's check that the casing fits a checkpoint of its release, known by its folder's name
    (``.../uncased_L-12_H-768_A-12/bert_model.ckpt``): a mismatch is an error, with Google's words.
    Other names pass (there is no way to tell)."""
    if not init_checkpoint:
        return
    m = re.match("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt", os.fspath(init_checkpoint))
    if m is None:
        return
    model_name = m.group(1)
    lower_models = ["uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12", "multilingual_L-12_H-768_A-12",
                    "chinese_L-12_H-768_A-12"]
    cased_models = ["cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12"]
    if model_name in lower_models and not do_lower_case:
        actual, case_name, opposite = "False", "lowercased", "True"
    elif model_name in cased_models and do_lower_case:
        actual, case_name, opposite = "True", "cased", "False"
    else:
        return
    raise BertDetrError(f"You passed in `--do_lower_case={actual}` with `--init_checkpoint={init_checkpoint}`. "
                        f"However, `{model_name}` seems to be a {case_name} model, so you should pass in "
                        f"`--do_lower_case={opposite}` so that the fine-tuning matches how the model was pre-trained.")


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
    if path.endswith(".json"):
        return tokenizer_json_vocab(path, unk_token)[0]
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


def tokenizer_json_vocab(path: str, unk_token: str = "[UNK]") -> tuple["collections.OrderedDict[str, int]", bool]:
    """(vocabulary, lowercase) of a ``tokenizer.json``, as transformers 5 saves a BERT folder (no
    vocab.txt): its WordPiece ``model.vocab`` in id order and its normalizer's ``lowercase``.
    Anything but a BERT WordPiece tokenizer with ids 0..N-1 and ``[UNK]`` is a ``VocabError``."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model = data["model"]
        if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise ValueError(f"a {model.get('type')} tokenizer, not BERT's WordPiece")
        vocab = collections.OrderedDict(
            (str(t), int(i)) for t, i in sorted(model["vocab"].items(), key=lambda kv: kv[1]))
        if list(vocab.values()) != list(range(len(vocab))):
            raise ValueError("its vocabulary ids are not 0..N-1")
        lower = bool((data.get("normalizer") or {}).get("lowercase", True))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise VocabError(f"cannot read the vocabulary of {path}: {e}") from None
    if unk_token not in vocab:
        raise VocabError(f"{path} has no {unk_token} in its vocabulary (needed for unknown words)")
    return vocab, lower


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
    """End-to-end tokenization: ``BasicTokenizer`` then ``WordpieceTokenizer``.

    Besides Google's methods: ``tokenize_to_ids`` (ids straight from text) and ``line_function``
    (either, as a function of one line, for loops over many lines).

    The caches assume that ``vocab`` and the tokenizers' settings are not changed after
    construction (make a new ``FullTokenizer`` instead).
    """

    cache_size = 1 << 17
    """Chunks whose tokens (and, separately, ids) are kept: ~200 bytes each, ~25 MB when full."""

    def __init__(self, vocab_file, do_lower_case: bool = True):
        self._setup(load_vocab(vocab_file), do_lower_case)

    def tokenize(self, text) -> list[str]:
        return BasicTokenizer.concat_chunks(self._chunk_tokens.__getitem__, text)

    def tokenize_to_ids(self, text) -> list[int]:
        """``convert_tokens_to_ids(tokenize(text))``, faster."""
        return BasicTokenizer.concat_chunks(self._chunk_ids.__getitem__, text)

    def convert_tokens_to_ids(self, tokens):
        return convert_by_vocab(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids):
        return convert_by_vocab(self.inv_vocab, ids)

    def line_function(self, to_ids: bool) -> Callable:
        """``tokenize`` (or ``tokenize_to_ids``) as a function of one line, for loops over many lines
        (``read_documents`` of make-data, ``bench/tokenize_workers.py``)."""
        cache = self._chunk_ids if to_ids else self._chunk_tokens
        return functools.partial(BasicTokenizer.concat_chunks, cache.__getitem__)

    @classmethod
    def from_vocab(cls, vocab, do_lower_case: bool = True) -> "FullTokenizer":
        """A FullTokenizer of a ``token -> id`` mapping (no vocab.txt: a ``tokenizer.json``'s, say)."""
        return cls._from_vocab(vocab, do_lower_case)

    @classmethod
    def _from_vocab(cls, vocab, do_lower_case) -> "FullTokenizer":
        tokenizer = cls.__new__(cls)
        tokenizer._setup(vocab, do_lower_case)
        return tokenizer

    def __reduce__(self):
        # Pickles (for spawned workers, DataLoader workers...) as vocabulary and setting, no caches.
        return FullTokenizer._from_vocab, (self.vocab, self.do_lower_case)

    def _setup(self, vocab, do_lower_case) -> None:
        self.vocab = vocab
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
        # chunk -> tokens, chunk -> ids; a new chunk is made of words, most of them seen before:
        # word -> pieces (the WordpieceTokenizer's cache) and word -> ids.
        self._chunk_tokens = _BoundedCache(self._tokens_of_chunk, self.cache_size)
        self._chunk_ids = _BoundedCache(self._ids_of_chunk, self.cache_size)
        self._word_ids = _BoundedCache(self._ids_of_word, self.wordpiece_tokenizer.cache_size)

    def _tokens_of_chunk(self, chunk: str) -> tuple[str, ...]:
        return self._of_chunk(chunk, self.wordpiece_tokenizer._pieces.__getitem__)

    def _ids_of_chunk(self, chunk: str) -> tuple[int, ...]:
        return self._of_chunk(chunk, self._word_ids.__getitem__)

    def _of_chunk(self, chunk: str, of_word) -> tuple:
        words = self.basic_tokenizer._split_chunk(chunk)
        if len(words) == 1:
            return of_word(words[0])
        return tuple(itertools.chain.from_iterable(map(of_word, words)))

    def _ids_of_word(self, word: str) -> tuple[int, ...]:
        return tuple(map(self.vocab.__getitem__, self.wordpiece_tokenizer._pieces[word]))


class BasicTokenizer:
    """Runs basic tokenization (punctuation splitting, lower casing, etc.): Google's text
    cleaning, CJK spacing, lowercasing + accent stripping and punctuation splitting.

    Google runs each step over the whole text, character by character. Here the text is split into
    whitespace-free chunks first (``concat_chunks``), each chunk's words are computed once
    (``_split_chunk``) and cached, and the loops over characters are regular expressions.
    """

    cache_size = 1 << 17
    """Chunks whose words are kept (filled only by ``tokenize``; ``FullTokenizer`` has its own)."""

    per_character_chunks = 10_000
    """Non-ASCII chunks split one character at a time (``_CharClasses``) before this tokenizer
    switches to the whole-Unicode regexes (``_UnicodeClasses``, ~0.1 s to build, once per
    process): a text with a few non-ASCII words never pays for them, and a text with many pays
    ~0.03 s more first."""

    def __init__(self, do_lower_case: bool = True):
        self.do_lower_case = do_lower_case
        self._non_ascii_chunks = 0
        self._char_classes = _CharClasses()

    @property
    def do_lower_case(self):
        return self._do_lower_case

    @do_lower_case.setter
    def do_lower_case(self, value) -> None:
        # Cached words depend on it: a new setting starts an empty cache.
        self._do_lower_case = value
        self._words = _BoundedCache(self._split_chunk, self.cache_size)

    def tokenize(self, text) -> list[str]:
        """Tokenizes a piece of text."""
        return self.concat_chunks(self._words.__getitem__, text)

    @staticmethod
    def concat_chunks(of_chunk: Callable[[str], tuple], text) -> list:
        """``of_chunk(chunk)`` (a cache lookup) for each whitespace-free chunk of ``text``,
        concatenated. Every step of Google's pipeline after its whitespace split is local to one
        whitespace token, and the steps before it only delete characters, turn whitespace into
        spaces or add spaces, so a line's output is the concatenation of its chunks' outputs."""
        if type(text) is not str:
            text = convert_to_unicode(text)
        if _DELETED_SEPARATORS.search(text) is not None:
            text = _DELETED_SEPARATORS.sub("", text)
        output: list = []
        for chunk in text.split():
            output += of_chunk(chunk)
        return output

    def _split_chunk(self, chunk: str) -> tuple[str, ...]:
        """The words of one whitespace-free chunk (uncached)."""
        if chunk.isascii():
            return self._split_ascii_chunk(chunk)
        if self._non_ascii_chunks < self.per_character_chunks:
            self._non_ascii_chunks += 1
            return self._split_general_chunk(chunk, self._char_classes)
        return self._split_general_chunk(chunk, _unicode_classes())

    def _split_ascii_chunk(self, chunk: str) -> tuple[str, ...]:
        lower = self._do_lower_case
        if chunk.isalnum():  # the common case, one word ([0-9A-Za-z]+ for an ASCII str)
            return (chunk.lower() if lower else chunk,)
        if _ASCII_CONTROLS.search(chunk) is not None:
            chunk = _ASCII_CONTROLS.sub("", chunk)
        if lower:
            chunk = chunk.lower()
        return tuple(_ASCII_WORDS.findall(chunk))

    def _split_general_chunk(self, chunk: str, classes) -> tuple[str, ...]:
        """Google's steps on one chunk, in Google's order, with ``classes`` (``_UnicodeClasses``
        or ``_CharClasses``) for the loops over characters."""
        chunk = classes.delete(chunk)  # _clean_text
        # _tokenize_chinese_chars
        tokens = _CJK.sub(r" \1 ", chunk).split() if _CJK.search(chunk) is not None else (chunk,)
        output: list[str] = []
        for token in tokens:
            if self._do_lower_case:
                # The whole token at once, as Google: str.lower is context-sensitive (a final sigma
                # depends on its neighbours, punctuation included).
                token = token.lower()
                if not token.isascii():  # _run_strip_accents
                    token = classes.strip_marks(unicodedata.normalize("NFD", token))
            # Google joins the pieces with spaces and splits again, so whitespace that lowercasing
            # or NFD might produce would separate words (none does in current Unicode; this keeps
            # it exact).
            for part in token.split():
                output += classes.split_words(part)  # _run_split_on_punc
        return tuple(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece, continuation pieces prefixed with ``##``.

    ``vocab``, ``unk_token`` and ``max_input_chars_per_word`` are read at construction (words are
    cached); make a new tokenizer to change them.
    """

    cache_size = 1 << 16
    """Words whose pieces are kept."""

    def __init__(self, vocab, unk_token: str = "[UNK]", max_input_chars_per_word: int = 200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        # No substring longer than the longest entry can be in the vocabulary, so Google's search
        # (longest candidate first) may start there: same result, fewer lookups on long words.
        self._longest = max(map(len, vocab), default=0)
        self._pieces = _BoundedCache(self._split_word, self.cache_size)

    def tokenize(self, text) -> list[str]:
        """Tokenizes a piece of text into its word pieces: already whitespace-separated ``text``
        (the output of ``BasicTokenizer``)."""
        output_tokens: list[str] = []
        of_word = self._pieces.__getitem__
        for token in whitespace_tokenize(convert_to_unicode(text)):
            output_tokens += of_word(token)
        return output_tokens

    def _split_word(self, word: str) -> tuple[str, ...]:
        """Google's greedy longest-match-first search for one word (uncached)."""
        length = len(word)
        if length > self.max_input_chars_per_word:
            return (self.unk_token,)
        vocab = self.vocab
        if word in vocab:  # most words are whole entries
            return (word,)
        pieces = []
        start = 0
        while start < length:
            end = min(length, start + self._longest)
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:  # no piece starts here: the whole word is unknown
                return (self.unk_token,)
            pieces.append(piece)
            start = end
        return tuple(pieces)


# --- BasicTokenizer's character rules: Google's _is_whitespace, _is_control, _is_punctuation ----

# Google: delete NUL, U+FFFD and Cc/Cf characters, turn \t \n \r and Zs into spaces, put
# spaces around CJK ideographs, then split on whitespace (``str.split``). ``str.split`` on the
# raw line splits at the same places, except at seven characters it counts as whitespace but
# Google deletes (category Cc: "a\x0bb" is the one word "ab"), so those go first. (Zl and Zp,
# U+2028/U+2029, are kept by Google's cleaning and then split on by its ``str.split``; the
# tests check these facts for every code point.) Whatever else Google deletes or spaces out
# lies inside a chunk and is handled there.
_DELETED_SEPARATORS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")

# In a pure-ASCII chunk, Google's cleaning deletes the control characters (Cc); ASCII
# lowercasing stays ASCII and makes no accents; punctuation is every other non-alphanumeric
# character.
_ASCII_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_ASCII_WORDS = re.compile("[0-9A-Za-z]+|[^0-9A-Za-z]")

# Google's CJK ranges (fixed code point ranges, not a Unicode property).
_CJK = re.compile(
    "([\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
    "\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f])"
)


def is_chinese_char(char: str) -> bool:
    """Google's ``_is_chinese_char`` of one character: in the CJK Unified Ideographs blocks, which
    ``BasicTokenizer`` makes words of their own (Hangul, kana and the like are not)."""
    return _CJK.fullmatch(char) is not None


class _UnicodeClasses:
    """Google's character predicates over all of Unicode, as compiled regex character classes.

    Building them takes ~0.1 s (a pass over every code point), once per process; until a
    tokenizer has met many non-ASCII chunks it uses ``_CharClasses`` instead (see
    ``BasicTokenizer.per_character_chunks``). Both have the methods ``delete``, ``strip_marks``
    and ``split_words``.
    """

    def __init__(self):
        deleted, marks, punctuation = [], [], []
        start = 0
        # One pass over this Python's Unicode database, by runs of equal category (~0.1 s, once).
        categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
        for category, run in itertools.groupby(categories):
            end = start + len(list(run))
            if category in ("Cc", "Cf"):
                deleted.append((start, end - 1))
            elif category == "Mn":
                marks.append((start, end - 1))
            elif category.startswith("P"):
                punctuation.append((start, end - 1))
            start = end
        # _clean_text: NUL (also Cc) and U+FFFD go too. \t \n \r are Cc but never inside a chunk.
        deleted.append((0xFFFD, 0xFFFD))
        # _is_punctuation: every non-alphanumeric printable ASCII character, besides P*.
        punctuation += [(33, 47), (58, 64), (91, 96), (123, 126)]
        self.deleted = re.compile(f"[{_char_class(deleted)}]")
        self.marks = re.compile(f"[{_char_class(marks)}]")
        punct = _char_class(punctuation)
        # _run_split_on_punc: each punctuation character alone, and the runs between them.
        self.words = re.compile(f"[{punct}]|[^{punct}]+")

    def delete(self, text: str) -> str:
        """``text`` without the characters Google's ``_clean_text`` deletes (Cc, Cf, U+FFFD)."""
        return self.deleted.sub("", text) if self.deleted.search(text) is not None else text

    def strip_marks(self, text: str) -> str:
        """``text`` without nonspacing marks (Mn), as Google's ``_run_strip_accents`` after NFD."""
        return self.marks.sub("", text)

    def split_words(self, text: str) -> list[str]:
        """Google's ``_run_split_on_punc``: each punctuation character alone, the runs between."""
        return self.words.findall(text)


_OTHER, _DELETED, _MARK, _PUNCTUATION = range(4)


def _char_kind(c: str) -> int:
    """Which of Google's predicates holds for one character (the same facts ``_UnicodeClasses``
    collects for every code point: categories are disjoint, so at most one does)."""
    category = unicodedata.category(c)
    if category in ("Cc", "Cf") or c == "\ufffd":
        return _DELETED
    if category == "Mn":
        return _MARK
    cp = ord(c)
    if category.startswith("P") or 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return _PUNCTUATION
    return _OTHER


class _CharClasses:
    """``_UnicodeClasses``'s operations, one character at a time: the category of each character
    is looked up when first met, so nothing is built up front. Slower per chunk than the regexes
    (~3 us on a word), for the first non-ASCII chunks of a tokenizer only."""

    def __init__(self):
        self._kinds = _BoundedCache(_char_kind, sys.maxunicode + 1)  # never evicts

    def delete(self, text: str) -> str:
        kinds = self._kinds
        return "".join([c for c in text if kinds[c] != _DELETED])

    def strip_marks(self, text: str) -> str:
        kinds = self._kinds
        return "".join([c for c in text if kinds[c] != _MARK])

    def split_words(self, text: str) -> list[str]:
        kinds = self._kinds
        words: list[str] = []
        start = 0
        for i, c in enumerate(text):
            if kinds[c] == _PUNCTUATION:
                if start < i:
                    words.append(text[start:i])
                words.append(c)
                start = i + 1
        if start < len(text):
            words.append(text[start:])
        return words


def _char_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(
        f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in sorted(ranges)
    )


@functools.lru_cache(maxsize=None)
def _unicode_classes() -> _UnicodeClasses:
    return _UnicodeClasses()


class _BoundedCache(dict):
    """A dict that computes a missing value with ``compute(key)`` and stores it.

    Lookups of cached keys are plain ``dict`` lookups in C (``__missing__`` runs only on a miss).
    Memory stays bounded on any corpus: when ``max_size`` entries are held, the older half (in
    insertion order) is dropped; the frequent keys among them come back on their next use. This
    costs nothing per hit, unlike an LRU's bookkeeping.
    """

    __slots__ = ("compute", "max_size")

    def __init__(self, compute: Callable, max_size: int):
        super().__init__()
        self.compute = compute
        self.max_size = max(1, max_size)

    def __missing__(self, key):
        value = self.compute(key)
        if len(self) >= self.max_size:
            for old in list(itertools.islice(self, (len(self) + 1) // 2)):
                self.pop(old, None)
        self[key] = value
        return value
