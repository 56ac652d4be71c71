"""What the pipelines share: the model folder's tokenizer, transformers' decoding of pieces, the
``tokenizers`` WordPiece that gives character offsets."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.inference import load_tokenizer
from bertdetr.errors import BertDetrError


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def decode(tokens: Sequence[str]) -> str:
    """transformers' ``BertTokenizer.decode``: the ``tokenizers`` WordPiece decoder with its
    clean-up (pieces glued, no space before . ? ! , and the English contractions)."""
    from tokenizers import decoders

    return decoders.WordPiece(prefix="##", cleanup=True).decode(list(tokens))


def fast_tokenizer(tokenizer: FullTokenizer):
    """The ``tokenizers`` WordPiece of the same vocabulary and casing (for character offsets)."""
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(dict(tokenizer.vocab), lowercase=tokenizer.do_lower_case,
                                  strip_accents=None if tokenizer.do_lower_case else False)


@functools.cache
def overflow_complete() -> bool:
    """Whether the installed ``tokenizers`` gives every window of a long text (its ``overflowing``):
    0.23.1 and 0.23.2 give the first two only. Probed once: 8 words in windows of 2 make 4."""
    from tokenizers import BertWordPieceTokenizer

    probe = BertWordPieceTokenizer({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5})
    probe.enable_truncation(4, stride=0)
    return len(probe.encode("a " * 8).overflowing) == 3


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise BertDetrError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def check_truncation(task: str, truncation) -> None:
    """transformers' ``truncation=`` (its tokenizer's, taken by its text-classification and
    feature-extraction pipelines). Ours always cut a text (a pair longest first) to the model's
    positions, which is transformers' ``truncation=True`` ("longest_first"): that is taken, as a
    no-op; anything else would be ignored silently, so it is refused."""
    if truncation is not True and truncation != "longest_first":
        raise BertDetrError(f"{task}: truncation={truncation!r} is not taken: a text is always cut to the model's "
                            "length (transformers' truncation=True or \"longest_first\")")


class Pipeline:
    """A task's pipeline, as transformers' are built: each input encoded (``encode``), the model run
    on them ``batch_size`` at a time (``forward_batches``), each output post-processed. ``self.model``
    is set by each task; ``batch_size`` (default 1, as transformers') by ``pipeline(...)`` or a call."""

    batch_size = 1
    task = "pipeline"

    def __init__(self, model_dir: str, device: torch.device):
        self.model_dir, self.device = model_dir, device
        self.tokenizer = load_tokenizer(model_dir)
        self.fast = fast_tokenizer(self.tokenizer)

    def _check_vocab(self, config) -> None:
        if config.vocab_size != len(self.tokenizer.vocab):
            raise BertDetrError(f"{self.model_dir}: the vocabulary has {len(self.tokenizer.vocab)} entries, "
                                f"the model {config.vocab_size}")

    def encode(self, text: str | list[str], pair: str | None = None, max_length: int | None = None,
               words: bool = False, **truncation):
        """``text`` (and ``pair``) as transformers' tokenizer encodes them: [CLS] text [SEP] (pair
        [SEP]), Google's pieces with character offsets, the special tokens written in a text read as
        themselves ("[MASK]"); cut to ``max_length`` tokens (default: the model's positions; [SEP]
        kept) by ``truncation`` (``tokenizers``' ``enable_truncation``: strategy, stride). ``words``:
        ``text`` is a list of words (transformers' ``is_split_into_words``), offsets within each word."""
        for x in (text, pair) if pair is not None else (text,):
            if not isinstance(x, str) and not (words and isinstance(x, list) and all(isinstance(w, str) for w in x)):
                raise BertDetrError(f"{self.task}: a text must be a string{' (or a list of words)' if words else ''}, "
                                    f"got {type(x).__name__} {x!r:.60}")
        self.fast.enable_truncation(max_length or self.model.config.max_position_embeddings, **truncation)
        try:
            enc = self.fast.encode(text, pair, is_pretokenized=words)
        finally:
            self.fast.no_truncation()
        if enc.overflowing and not overflow_complete():
            import tokenizers

            raise BertDetrError(f"{self.task}: this text is longer than one window, and tokenizers "
                                f"{tokenizers.__version__} gives only its first two windows (0.23.1 and 0.23.2 "
                                "do; transformers' pipelines then lose the rest): pip install -U tokenizers")
        return enc

    @torch.no_grad()
    def forward_batches(self, encodings: Sequence, batch_size: int, forward: Callable) -> list:
        """``forward(input_ids, input_mask, segment_ids, members)`` [b, T] each, on ``encodings``
        (``.ids``, ``.type_ids``) ``batch_size`` at a time, returning one output per member (their
        indices in ``encodings``). Rows of like length go together (sorted by length, as
        transformers does not: less padding), each batch padded to its longest ([PAD] 0) with
        ``input_mask`` None where no row is padded, so that a batch of one reads its row exactly as
        unbatched. The outputs come back in the encodings' order."""
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        outputs: list = [None] * len(encodings)
        for first in range(0, len(order), batch_size):
            members = order[first:first + batch_size]
            lengths = [len(encodings[i].ids) for i in members]
            ids = torch.zeros(len(members), max(lengths), dtype=torch.long)
            segments = torch.zeros_like(ids)
            for row, i in enumerate(members):
                ids[row, :lengths[row]] = torch.tensor(encodings[i].ids)
                segments[row, :lengths[row]] = torch.tensor(encodings[i].type_ids)
            mask = None
            if min(lengths) < max(lengths):
                mask = (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]).long().to(self.device)
            for i, out in zip(members, forward(ids.to(self.device), mask, segments.to(self.device), members)):
                outputs[i] = out
        return outputs
