"""What the pipelines share: the model folder's tokenizer, transformers' decoding of pieces, the
``tokenizers`` WordPiece that gives character offsets."""

from __future__ import annotations

from typing import Sequence

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


class Pipeline:
    """A task's pipeline: ``one(input, **options)`` per input; ``self.model`` set by each task."""

    def __init__(self, model_dir: str, device: torch.device):
        self.model_dir, self.device = model_dir, device
        self.tokenizer = load_tokenizer(model_dir)
        self.fast = fast_tokenizer(self.tokenizer)

    def encode(self, text: str, pair: str | None = None, max_length: int | None = None, **truncation):
        """``text`` (and ``pair``) as transformers' tokenizer encodes them: [CLS] text [SEP] (pair
        [SEP]), Google's pieces with character offsets, the special tokens written in a text read as
        themselves ("[MASK]"); cut to ``max_length`` tokens (default: the model's positions; [SEP]
        kept) by ``truncation`` (``tokenizers``' ``enable_truncation``: strategy, stride)."""
        self.fast.enable_truncation(max_length or self.model.config.max_position_embeddings, **truncation)
        try:
            return self.fast.encode(text, pair)
        finally:
            self.fast.no_truncation()

    def _check_vocab(self, config) -> None:
        if config.vocab_size != len(self.tokenizer.vocab):
            raise BertDetrError(f"{self.model_dir}: the vocabulary has {len(self.tokenizer.vocab)} entries, "
                                f"the model {config.vocab_size}")

    def __call__(self, inputs, **kwargs):
        """One input, or a list of them (a list of results)."""
        if isinstance(inputs, (list, tuple)):
            return [self.one(x, **kwargs) for x in inputs]
        return self.one(inputs, **kwargs)
