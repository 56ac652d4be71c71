"""transformers' fill-mask pipeline."""

from __future__ import annotations

from typing import Sequence

import torch

from bertdetr.bert.inference import MASK
from bertdetr.bert.pipelines.base import Pipeline, check_batch_size, decode
from bertdetr.errors import BertDetrError, warn_at_caller


class FillMaskPipeline(Pipeline):
    """transformers' ``FillMaskPipeline``: for each [MASK], the ``top_k`` tokens by probability, or
    only among ``targets`` (a word or a list: each one's id if it is in the vocabulary, else its
    first WordPiece, with a warning, as transformers does)."""

    task = "fill-mask"

    def __init__(self, model_dir, device, top_k: int = 5, targets: str | Sequence[str] | None = None):
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertForPreTraining

        self.model = BertForPreTraining.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.top_k, self.targets = _check_top_k(top_k), _check_targets(targets)
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
                warn_at_caller(f"target {target!r} is not in the vocabulary and makes no token: ignored")
                continue
            warn_at_caller(f"target {target!r} is not in the vocabulary: its first piece {pieces[0]!r} is scored")
            ids.append(self.tokenizer.vocab[pieces[0]])
        if not ids:
            raise BertDetrError(f"fill-mask: none of the targets {targets!r} makes a token")
        return list(set(ids))

    def preprocess(self, text: str):
        """The encoding of one text with a [MASK] the model reads."""
        if not isinstance(text, str) or MASK not in text:
            raise BertDetrError(f"the text has no {MASK} to fill: {text!r}")
        enc = self.encode(text)
        if self.tokenizer.vocab[MASK] not in enc.ids:
            raise BertDetrError(f"every {MASK} was cut off: the text is longer than the model's "
                                f"{self.model.config.max_position_embeddings} positions")
        return enc

    def postprocess(self, ids: list[int], positions: list[int], probs: torch.Tensor, top_k: int,
                    candidates: list[int] | None):
        """transformers' ``postprocess``: the top_k of each [MASK] (probs [M, V]: the softmax over
        the whole vocabulary, then the targets' columns), the sequence each fills."""
        if candidates is not None:
            probs = probs[:, candidates]
        # at most every candidate (transformers caps top_k so at its targets; the CLI at the vocabulary):
        # more is no error, only all there is, as torch's topk would otherwise refuse
        top_k = min(top_k, probs.shape[-1])
        vocab = self.tokenizer.vocab
        # transformers decodes the sequence skipping its special tokens (one mask) or only padding
        special = {vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", MASK) if t in vocab} \
            if len(positions) == 1 else {vocab.get("[PAD]")}
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

    def __call__(self, inputs, top_k: int | None = None, targets: str | Sequence[str] | None = None,
                 batch_size: int | None = None, **unknown):
        if unknown:  # a BertDetrError as the other pipelines', not Python's TypeError
            raise BertDetrError(f"{self.task} takes top_k, targets and batch_size, not {', '.join(sorted(unknown))}")
        top_k = None if top_k is None else _check_top_k(top_k)
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        targets = self.targets if targets is None else _check_targets(targets)
        candidates = None if targets is None else self.target_ids(targets)
        texts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        encodings = [self.preprocess(text) for text in texts]
        mask_id = self.tokenizer.vocab[MASK]
        positions = [[i for i, t in enumerate(enc.ids) if t == mask_id] for enc in encodings]

        def forward(ids, mask, segments, members):
            where = torch.zeros(len(members), max(len(positions[i]) for i in members), dtype=torch.long)
            for row, i in enumerate(members):
                where[row, :len(positions[i])] = torch.tensor(positions[i])
            logits = self.model(input_ids=ids, input_mask=mask, segment_ids=segments,
                                masked_lm_positions=where.to(self.device))["masked_lm_logits"]
            probs = logits.float().softmax(-1).cpu()
            return [probs[row, :len(positions[i])] for row, i in enumerate(members)]

        probs = self.forward_batches(encodings, batch_size, forward)
        results = [self.postprocess(enc.ids, pos, p, top_k or self.top_k, candidates)
                   for enc, pos, p in zip(encodings, positions, probs)]
        # transformers returns a one-text list's result unwrapped
        return results if isinstance(inputs, (list, tuple)) and len(inputs) != 1 else results[0]


def _check_top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:  # (True is an int to Python)
        raise BertDetrError(f"top_k must be an integer >= 1, got {top_k!r}")
    return top_k


def _check_targets(targets):
    """``targets`` as transformers takes them: None, a word, or a list (tuple) of words."""
    if targets is None or isinstance(targets, str):
        return targets
    if not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) for t in targets):
        raise BertDetrError(f"targets must be a word or a non-empty list of words, got {targets!r:.80}")
    return targets
