"""Training a WordPiece vocabulary in Google's ``vocab.txt`` layout (missing from Google's release).

The pieces are learned by the Rust ``tokenizers`` BPE trainer, but on words produced by our own
``BasicTokenizer`` (Google's cleaning, lowercasing/accent stripping and punctuation split), so the
vocabulary is learned on exactly the words ``FullTokenizer`` will later split into pieces.

Why BPE with a word-start marker rather than ``tokenizers``' own ``WordPieceTrainer`` (which is the
same BPE trainer with a ``##`` continuation prefix): that trainer numbers the ``##x`` pieces in the
iteration order of a Rust hash map, which is seeded at random in every process, and breaks ties
between equally frequent merges by those numbers, so two runs on the same corpus give different
vocabularies. Marking the *start* of each word instead (a control character, which Google's
cleaning removes from any text, so it never collides with a real character) keeps every initial
symbol in the trainer's sorted alphabet: the merges, and so the vocabulary, are the same on every
run. Pieces beginning with the marker become word-initial pieces; every other piece becomes a
``##`` continuation piece, which is exactly WordPiece's split.

The alphabet: every character seen at least ``min_frequency`` times (counted in a first pass over
the words), whatever the script: a Chinese corpus keeps its thousands of characters (the trainer's
own ``limit_alphabet``, formerly 1000 here, made rarer ones ``[UNK]``). Each kept character is in the
vocabulary as a word start and as a ``##`` piece, so no word made of kept characters becomes
``[UNK]``; Chinese characters once only, since ``BasicTokenizer`` makes each of them a word of its
own and the ``##`` form could never be used. A character seen less often than ``min_frequency``
cannot be in any learned piece either (every pair holding it is as rare) and is ``[UNK]``.

The file is laid out as Google's released vocabularies are::

    [PAD]  [unused0] ... [unused{k-1}]  [UNK]  [CLS]  [SEP]  [MASK]  pieces...

(bert-base-uncased has ``[PAD]`` at 0, 99 ``[unused*]`` slots, ``[UNK]`` at 100, ``[CLS]`` 101,
``[SEP]`` 102, ``[MASK]`` 103; its remaining ``[unused*]`` slots come after ``[MASK]``, which we do
not reproduce: all unused slots sit before ``[UNK]``.) The ``[unused*]`` entries are the slots
Google reserves for users to repurpose as new tokens when fine-tuning.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from bertdetr.bert.data.tokenization import BasicTokenizer, is_chinese_char
from bertdetr.errors import BertDetrError, require_field_types
from bertdetr.fileio import TextCheck, atomic_output, check_not_an_input, check_writable, expand_inputs

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class VocabConfig:
    vocab_size: int = 30522
    """Total entries in the written file: specials, ``[unused*]`` slots and learned pieces."""
    do_lower_case: bool = True
    """Lowercase and strip accents before learning (an uncased model), as ``FullTokenizer``."""
    num_unused: int = 99
    """``[unused*]`` slots between ``[PAD]`` and ``[UNK]`` (99 as bert-base-uncased)."""
    min_frequency: int = 2
    """A character is kept, and two pieces merged, only if seen at least this often (rarer
    characters become ``[UNK]``)."""
    limit_alphabet: int | None = None
    """At most this many characters kept, the most frequent (None: every character seen at least
    ``min_frequency`` times, however many: a Chinese corpus needs thousands)."""

    def __post_init__(self):
        require_field_types(self, "")
        if self.num_unused < 0:
            raise BertDetrError(f"num_unused must be >= 0, got {self.num_unused}")
        minimum = len(SPECIAL_TOKENS) + self.num_unused + 1
        if self.vocab_size < minimum:
            raise BertDetrError(
                f"vocab_size {self.vocab_size} is too small: the specials and {self.num_unused} "
                f"[unused*] slots alone take {minimum - 1} entries"
            )
        if self.min_frequency < 1:
            raise BertDetrError(f"min_frequency must be >= 1, got {self.min_frequency}")
        if self.limit_alphabet is not None and self.limit_alphabet < 1:
            raise BertDetrError(f"limit_alphabet must be >= 1, got {self.limit_alphabet}")


# Marks the start of each word for the trainer (a Cc character: BasicTokenizer drops it from text).
_WORD_START = "\x01"


def _marked_words(files: list[str], basic: BasicTokenizer) -> Iterator[str]:
    for path in files:
        for text in text_blocks(path):
            words = basic.tokenize(text)
            if words:
                yield " ".join(_WORD_START + w for w in words)


_BLOCK = 1 << 20


def text_blocks(path: str, block: int = _BLOCK) -> Iterator[str]:
    """A text file in pieces of about ``block`` bytes, cut at whitespace (no word is split; a run of
    that many bytes without any is cut between two characters), decoded and checked as make-data
    checks its input (``TextCheck``: UTF-8 with a few stray bytes dropped, no NUL): the words of the
    file, whatever the length of its lines, in bounded memory."""
    check = TextCheck(path)
    line, rest = 1, b""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise BertDetrError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        while True:
            chunk = f.read(block)
            data = rest + chunk
            if not chunk:
                if data:
                    yield check.decode(data, line)
                break
            cut = max(data.rfind(b" "), data.rfind(b"\n"), data.rfind(b"\t"), data.rfind(b"\r")) + 1
            if cut == 0:  # no whitespace: cut before the last character's first byte
                cut = len(data) - 1
                while cut > 0 and data[cut] & 0xC0 == 0x80:
                    cut -= 1
                cut = cut or len(data)  # no character starts in it at all: not text, TextCheck says so
            piece, rest = data[:cut], data[cut:]
            yield check.decode(piece, line)
            line += piece.count(b"\n")
    check.finish()


def kept_characters(files: list[str], config: VocabConfig) -> list[str]:
    """The alphabet: the characters of the corpus's words (after ``BasicTokenizer``) seen at least
    ``min_frequency`` times, at most ``limit_alphabet`` of them (the most frequent), sorted."""
    counts: Counter = Counter()
    for line in _marked_words(files, BasicTokenizer(config.do_lower_case)):
        counts.update(line)
    counts.pop(_WORD_START, None)
    counts.pop(" ", None)
    kept = [c for c, n in counts.items() if n >= config.min_frequency]
    if config.limit_alphabet is not None and len(kept) > config.limit_alphabet:
        kept = sorted(kept, key=lambda c: (-counts[c], c))[:config.limit_alphabet]
    return sorted(kept)


def train_vocab(files: list[str], config: VocabConfig) -> list[str]:
    """Learns WordPiece pieces from ``files`` and returns the full vocabulary in Google's layout:
    specials and unused slots, the alphabet as word-initial pieces, the alphabet as ``##`` pieces
    (but for Chinese characters), then the learned pieces, most frequent merge first (the same
    result on every run)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = kept_characters(files, config)
    if not alphabet:
        raise BertDetrError(f"no words found in the input files (or none of their characters is seen "
                            f"{config.min_frequency} times): {', '.join(files)}")
    budget = config.vocab_size - config.num_unused - len(SPECIAL_TOKENS)
    pieces = [*alphabet, *("##" + c for c in alphabet if not is_chinese_char(c))]
    if len(pieces) > budget:
        raise BertDetrError(
            f"vocab_size {config.vocab_size} is too small for this corpus: at least "
            f"{len(pieces) + config.num_unused + len(SPECIAL_TOKENS)} entries, as its {len(alphabet)} characters "
            f"seen at least {config.min_frequency} times alone need {len(pieces)} (as word starts and as ##, Chinese "
            f"ones once) besides the {len(SPECIAL_TOKENS)} special tokens and {config.num_unused} [unused] slots; "
            "raise --vocab-size, or keep fewer characters with --min-frequency or --limit-alphabet")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    # Words are already split by BasicTokenizer; the trainer must not split them differently.
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        # Room for the alphabet's second form and the marker, trimmed back to the budget below.
        vocab_size=len(SPECIAL_TOKENS) + budget + len(alphabet) + 1,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # exactly the kept characters and the marker: the trainer keeps its most frequent
        # characters, and those given here count as the most frequent of all
        initial_alphabet=[*alphabet, _WORD_START],
        limit_alphabet=len(alphabet) + 1,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_marked_words(files, BasicTokenizer(config.do_lower_case)), trainer=trainer)
    learned = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
               if t not in SPECIAL_TOKENS and t != _WORD_START]
    seen = set(pieces)
    for token in learned:
        piece = token[1:] if token.startswith(_WORD_START) else "##" + token
        if piece not in seen and piece != "##" and len(token) > 1:
            seen.add(piece)
            pieces.append(piece)
    pieces = pieces[:budget]  # drop the rarest merges
    unused = [f"[unused{i}]" for i in range(config.num_unused)]
    return ["[PAD]", *unused, "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]


def write_vocab(tokens: list[str], path: str | os.PathLike) -> None:
    """Writes one token a line (UTF-8), atomically."""
    with atomic_output(path, "wb") as f:
        f.write("".join(t + "\n" for t in tokens).encode("utf-8"))


def build_vocab(input_patterns: Iterable[str], output: str | os.PathLike, config: VocabConfig) -> list[str]:
    """Checks inputs and output, trains, writes ``output``; returns the vocabulary."""
    files = expand_inputs(input_patterns)
    check_not_an_input(output, files)
    check_writable(output)
    tokens = train_vocab(files, config)
    write_vocab(tokens, output)
    return tokens
