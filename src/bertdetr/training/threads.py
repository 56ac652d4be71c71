"""How many CPU threads a trainer should use: what this process can actually get.

On a machine shared with other work, PyTorch's default (one intra-op thread per core) is far
slower than one thread: its OpenMP threads meet at a barrier after every operator, and when the
scheduler has put one of them off its core (other processes want the cores too) the others spin
at the barrier until it comes back. Measured on 2 cores at load ~10 (bench/bench_threads.py,
BENCHMARKS.md): the demo's tiny BERT took several times the CPU seconds per step with 2 threads as
with 1, for no gain in wall time. So the trainers take the CPUs this process may run on (its
affinity mask and cgroup quota) less the load of other work at start, at least 1.
"""

from __future__ import annotations

import math
import os


def available_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return max(cpus, 1.0)


def free_cpus(cpus: float, load: float) -> int:
    """Whole CPUs left to this process when the 1-minute load average is ``load`` (which counts
    this process itself as about one runnable task), at least 1."""
    return max(1, min(math.floor(cpus), math.floor(cpus - max(0.0, load - 1.0) + 0.5)))


def choose_num_threads(requested: int | None = None) -> int:
    """``requested`` if given; else, if ``OMP_NUM_THREADS`` is set (torchrun sets it to 1), the
    number torch already uses; else the CPUs free for this process now (``free_cpus``)."""
    import torch

    if requested is not None:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return free_cpus(available_cpus(), load)


def set_num_threads(requested: int | None = None) -> int:
    """Sets torch's intra-op threads to ``choose_num_threads(requested)``; returns the number."""
    import torch

    n = choose_num_threads(requested)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
