"""transformers' feature-extraction pipeline."""

from __future__ import annotations

import torch

from bertdetr.bert.pipelines.base import Pipeline


class FeatureExtractionPipeline(Pipeline):
    """transformers' ``FeatureExtractionPipeline``: the last layer at every token, [CLS] and [SEP]
    included, as nested lists [1][T][D], or with ``return_tensors=True`` a tensor [1, T, D] on the
    CPU. A literal [MASK] is the mask token, as transformers' tokenizer reads it."""

    def __init__(self, model_dir, device, return_tensors: bool = False):
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertModel

        self.model = BertModel.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.return_tensors = return_tensors

    @torch.no_grad()
    def one(self, text: str, return_tensors: bool | None = None):
        out = self.model(torch.tensor([self.encode(text).ids], device=self.device)).sequence_output.float().cpu()
        return out if (self.return_tensors if return_tensors is None else return_tensors) else out.tolist()
