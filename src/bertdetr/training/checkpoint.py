"""Training checkpoints: written atomically, the last K kept, loaded without unpickling code.

A checkpoint is one ``torch.save`` file ``ckpt-<step>.pt`` holding plain containers of tensors and
numbers (model and optimizer state dicts, scheduler state, step, data position, RNG states, and
whatever the trainer adds), so it loads with ``torch.load(weights_only=True)``. It is written to a
temp name and renamed, so a run killed while writing leaves the previous checkpoint whole and
loadable; older ones beyond ``keep_last`` are removed only after the new one is in place.
"""

from __future__ import annotations

import os
import pickle
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
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False: not here
        raise BertDetrError(f"refusing to load checkpoint {path}: besides tensors and numbers it holds Python "
                            "objects, and unpickling them would run code the file names (this program's "
                            "checkpoints hold none: is it another program's?)") from None
    except Exception as e:  # a truncated or foreign file: say which file (an empty one's error says nothing)
        raise BertDetrError(f"cannot load checkpoint {path}: {e or type(e).__name__}"
                            + (" (an empty file)" if os.path.getsize(path) == 0 else "")) from None


def latest_checkpoint(directory: str | os.PathLike) -> str | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


_SCHEDULE_POSITION = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial")


def load_training_state(optimizer: torch.optim.Optimizer, scheduler, state: dict) -> list[str]:
    """Restores the optimizer's moments and the schedule's position from a checkpoint, keeping the
    hyperparameters of the run being resumed (its learning rate, weight decay, schedule length,
    lr drops); returns the names of the hyperparameters that differ from the checkpoint's.

    With unchanged settings the state is restored exactly as saved (the resumed losses equal an
    uninterrupted run's); with changed ones the lr is recomputed in closed form at the saved step.
    """
    fresh_groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    fresh_schedule = scheduler.state_dict()
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    changed = sorted({k for g, f in zip(optimizer.param_groups, fresh_groups) for k in f
                      if k != "lr" and g.get(k) != f[k]}
                     | {k for k, v in fresh_schedule.items()
                        if k not in _SCHEDULE_POSITION and k != "lr_lambdas" and state["scheduler"].get(k) != v})
    if not changed:
        return []
    for g, f in zip(optimizer.param_groups, fresh_groups):
        g.update({k: v for k, v in f.items() if k != "lr"})
    position = {k: v for k, v in state["scheduler"].items() if k in _SCHEDULE_POSITION}
    scheduler.load_state_dict({**fresh_schedule, **position})
    if hasattr(scheduler, "_get_closed_form_lr"):  # MultiStepLR: base * gamma ** (drops passed)
        lrs = scheduler._get_closed_form_lr()
    else:  # LambdaLR: base * factor(step)
        lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr
    scheduler._last_lr = list(lrs)
    return changed
