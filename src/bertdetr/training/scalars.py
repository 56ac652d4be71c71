"""Training scalars: a CSV file (always), TensorBoard (when installed and asked for), a PNG of curves.

Only one process (rank 0) logs. The CSV is appended line by line and flushed, so a run that stops
keeps its log, and a resumed run continues the same file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from typing import Iterable, Mapping

from bertdetr.errors import BertDetrError
from bertdetr.fileio import DiskFullError, atomic_output, is_disk_full


def tensorboard_writer():
    """torch's ``SummaryWriter`` class; a clear error naming the extra when tensorboard is missing
    (the trainers call this before any work)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BertDetrError("--tensorboard needs the tensorboard package: pip install 'bertdetr[tensorboard]'") from None
    return SummaryWriter


class ScalarLog:
    """``log(step, {"loss": ..., "lr": ...})`` appends a row to ``<dir>/scalars.csv`` (long format:
    step, name, value) and, with ``tensorboard=True``, to a TensorBoard event file in ``<dir>/tb``.

    Each call's rows go to the file in one unbuffered write: a full disk is a ``DiskFullError``
    at that step, with the file cut back to its last whole step (nothing is left in a buffer to
    fail again, or half-written, when the file is closed)."""

    def __init__(self, directory: str | os.PathLike, tensorboard: bool = False):
        summary_writer = tensorboard_writer() if tensorboard else None  # before any file is made
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(os.fspath(directory), "scalars.csv")
        new = not os.path.exists(self.path)
        self._file = open(self.path, "ab", buffering=0)
        if new:
            self._append([["step", "name", "value"]])
        self._tb = None
        if summary_writer is not None:
            self._tb = summary_writer(os.path.join(os.fspath(directory), "tb"))

    def _append(self, rows: list[list]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        data = text.getvalue().encode("utf-8")
        size = os.fstat(self._file.fileno()).st_size
        try:
            written = 0
            while written < len(data):
                written += self._file.write(data[written:])
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), size)
            if is_disk_full(e):
                raise DiskFullError(f"no space left to log to {self.path} ({e.strerror}): the log is whole up "
                                    "to the step before and the checkpoints written before are as they were. "
                                    "Free some space, then the same command with --resume continues the run") from None
            raise

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._append([[step, name, f"{float(value):.6g}"] for name, value in scalars.items()])
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(name, float(value), step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def drop_rows_after(path: str | os.PathLike, step: int) -> int:
    """Rewrites a ``scalars.csv`` without its rows of steps after ``step`` (atomically); returns
    how many it dropped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = [row for row in rows[1:] if int(row[0]) <= step]
    if len(kept) == len(rows) - 1:
        return 0
    with atomic_output(path, "w") as f:
        writer = csv.writer(f)
        writer.writerows([rows[0], *kept])
    return len(rows) - 1 - len(kept)


def read_scalars(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``name -> [(step, value), ...]`` from a ``scalars.csv``; a step logged twice (after a
    resume from an earlier checkpoint) keeps its latest value."""
    series: dict[str, dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            series.setdefault(row["name"], {})[int(row["step"])] = float(row["value"])
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike, names: Iterable[str],
                title: str = "") -> None:
    """Plots the named series of a ``scalars.csv`` against step, one panel each, to a PNG."""
    # A Figure drawn by the Agg canvas directly: no pyplot, so a notebook's backend (and its
    # figure list) stays as the user set it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = read_scalars(csv_path)
    names = [n for n in names if n in series]
    if not names:
        return
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*series[name])
        ax.plot(steps, values, lw=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
