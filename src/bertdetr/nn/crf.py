"""A linear-chain conditional random field (Lafferty, McCallum and Pereira 2001) over a sequence of
tag scores: pytorch-crf's ``CRF`` (kmkurn/pytorch-crf 0.7.2), which CLUENER2020's BERT+CRF baseline
copies into ``models/layers/crf.py``. The same parameters (``start_transitions``,
``end_transitions``, ``transitions`` from row tag to column tag, uniform in [-0.1, 0.1]), the same
log-likelihood (``forward``, with its ``_compute_score`` and ``_compute_normalizer``) and the same
best path (``decode``, ``_viterbi_decode``); equal to both on their goldens
(``tests/data/nn/crf/make_goldens.py``).

Departures, none of which changes a result: batch first only (both references' ``batch_first=True``,
the way BERT's heads call it); the score of the gold path is gathered for all positions at once
rather than in a loop over them; ``decode`` returns a tensor [B,S] with 0 after each sequence's end
(CLUENER's layout, pytorch-crf returns lists) and keeps its backtrace on the device; the mask's
first position is not checked (both references read the device for that on every call: here it is
the caller's contract, ``BertCrfForNer`` always tags [CLS] there). The default ``reduction`` is
CLUENER's "mean" (pytorch-crf's is "sum").

The two recursions over positions (the forward algorithm and Viterbi) are Python loops: under
``torch.compile`` they run eager (``torch.compiler.disable``), as a loop over a dynamic length would
otherwise compile a graph per length.

Dimension letters: B batch, S sequence positions, K tags.
"""

from __future__ import annotations

import torch
from torch import nn

from bertdetr.errors import BertDetrError

REDUCTIONS = ("none", "sum", "mean", "token_mean")


class CRF(nn.Module):
    """Tag transition scores and the likelihood of tag sequences under them.

    ``forward(emissions [B,S,K], tags [B,S] int, mask [B,S] | None, reduction) -> llh``: the log
    likelihood of each tag sequence, [B] with ``reduction="none"``, else its sum, mean over the
    batch, or sum over the tagged positions. ``decode(emissions, mask) -> [B,S]``: the best tag
    sequence of each row (0 where the mask is off). ``mask`` is 1 on a prefix of each row (its first
    position on), all ones when None.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags <= 0:
            raise BertDetrError(f"a CRF needs at least one tag, got {num_tags}")
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-0.1, 0.1], as both references."""
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _validate(self, emissions: torch.Tensor, tags: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise BertDetrError(f"CRF emissions must be [B, S, {self.num_tags}], got {list(emissions.shape)}")
        for name, t in (("tags", tags), ("mask", mask)):
            if t is not None and t.shape != emissions.shape[:2]:
                raise BertDetrError(f"CRF {name} must be [B, S] = {list(emissions.shape[:2])}, got {list(t.shape)}")

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        if reduction not in REDUCTIONS:
            raise BertDetrError(f"CRF reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self._validate(emissions, tags, mask)
        mask = torch.ones_like(tags, dtype=torch.bool) if mask is None else mask.bool()
        llh = self._compute_score(emissions, tags, mask) - self._compute_normalizer(emissions, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum()

    def _compute_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The score of each row's tag path [B]: start, emissions and transitions while the mask is
        on, end at its last position on."""
        on = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B,S]
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B,S-1]
        score = self.start_transitions[tags[:, 0]] + emitted[:, 0] + ((moved + emitted[:, 1:]) * on[:, 1:]).sum(1)
        seq_ends = (mask.long().sum(1) - 1).clamp(min=0)
        return score + self.end_transitions[tags.gather(1, seq_ends.unsqueeze(1)).squeeze(1)]

    @torch.compiler.disable
    def _compute_normalizer(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log of the sum over all tag paths of exp(score) [B]: the forward algorithm."""
        score = self.start_transitions + emissions[:, 0]  # [B,K]: paths ending in each tag so far
        for i in range(1, emissions.shape[1]):
            # [B,K,K]: a path ending in row tag, moved to column tag, emitting it
            next_score = torch.logsumexp(score.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1), dim=1)
            score = torch.where(mask[:, i].unsqueeze(1), next_score, score)
        return torch.logsumexp(score + self.end_transitions, dim=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The most likely tag sequence of each row [B,S] (Viterbi), 0 where ``mask`` is off."""
        self._validate(emissions, None, mask)
        mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device) if mask is None \
            else mask.bool()
        return self._viterbi_decode(emissions, mask)

    @torch.compiler.disable
    def _viterbi_decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, S, K = emissions.shape
        score = self.start_transitions + emissions[:, 0]  # [B,K]: the best path ending in each tag so far
        itself = torch.arange(K, device=emissions.device).expand(B, K)
        history = []  # [B,K] per position after the first: the tag each tag's best path came from
        for i in range(1, S):
            next_score, indices = (score.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1)).max(dim=1)
            on = mask[:, i].unsqueeze(1)
            score = torch.where(on, next_score, score)
            # past a row's end each tag comes from itself, so the backtrace from the last position
            # carries the best final tag back to the row's end unchanged (the references scatter it there)
            history.append(torch.where(on, indices, itself))
        best = (score + self.end_transitions).argmax(dim=1)  # [B]
        path = [best]
        for indices in reversed(history):
            best = indices.gather(1, best.unsqueeze(1)).squeeze(1)
            path.append(best)
        path.reverse()
        return torch.where(mask, torch.stack(path, dim=1), 0)


__all__ = ["CRF", "REDUCTIONS"]
