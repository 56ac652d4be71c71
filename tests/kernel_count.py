"""Operators run per step, for the "kernels do not grow with the parameter tensors" checks (tests
and ``bench/bench_bert_optimizer.py``)."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class CountOps(TorchDispatchMode):
    """Counts the operators run inside it; a ``_foreach_`` operator counts once per tensor of its
    list (as it launches on a CPU, and in proportion on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        first = args[0] if args else None
        self.count += len(first) if "_foreach_" in func.__name__ and isinstance(first, (list, tuple)) else 1
        return func(*args, **(kwargs or {}))
