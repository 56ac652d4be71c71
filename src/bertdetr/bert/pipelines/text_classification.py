"""transformers' text-classification pipeline."""

from __future__ import annotations

import numpy as np

from bertdetr.bert.pipelines.base import Pipeline, check_batch_size, check_truncation, softmax
from bertdetr.errors import BertDetrError


class TextClassificationPipeline(Pipeline):
    """transformers' ``TextClassificationPipeline``: the best label and its probability (softmax; a
    sigmoid for a one-label or a multi-label model, the logit itself for a regression one, by the
    folder's ``problem_type`` as transformers reads it), or with ``top_k`` (an int, or None for all) the labels by score;
    ``function_to_apply`` "softmax", "sigmoid" or "none" (the logits). A pair as ``{"text",
    "text_pair"}``. Its return shapes, quirks included: without ``top_k`` in the call a text gives
    ``[{"label", "score"}]``, a pair or a list one dict each; with it a text gives its list of dicts.
    ``truncation``: True only (``check_truncation``)."""

    task = "text-classification"

    def __init__(self, model_dir, device, top_k: int | None | str = "", function_to_apply: str | None = None,
                 truncation: bool | str = True):
        check_truncation(self.task, truncation)
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForSequenceClassification

        self.model = BertForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.top_k, self.function_to_apply = top_k, function_to_apply
        self.problem_type = _problem_type(model_dir)

    def apply(self, logits: np.ndarray, function_to_apply: str | None) -> np.ndarray:
        """[L] scores from one input's logits [L]: ``function_to_apply``, or transformers' default
        (none for regression; sigmoid for multi-label or one label; else softmax)."""
        if function_to_apply is None:
            function_to_apply = {"regression": "none", "multi_label_classification": "sigmoid"}.get(
                self.problem_type, "sigmoid" if len(logits) == 1 else "softmax")
        how = function_to_apply.lower() if isinstance(function_to_apply, str) else function_to_apply
        if how == "sigmoid":
            return 1 / (1 + np.exp(-logits))
        if how == "softmax":
            return softmax(logits)
        if how == "none":
            return logits
        raise BertDetrError(f"function_to_apply must be softmax, sigmoid or none, got {function_to_apply!r}")

    def __call__(self, inputs, **kwargs):
        unknown = set(kwargs) - {"top_k", "function_to_apply", "truncation", "batch_size"}
        if unknown:
            raise BertDetrError("text-classification takes top_k, function_to_apply, truncation and batch_size, not "
                                f"{', '.join(sorted(unknown))}")
        check_truncation(self.task, kwargs.get("truncation", True))
        top_k = kwargs.get("top_k", self.top_k)
        how = kwargs.get("function_to_apply", self.function_to_apply)
        self.apply(np.zeros(2, np.float32), how)  # a bad function fails before the model runs
        batch_size = check_batch_size(kwargs.get("batch_size", self.batch_size))
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

        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for x in items:
            if isinstance(x, dict) and ("text" not in x or set(x) - {"text", "text_pair"}):
                raise BertDetrError(f"text-classification: a pair is {{\"text\", \"text_pair\"}}, got keys {sorted(x)}")
        encodings = [self.encode(x["text"], x.get("text_pair")) if isinstance(x, dict) else self.encode(x)
                     for x in items]

        def forward(ids, mask, segments, members):
            logits = self.model(input_ids=ids, input_mask=mask, segment_ids=segments)["logits"]
            return list(logits.float().cpu().numpy())

        results = [post(self.apply(logits, how)) for logits in self.forward_batches(encodings, batch_size, forward)]
        if isinstance(inputs, (list, tuple)):
            return results
        # transformers: a lone text (not a pair) without top_k in the call comes back in a list
        return [results[0]] if isinstance(inputs, str) and "top_k" not in kwargs else results[0]


def _problem_type(model_dir: str) -> str | None:
    """transformers' ``config.problem_type`` of the folder ("regression", "multi_label_classification",
    "single_label_classification"), or None (ours, and transformers' unless set)."""
    import json
    import os

    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            kind = json.load(f).get("problem_type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None
