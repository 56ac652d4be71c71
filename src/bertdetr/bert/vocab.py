"""Training a WordPiece vocabulary in Google's ``vocab.txt`` layout (missing from Google's release).

The pieces are learned by the Rust ``tokenizers`` WordPiece trainer, but on words produced by our
own ``BasicTokenizer`` (Google's cleaning, lowercasing/accent stripping and punctuation split), so
the vocabulary is learned on exactly the words ``FullTokenizer`` will later split into pieces.

The file is laid out as Google's released vocabularies are::

    [PAD]  [unused0] ... [unused{k-1}]  [UNK]  [CLS]  [SEP]  [MASK]  pieces...

(bert-base-uncased has ``[PAD]`` at 0, 99 ``[unused*]`` slots, ``[UNK]`` at 100, ``[CLS]`` 101,
``[SEP]`` 102, ``[MASK]`` 103; its remaining ``[unused*]`` slots come after ``[MASK]``, which we do
not reproduce: all unused slots sit before ``[UNK]``.) The ``[unused*]`` entries are the slots
Google reserves for users to repurpose as new tokens when fine-tuning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from bertdetr.bert.tokenization import BasicTokenizer, convert_to_unicode
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output, check_writable, expand_inputs

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
    """Minimum pair frequency for the trainer to merge two pieces."""
    limit_alphabet: int = 1000
    """At most this many distinct characters become pieces (rarer ones end up ``[UNK]``)."""

    def __post_init__(self):
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
        if self.limit_alphabet < 1:
            raise BertDetrError(f"limit_alphabet must be >= 1, got {self.limit_alphabet}")


def _words(files: list[str], basic: BasicTokenizer) -> Iterator[str]:
    for path in files:
        with open(path, "rb") as f:
            for raw in f:
                words = basic.tokenize(convert_to_unicode(raw))
                if words:
                    yield " ".join(words)


def train_vocab(files: list[str], config: VocabConfig) -> list[str]:
    """Learns WordPiece pieces from ``files`` and returns the full vocabulary in Google's layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    # Words are already split by BasicTokenizer; the trainer must not split them differently.
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordPieceTrainer(
        vocab_size=config.vocab_size - config.num_unused,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=config.limit_alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(_words(files, BasicTokenizer(config.do_lower_case)), trainer=trainer)
    learned = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    pieces = [token for token, _ in learned if token not in SPECIAL_TOKENS]
    if not pieces:
        raise BertDetrError(f"no words found in the input files: {', '.join(files)}")
    unused = [f"[unused{i}]" for i in range(config.num_unused)]
    return ["[PAD]", *unused, "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]


def write_vocab(tokens: list[str], path: str | os.PathLike) -> None:
    """Writes one token a line (UTF-8), atomically."""
    with atomic_output(path, "wb") as f:
        f.write("".join(t + "\n" for t in tokens).encode("utf-8"))


def build_vocab(input_patterns: Iterable[str], output: str | os.PathLike, config: VocabConfig) -> list[str]:
    """Checks inputs and output, trains, writes ``output``; returns the vocabulary."""
    files = expand_inputs(input_patterns)
    check_writable(output)
    tokens = train_vocab(files, config)
    write_vocab(tokens, output)
    return tokens
