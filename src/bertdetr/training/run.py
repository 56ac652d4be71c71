"""One run scaffold for the four trainers (``bert pretrain``, ``detr train``, ``bert classify``, ``bert squad``).

What every trainer does around its loop, written once; each loop stays short and explicit (set-up,
then a per-step or per-epoch function, as official DETR's ``main.py`` + ``engine.py``), calling
these pieces where it needs them, with no hooks:

- ``setup_process``: the process (torchrun's rank and device, CPU threads, the tensorboard check
  before any work).
- ``Run.start``: the folder's lock (one run at a time, ``folder.RunLock``) and the run folder rule
  (``folder.prepare_run_folder``, one answer for every rank): a new run, or the checkpoint a
  resumed run continues from. The fine-tuning programs keep Google's rule for their folder
  (``finetune.run_checkpoint``) and make their ``Run`` directly, with the lock. ``Run.close``
  gives the lock up: each trainer calls it as it ends, however it ends.
- ``Run.rewind_scalars``: a resumed run drops the scalars its predecessor logged after the
  checkpoint it resumes, so no step is logged twice.
- ``Run.recorded_config`` and ``Run.report_changes`` (a resumed run: which changed settings it
  applies, which it keeps), ``Run.record_config`` (the config in force, ``train_config.json``).
- ``Run.logging``: scalars (``scalars.csv``, TensorBoard) and the progress bar of the main process,
  and the teardown: logs and bar closed however the loop ends, and a new run that fails before its
  first checkpoint leaves no logs (the folder can be used again).
- ``Run.save``: a checkpoint with every rank's RNG state, the last ``keep_last`` kept.
- ``Run.non_finite``: the error that stops a run at a non-finite loss, naming the last good checkpoint;
  ``count_non_finite`` keeps the count of skipped steps on the device, ``Run.read_logged`` reads it
  with a logged step's values (the step's one read from the device) and stops after too many in a row.
- Preemption: inside ``Run.logging``, SIGTERM (what Slurm and Kubernetes send before a kill) and
  SIGINT only set ``Run.stop_signal``; the loop asks ``Run.stop_requested`` after each step, saves
  a checkpoint at that step and raises ``Run.preempted`` (a ``Preempted`` error: the command exits
  128 + the signal, 143 or 130, saying where to resume). A second SIGINT stops at once.
- ``Run.plot``: the loss curves PNG at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Callable, Iterator

import torch

from bertdetr.errors import BertDetrError, Preempted
from bertdetr.fileio import atomic_output, check_writable
from bertdetr.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from bertdetr.training.distributed import Distributed, gather_rng_states, setup_distributed
from bertdetr.training.folder import (
    RunLock,
    recorded_config,
    remove_unfinished_logs,
    resume_changes,
    settle_run_folder,
)
from bertdetr.training.stop_signals import stop_signals_handled
from bertdetr.training.scalars import ScalarLog, drop_rows_after, plot_curves, tensorboard_writer
from bertdetr.training.host_memory import keep_freed_memory
from bertdetr.training.threads import set_num_threads


def setup_process(device: str | None, num_threads: int | None = None,
                  tensorboard: bool = False) -> tuple[Distributed, torch.device]:
    """This process's place in the run (``setup_distributed``: torchrun's rank, or one process) and
    device; on a CPU the threads it uses (``set_num_threads``), denormal floats flushed to zero and
    freed memory kept for the next step (``keep_freed_memory``: glibc's malloc would hand some of a
    step's back to the kernel and fault it in again). A missing tensorboard package is an error
    here, before any work.

    Denormals: TensorFlow's CPU thread pools flush them to zero (``port::ScopedFlushDenormal`` in
    each thread it starts), so Google's programs train that way; PyTorch keeps them, and an
    operation on them costs many times a normal one. Measured: ``bert ner --crf`` trained at 200
    sentences/s with them and 290 without (the CRF's log-sum-exp underflows into them as its scores
    spread; ``bench/bench_ner_crf_trainer.py``). The setting is the process's (as the threads)."""
    if tensorboard:
        tensorboard_writer()
    env, dev = setup_distributed(device)
    if dev.type == "cpu":
        set_num_threads(num_threads)
        torch.set_flush_denormal(True)
        keep_freed_memory(os.environ)
    return env, dev


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGTERM and SIGINT are the main process's to act on
    (it saves a checkpoint, then ends its workers); a worker killed by one first would fail the
    batch being fetched before the checkpoint is saved."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class RunLog:
    """The main process's scalars and progress bar (on other ranks both are absent and every
    method does nothing)."""

    def __init__(self, scalars: ScalarLog | None, bar):
        self.scalars = scalars
        self.bar = bar

    @property
    def main(self) -> bool:
        """Whether this process logs (rank 0)."""
        return self.scalars is not None

    def log(self, step: int, values: dict[str, float]) -> None:
        """One row per value in ``scalars.csv`` (and TensorBoard) at ``step``."""
        if self.scalars is not None:
            self.scalars.log(step, values)

    def show(self, **postfix: str) -> None:
        """Figures shown beside the progress bar."""
        if self.bar is not None:
            self.bar.set_postfix(**postfix)

    def advance(self, n: int = 1) -> None:
        """The progress bar ``n`` steps on."""
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Closes the bar and the log files (again: nothing)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.scalars is not None:
            self.scalars.close()
            self.scalars = None


class Run:
    """One training run in its folder ``output_dir``, seen from one process (``env``).

    ``resumed_from``: the checkpoint it continues from (None: a new run). ``last_checkpoint``: the
    newest checkpoint it knows of (the one resumed from, then each it saves), for messages.
    ``config_file``: where the config in force is recorded (the fine-tuning programs keep their
    own name, ``classify_config.json``/``squad_config.json``).
    """

    def __init__(self, env: Distributed, output_dir: str, kind: str, resumed_from: str | None = None,
                 config_file: str = "train_config.json", lock: RunLock | None = None):
        self.env = env
        self.output_dir = output_dir
        self.kind = kind
        self.resumed_from = resumed_from
        self.last_checkpoint = resumed_from
        self.config_file = config_file
        self.lock = lock
        self.stop_signal: int | None = None
        """The signal (SIGTERM, SIGINT) that asked the run to stop, while ``Run.logging`` runs."""
        self._finishing: contextlib.ExitStack | None = None  # ``_finish_before_stopping``'s handlers, until ``close``

    @classmethod
    def start(cls, env: Distributed, output_dir: str, kind: str, resume: bool, overwrite: bool) -> "Run":
        """The folder's lock and the run folder rule (``folder``'s module doc), applied on the main
        process, its answer shared with every rank: a new run, or one resumed from the folder's
        latest checkpoint."""
        if env.main:
            check_writable(os.path.join(output_dir, "train_config.json"))
        resumed_from, lock = settle_run_folder(env, output_dir, kind, resume, overwrite)
        return cls(env, output_dir, kind, resumed_from, lock=lock)

    def close(self) -> None:
        """Gives the folder's lock up and the signal handlers of before the run back (again: nothing)."""
        if self._finishing is not None:
            self._finishing.close()
            self._finishing = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def load_resumed(self, map_location: str | torch.device = "cpu") -> dict:
        """The checkpoint the run resumes from, loaded: the newest that loads. One that cannot (cut
        off by a full disk or a kill outside ``atomic_output``'s rename, say) would otherwise stop
        every resume of a requeued job: it is said, moved aside as ``<name>.unreadable`` (kept, not
        deleted) by the main process, and the one before it is tried; ``resumed_from`` then names
        the checkpoint loaded. None loading: the newest one's error."""
        candidates = [path for _, path in list_checkpoints(self.output_dir)]
        candidates = candidates[:candidates.index(self.resumed_from) + 1] if self.resumed_from in candidates \
            else [self.resumed_from]
        first_error = None
        for path in reversed(candidates):
            try:
                state = load_checkpoint(path, map_location=map_location)
            except BertDetrError as e:
                first_error = first_error or e
                if self.env.main:
                    print(f"bertdetr: warning: {e}; moved aside as {os.path.basename(path)}.unreadable, "
                          "the checkpoint before it is tried", flush=True)
                    with contextlib.suppress(OSError):
                        os.replace(path, path + ".unreadable")
                continue
            self.resumed_from = self.last_checkpoint = path
            return state
        raise first_error

    def rewind_scalars(self, step: int) -> None:
        """A resumed run continues from the checkpoint of ``step``: the scalars logged after it (by
        a run killed before its next checkpoint) are dropped, so no step is logged twice."""
        csv = os.path.join(self.output_dir, "scalars.csv")
        if self.env.main and os.path.exists(csv):
            drop_rows_after(csv, step)

    @property
    def resumed(self) -> bool:
        return self.resumed_from is not None

    def recorded_config(self) -> dict | None:
        """The config recorded by the run this one resumes (None: a new run, or nothing recorded)."""
        return recorded_config(self.output_dir) if self.resumed else None

    def report_changes(self, recorded: dict, new: dict, kept: dict[str, str], ignored: set[str]) -> None:
        """On the main process, says for each setting of ``new`` that differs from ``recorded``
        whether the resumed run applies it or keeps the checkpoint's (``kept``: name -> why);
        ``ignored`` settings only steer this invocation."""
        if self.env.main:
            lines = resume_changes(recorded, new, kept, ignored)
            if lines:
                print(f"resuming {self.output_dir} with changed settings:\n" + "\n".join(lines))

    def record_config(self, config: dict) -> None:
        """Writes the config in force (main process, atomically)."""
        if self.env.main:
            with atomic_output(os.path.join(self.output_dir, self.config_file), "w") as f:
                json.dump(config, f, indent=1)

    @contextlib.contextmanager
    def logging(self, total: int, initial: int, desc: str, unit: str, progress: bool = True,
                tensorboard: bool = False) -> Iterator[RunLog]:
        """Scalars and a progress bar (``total`` steps, from ``initial``) on the main process for the
        ``with`` block; both closed when it ends, however it ends. A new run whose block raises
        before any checkpoint removes the logs it started (``folder.remove_unfinished_logs``)."""
        scalars = bar = None
        if self.env.main:
            if not self.resumed:
                remove_unfinished_logs(self.output_dir, config_too=False)
            scalars = ScalarLog(self.output_dir, tensorboard)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
        log = RunLog(scalars, bar)
        try:
            with self._catching_stop_signals():
                yield log
        except BaseException:
            log.close()
            if self.env.main and not self.resumed and self.stop_signal is None:
                remove_unfinished_logs(self.output_dir)
            raise
        finally:
            log.close()
        self._finish_before_stopping()

    def _finish_before_stopping(self) -> None:
        """After the training loop, until ``close``: a stop signal lets the run finish what is left
        (its export, evaluation, predictions, plots: the training is done and checkpointed), saying
        so, rather than end it without a word halfway through writing them; a second Ctrl-C stops
        at once. Main thread only (signals reach no other)."""
        if self._finishing is not None:
            return
        stopped = []

        def handler(signum, _frame):
            if signum == signal.SIGINT and stopped:
                raise KeyboardInterrupt
            stopped.append(signum)
            if self.env.main:
                print(f"\n{signal.Signals(signum).name}: the training is done; finishing its outputs first"
                      + (" (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""), flush=True)

        self._finishing = contextlib.ExitStack()
        self._finishing.enter_context(stop_signals_handled(handler))

    @contextlib.contextmanager
    def _catching_stop_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT set ``stop_signal`` (a second SIGINT interrupts at once); the handlers
        before are back afterwards. Signals reach Python's main thread only: elsewhere, nothing is
        installed."""
        def handler(signum, _frame):
            if self.stop_signal == signal.SIGINT and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            if self.env.main:
                print(f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint"
                      + (" (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""), flush=True)

        with stop_signals_handled(handler):
            yield

    def stop_requested(self, device: torch.device, agree: bool = True) -> bool:
        """Whether a signal asked the run to stop. One process: at once. Several: only when
        ``agree`` (the loops pass their logging steps), all ranks agreeing in one collective (a rank
        that stops alone would leave the others waiting in the next)."""
        if self.env.world_size == 1:
            return self.stop_signal is not None
        if not agree:
            return False
        import torch.distributed as dist

        flag = torch.tensor([float(self.stop_signal or 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.stop_signal is None and flag.item():
            self.stop_signal = int(flag.item())
        return self.stop_signal is not None

    def preempted(self, where: str) -> Preempted:
        """The error a run raises once it saved its checkpoint after a stop signal (the main
        process's names the checkpoint it wrote; the other ranks' says nothing, the exit status is
        theirs too)."""
        if not self.env.main:
            return Preempted("", self.stop_signal or signal.SIGTERM)
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
        return Preempted(f"stopped by {name} at {where}, with a checkpoint ({self.last_checkpoint}): "
                         "the same command with --resume continues the run", self.stop_signal or signal.SIGTERM)

    def save(self, state: dict, step: int, keep_last: int, device: torch.device) -> str | None:
        """The checkpoint of ``step``: ``state`` with every rank's RNG state (``rng``, in rank order:
        a collective, all ranks call it), written by the main process, the newest ``keep_last``
        kept (0: all). Returns its path (None on other ranks)."""
        rng = gather_rng_states(self.env, device)
        if not self.env.main:
            return None
        self.last_checkpoint = save_checkpoint({**state, "rng": rng}, self.output_dir, step, keep_last)
        return self.last_checkpoint

    def non_finite(self, where: str) -> BertDetrError:
        """The error that stops the run at a non-finite loss (``where``: at which step, with what
        values), naming the last good checkpoint."""
        last = (f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                else "; no checkpoint was written yet")
        return BertDetrError(f"non-finite loss at {where}: training stopped{last}. "
                             "Lower the learning rate or check the data.")

    def read_logged(self, on_device: list[torch.Tensor], health: torch.Tensor, max_in_a_row: int,
                    where: Callable[[list[float], int, int], str]) -> tuple[list[float], float]:
        """The one read from the device of a logged step: the tensors ``on_device`` (each flattened
        to float32, in order) and the non-finite bookkeeping ``health`` (``count_non_finite``).
        ``max_in_a_row`` skipped steps in a row since the last log stop the run (the ``non_finite``
        error at ``where(values, first step of that run, steps in it)``); otherwise that count
        restarts. Returns the values and the skipped steps in all."""
        values = torch.cat([v.reshape(-1).float() for v in on_device] + [health.reshape(-1)]).tolist()
        values, (_, most, skipped, since) = values[:-4], values[-4:]
        if most >= max_in_a_row:
            raise self.non_finite(where(values, int(since), int(most)))
        health[1] = 0
        return values, skipped

    def plot(self, names: list[str], title: str) -> None:
        """``loss_curves.png`` of the named scalars (main process, when anything was logged)."""
        csv = os.path.join(self.output_dir, "scalars.csv")
        if self.env.main and os.path.exists(csv):
            plot_curves(csv, os.path.join(self.output_dir, "loss_curves.png"), names, title=title)


def count_non_finite(health: torch.Tensor, bad: torch.Tensor, step: int) -> None:
    """A trainer's non-finite bookkeeping after step ``step``, on the device (no host read):
    ``health`` float32 [4] = (non-finite steps in a row now, the most in a row since the last log,
    skipped steps in all, the first step of the current run of them); ``bad`` a 0-dim bool tensor."""
    b = bad.to(health.dtype)
    starts = b * (health[0] == 0).to(health.dtype)
    health[3] = health[3] * (1 - starts) + starts * step
    health[0] = (health[0] + 1) * b
    health[1] = torch.maximum(health[1], health[0])
    health[2] = health[2] + b


def rank_rng_state(state: dict, env: Distributed):
    """This rank's RNG state in a checkpoint written by ``Run.save`` (a list by rank), or in an older
    fine-tuning checkpoint (one state); None when the checkpoint was written by another number of
    processes (its ranks' streams are not this run's ranks')."""
    rng = state["rng"]
    if not isinstance(rng, list):
        return rng
    return rng[env.rank] if len(rng) == env.world_size else None
