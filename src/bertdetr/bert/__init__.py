"""BERT: tokenizer, pretraining data, model and pretraining (Google's original release, in PyTorch)."""

import importlib

_EXPORTS = {"pipeline": "pipelines"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # imported on first use: ``bertdetr --help`` and the data tools do not pay for importing torch
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"bertdetr.bert.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'bertdetr.bert' has no attribute {name!r}")
