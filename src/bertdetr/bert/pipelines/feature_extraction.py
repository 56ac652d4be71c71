"""transformers' feature-extraction pipeline."""

from __future__ import annotations

from bertdetr.bert.pipelines.base import Pipeline, check_batch_size, check_truncation
from bertdetr.errors import BertDetrError


class FeatureExtractionPipeline(Pipeline):
    """transformers' ``FeatureExtractionPipeline``: the last layer at every token, [CLS] and [SEP]
    included, as nested lists [1][T][D], or with ``return_tensors=True`` a tensor [1, T, D] on the
    CPU. A literal [MASK] is the mask token, as transformers' tokenizer reads it. ``truncation``:
    True only (``check_truncation``)."""

    task = "feature-extraction"

    def __init__(self, model_dir, device, return_tensors: bool = False, truncation: bool | str = True):
        check_truncation(self.task, truncation)
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertModel

        self.model = BertModel.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.return_tensors = return_tensors

    def __call__(self, inputs, return_tensors: bool | None = None, batch_size: int | None = None,
                 truncation: bool | str = True, **unknown):
        if unknown:  # a BertDetrError as the other pipelines', not Python's TypeError
            raise BertDetrError(f"{self.task} takes return_tensors, truncation and batch_size, not "
                                f"{', '.join(sorted(unknown))}")
        check_truncation(self.task, truncation)
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        as_tensors = self.return_tensors if return_tensors is None else return_tensors
        texts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        encodings = [self.encode(text) for text in texts]

        def forward(ids, mask, segments, members):
            out = self.model(ids, token_type_ids=segments, attention_mask=mask).sequence_output.float().cpu()
            return [out[row:row + 1, :len(encodings[i].ids)] for row, i in enumerate(members)]

        results = [x if as_tensors else x.tolist() for x in self.forward_batches(encodings, batch_size, forward)]
        return results if isinstance(inputs, (list, tuple)) else results[0]
