"""BERT: tokenizer, pretraining data, model and pretraining (Google's original release, in PyTorch).

From Python as transformers' users call it (the names below are imported on first use, so
``bertdetr --help`` and the data tools do not pay for importing torch):

    from bertdetr.bert import BertModel, load_tokenizer, pipeline

    model = BertModel.from_pretrained("run/model")     # ours, transformers' or a converted Google model
    tokenizer = load_tokenizer("run/model")            # Google's FullTokenizer of its vocab.txt
    ids = tokenizer.convert_tokens_to_ids(["[CLS]", *tokenizer.tokenize("今天天气很好"), "[SEP]"])
    outputs = model(torch.tensor([ids]))               # .sequence_output [1,T,D], .pooled_output [1,D]
    model(**hf_tokenizer(texts, padding=True, return_tensors="pt"))   # transformers' keys are its arguments
    pipeline("fill-mask", model="run/model")("Paris is the [MASK] of France.")

Model: ``BertConfig``, ``BertModel``, ``BertForPreTraining`` (``model``); task heads beside it
(``heads``): ``BertForSequenceClassification``, ``BertForTokenClassification``, ``BertCrfForNer``
(with a CRF), ``BertSpanForNer`` (start and end pointers), ``BertForQuestionAnswering``, ``BertForMultipleChoice``; each with ``from_pretrained``/``save_pretrained`` in transformers'
layout. Tokenizer: ``FullTokenizer``, ``BasicTokenizer``, ``WordpieceTokenizer``, ``load_vocab``
(``data.tokenization``), ``load_tokenizer`` (a model folder's, ``inference``). Optimizer: ``AdamWeightDecay`` (``optimization``). Pipelines:
``pipeline`` (``pipelines``).
"""

import importlib

_EXPORTS = {
    "BertConfig": "model",
    "BertModel": "model",
    "BertForPreTraining": "model",
    "build_bert_model": "model",
    "build_bert_for_pretraining": "model",
    "BertForSequenceClassification": "heads",
    "BertForTokenClassification": "heads",
    "BertCrfForNer": "heads",
    "BertSpanForNer": "heads",
    "BertForQuestionAnswering": "heads",
    "BertForMultipleChoice": "heads",
    "FullTokenizer": "data.tokenization",
    "BasicTokenizer": "data.tokenization",
    "WordpieceTokenizer": "data.tokenization",
    "load_vocab": "data.tokenization",
    "load_tokenizer": "inference",
    "AdamWeightDecay": "optimization",
    "pipeline": "pipelines",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # imported on first use: ``bertdetr --help`` and the data tools do not pay for importing torch
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"bertdetr.bert.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'bertdetr.bert' has no attribute {name!r}")
