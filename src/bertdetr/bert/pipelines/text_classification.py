"""transformers' text-classification pipeline."""

from __future__ import annotations

import numpy as np
import torch

from bertdetr.bert.pipelines.base import Pipeline, softmax
from bertdetr.errors import BertDetrError


class TextClassificationPipeline(Pipeline):
    """transformers' ``TextClassificationPipeline``: the best label and its probability (softmax; a
    sigmoid for a one-label model), or with ``top_k`` (an int, or None for all) the labels by score;
    ``function_to_apply`` "softmax", "sigmoid" or "none" (the logits). A pair as ``{"text",
    "text_pair"}``. Its return shapes, quirks included: without ``top_k`` in the call a text gives
    ``[{"label", "score"}]``, a pair or a list one dict each; with it a text gives its list of dicts."""

    def __init__(self, model_dir, device, top_k: int | None | str = "", function_to_apply: str | None = None):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForSequenceClassification

        self.model = BertForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.top_k, self.function_to_apply = top_k, function_to_apply

    @torch.no_grad()
    def scores(self, text, function_to_apply: str | None) -> np.ndarray:
        """[L] scores of one text or pair."""
        enc = self.encode(text["text"], text.get("text_pair")) if isinstance(text, dict) else self.encode(text)
        ids = torch.tensor([enc.ids], device=self.device)
        logits = self.model(input_ids=ids, segment_ids=torch.tensor([enc.type_ids], device=self.device))["logits"]
        scores = logits[0].float().cpu().numpy()
        how = (function_to_apply or ("sigmoid" if len(scores) == 1 else "softmax")).lower()
        if how == "sigmoid":
            return 1 / (1 + np.exp(-scores))
        if how == "softmax":
            return softmax(scores)
        if how == "none":
            return scores
        raise BertDetrError(f"function_to_apply must be softmax, sigmoid or none, got {function_to_apply!r}")

    def __call__(self, inputs, **kwargs):
        unknown = set(kwargs) - {"top_k", "function_to_apply"}
        if unknown:
            raise BertDetrError(f"text-classification takes top_k and function_to_apply, not {', '.join(sorted(unknown))}")
        top_k = kwargs.get("top_k", self.top_k)
        how = kwargs.get("function_to_apply", self.function_to_apply)
        if not (top_k is None or isinstance(top_k, int)) and top_k != "":
            raise BertDetrError(f"top_k must be an integer or None, got {top_k!r}")
        labels = self.model.labels

        def post(scores):
            if top_k == "":  # transformers' legacy form: the best label alone
                best = int(scores.argmax())
                return {"label": labels[best], "score": float(scores[best])}
            rows = sorted(({"label": labels[i], "score": float(v)} for i, v in enumerate(scores)),
                          key=lambda row: row["score"], reverse=True)
            return rows if top_k is None else rows[:top_k]

        if isinstance(inputs, (list, tuple)):
            return [post(self.scores(x, how)) for x in inputs]
        result = post(self.scores(inputs, how))
        # transformers: a lone text (not a pair) without top_k in the call comes back in a list
        return [result] if isinstance(inputs, str) and "top_k" not in kwargs else result
