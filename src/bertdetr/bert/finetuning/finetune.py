"""What Google's fine-tuning programs (``run_classifier.py``, ``run_squad.py``) share: the model a
run starts with (``start_model``: Google's rule for the output dir), the training loop (Google's
``create_optimizer``: AdamWeightDecay, weight decay 0.01, warmup then linear decay, gradients
clipped to global norm 1.0), resumable to the step, then the exported model. What it starts from
(the model's files, casing and initial weights, from the flags or beside ``--init-checkpoint``) is
read by ``init_checkpoint.py``.

Each program keeps its own head, features and batches (``classifier.py``, ``squad.py``, ``ner.py``,
``multiple_choice.py``) and passes them in. The run's folder, scalars, progress bar, checkpoints and
teardown are the scaffold every trainer shares (``bertdetr.training.run``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from bertdetr.bert.optimization import clip_by_global_norm, compile_step, create_optimizer, google_lr_factor
from bertdetr.bert.weights import export_model
from bertdetr.errors import BertDetrError, require, require_at_least, require_field_types
from bertdetr.training.checkpoint import latest_checkpoint, load_checkpoint
from bertdetr.fileio import atomic_output
from bertdetr.training.compiling import compile_mode_error
from bertdetr.training.distributed import Distributed, data_parallel, main_then_share, set_rng_state
from bertdetr.training.folder import (BERT_PRETRAIN, FINETUNE_CONFIGS, RunLock, remove_run_files,
                                      remove_stale_temporaries, run_kind)
from bertdetr.training.precision import MixedPrecision
from bertdetr.training.profiling import StepProfiler, check_profile_steps
from bertdetr.training.run import Run, count_non_finite, ignore_stop_signals, rank_rng_state, setup_process


@dataclass(kw_only=True)
class FinetuneConfig:
    """The flags both of Google's fine-tuning programs have (same names and defaults), plus this
    program's own; ``ClassifierConfig``, ``SquadConfig``, ``NerConfig`` and ``MultipleChoiceConfig``
    extend it (keyword-only fields, so theirs without defaults may follow these)."""

    output_dir: str
    """Features (*.tf_record), checkpoints, results and the fine-tuned model (model/)."""
    vocab_file: str | None = None
    """vocab.txt of the model (default: the one beside --init-checkpoint)."""
    bert_config_file: str | None = None
    """bert_config.json / config.json (default: the one beside --init-checkpoint)."""
    init_checkpoint: str | None = None
    """A HF-format BERT directory (BertModel, BertForPreTraining, BertForMaskedLM or a model this
    command fine-tuned) or a Google TF checkpoint prefix (needs TensorFlow); none: random weights."""
    do_lower_case: bool | None = None
    """Lowercase the input text (True for uncased models); default: as --init-checkpoint's tokenizer was saved, else True."""
    max_seq_length: int
    """Total input length after WordPiece tokenization (each program sets Google's default)."""
    do_train: bool = False
    """Fine-tune on the training set."""
    train_batch_size: int = 32
    """Examples per micro-batch per process; the global batch is this x grad_accum x processes
    (Google's total batch size on one process)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (their gradients summed)."""
    predict_batch_size: int = 8
    """Total batch size for predict."""
    learning_rate: float = 5e-5
    """The initial learning rate for Adam."""
    num_train_epochs: float = 3.0
    """Total number of training epochs to perform (of examples: Google counts a SQuAD example once,
    however many windows it has)."""
    warmup_proportion: float = 0.1
    """Proportion of training with a linear learning-rate warmup (0.1 = 10%)."""
    save_checkpoints_steps: int = 1000
    """How often to save the model checkpoint."""
    keep_checkpoint_max: int = 5
    """Checkpoints kept (Estimator's default 5; 0 = all)."""
    features_only: bool = False
    """Write the features (tf_record files) and stop."""
    resume: bool = False
    """Continue training from the latest checkpoint in output_dir."""
    overwrite: bool = False
    """Train again in an output_dir that holds this command's checkpoints, deleting them and the
    run's logs, metrics and model/ first (features and predictions are left)."""
    stop_at_step: int | None = None
    """Stop training (checkpointed) after this step; resume later."""
    profile_steps: list[int] = field(default_factory=list)
    """Two training steps, the first and the last profiled with torch.profiler (e.g. 101 105): output_dir/profile gets the time per step, each kernel's and operator's time and a trace (bertdetr.training.profiling)."""
    seed: int = 12345
    """Seeds the head's initialisation, the batch order and dropout (not Google's fixed 12345
    shuffle of the SQuAD examples before train.tf_record)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available; under torchrun each rank's own GPU)."""
    bf16: bool = False
    """bfloat16 autocast (weights and optimizer state stay fp32)."""
    fp16: bool = False
    """float16 autocast with a gradient scaler (GPUs without bf16)."""
    compile: bool = False
    """torch.compile the step: the model's forward and loss (its backward compiled with them) and the update (clipping, the skip of a non-finite step, the optimizer), each one graph; batches cut to their longest row compile once more, with dynamic shapes. Compiled dropout draws other masks than eager's (inductor's own random numbers)."""
    compile_mode: str = "default"
    """torch.compile's mode: default, reduce-overhead (CUDA graphs: one per batch length, see pad_to_multiple_of), max-autotune, max-autotune-no-cudagraphs."""
    pad_to_multiple_of: int = 1
    """classify, ner and multiple-choice: training batches are cut to their longest row rounded up to a multiple of this (1: the longest row; e.g. 32 bounds the batch lengths, and reduce-overhead's CUDA graphs, to max_seq_length / 32; the same numbers). squad's windows are always full length."""
    max_non_finite_steps: int = 1
    """Steps in a row with a non-finite loss or gradient that stop the run (each is skipped on the device, weights untouched, and reported at the next logged step)."""
    num_workers: int | None = None
    """DataLoader workers assembling the training batches (default: none on a CPU, one on a GPU)."""
    num_threads: int | None = None
    """CPU threads of a CPU run (None: the CPUs free for this process at start, see bertdetr.training.threads)."""
    log_every: int = 10
    """Log the training loss every this many steps (scalars.csv)."""
    eval_every: int = 0
    """classify, ner and multiple-choice with --do-eval: also evaluate on the dev set every this many training steps, logged as eval_* scalars (0: after training only, as Google's programs)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        require_field_types(self, "--")
        # errors name Google's flag spellings, which the command accepts as they are
        require_at_least(self, ("max_seq_length", "train_batch_size", "predict_batch_size", "save_checkpoints_steps",
                                "log_every", "stop_at_step", "num_threads", "pad_to_multiple_of"), 1, "--")
        require_at_least(self, ("keep_checkpoint_max", "num_workers", "eval_every"), 0, "--")
        # (do_eval: classify's, ner's and multiple-choice's; squad has no dev set to evaluate during training)
        require(not self.eval_every or getattr(self, "do_eval", False),
                "--eval-every evaluates on the dev set while training: bert classify, ner and multiple-choice, "
                "with --do-eval")
        require_at_least(self, ("grad_accum", "max_non_finite_steps"), 1, "--")
        check_profile_steps(self.profile_steps, "--profile-steps")
        require(compile_mode_error(self.compile_mode, "--compile-mode") is None,
                compile_mode_error(self.compile_mode, "--compile-mode"))
        require(not (self.bf16 and self.fp16), "--bf16 and --fp16: choose one")
        require(self.learning_rate > 0, f"--learning_rate must be positive, got {self.learning_rate}")
        require(self.num_train_epochs > 0, f"--num_train_epochs must be positive, got {self.num_train_epochs}")
        require(0 <= self.warmup_proportion <= 1,
                f"--warmup_proportion must be in [0, 1], got {self.warmup_proportion}")
        require(not (self.resume and self.overwrite), "--resume and --overwrite: choose one")


def _check_kind(output_dir: str, kind: str) -> None:
    found = run_kind(output_dir) if os.path.isdir(output_dir) else None
    if found is not None and found != kind:
        hint = " (a pretraining run's model/ goes in --init-checkpoint)" if found == BERT_PRETRAIN else ""
        raise BertDetrError(f"{output_dir} holds a `bertdetr {found}` run, not a `bertdetr {kind}` run: choose "
                            f"another --output-dir{hint}")


def check_run_folder(output_dir: str, kind: str, env: Distributed) -> None:
    """Before a command writes its features into ``output_dir``: a folder that another process's run
    holds, or that holds another kind of run, is refused, as ``start_model`` refuses it later, when
    the features would already be written over theirs. (The lock is taken again by ``start_model``.)"""
    def look() -> None:
        if os.path.isfile(os.path.join(output_dir, RunLock.NAME)):  # (a folder no run has held has none)
            RunLock(output_dir).release()
        _check_kind(output_dir, kind)

    main_then_share(env, look)


def run_checkpoint(output_dir: str, do_train: bool, resume: bool, kind: str,
                   overwrite: bool = False) -> tuple[str, dict] | None:
    """The checkpoint a run starts from, as Google's estimator: without training, the latest one of
    ``output_dir`` (path and state) is what is evaluated or predicted with; training into a
    directory that has checkpoints must say ``resume`` (then ``finetune`` continues from them) or
    ``overwrite`` (the previous run's checkpoints, logs, metrics and model/ are deleted first).
    None: start from --init-checkpoint. A folder holding another kind of run (``kind``: "bert
    classify" or "bert squad"; a pretraining or DETR run) is refused, whatever the flags."""
    _check_kind(output_dir, kind)
    last = latest_checkpoint(output_dir)
    if not do_train and last:
        return last, load_checkpoint(last)
    if do_train and overwrite and os.path.isdir(output_dir):
        remove_run_files(output_dir)
        config = os.path.join(output_dir, FINETUNE_CONFIGS[kind])
        if os.path.isfile(config):
            os.remove(config)
        return None
    if do_train and last and not resume:
        raise BertDetrError(f"{output_dir} already has checkpoints ({os.path.basename(last)}): give --resume to "
                            "continue that run, --overwrite to train again (deleting them), or another --output-dir")
    return None


def train_batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The examples of training batch ``step`` (0-based): batches run through one seeded shuffle of
    the examples per epoch, across epoch boundaries (Google repeats the data, then batches with
    drop_remainder). Depends only on its arguments, so a resumed run sees the same batches."""
    out: list[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        out.extend(_epoch_order(num_examples, seed, epoch)[offset:offset + batch_size - len(out)].tolist())
    return out


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded shuffle of an epoch, kept for the epoch's batches (made afresh for each, it took
    2 ms a batch at MNLI's 393k examples)."""
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))


HOST = torch.device("cpu")


def take_batch(data: dict[str, torch.Tensor], index, device: torch.device,
               pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Rows ``index`` of the features ``data`` (tensors [N,T], [N,C,T] or [N]) as a batch on
    ``device`` (int64), cut to the longest row's length rounded up to ``pad_to_multiple_of`` (at
    most T): the columns that are padding in every row change no real token's output (the masked
    keys), so they are not computed."""
    batch = {k: v[index] for k, v in data.items()}
    longest = max(1, int(batch["input_mask"].sum(-1).max()))
    T = min(-(-longest // pad_to_multiple_of) * pad_to_multiple_of, batch["input_mask"].shape[-1])
    return {k: (v[..., :T] if v.dim() >= 2 else v).to(device=device, dtype=torch.long) for k, v in batch.items()}


def eval_batches(data: dict[str, torch.Tensor], batch_size: int, device) -> Iterator[dict[str, torch.Tensor]]:
    """``take_batch`` of consecutive rows, ``batch_size`` at a time, in order."""
    n = len(data["input_ids"])
    for start in range(0, n, batch_size):
        yield take_batch(data, slice(start, min(start + batch_size, n)), device)


def schedule(num_examples: int, options: FinetuneConfig, env: Distributed, unit: str = "examples") -> tuple[int, int]:
    """Google's step counts: ``num_examples / global batch * num_train_epochs`` training steps
    (truncated; the global batch is ``train_batch_size x grad_accum x world_size``, Google's
    ``train_batch_size`` on one process) and ``warmup_proportion`` of them warming up. No step at
    all is an error."""
    batch = options.train_batch_size * options.grad_accum * env.world_size
    num_train_steps = int(num_examples / batch * options.num_train_epochs)
    if num_train_steps == 0:
        raise BertDetrError(f"{num_examples} training {unit} in batches of {batch} for "
                            f"{options.num_train_epochs} epochs make no training step")
    return num_train_steps, int(num_train_steps * options.warmup_proportion)


def labelled_checkpoint(create: Callable[[list[str]], nn.Module], labels: Sequence[str],
                        what: str = "labels") -> Callable[[str, dict], nn.Module]:
    """``start_model``'s ``from_checkpoint`` for a head with labels: ``create(the checkpoint's
    labels)`` with its weights; labels other than ``labels`` (the data's) are an error."""
    def from_checkpoint(last: str, state: dict) -> nn.Module:
        model = create(list(state["labels"]))
        if model.labels != list(labels):
            raise BertDetrError(f"{last} was trained for {what} {model.labels}, the data has {list(labels)}")
        model.load_state_dict(state["model"])
        return model

    return from_checkpoint


def train_labelled(run: Run, model: nn.Module, data: dict[str, torch.Tensor], options: FinetuneConfig,
                   device: torch.device, num_train_steps: int, num_warmup_steps: int, desc: str,
                   vocab_file: str, summary: dict,
                   evaluate: Callable[[nn.Module], dict[str, float]] | None = None, head_lrs=None) -> bool:
    """``finetune`` of a head with labels (its checkpoints identified by them and its class) on the feature rows
    ``data``, a row per example (``evaluate``, ``head_lrs``: as ``finetune``'s); records ``step``, ``num_train_steps``
    and ``export`` in ``summary``. Returns False when stopped early (``stop_at_step``: resume to finish)."""
    if "label_ids" in data:  # (a span head has start and end ids, made from its labels)
        model.check_label_ids(data["label_ids"])
    step, export = finetune(run, model, lambda index: take_batch(data, index, HOST, options.pad_to_multiple_of),
                            len(data["input_ids"]), options, device, num_train_steps, num_warmup_steps,
                            {"labels": model.labels, "head": type(model).__name__}, desc, vocab_file, evaluate,
                            head_lrs)
    summary.update(step=step, num_train_steps=num_train_steps)
    if export is None:
        return False
    summary["export"] = export
    return True


def setup(options: FinetuneConfig) -> tuple[Distributed, torch.device]:
    """This process's place in the run and its device: under ``torchrun`` it joins the process
    group (gloo on CPU, nccl on GPU) and takes its rank's GPU; on a CPU, ``num_threads`` threads
    (``training.run.setup_process``)."""
    return setup_process(options.device, options.num_threads)


class _Discard:
    """A file that keeps nothing: where a rank other than the main one writes the features."""

    def write(self, data) -> int:
        return len(data)


@contextlib.contextmanager
def features_output(path: str, env: Distributed) -> Iterator:
    """``atomic_output(path, "wb")`` on the main process; every other rank makes the same features
    in memory and writes them nowhere (one writer per file)."""
    if env.main:
        with atomic_output(path, "wb") as f:
            yield f
    else:
        yield _Discard()


def start_model(options: FinetuneConfig, kind: str, from_checkpoint: Callable[[str, dict], nn.Module],
                from_init: Callable[[], tuple[nn.Module, bool]], untrained: str, env: Distributed,
                device: torch.device) -> tuple[nn.Module, int, Run]:
    """The model a run starts with, its step and its ``Run`` (holding the folder's lock on the
    main process: ``Run.close`` it when done). Without training, ``output_dir``'s latest
    checkpoint when it has one (``run_checkpoint``: Google's rule), made by
    ``from_checkpoint(path, state)``; otherwise ``from_init()`` -> (model, whether its head was
    loaded): evaluating a head that was never trained is warned about (``untrained``: what is done
    with it). A training run that resumes continues from the latest checkpoint (``finetune``).
    The folder is looked at (and, with ``overwrite``, cleared) by the main process; its answer is
    every rank's."""
    torch.manual_seed(options.seed)  # the same new head on every rank

    held: list[RunLock] = []  # the main process's lock on the folder: one run at a time in it

    def look() -> str | None:
        held.append(RunLock(options.output_dir))
        remove_stale_temporaries(options.output_dir)
        start = run_checkpoint(options.output_dir, options.do_train, options.resume, kind, options.overwrite)
        return None if start is None else start[0]

    try:
        start = main_then_share(env, look)
        step = 0
        if start is not None:
            state = load_checkpoint(start)
            model = from_checkpoint(start, state)
            step = int(state["step"])
            if not options.do_train and env.main and not os.path.isdir(os.path.join(options.output_dir, "model")):
                warnings.warn(f"{options.output_dir}: its run stopped before it finished (no model/ exported): this is "
                              f"its checkpoint at step {step}; its training command again with --resume finishes it", stacklevel=3)
        else:
            model, head_loaded = from_init()
            if not options.do_train and not head_loaded and env.main:
                warnings.warn(f"{untrained} that was never trained: --init-checkpoint has none and "
                              f"{options.output_dir} no checkpoint", stacklevel=3)
    except BaseException:
        for held in held:
            held.release()
        raise
    resumed_from = latest_checkpoint(options.output_dir) if options.do_train and options.resume else None
    run = Run(env, options.output_dir, kind, resumed_from, config_file=FINETUNE_CONFIGS[kind],
              lock=held[0] if held else None)
    return model.to(device), step, run


def rank_batches(num_examples: int, options: FinetuneConfig, env: Distributed, step: int) -> list[list[int]]:
    """This rank's micro-batches (example indexes) of training step ``step`` (0-based): the global
    batch ``train_batch_indices(..., train_batch_size x grad_accum x world_size, ...)`` cut into
    the ranks' shares in rank order, each share into ``grad_accum`` micro-batches of
    ``train_batch_size``. So the ranks of a step together see exactly the global batch a single
    process with the same global batch sees."""
    size, accum = options.train_batch_size, options.grad_accum
    indices = train_batch_indices(num_examples, size * accum * env.world_size, options.seed, step)
    mine = indices[env.rank * size * accum:(env.rank + 1) * size * accum]
    return [mine[m * size:(m + 1) * size] for m in range(accum)]


class _StepBatches(torch.utils.data.Dataset):
    """Item ``step``: this rank's micro-batches of that step, as host tensors (``make_batch`` of
    ``rank_batches``); read in step order by a DataLoader (its workers, pinned memory)."""

    def __init__(self, make_batch: Callable[[Sequence[int]], dict[str, torch.Tensor]], num_examples: int,
                 options: FinetuneConfig, env: Distributed):
        self.make_batch, self.num_examples, self.options, self.env = make_batch, num_examples, options, env

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> list[dict[str, torch.Tensor]]:
        return [self.make_batch(index) for index in rank_batches(self.num_examples, self.options, self.env, step)]


def default_num_workers(device: torch.device) -> int:
    """DataLoader workers when ``num_workers`` is not given: none on a CPU (the step uses the cores; a
    batch is a slice of tensors in memory), one on a GPU (assembling and pinning the next batch)."""
    return 1 if device.type == "cuda" else 0


def step_loader(make_batch, num_examples: int, options: FinetuneConfig, env: Distributed, device: torch.device,
                start: int, stop: int) -> torch.utils.data.DataLoader:
    """The micro-batches of steps ``start`` .. ``stop`` - 1, in order (so a resumed run continues
    exactly), with ``num_workers`` workers and, on a GPU, pinned memory."""
    workers = default_num_workers(device) if options.num_workers is None else options.num_workers
    return torch.utils.data.DataLoader(_StepBatches(make_batch, num_examples, options, env), batch_size=None,
                                       sampler=range(start, stop), num_workers=workers,
                                       pin_memory=device.type == "cuda", persistent_workers=False,
                                       worker_init_fn=ignore_stop_signals if workers else None,
                                       # its own generator: a loader's start draws a seed, which
                                       # from torch's global one would shift the dropout stream
                                       generator=torch.Generator().manual_seed(options.seed))


@dataclass
class Tuning:
    """What a fine-tuning step works with."""

    model: nn.Module
    """The model (its parameters, its state for checkpoints)."""
    net: nn.Module
    """What is called: the model, compiled (``compile``) and/or in DistributedDataParallel."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: MixedPrecision
    env: Distributed
    device: torch.device
    update: Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
    """``clip_and_update`` of the optimizer (compiled with ``compile``): (losses, clip norm) -> (norm, skipped)."""
    health: torch.Tensor
    """On the device, float32 [4]: non-finite steps in a row now, the most in a row since the last
    log, skipped steps in all, the first step of the current run of them (``count_non_finite``;
    read at logging steps)."""


def make_tuning(model: nn.Module, options: FinetuneConfig, env: Distributed, device: torch.device,
                num_train_steps: int, num_warmup_steps: int, head_lrs: dict[str, float] | None = None) -> Tuning:
    """Google's optimizer and schedule (``head_lrs``: ``finetune``'s), precision, the net and update (``compile``d)."""
    optimizer, scheduler = create_optimizer(model, options.learning_rate, num_train_steps, num_warmup_steps,
                                            head_lrs=head_lrs)
    net, update = compile_step(model, optimizer, options.compile, options.compile_mode)
    precision = MixedPrecision(device, options.bf16, options.fp16)
    return Tuning(model, data_parallel(net, env, device), optimizer, scheduler, precision, env, device, update,
                  torch.zeros(4, device=device))


def finetune(run: Run, model: nn.Module, make_batch: Callable[[Sequence[int]], dict[str, torch.Tensor]],
             num_examples: int, options: FinetuneConfig, device: torch.device, num_train_steps: int,
             num_warmup_steps: int, identity: dict, desc: str, vocab_file: str,
             evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
             head_lrs: dict[str, float] | None = None) -> tuple[int, str | None]:
    """Fine-tunes ``model`` as Google's programs do; returns the last step and, when training
    finished (not stopped by ``stop_at_step``), the exported model (``output_dir/model``, written
    by the main process).

    Each step (``finetune_step``): this rank's micro-batches (``rank_batches``; ``make_batch`` of
    example indexes gives host tensors), ``model(**batch)`` (a dict with a scalar ``loss``; its
    other scalar ``*_loss`` terms are logged too), backward, clip to global norm 1.0, Google's
    optimizer and schedule. Checkpoints (the last ``keep_checkpoint_max`` kept) every
    ``save_checkpoints_steps`` and at the end hold the model, optimizer, schedule, step, every
    rank's RNG state and ``identity`` (what the run was made for, e.g. its labels, and the global
    batch): a resumed ``run`` continues from its checkpoint, whose identity must match. On
    SIGTERM/SIGINT: a checkpoint at the step, then ``Preempted``. Nothing is read back from the
    device but at logged steps (once: the losses, the gradient norm and the count of skipped
    non-finite steps, ``Run.read_logged``), which also log the training sequences (feature rows, of
    every rank) per second since the last log. ``evaluate(model)`` (the dev set's metrics), when
    given, runs every ``eval_every`` steps before the last on the main process, logged as
    ``eval_*``; it draws no random numbers, so the training goes on as without it. ``head_lrs``: the
    lr of the parameters under each name prefix, when not ``learning_rate`` (the logged one)."""
    env = run.env
    t = make_tuning(model, options, env, device, num_train_steps, num_warmup_steps, head_lrs)
    global_batch = options.train_batch_size * options.grad_accum * env.world_size
    identity = {**identity, "num_train_steps": num_train_steps, "global_batch": global_batch}
    step = 0
    torch.manual_seed(options.seed + 1 + env.rank)  # dropout: a stream per rank
    if run.resumed:
        step = _resume(run, t, identity, options.seed)
    stop = num_train_steps if options.stop_at_step is None else min(options.stop_at_step, num_train_steps)
    check_profile_steps(options.profile_steps, "--profile-steps", num_train_steps)
    with run.logging(num_train_steps, step, desc, "step", options.progress) as log, \
            StepProfiler(options.profile_steps, options.output_dir, device, f"bert {desc}", env.rank,
                         env.world_size) as profiler:
        model.train()
        t0, seen = time.perf_counter(), 0
        profiler.step_begins(step + 1)  # (a step's time includes waiting for its batches)
        for micro_batches in step_loader(make_batch, num_examples, options, env, device, step, stop):
            # the lr of this step from the schedule on the host (a compiled update's lr is a tensor)
            lr = options.learning_rate * google_lr_factor(step, num_train_steps, num_warmup_steps)
            names, terms, grad_norm = finetune_step(t, micro_batches, step)
            step, seen = step + 1, seen + global_batch
            t0 += profiler.step_ends(step)  # (the logged rate leaves the profile's writing out)
            logging_step = step % options.log_every == 0 or step == stop
            if logging_step:
                values, skipped = run.read_logged(
                    [terms, grad_norm], t.health, options.max_non_finite_steps, lambda v, since, most:
                    f"step {since} (loss {v[names.index('loss')]:.4g}, grad norm {v[-1]:.4g}; "
                    f"{most} step(s) in a row skipped)")
                losses, rate = dict(zip(names, values)), seen / max(time.perf_counter() - t0, 1e-9)
                log.log(step, {**losses, "lr": lr, "grad_norm": values[-1], "sequences_per_s": rate,
                               **({"non_finite_steps": skipped} if skipped else {}), **t.precision.scalars()})
                log.show(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}", seq_s=f"{rate:.1f}")
                t0, seen = time.perf_counter(), 0
            log.advance()
            if evaluate is not None and options.eval_every and step % options.eval_every == 0 and step < stop \
                    and env.main:  # the other ranks wait for it in the next step's all-reduce
                e0 = time.perf_counter()
                log.log(step, {f"eval_{k}": v for k, v in evaluate(model).items()})
                t0 += time.perf_counter() - e0  # (the training rate leaves the evaluation out)
            saving = step % options.save_checkpoints_steps == 0 or step == stop
            stopping = step < stop and run.stop_requested(device, agree=logging_step)
            if saving or stopping:
                run.save({"model": model.state_dict(), "optimizer": t.optimizer.state_dict(),
                          "scheduler": t.scheduler.state_dict(), "precision": t.precision.state_dict(),
                          "health": t.health.tolist(), "step": step, **identity}, step, options.keep_checkpoint_max,
                          device)
            if stopping:
                raise run.preempted(f"step {step}")
            profiler.step_begins(step + 1)
    if step < num_train_steps:
        return step, None
    if not env.main:
        return step, os.path.join(options.output_dir, "model")
    return step, export_model(model, os.path.join(options.output_dir, "model"), vocab_file, options.do_lower_case)


def _resume(run: Run, t: Tuning, identity: dict, seed: int) -> int:
    """Loads the checkpoint ``run`` resumes from into ``t``; returns its step."""
    state = run.load_resumed()
    # what checkpoints written before grad_accum and torchrun (global_batch) or heads' names (head) lack: not compared
    identity = {k: v for k, v in identity.items() if k in state or k not in ("global_batch", "head")}
    stored = {k: state.get(k) for k in identity}
    if stored != identity:
        raise BertDetrError(f"cannot resume from {run.resumed_from}: it was made for {stored}, this run is {identity}")
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.precision.load_state_dict(state.get("precision") or {})
    if "health" in state:  # (checkpoints before the skipped steps were counted have none)
        t.health.copy_(torch.tensor(state["health"], dtype=t.health.dtype))
    step = int(state["step"])
    run.rewind_scalars(step)
    rng = rank_rng_state(state, run.env)
    if rng is not None:
        set_rng_state(rng, t.device)
    else:  # (the batches depend on the step alone; the dropout streams start afresh, one per rank)
        torch.manual_seed(seed + 1 + run.env.rank + step)
    processes = len(state["rng"]) if isinstance(state["rng"], list) else None
    if run.env.main:
        print(f"resuming from {run.resumed_from} at step {step}" + (
            f" with {run.env.world_size} processes (the checkpoint's run had {processes}: the same batches, "
            "new dropout streams)" if rng is None else ""))
    return step


def finetune_step(t: Tuning, micro_batches: Sequence[dict[str, torch.Tensor]],
                  step: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """One step of Google's fine-tuning: each micro-batch forward (autocast) and backward (DDP
    syncs the gradients on the last), clip to global norm 1.0, the optimizer and the schedule.
    Returns the names of the scalar ``*_loss`` terms, their values averaged over micro-batches and
    ranks and the gradient norm, on the device: nothing is read back here. A step whose loss or
    gradient is not finite (on any rank: the ranks' mean) is skipped on the device, weights and
    moments untouched, and counted in ``t.health`` (``step``: the steps done before this one; fp16:
    an overflow the scaler skips instead)."""
    accum = len(micro_batches)
    totals: dict[str, torch.Tensor] = {}
    for m, batch in enumerate(micro_batches):
        batch = {k: v.to(t.device, non_blocking=True) for k, v in batch.items()}
        sync = m == accum - 1 or t.env.world_size == 1
        with contextlib.nullcontext() if sync else t.net.no_sync():
            with t.precision.autocast():
                out = t.net(**batch)
            t.precision.backward(out["loss"] / accum)
        for k, v in out.items():
            if k.endswith("loss") and v.dim() == 0:
                totals[k] = totals.get(k, 0) + v.detach().float() / accum
    names = sorted(totals)
    stacked = torch.stack([totals[k] for k in names])
    if t.env.world_size > 1:
        torch.distributed.all_reduce(stacked)
        stacked /= t.env.world_size
    if not t.precision.overflow_skips:
        t.optimizer.prepare()
        grad_norm, bad = t.update(stacked, 1.0)
    else:  # fp16: the scaler's own skip (it reads the host each step)
        t.precision.unscale(t.optimizer)
        grad_norm = clip_by_global_norm(t.optimizer.flat_parameters(), 1.0)
        bad = ~torch.isfinite(stacked).all()
        t.precision.step(t.optimizer)
    count_non_finite(t.health, bad, step + 1)
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return names, stacked, grad_norm
