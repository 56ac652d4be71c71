"""transformers' fill-mask pipeline."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from bertdetr.bert.inference import MASK
from bertdetr.bert.pipelines.base import Pipeline, decode
from bertdetr.errors import BertDetrError


class FillMaskPipeline(Pipeline):
    """transformers' ``FillMaskPipeline``: for each [MASK], the ``top_k`` tokens by probability, or
    only among ``targets`` (a word or a list: each one's id if it is in the vocabulary, else its
    first WordPiece, with a warning, as transformers does)."""

    def __init__(self, model_dir, device, top_k: int = 5, targets: str | Sequence[str] | None = None):
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertForPreTraining

        self.model = BertForPreTraining.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.top_k, self.targets = top_k, targets
        self.inv = {i: t for t, i in self.tokenizer.vocab.items()}

    def target_ids(self, targets: str | Sequence[str]) -> list[int]:
        """transformers' ``get_target_ids``: the ids of ``targets``, duplicates dropped (its order:
        ``list(set(...))``, which decides ties)."""
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            if target in self.tokenizer.vocab:
                ids.append(self.tokenizer.vocab[target])
                continue
            pieces = self.tokenizer.tokenize(target)
            if not pieces:
                warnings.warn(f"target {target!r} is not in the vocabulary and makes no token: ignored", stacklevel=3)
                continue
            warnings.warn(f"target {target!r} is not in the vocabulary: its first piece {pieces[0]!r} is scored",
                          stacklevel=3)
            ids.append(self.tokenizer.vocab[pieces[0]])
        if not ids:
            raise BertDetrError(f"fill-mask: none of the targets {targets!r} makes a token")
        return list(set(ids))

    @torch.no_grad()
    def one(self, text: str, top_k: int | None = None, candidates: list[int] | None = None):
        """The predictions for one text; ``candidates``: ``target_ids``' result, or None."""
        top_k = top_k or self.top_k
        if MASK not in text:
            raise BertDetrError(f"the text has no {MASK} to fill: {text!r}")
        limit = self.model.config.max_position_embeddings
        ids = self.encode(text).ids
        mask_id = self.tokenizer.vocab[MASK]
        positions = [i for i, t in enumerate(ids) if t == mask_id]
        if not positions:
            raise BertDetrError(f"every {MASK} was cut off: the text is longer than the model's {limit} positions")
        x = torch.tensor([ids], device=self.device)
        logits = self.model(input_ids=x, masked_lm_positions=torch.tensor([positions], device=self.device))
        # transformers: the softmax over the whole vocabulary, then the targets' columns
        probs = logits["masked_lm_logits"][0].float().softmax(-1).cpu()
        if candidates is not None:
            probs, top_k = probs[:, candidates], min(top_k, len(candidates))
        vocab = self.tokenizer.vocab
        pad = vocab.get("[PAD]")
        # transformers decodes the sequence skipping its special tokens (one mask) or only padding
        special = {vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", MASK) if t in vocab} \
            if len(positions) == 1 else {pad}
        out = []
        for k, pos in enumerate(positions):
            values, indices = probs[k].topk(top_k)
            rows = []
            for score, token in zip(values.tolist(), indices.tolist()):
                token = candidates[token] if candidates is not None else token
                filled = list(ids)
                filled[pos] = token
                words = [self.inv[t] for t in filled if t not in special]
                rows.append({"score": score, "token": token, "token_str": decode([self.inv[token]]),
                             "sequence": decode(words)})
            out.append(rows)
        return out[0] if len(out) == 1 else out

    def __call__(self, inputs, top_k: int | None = None, targets: str | Sequence[str] | None = None):
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise BertDetrError(f"top_k must be an integer >= 1, got {top_k!r}")
        targets = self.targets if targets is None else targets
        candidates = None if targets is None else self.target_ids(targets)
        # transformers returns a one-text list's result unwrapped
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            return self.one(inputs[0], top_k, candidates)
        return super().__call__(inputs, top_k=top_k, candidates=candidates)
