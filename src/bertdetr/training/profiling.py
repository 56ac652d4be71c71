"""Where a training step's time goes: ``profile_steps`` (``--profile-steps FIRST LAST``) of every trainer.

torch.profiler records the training steps FIRST to LAST (numbered as the scalars are logged: step 1
is the first update) and writes, in ``OUTPUT_DIR/profile``:

- ``steps-FIRST-LAST.txt``: the wall time per step; on a GPU the kernels per step, their time
  and the share of the wall time the device was busy (what is missing is time it waited for the
  host: the input pipeline, a read from the device, Python) and the peak memory allocated; then the
  operators and kernels by their own time on the device (on a CPU: on the host), as
  ``key_averages().table``.
- ``steps-FIRST-LAST.json.gz``: the trace, for Perfetto (ui.perfetto.dev) or chrome://tracing.

The step before FIRST warms the profiler up and is not recorded (its start-up costs fall there, as
with ``torch.profiler.schedule``'s ``warmup``). Under torchrun each rank writes its own
(``-rankR``): a slow rank shows as one whose device waits longer. The profiled steps run as the
others (the same numbers), a little slower, the device synchronised with the host where the window
begins and ends (to time it: the trainers' steps otherwise never wait for the device but to log);
the time spent writing the files is left out of the logged rate, as evaluation's is. A run that
stops inside the window (preempted, an error, or ``stop_at_step``) writes nothing; a resumed run
that starts inside it records from its first step. A profiler that fails (to start, or to write
its files: a full disk) is a warning, never the end of the training run.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import time
import warnings

import torch
from torch.autograd import DeviceType

from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output

TABLE_ROWS = 40
"""Rows of the operator and kernel table."""


def check_profile_steps(steps: list[int], field: str, num_steps: int | None = None) -> None:
    """A ``BertDetrError`` unless ``steps`` is empty or two steps FIRST <= LAST from 1 on (and, when
    ``num_steps`` is known, within the run); ``field``: the option's name in the message."""
    if not steps:
        return
    if len(steps) != 2 or not 1 <= steps[0] <= steps[1]:
        raise BertDetrError(f"{field} takes two steps, the first and the last profiled (1 <= first <= last), "
                            f"got {steps}")
    if num_steps is not None and steps[1] > num_steps:
        raise BertDetrError(f"{field} {steps[0]} {steps[1]}: the run has {num_steps} steps")


class StepProfiler:
    """torch.profiler over the steps ``steps`` = [FIRST, LAST] of a training loop (empty: does
    nothing). The loop calls ``step_begins(n)`` before its step ``n`` (1-based) and adds what
    ``step_ends(n)`` returns (seconds spent writing the profile) to the start of its rate's clock;
    ``close`` (or leaving the ``with``) drops a window left unfinished.

    ``directory``: the run's folder (the files go to ``directory/profile``); ``what``: the run's
    command, for the report's first line; ``rank``/``world_size``: torchrun's."""

    def __init__(self, steps: list[int], directory: str, device: torch.device, what: str,
                 rank: int = 0, world_size: int = 1):
        self.first, self.last = (steps[0], steps[1]) if steps else (0, -1)
        self.directory = os.path.join(directory, "profile")
        self.device = device
        self.what = what
        self.rank, self.world_size = rank, world_size
        self._prof: torch.profiler.profile | None = None
        self._recorded_from = 0
        self._t0 = 0.0
        if steps and device.type == "cuda":
            # The profiler started once before any CUDA graph is captured (the compile modes
            # reduce-overhead and max-autotune capture them in the first steps): a graph captured
            # before the profiler's first use and replayed while it records has made CUDA fail
            # (pytorch#75504; torch.profiler._utils._init_for_cuda_graphs is this workaround).
            try:
                with torch.autograd.profiler.profile():
                    pass
            except Exception as e:
                self._failed("could not start", e)
                self.first, self.last = 0, -1

    def __enter__(self) -> "StepProfiler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step_begins(self, step: int) -> None:
        """Before step ``step``: starts the profiler at the step before FIRST (or at ``step``, when
        a resumed run starts inside the window), and the wall clock at the first recorded step."""
        if self._prof is None and self.first - 1 <= step <= self.last:
            warmup = 1 if step < self.first else 0
            self._recorded_from = step + warmup
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            schedule = torch.profiler.schedule(wait=0, warmup=warmup, active=self.last - self._recorded_from + 1,
                                               repeat=1)
            prof = torch.profiler.profile(activities=activities, schedule=schedule)
            try:
                prof.start()
            except Exception as e:  # (e.g. no CUPTI for the GPU's activity: train without a profile)
                self._failed("could not start", e)
                self.first, self.last = 0, -1  # (no other try)
                return
            self._prof = prof
        if self._prof is not None and step == self._recorded_from:
            self._synchronize()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self._t0 = time.perf_counter()

    def step_ends(self, step: int) -> float:
        """After step ``step``: the profiler on to the next; after LAST, the files written.
        Returns the seconds spent writing them (0 after other steps)."""
        if self._prof is None:
            return 0.0
        if step < self.last:
            self._prof.step()
            return 0.0
        self._synchronize()  # (the device's work of the recorded steps inside their wall time)
        wall = time.perf_counter() - self._t0
        begun = time.perf_counter()
        prof, self._prof = self._prof, None
        try:
            prof.step()  # the end of the recorded steps: the profiler collects them
            prof.stop()
            self._write(prof, wall, self.last - self._recorded_from + 1)
        except Exception as e:  # (a full disk, a profiler error: the training goes on)
            self._failed("was not written", e)
            with contextlib.suppress(Exception):
                prof.stop()  # (if it failed before: the profiler must not stay on)
        return time.perf_counter() - begun

    def close(self) -> None:
        """Stops a profiler whose window did not end (nothing is written)."""
        if self._prof is not None:
            prof, self._prof = self._prof, None
            prof.stop()

    def _failed(self, what: str, error: Exception) -> None:
        """A profile is a diagnosis: its failure is a warning, never the end of a training run."""
        warnings.warn(f"profile_steps: the profile of steps {self.first}-{self.last} {what} "
                      f"({type(error).__name__}: {error}); the training goes on", stacklevel=3)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _write(self, prof: torch.profiler.profile, wall: float, steps: int) -> None:
        name = f"steps-{self._recorded_from}-{self.last}" + (f"-rank{self.rank}" if self.world_size > 1 else "")
        os.makedirs(self.directory, exist_ok=True)
        with atomic_output(os.path.join(self.directory, name + ".txt"), "w") as f:
            f.write(self.report(prof, wall, steps))
        # the trace goes through a plain temp file (torch writes a path), gzipped into its place
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            trace = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(trace)
            with open(trace, "rb") as src, atomic_output(os.path.join(self.directory, name + ".json.gz")) as dst:
                with gzip.GzipFile(fileobj=dst, mode="wb", mtime=0) as z:
                    shutil.copyfileobj(src, z)

    def report(self, prof: torch.profiler.profile, wall: float, steps: int) -> str:
        """The text file: what was profiled, per-step figures, the table."""
        averages = prof.key_averages()
        device = self.device.type == "cuda"
        where = f"{self.device}" + (f" ({torch.cuda.get_device_name(self.device)})" if device else "")
        lines = [f"{self.what}: steps {self._recorded_from}-{self.last} ({steps} profiled), rank {self.rank} of "
                 f"{self.world_size}, {where}, torch {torch.__version__}",
                 f"wall time per step: {1e3 * wall / steps:.2f} ms (with the profiler's own cost)"]
        if device:
            lines.append(device_line(averages, wall, steps))
            lines.append(memory_line(torch.cuda.max_memory_allocated(self.device),
                                     torch.cuda.get_device_properties(self.device).total_memory))
        sort = "self_device_time_total" if device else "self_cpu_time_total"
        lines += ["", averages.table(sort_by=sort, row_limit=TABLE_ROWS, max_name_column_width=90)]
        return "\n".join(lines) + "\n"


def device_line(averages, wall: float, steps: int) -> str:
    """The device's share of ``steps`` steps that took ``wall`` seconds: its kernels (and copies)
    per step and their time, summed as torch's table sums "Self CUDA time total" (``averages``:
    ``key_averages()``'s events; those of the device, not user annotations)."""
    kernels = [e for e in averages if e.device_type != DeviceType.CPU and not e.is_user_annotation]
    busy = sum(e.self_device_time_total for e in kernels) / 1e6 / steps
    launches = sum(e.count for e in kernels) / steps
    return (f"device: {launches:.0f} kernels and copies per step, busy {1e3 * busy:.2f} ms per step "
            f"({100 * busy / max(wall / steps, 1e-12):.0f}% of the wall time; the rest it waited for the host)")


def memory_line(peak: int, total: int) -> str:
    """The most memory the profiled steps' tensors held at once (``torch.cuda.max_memory_allocated``
    since the window began), against the device's: what room a larger batch has."""
    return f"memory: at most {peak / 2**30:.2f} GiB allocated ({100 * peak / total:.0f}% of the device's {total / 2**30:.1f} GiB)"
