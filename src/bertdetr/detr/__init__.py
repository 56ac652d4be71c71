"""DETR: object detection as MMDetection structures it.

Model: ``config.DETRConfig`` (presets ``.r50()``/``.r18()``), ``model.build_detr``; losses:
``loss.build_criterion``; detections: ``postprocess.DetrPostProcess``; our checkpoint directory:
``load_detr``/``save_detr``, ``load_checkpoint_dir`` (``weights``); other projects' weights:
``from_mmdet``, ``from_official``, ``from_hf`` (``convert.load``); from Python as mmdet's API:
``init_detector``, ``inference_detector``, ``draw`` (``api``), ``DetInferencer`` (``inferencer``),
and as transformers':
``pipeline("object-detection", ...)``. The names below are
imported on first use, so ``bertdetr --help`` and the data tools do not pay for importing torch.
"""

import importlib

_EXPORTS = {
    "DETRConfig": "config",
    "load_detr_config": "config",
    "DETR": "model",
    "build_detr": "model",
    "DETRCriterion": "loss",
    "build_criterion": "loss",
    "DetrPostProcess": "postprocess",
    "from_mmdet": "convert.load",
    "from_official": "convert.load",
    "from_hf": "convert.load",
    "load_detr": "weights",
    "save_detr": "weights",
    "load_checkpoint_dir": "weights",
    "init_detector": "api",
    "inference_detector": "api",
    "draw": "api",
    "Detector": "api",
    "Detections": "api",
    "pipeline": "api",
    "DetInferencer": "inferencer",
    "PostProcess": "postprocess",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"bertdetr.detr.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'bertdetr.detr' has no attribute {name!r}")
