"""The ``device=`` of the Python APIs (BERT's and DETR's pipelines, ``init_detector``,
``DetInferencer``), read as transformers' and mmdet's: None the GPU when there is one, an int
transformers' (-1 the CPU, k the k-th GPU), a name or ``torch.device`` as torch reads it. Above both
halves so that they read it alike; a device that cannot be used is a clear error here, not a
RuntimeError from torch at the first tensor moved."""

from __future__ import annotations

import os

import torch

from bertdetr.errors import BertDetrError

__all__ = ["parse_device", "inference_device"]


def parse_device(device) -> torch.device:
    """``device`` as a ``torch.device``: None: "cuda" if available, else "cpu"; an int: -1 (any
    negative) the CPU, k >= 0 "cuda:k"; a str or ``torch.device``: as torch names it ("cpu",
    "cuda", "cuda:1", "mps"). A GPU that is not there is a ``BertDetrError``; a bool or another type
    a TypeError naming ``device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        device = int(device)  # (a command line's --device -1 or 0: transformers' ints)
    # (True is an int to Python: it would read as GPU 1)
    if isinstance(device, bool) or not isinstance(device, (int, str, torch.device)):
        raise TypeError(f"device must be None, an int (-1 the CPU, k the k-th GPU), a name such as \"cpu\" or "
                        f"\"cuda:0\", or a torch.device, got {type(device).__name__} {device!r}")
    if isinstance(device, int):
        parsed = torch.device("cpu") if device < 0 else torch.device("cuda", device)
    elif isinstance(device, str):
        try:
            parsed = torch.device(device)
        except RuntimeError:
            hint = ' (a GPU is "cuda" or "cuda:0")' if device.lower().startswith("gpu") else ""
            raise BertDetrError(f"device {device!r} is not a device torch knows{hint}; give \"cpu\", \"cuda\", "
                                "\"cuda:K\", an int (-1 the CPU, K the K-th GPU) or None (the GPU if any)") from None
    else:
        parsed = device
    _check_available(parsed, device)
    return parsed


def _check_available(parsed: torch.device, asked) -> None:
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BertDetrError(f"device {asked!r} is a GPU, and torch sees none (CUDA is not available); "
                                "give device=\"cpu\" (or -1), or None for the GPU if any")
        if parsed.index is not None and parsed.index >= count:
            raise BertDetrError(f"device {asked!r}: there is no GPU {parsed.index}, torch sees {count}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise BertDetrError(f"device {asked!r}: MPS (Apple's GPU) is not available here; give device=\"cpu\"")


def inference_device(device) -> torch.device:
    """``parse_device`` for an inference command (``detr predict``, ``detr eval``, ``bert embed``,
    ``tag``, ``fill-mask``), which owns its process: on a CPU its freed memory is kept for the next
    batch as the trainers keep theirs (``training.host_memory.keep_freed_memory``). Measured on
    ``detr predict`` (R50, 1600x1200 photos, 1 thread): 97k page faults an image to 7k, 0.19 s of
    system time an image to 0.01, CPU time 1.08-1.11x less (BENCHMARKS.md)."""
    from bertdetr.training.host_memory import keep_freed_memory

    parsed = parse_device(device)
    if parsed.type == "cpu":
        keep_freed_memory(os.environ)
    return parsed
