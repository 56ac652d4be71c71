"""The run folder rule shared by both trainers (``bert pretrain`` and ``detr train``).

A run folder holds one run of one kind. Starting a run in a folder that already holds files needs
``resume`` (continue from its latest checkpoint) or ``overwrite`` (remove the previous run's files,
then start again); without either it is an error, never a silent restart that overwrites
checkpoints and appends to the old ``scalars.csv`` (transformers' ``overwrite_output_dir`` rule,
rather than Google's Estimator, which resumed whatever it found). ``train_config.json`` records
the kind (``"run"``), and a folder of the other kind is refused even with ``overwrite``.

``resume`` in an empty or missing folder, or in one whose run never reached a checkpoint, starts
a new run (so a preempted job can be re-launched with the same command). A new run that fails
before its first checkpoint removes the logs it started, so the folder can be used again.

One run at a time: a run holds a lock on its folder (``RunLock``: ``.lock``, an ``flock`` held by
the main process for the run's life; the ranks of one torchrun job share it through their main
process). A second process is refused at once, naming the holder's PID; the lock of a process
that was killed goes with it, so the next run takes the folder over. Under the lock, the
temporary files an interrupted save left (``.ckpt-*.pt.*.tmp`` and the like) are removed.

Files of a run: checkpoints ``ckpt-*.pt``, ``train_config.json`` (the config in force),
``scalars.csv`` (training and ``eval_*`` scalars), ``loss_curves.png``, ``eval_metrics.json``,
BERT's ``eval_results.txt`` (Google's), DETR's ``eval_detections.json``, ``tb/``, ``model/`` and
``profile/`` (``profile_steps``; unlike the logs, kept when a new run fails before its first
checkpoint: a profile is a result of its own).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import socket

from bertdetr.training.checkpoint import latest_checkpoint, list_checkpoints
from bertdetr.errors import BertDetrError

BERT_PRETRAIN = "bert pretrain"
DETR_TRAIN = "detr train"
# the fine-tuning commands record their config as <name>_config.json (their own resume rule:
# bertdetr.bert.finetuning.finetune.run_checkpoint); known here so no trainer takes their folders for its own
FINETUNE_CONFIGS = {"bert classify": "classify_config.json", "bert squad": "squad_config.json",
                    "bert ner": "ner_config.json", "bert multiple-choice": "multiple_choice_config.json"}

RUN_FILES = ("train_config.json", "scalars.csv", "loss_curves.png", "eval_metrics.json", "eval_results.txt",
             "eval_detections.json", "best.json")
RUN_DIRS = ("tb", "model", "model_best", "profile")
LOG_FILES = ("train_config.json", "scalars.csv")


def recorded_config(directory: str) -> dict | None:
    """The ``train_config.json`` of the run in ``directory`` (None if there is none or it is unreadable)."""
    try:
        with open(os.path.join(directory, "train_config.json"), encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def run_kind(directory: str) -> str | None:
    """Which kind of run ``directory`` holds, from its recorded config or its export (None: unknown)."""
    for kind, name in FINETUNE_CONFIGS.items():
        if os.path.isfile(os.path.join(directory, name)):
            return kind
    d = recorded_config(directory)
    if d is not None:
        if "run" in d:
            return str(d["run"])
        if "record_shape" in d:  # written before the kind was recorded
            return BERT_PRETRAIN
        if {"data", "train"} <= set(d):
            return DETR_TRAIN
    model = os.path.join(directory, "model")
    if os.path.isfile(os.path.join(model, "vocab.txt")) or os.path.isfile(os.path.join(model, "tokenizer_config.json")):
        return BERT_PRETRAIN
    if os.path.isfile(os.path.join(model, "classes.json")):
        return DETR_TRAIN
    return None


def prepare_run_folder(directory: str, kind: str, resume: bool, overwrite: bool) -> str | None:
    """Applies the rule (see the module docstring) on the main process before anything is written;
    returns the checkpoint to resume from, or None for a new run."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise BertDetrError(f"output folder {directory} is a file")
    entries = [n for n in os.listdir(directory) if not n.startswith(".")] if os.path.isdir(directory) else []
    if not entries:
        return None
    found = run_kind(directory)
    if found is not None and found != kind:
        raise BertDetrError(f"{directory} holds a `bertdetr {found}` run, not a `bertdetr {kind}` run: "
                            "choose another output folder")
    if resume:
        checkpoint = latest_checkpoint(directory)
        if checkpoint is None:
            remove_run_files(directory)
            print(f"{directory}: no checkpoint to resume from; starting a new run")
        return checkpoint
    if overwrite:
        remove_run_files(directory)
        return None
    checkpoints = list_checkpoints(directory)
    what = (f"a run with checkpoints up to step {checkpoints[-1][0]}" if checkpoints
            else f"files ({', '.join(sorted(entries)[:4])}{', ...' if len(entries) > 4 else ''})")
    raise BertDetrError(f"{directory} already holds {what}: give --resume to continue it or --overwrite "
                        "to start again (which deletes the previous run's checkpoints and logs)")


def remove_run_files(directory: str) -> None:
    """Deletes a previous run's checkpoints, logs, metrics and export (other files are left alone)."""
    for _, path in list_checkpoints(directory):
        os.remove(path)
    for name in RUN_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            os.remove(path)
    for name in RUN_DIRS:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path)


def remove_unfinished_logs(directory: str, config_too: bool = True) -> None:
    """After a new run failed before its first checkpoint: removes the logs it started
    (``train_config.json``, ``scalars.csv``, ``tb/``), which would otherwise make the folder look
    like a run to resume. ``config_too=False`` (a new run starting its logs): the scalars of one
    killed (``kill -9``, a lost node) before any checkpoint, which the new run's would follow as if
    one run, while the new run's recorded config stays."""
    if list_checkpoints(directory):
        return
    for name in LOG_FILES if config_too else [n for n in LOG_FILES if not n.endswith("_config.json")]:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            os.remove(path)
    if os.path.isdir(os.path.join(directory, "tb")):
        shutil.rmtree(os.path.join(directory, "tb"))


def resume_changes(recorded: dict | None, new: dict, kept: dict[str, str], ignored: set[str]) -> list[str]:
    """Lines saying, for each setting that differs from the recorded run, whether the resumed run
    applies it or keeps the checkpoint's (``kept``: name -> why). ``ignored``: settings that only
    steer this invocation (progress bar, device, ...)."""
    if recorded is None:
        return []
    lines = []
    for name, value in new.items():
        if name in ignored or name not in recorded or recorded[name] == value:
            continue
        if name in kept:
            lines.append(f"  {name}: kept {recorded[name]!r} from the checkpoint, not {value!r} ({kept[name]})")
        else:
            lines.append(f"  {name}: {recorded[name]!r} -> {value!r} (applied)")
    return lines


class RunLock:
    """An exclusive ``flock`` on ``<directory>/.lock``, with the holder's PID and host written in it
    (see the module doc). ``release`` (or the process's end) gives it up."""

    NAME = ".lock"

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, self.NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BertDetrError(f"{directory} is in use by another run ({holder}): wait for it to end, or "
                                "choose another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        pid, _, host = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().partition(" ")
    except OSError:
        return "a process whose PID cannot be read"
    return f"PID {pid}" + (f" on {host}" if host and host != socket.gethostname() else "") if pid else \
        "a process that has not written its PID yet"


def remove_stale_temporaries(directory: str) -> list[str]:
    """Removes the temporary files of outputs an interrupted run was writing (``atomic_output``'s
    ``.<name>.<random>.tmp``, such as a checkpoint cut off mid-save); call it holding the folder's
    lock. Returns what it removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), ".*.tmp")):
        try:
            os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def settle_run_folder(env, directory: str, kind: str, resume: bool,
                      overwrite: bool) -> tuple[str | None, RunLock | None]:
    """``prepare_run_folder`` on the main process, holding the folder's ``RunLock``; its answer (or
    error) shared with every rank, so no rank looks at the folder after the main one started
    writing to it. Returns (the checkpoint to resume from, the lock: the main process's, else None)."""
    from bertdetr.training.distributed import main_then_share

    held: list[RunLock] = []

    def look() -> str | None:
        held.append(RunLock(directory))
        remove_stale_temporaries(directory)
        return prepare_run_folder(directory, kind, resume, overwrite)

    try:
        return main_then_share(env, look), (held[0] if held else None)
    except BaseException:
        for lock in held:
            lock.release()
        raise