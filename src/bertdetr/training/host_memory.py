"""Freed host memory kept for the next step instead of handed back to the kernel (glibc's malloc).

A training step on a CPU allocates and frees the same tensors every step (activations, gradients,
their temporaries). glibc's ``malloc`` serves a request over its mmap threshold from a mapping of
its own and unmaps it when freed, and hands the freed top of its heap back when it is over the trim
threshold. Both thresholds start at 128 KiB and rise only as glibc sees larger blocks freed (the
mmap threshold to at most 32 MiB), so how much goes back depends on the order of a run's first
allocations: memory that goes back is faulted in again, and zeroed by the kernel, at the next step.
Measured (``bench/bench_host_memory.py``, BENCHMARKS.md): ``bert ner --crf`` on 2 cores faulted
0.25 to 2.5 million pages an epoch from one run to the next of the same command; BERT-medium
pretraining faulted about 0.5 GB in again every step. Kept instead (``keep_freed_memory``):
every request from the heap (``M_MMAP_MAX`` 0) and its freed top kept up to 2 GiB
(``M_TRIM_THRESHOLD``), as PyTorch's CUDA allocator keeps a GPU's. Intel's advice for PyTorch on
CPUs (jemalloc or tcmalloc preloaded) gets the same with another allocator; this is glibc's own
``mallopt``, in the C library every Linux process already has.

Left alone where the allocator is not glibc's (macOS, musl), where the user chose another
(``LD_PRELOAD`` of jemalloc, tcmalloc or mimalloc) or set glibc's malloc themselves
(``GLIBC_TUNABLES`` with ``glibc.malloc``, or a ``MALLOC_*`` variable).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1
"""``mallopt``'s parameter numbers (glibc's ``malloc.h``)."""
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1
"""The freed top of the heap goes back to the kernel only over 2 GiB (``mallopt`` takes an int)."""

_kept: bool | None = None


def chosen_elsewhere(environ: Mapping[str, str]) -> str | None:
    """Why the allocator's settings are the user's (an allocator preloaded, glibc's malloc
    variables set), or None."""
    preload = environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return f"LD_PRELOAD has {name}"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    for key in environ:
        if key.startswith("MALLOC_"):
            return f"{key} is set"
    return None


def keep_freed_memory(environ: Mapping[str, str]) -> bool:
    """This process's (and the workers it forks) freed memory kept for reuse: glibc's ``mallopt``
    of ``M_MMAP_MAX`` 0 and ``M_TRIM_THRESHOLD`` 2 GiB, once, unless ``environ`` (the process's
    environment) shows the user's own choice. Returns whether they are set (False where left alone;
    see the module's docstring)."""
    global _kept
    if _kept is None:
        _kept = False
        if sys.platform.startswith("linux") and chosen_elsewhere(environ) is None:
            try:
                libc = ctypes.CDLL(None)
                libc.gnu_get_libc_version  # noqa: B018 (a glibc function: not musl's malloc)
                _kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                pass
    return _kept
