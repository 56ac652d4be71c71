"""``bertdetr bert pretrain``: Google's ``run_pretraining.py`` as a short explicit PyTorch loop.

One command from a laptop to many machines: run it plainly for one process, or under ``torchrun``
for DistributedDataParallel (gloo on CPU, nccl on GPU), each rank reading its own files. Per step:
``grad_accum`` micro-batches of ``batch_size`` sequences per process, loss = masked-LM + NSP
(Google's total_loss), gradients clipped to global norm 1.0, Google's AdamWeightDecay (or LAMB)
and its warmup/decay schedule. The global batch is ``batch_size * grad_accum * world_size``
(Google's ``train_batch_size``).

Checkpoints (atomic, the last K kept) hold the model, optimizer, schedule, step, the data position
and every rank's RNG state: ``resume=True`` continues so that the losses after resuming equal those
of an uninterrupted run (with the same number of processes; with another number it continues
from the same step with the data re-dealt). A non-finite loss stops the run at that step and keeps
the last good checkpoint.

Evaluation is ``run_pretraining.py --do_eval``'s metric_fn: masked_lm_accuracy and masked_lm_loss
(weighted by masked_lm_weights), next_sentence_accuracy and next_sentence_loss, over held-out
records, written to ``eval_results.txt`` (Google's ``key = value`` lines) and ``eval_metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from bertdetr.bert.data.tokenization import load_vocab
from bertdetr.bert.model import BertConfig, BertForPreTraining, build_bert_for_pretraining
from bertdetr.bert.optimization import clip_by_global_norm, compile_step, create_optimizer, google_lr_factor
from bertdetr.bert.pretraining.roberta import DynamicMasking
from bertdetr.bert.pretraining.dataset import PretrainingStream, RecordShape, inspect_records, iter_eval_batches
from bertdetr.bert.pretraining.evaluation import evaluate, write_eval_results
from bertdetr.bert.weights import export_model, saved_do_lower_case
from bertdetr.errors import BertDetrError, require, require_at_least, require_field_types
from bertdetr.training.checkpoint import load_training_state
from bertdetr.training.compiling import CUDA_GRAPH_MODES, compile_mode_error
from bertdetr.training.distributed import Distributed, data_parallel, local_world_size, set_rng_state
from bertdetr.training.folder import BERT_PRETRAIN
from bertdetr.training.precision import MixedPrecision
from bertdetr.training.profiling import StepProfiler, check_profile_steps
from bertdetr.training.run import Run, count_non_finite, ignore_stop_signals, setup_process
from bertdetr.training.scalars import read_scalars
from bertdetr.training.threads import available_cpus


# Google's released model sizes (bert-base/large and the 24 "BERT miniatures" of the README):
# layers L, hidden H, heads H/64, intermediate 4H.
MODEL_SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),
               "base": (12, 768), "large": (24, 1024)}


def model_preset(size: str, vocab_size: int, max_position_embeddings: int = 512) -> BertConfig:
    """A BertConfig of one of Google's sizes (``MODEL_SIZES``) for a vocabulary of ``vocab_size``."""
    if size not in MODEL_SIZES:
        raise BertDetrError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
    layers, hidden = MODEL_SIZES[size]
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                      max_position_embeddings=max_position_embeddings)


def check_model_size(init_checkpoint: str, size: str) -> None:
    """Refuses (``BertDetrError``) a model size asked for together with an init checkpoint of
    another size: the architecture is the checkpoint's, and the size would be silently ignored.
    For the caller that knows the size was given (the CLI's ``--model-size``)."""
    layers, hidden = model_preset(size, 1).num_hidden_layers, model_preset(size, 1).hidden_size
    beside = init_checkpoint if os.path.isdir(init_checkpoint) else os.path.dirname(os.path.abspath(init_checkpoint))
    found = [p for p in (os.path.join(beside, "config.json"), os.path.join(beside, "bert_config.json"))
             if os.path.isfile(p)]
    if not found:
        return  # (no config to compare: loading the checkpoint says what is missing)
    saved = BertConfig.from_json_file(found[0])
    if (saved.num_hidden_layers, saved.hidden_size) != (layers, hidden):
        raise BertDetrError(f"--model-size {size} ({layers} layers of {hidden}) but the init checkpoint "
                            f"{init_checkpoint} is {saved.num_hidden_layers} layers of {saved.hidden_size}: "
                            "the model is the checkpoint's; leave out --model-size")


@dataclass
class PretrainConfig:
    input_files: list[str]
    """TFRecord files of ``make-data`` (already expanded from globs)."""
    output_dir: str
    """Checkpoints, logs, metrics and the exported model go here."""
    model: BertConfig
    """The model to pretrain (ignored for the architecture when ``init_checkpoint`` is given)."""
    vocab_file: str | None = None
    """vocab.txt of the data: checked against ``model.vocab_size`` and copied into the export."""
    do_lower_case: bool = True
    """Recorded in the exported model for its tokenizer."""
    eval_files: list[str] = field(default_factory=list)
    """Held-out TFRecord files for evaluation at the end (none: no evaluation)."""
    init_checkpoint: str | None = None
    """A Hugging Face-format BERT directory to start from (continued pretraining)."""
    batch_size: int = 32
    """Sequences per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    num_train_steps: int = 100000
    """Optimizer steps of the whole run (the learning rate decays to 0 at this step)."""
    num_warmup_steps: int = 10000
    """Linear warmup steps (Google's schedule counts from step 0)."""
    learning_rate: float = 1e-4
    """Peak learning rate."""
    optimizer: str = "adam"
    """"adam" (Google's AdamWeightDecay) or "lamb" (layer-wise trust ratio, for large batches)."""
    weight_decay: float = 0.01
    """Decoupled weight decay, not applied to LayerNorm parameters and biases."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    seed: int = 12345
    """Seeds the data order and dropout."""
    save_every: int = 1000
    """Checkpoint every this many steps (and at the end)."""
    keep_last: int = 3
    """Checkpoints kept (0 = all)."""
    log_every: int = 10
    """Log scalars every this many steps."""
    eval_batch_size: int = 64
    """Sequences per evaluation batch."""
    max_eval_steps: int = 100
    """Evaluation batches at most (Google's default 100)."""
    eval_every: int | None = None
    """Also evaluate every this many steps, logged as ``eval_*`` scalars (a learning curve)."""
    bf16: bool = False
    """bfloat16 autocast for forward and backward (weights and optimizer stay fp32)."""
    fp16: bool = False
    """float16 autocast with a gradient scaler, for GPUs without bf16 (V100, T4); overflowed steps are skipped and logged."""
    compile: bool = False
    """torch.compile the step: the model's forward and losses (its backward compiled with them) and the update (clipping, the skip of a non-finite step, the optimizer), each one graph. Compiled dropout draws other masks than eager's (inductor's own random numbers)."""
    unpad: bool = False
    """Run the encoder layers on the real tokens only, padding dropped (the same numbers; pays where batches are much padded, e.g. length 512 on short documents)."""
    compile_mode: str = "default"
    """torch.compile's mode: default, reduce-overhead (CUDA graphs: the pretraining batches have static shapes; not with unpad), max-autotune, max-autotune-no-cudagraphs."""
    num_workers: int | None = None
    """DataLoader worker processes per rank (default: none on a CPU, where the step needs the cores;
    on a GPU up to 4, within the CPUs per rank; a resumed run keeps its own, the data order depends on them)."""
    num_threads: int | None = None
    """CPU threads of a CPU run (None: the CPUs free for this process at start, see bertdetr.training.threads)."""
    shuffle_buffer: int = 1000
    """Records in each reader's shuffle buffer."""
    max_non_finite_steps: int = 1
    """Steps in a row with a non-finite loss or gradient that stop the run (each is skipped on the device, weights untouched, and reported at the next logged step)."""
    masked_lm_prob: float = 0.15
    """Records of make-data --dynamic-masking: the fraction of tokens masked in each batch."""
    max_predictions_per_seq: int = 20
    """Records of make-data --dynamic-masking: the most masked positions per sequence."""
    resume: bool = False
    """Continue from the latest checkpoint in ``output_dir`` (a new run if it has none)."""
    overwrite: bool = False
    """Start again in an ``output_dir`` that holds a run, deleting its checkpoints and logs."""
    stop_at_step: int | None = None
    """Stop (with a checkpoint) after this step, e.g. to fit a scheduler's time limit; resume later."""
    profile_steps: list[int] = field(default_factory=list)
    """Two steps, the first and the last profiled with torch.profiler (e.g. 101 105): output_dir/profile gets the time per step, each kernel's and operator's time and a trace (bertdetr.training.profiling)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the tensorboard package)."""
    device: str | None = None
    """"cpu", "cuda", ... (default: cuda when available)."""
    progress: bool = True
    """Show a progress bar (rank 0)."""

    def __post_init__(self):
        require_field_types(self, "")
        require_at_least(self, ("batch_size", "grad_accum", "num_train_steps", "save_every", "log_every",
                                "eval_batch_size", "max_eval_steps", "stop_at_step", "num_threads"), 1)
        require(0 <= self.num_warmup_steps <= self.num_train_steps,
                f"num_warmup_steps must be in [0, num_train_steps], got {self.num_warmup_steps}")
        require(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}")
        require(not (self.bf16 and self.fp16), "choose bf16 or fp16, not both")
        require(self.optimizer in ("adam", "lamb"), f"optimizer must be 'adam' or 'lamb', got {self.optimizer!r}")
        require(compile_mode_error(self.compile_mode, "compile_mode") is None,
                compile_mode_error(self.compile_mode, "compile_mode"))
        require(not (self.unpad and self.compile and self.compile_mode in CUDA_GRAPH_MODES),
                f"compile_mode {self.compile_mode} records a CUDA graph per batch shape, and with unpad each "
                "batch has its own token count: choose one (compile_mode default works with unpad)")
        require(self.eval_every is None or (self.eval_every > 0 and bool(self.eval_files)),
                "eval_every needs a positive number of steps and eval_files")
        require(bool(self.input_files), "no input files")
        require(0 < self.masked_lm_prob <= 1, f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        require_at_least(self, ("max_predictions_per_seq", "max_non_finite_steps"), 1)
        check_profile_steps(self.profile_steps, "profile_steps", self.num_train_steps)


def dynamic_masking(config: PretrainConfig, shape: RecordShape) -> DynamicMasking | None:
    """The masking of records written with ``make-data --dynamic-masking`` (None for masked ones):
    ``masked_lm_prob`` and ``max_predictions_per_seq`` of ``config``, the vocabulary of
    ``vocab_file`` (or of ``init_checkpoint``) for [MASK] and the random words."""
    if not shape.dynamic:
        return None
    vocab_file = config.vocab_file or (os.path.join(config.init_checkpoint, "vocab.txt")
                                       if config.init_checkpoint else None)
    if not vocab_file or not os.path.isfile(vocab_file):
        raise BertDetrError("the records are unmasked (make-data --dynamic-masking): masking them needs the "
                            "vocabulary ([MASK], the random words): give --vocab-file")
    return DynamicMasking(load_vocab(vocab_file), config.masked_lm_prob, config.max_predictions_per_seq)


def check_data(config: PretrainConfig, model_config: BertConfig) -> tuple[RecordShape, DynamicMasking | None]:
    """Everything about the data that can be wrong, checked before any training starts; the
    records' shape and, for unmasked records, their masking."""
    shape = inspect_records(config.input_files)
    masking = dynamic_masking(config, shape)
    if shape.max_seq_length > model_config.max_position_embeddings:
        raise BertDetrError(
            f"records have max_seq_length {shape.max_seq_length} but the model has only "
            f"max_position_embeddings {model_config.max_position_embeddings}")
    if config.eval_files:
        eval_shape = inspect_records(config.eval_files)
        if eval_shape != shape:
            raise BertDetrError(f"eval records have {eval_shape}, training records {shape}")
        # the records the evaluations will read, read now (CRCs, shapes, values against the model):
        # a bad one is found before the training, not after it
        for i, _ in enumerate(iter_eval_batches(config.eval_files, config.eval_batch_size, model_config,
                                                masking, config.seed)):
            if i + 1 >= config.max_eval_steps:
                break
    if config.vocab_file is not None:
        n = len(load_vocab(config.vocab_file))
        if n != model_config.vocab_size:
            raise BertDetrError(f"vocab file {config.vocab_file} has {n} entries but the model's "
                                f"vocab_size is {model_config.vocab_size}")
    from bertdetr.bert.data.records import iter_examples

    for i, example in enumerate(iter_examples(config.input_files[0])):
        top = int(max(example["input_ids"]))
        if top >= model_config.vocab_size:
            raise BertDetrError(f"{config.input_files[0]} has token id {top}, outside the model's "
                                f"vocab_size {model_config.vocab_size}: data and model use different vocabularies")
        if i == 100:
            break
    return shape, masking


@dataclass
class Pretraining:
    """A pretraining run, set up (``setup_pretraining``) and under way (``fit``)."""

    config: PretrainConfig
    """The settings in force (a resumed run's recorded ones where it keeps them)."""
    model: BertForPreTraining
    """The model, on ``device``."""
    net: torch.nn.Module
    """What the step calls: the model, compiled and/or wrapped in DDP."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: MixedPrecision
    batches: Iterator[dict[str, torch.Tensor]]
    """This rank's training batches, from the data position of ``step``."""
    step: int
    """Optimizer steps done."""
    env: Distributed
    device: torch.device
    run: Run
    masking: DynamicMasking | None = None
    """The masking of unmasked records (``make-data --dynamic-masking``), for the evaluations too."""
    health: torch.Tensor | None = None
    """On the device, float32 [4]: non-finite steps in a row now, the most in a row since the last
    log, skipped steps in all, the first step of the current run of them (read at logging steps)."""
    next_sentence: bool = True
    """The records have the next-sentence task (not ``make-data --no-next-sentence``)."""
    update: Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]] | None = None
    """``clip_and_update`` of the optimizer (compiled with ``compile``): (losses, clip norm) -> (norm, skipped)."""
    batches_read_at: tuple[int, int] = (0, 0)
    """(step, batches of this rank read by then) where this process's training began: at step s it
    has read ``batches + (s - step) x grad_accum``, which a checkpoint records (``batches_read``)
    for a resume to skip, whatever grad_accum the steps before ran with."""


def pretrain(config: PretrainConfig) -> dict:
    """Runs (or resumes) pretraining; returns a summary (steps, last loss, eval metrics, paths)."""
    t = setup_pretraining(config)
    try:
        if t.run.resumed and t.step >= t.config.num_train_steps:
            # Nothing to do: the run's evaluation and export were made when it ended (re-making
            # them would only rewrite the same files); its last logged losses, not a NaN.
            if t.env.main:
                print(f"the run in {t.config.output_dir} is already complete at step {t.step} "
                      f"(num_train_steps {t.config.num_train_steps}): nothing to do")
            return {"step": t.step, "checkpoint": t.run.last_checkpoint, "losses": _logged_losses(t),
                    "complete": True}
        losses = fit(t)
        config, env = t.config, t.env
        summary = {"step": t.step, "checkpoint": t.run.last_checkpoint, "losses": losses}
        if t.step >= config.num_train_steps:
            if config.eval_files:
                metrics = evaluate(t.model, config.eval_files, config.eval_batch_size, config.max_eval_steps,
                                   t.device, config.bf16, t.masking, config.seed)
                summary["eval"] = metrics
                if env.main:
                    write_eval_results(metrics, config.output_dir, t.step)
            if env.main:
                summary["export"] = export_model(t.model, os.path.join(config.output_dir, "model"),
                                                 *_export_vocab(config))
        t.run.plot(["loss", "masked_lm_loss", "next_sentence_loss", "lr", "grad_norm", "sequences_per_s",
                    "eval_masked_lm_accuracy", "eval_masked_lm_loss", "eval_next_sentence_accuracy"],
                   title="bertdetr bert pretrain")
        return summary
    finally:
        t.run.close()


def _export_vocab(config: PretrainConfig) -> tuple[str | None, bool]:
    """The vocabulary exported with the model and its casing: ``vocab_file`` with ``do_lower_case``;
    without one, the init checkpoint's vocab.txt (the one the run read) with the casing that folder
    was saved with, so that the exported model tokenizes as the one it continues."""
    if config.vocab_file or not config.init_checkpoint:
        return config.vocab_file, config.do_lower_case
    vocab_file = os.path.join(config.init_checkpoint, "vocab.txt")
    if not os.path.isfile(vocab_file):
        return None, config.do_lower_case
    saved = saved_do_lower_case(config.init_checkpoint)
    return vocab_file, config.do_lower_case if saved is None else saved


def _logged_losses(t: Pretraining) -> dict[str, float]:
    """The losses logged at the last step of a finished run (none if its scalars have none)."""
    try:
        series = read_scalars(os.path.join(t.config.output_dir, "scalars.csv"))
    except (OSError, ValueError):
        return {}
    return {k: series[k][-1][1] for k in ("loss", "masked_lm_loss", "next_sentence_loss")
            if series.get(k) and series[k][-1][0] == t.step}


def setup_pretraining(config: PretrainConfig) -> Pretraining:
    """Everything before the first step: process, model, data checked, the run folder (a resumed
    run's settings and state), optimizer, the batch stream at the run's position, the recorded config."""
    env, device = setup_process(config.device, config.num_threads, config.tensorboard)
    if config.num_workers is None:
        config = dataclasses.replace(config, num_workers=default_num_workers(device, available_cpus(),
                                                                             local_world_size()))
    torch.manual_seed(config.seed)  # the same initial weights on every rank and every run
    if config.init_checkpoint:
        model = BertForPreTraining.from_pretrained(config.init_checkpoint)
    else:
        model = build_bert_for_pretraining(config.model)
    model_config = model.config
    shape, masking = check_data(config, model_config)
    run = Run.start(env, config.output_dir, BERT_PRETRAIN, config.resume, config.overwrite)
    try:
        return _setup_in_folder(config, run, model, shape, masking, env, device)
    except BaseException:
        run.close()
        raise


def _setup_in_folder(config: PretrainConfig, run: Run, model: BertForPreTraining, shape: RecordShape,
                     masking: DynamicMasking | None, env: Distributed, device: torch.device) -> Pretraining:
    """``setup_pretraining`` once the run holds its folder."""
    model_config = model.config
    if run.resumed:
        config, model_config = _settings_in_force(run, config, model_config)
        if model_config != model.config:
            torch.manual_seed(config.seed)
            model = build_bert_for_pretraining(model_config)
            shape, masking = check_data(config, model_config)
    model.to(device)
    if not shape.next_sentence:
        freeze_next_sentence(model)
    optimizer, scheduler = create_optimizer(model, config.learning_rate, config.num_train_steps,
                                            config.num_warmup_steps, config.weight_decay, config.optimizer == "lamb")
    precision = MixedPrecision(device, config.bf16, config.fp16)
    torch.manual_seed(config.seed + 1 + env.rank)  # dropout: a different stream on each rank
    step, skip_batches = 0, 0
    health = torch.zeros(4, device=device)
    if run.resumed:
        step, skip_batches = _resume(run, config, model, optimizer, scheduler, precision, env, device, health)

    net, update = compile_step(model, optimizer, config.compile, config.compile_mode)
    net = data_parallel(net, env, device)
    # Every batch's values are checked against the model there, on the host (not in forward).
    stream = PretrainingStream(config.input_files, config.batch_size, config.seed, shape, env.rank,
                               env.world_size, config.num_workers, config.shuffle_buffer, skip_batches,
                               model_config=model_config, masking=masking, unpad=config.unpad)
    batches = iter(batch_loader(stream, config, device))
    run.record_config({"run": BERT_PRETRAIN, **asdict(config), "model": asdict(model_config),
                       "world_size": env.world_size, "record_shape": asdict(shape)})
    return Pretraining(config, model, net, optimizer, scheduler, precision, batches, step, env, device, run,
                       masking=masking, next_sentence=shape.next_sentence, health=health, update=update,
                       batches_read_at=(step, skip_batches))


def freeze_next_sentence(model: BertForPreTraining) -> None:
    """Records without the next-sentence task (``make-data --no-next-sentence``) train the masked
    LM alone: the pooler and the NSP head get no gradient. Frozen before the optimizer and DDP are
    made: DDP (find_unused_parameters=False) fails at the second step on parameters that get none,
    and the optimizer would only decay their weights (what the export held before: untrained
    weights shrunk; now the initial or init checkpoint's ones)."""
    for module in (model.bert.pooler, model.next_sentence):
        module.requires_grad_(False)


def default_num_workers(device: torch.device, cpus: float, ranks_per_machine: int = 1) -> int:
    """DataLoader workers per rank when none are asked for: none on a CPU (the step uses the cores);
    on a GPU up to 4, leaving a CPU per rank for the step itself."""
    if device.type == "cpu":
        return 0
    return max(1, min(4, int(cpus) // max(1, ranks_per_machine) - 1))


def batch_loader(stream: PretrainingStream, config: PretrainConfig,
                 device: torch.device) -> torch.utils.data.DataLoader:
    """The loader of the training batches: workers kept for the whole run; on a GPU, batches in
    pinned memory, so that the step's ``non_blocking`` copies overlap the GPU's work."""
    # Its own generator: the DataLoader draws a base seed when iterated, which must not advance
    # the global RNG that dropout uses (an exact resume restores that RNG before this point).
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.num_workers,
                                       persistent_workers=config.num_workers > 0,
                                       pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals,
                                       generator=torch.Generator().manual_seed(config.seed))


def _resume(run: Run, config: PretrainConfig, model, optimizer, scheduler, precision, env: Distributed,
            device: torch.device, health: torch.Tensor) -> tuple[int, int]:
    """Loads the checkpoint a resumed run continues from; returns (step, batches of this rank to
    skip). With the same processes and batch size the run continues exactly (each rank's RNG
    restored, its stream past the batches the checkpoint's run read, with its own grad_accum); with others, from the same number of sequences seen, the data re-dealt."""
    state = run.load_resumed(map_location="cpu")
    model.load_state_dict(state["model"])
    load_training_state(optimizer, scheduler, state)
    precision.load_state_dict(state.get("precision", {}))
    if "health" in state:  # (checkpoints before the skipped steps were counted have none)
        health.copy_(torch.tensor(state["health"], dtype=health.dtype))
    step = int(state["step"])
    run.rewind_scalars(step)
    # batches each rank read (recorded: a run resumed with another grad_accum read its steps at two
    # rates; checkpoints from before it was recorded ran at one)
    read = int(state.get("batches_read", step * int(state["grad_accum"])))
    if int(state["world_size"]) == env.world_size and int(state["batch_size"]) == config.batch_size:
        # Each rank's stream is the same as the checkpoint's: past the batches it read (a changed
        # grad_accum applies from here on, the order unchanged).
        set_rng_state(state["rng"][env.rank], device)
        return step, read
    seen = read * int(state["batch_size"]) * int(state["world_size"])
    torch.manual_seed(config.seed + env.rank + step)
    if env.main:  # (a changed batch_size alone is in the changed settings; the processes are not settings)
        before = int(state["grad_accum"]) * int(state["batch_size"]) * int(state["world_size"])
        print(f"resuming with {env.world_size} process(es) of batch {config.batch_size} x {config.grad_accum} "
              f"(the checkpoint's run: {state['world_size']} of {state['batch_size']} x {state['grad_accum']}): "
              f"a global batch of {config.batch_size * config.grad_accum * env.world_size} sequences (was {before}), "
              f"the data dealt again from the {seen} sequences seen, new dropout streams")
    return step, seen // (config.batch_size * env.world_size)


def fit(t: Pretraining) -> dict[str, float]:
    """The steps from ``t.step`` to the end (or ``stop_at_step``): ``train_step`` each, scalars every
    ``log_every`` steps, a checkpoint every ``save_every`` and at the end, evaluation every
    ``eval_every``; on SIGTERM/SIGINT a checkpoint at the step, then ``Preempted``. Returns the last
    step's losses."""
    config, env = t.config, t.env
    last_stop = config.num_train_steps if config.stop_at_step is None else min(config.stop_at_step,
                                                                              config.num_train_steps)
    losses: dict[str, float] = {}
    with t.run.logging(config.num_train_steps, t.step, "pretrain", "step", config.progress,
                       config.tensorboard) as log, \
            StepProfiler(config.profile_steps, config.output_dir, t.device, "bert pretrain", env.rank,
                         env.world_size) as profiler:
        t0, seqs = time.perf_counter(), 0
        t.model.train()
        # On a CPU, the last step's batch and outputs, kept until the next step's exist (train_step);
        # on a GPU the caching allocator keeps the memory anyway: holding them only raises the peak.
        previous = None
        while t.step < last_stop:
            # the lr of this step from the schedule on the host (a compiled update's lr is a tensor)
            lr = config.learning_rate * google_lr_factor(t.step, config.num_train_steps, config.num_warmup_steps)
            profiler.step_begins(t.step + 1)
            totals, grad_norm, held = train_step(t)
            # (assigned after the step: the previous step's tensors live until this one's exist)
            previous = held if t.device.type == "cpu" else None
            del held
            t.step += 1
            t0 += profiler.step_ends(t.step)  # (the training rate leaves the profile's writing out)
            seqs += config.batch_size * config.grad_accum * env.world_size
            logging_step = t.step % config.log_every == 0 or t.step == last_stop
            if logging_step:
                # the one read from the device of a logged step (none on the others)
                values, skipped = t.run.read_logged(
                    [totals, grad_norm], t.health, config.max_non_finite_steps, lambda v, since, most:
                    f"step {since} (loss {v[0]:.4g}, grad norm {v[3]:.4g}; {most} step(s) in a row skipped)")
                losses, norm = _losses_of(values[:3], t.next_sentence), values[3]
                rate = seqs / max(time.perf_counter() - t0, 1e-9)
                log.log(t.step, {**losses, "lr": lr, "grad_norm": norm, "sequences_per_s": rate,
                                 **({"non_finite_steps": skipped} if skipped else {}), **t.precision.scalars()})
                t0, seqs = time.perf_counter(), 0
                log.show(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}", seq_s=f"{rate:.1f}")
            log.advance()
            saving = t.step % config.save_every == 0 or t.step == last_stop
            if saving:
                t.run.save(_training_state(t), t.step, config.keep_last, t.device)
            if config.eval_every and t.step % config.eval_every == 0 and log.main:
                # Rank 0 only; the others wait for it at the next step's all-reduce.
                e0 = time.perf_counter()
                metrics = evaluate(t.model, config.eval_files, config.eval_batch_size, config.max_eval_steps,
                                   t.device, config.bf16, t.masking, config.seed)
                log.log(t.step, {f"eval_{k}": v for k, v in metrics.items() if k != "eval_sequences"})
                t0 += time.perf_counter() - e0  # (the training rate leaves the evaluation out)
            if t.step < last_stop and t.run.stop_requested(t.device, agree=logging_step):
                if not saving:
                    t.run.save(_training_state(t), t.step, config.keep_last, t.device)
                raise t.run.preempted(f"step {t.step}")
    return losses


def train_step(t: Pretraining) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """One optimizer step: ``grad_accum`` micro-batches forward and backward (DDP syncs gradients on
    the last), clipping, Google's optimizer and schedule. Returns (loss, masked-LM loss, NSP loss)
    averaged over micro-batches and ranks, the gradient norm, and the last micro-batch with its
    outputs. A non-finite loss or gradient on any rank stops the run (fp16: an overflow the scaler
    skips instead).

    On a CPU the caller keeps that batch and its outputs until the next step has made its own (``fit``):
    freed at once here, glibc's malloc hands the top of its heap back to the system each
    step and faults it in again in the next (measured on the demo's pretraining, one thread: about
    twice the page faults and 1.5-4x the system time)."""
    config, env = t.config, t.env
    totals = torch.zeros(3, device=t.device)
    for micro in range(config.grad_accum):
        batch = {k: v.to(t.device, non_blocking=True) for k, v in next(t.batches).items()}
        sync = micro == config.grad_accum - 1 or env.world_size == 1
        with contextlib.nullcontext() if sync else t.net.no_sync():
            with t.precision.autocast():
                out = t.net(**batch)
            t.precision.backward(out["loss"] / config.grad_accum)
        nsp = out["next_sentence_loss"].detach() if "next_sentence_loss" in out else torch.zeros_like(out["loss"])
        totals += torch.stack([out["loss"].detach(), out["masked_lm_loss"].detach(), nsp]).float() / config.grad_accum
    if env.world_size > 1:
        dist.all_reduce(totals)  # the ranks' mean: the same non-finite verdict on every rank
        totals /= env.world_size
    # Decided on the device, read at the next logged step: a step with a non-finite loss or gradient
    # is skipped there (weights and moments untouched). fp16: non-finite gradients are an overflow
    # the scaler skips, not a failure (its own check reads the host each step).
    if not t.precision.overflow_skips:
        t.optimizer.prepare()
        grad_norm, bad = t.update(totals, config.max_grad_norm)
    else:
        t.precision.unscale(t.optimizer)
        grad_norm = clip_by_global_norm(t.optimizer.flat_parameters(), config.max_grad_norm)
        bad = ~torch.isfinite(totals).all()
        t.precision.step(t.optimizer)
    count_non_finite(t.health, bad, t.step + 1)
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return totals, grad_norm, (batch, out)


def _losses_of(values: list[float], next_sentence: bool) -> dict[str, float]:
    losses = {"loss": values[0], "masked_lm_loss": values[1]}
    if next_sentence:
        losses["next_sentence_loss"] = values[2]
    return losses


# Settings a resumed run keeps from the run it continues, and why (the others it applies).
_KEPT_ON_RESUME = {"model": "the weights are the checkpoint's", "init_checkpoint": "the weights are the checkpoint's",
                   "seed": "the data order and dropout streams continue the run's",
                   "num_workers": "the data order depends on the readers"}
_NOT_SETTINGS = {"resume", "overwrite", "progress", "stop_at_step", "device", "output_dir", "profile_steps"}


def _settings_in_force(run: Run, config: PretrainConfig, model_config: BertConfig) -> tuple[PretrainConfig, BertConfig]:
    """The config of a resumed run: the recorded run's values for ``_KEPT_ON_RESUME``, the new
    ones otherwise (``Run.report_changes`` says which changed settings it applies and keeps)."""
    recorded = run.recorded_config()
    if recorded is None:
        return config, model_config
    run.report_changes(recorded, {**asdict(config), "model": asdict(model_config)}, _KEPT_ON_RESUME, _NOT_SETTINGS)
    if "model" in recorded and recorded["model"] != asdict(model_config):
        model_config = BertConfig(**recorded["model"])
    kept = {k: recorded[k] for k in ("init_checkpoint", "seed", "num_workers") if recorded.get(k) is not None}
    return dataclasses.replace(config, model=model_config, **kept), model_config


def _training_state(t: Pretraining) -> dict:
    """What a checkpoint holds besides the RNG states (``Run.save`` adds those)."""
    return {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(), "precision": t.precision.state_dict(), "step": t.step,
            "world_size": t.env.world_size, "batch_size": t.config.batch_size, "grad_accum": t.config.grad_accum,
            "batches_read": t.batches_read_at[1] + (t.step - t.batches_read_at[0]) * t.config.grad_accum,
            "health": t.health.tolist()}
