"""Training checkpoints: written atomically, the last K kept, loaded without unpickling code.

A checkpoint is one ``torch.save`` file ``ckpt-<step>.pt`` holding plain containers of tensors and
numbers (model and optimizer state dicts, scheduler state, step, data position, RNG states, and
whatever the trainer adds), so it loads with ``torch.load(weights_only=True)``. It is written to a
temp name and renamed, so a run killed while writing leaves the previous checkpoint whole and
loadable; older ones beyond ``keep_last`` are removed only after the new one is in place.
"""

from __future__ import annotations

import os
import re

import torch

from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_path(directory: str | os.PathLike, step: int) -> str:
    return os.path.join(os.fspath(directory), f"ckpt-{step:08d}.pt")


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """``(step, path)`` of the complete checkpoints in ``directory``, oldest first."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found)


def save_checkpoint(state: dict, directory: str | os.PathLike, step: int, keep_last: int = 3) -> str:
    """Writes ``state`` as the checkpoint of ``step``; keeps the newest ``keep_last`` (0 = all)."""
    path = checkpoint_path(directory, step)
    with atomic_output(path, "wb") as f:
        torch.save(state, f)
    if keep_last > 0:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            try:
                os.remove(old)
            except FileNotFoundError:
                pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Loads a checkpoint with ``weights_only=True`` (no code from the file is run)."""
    try:
        return torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise BertDetrError(f"checkpoint not found: {path}") from None
    except Exception as e:  # a truncated or foreign file: say which file
        raise BertDetrError(f"cannot load checkpoint {path}: {e}") from None


def latest_checkpoint(directory: str | os.PathLike) -> str | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None
