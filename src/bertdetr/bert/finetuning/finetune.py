"""What Google's fine-tuning programs (``run_classifier.py``, ``run_squad.py``) share: the model's
files from the flags or beside ``--init-checkpoint``, the initial weights, the training loop (Google's
``create_optimizer``: AdamWeightDecay, weight decay 0.01, warmup then linear decay, gradients
clipped to global norm 1.0), resumable to the step, and the exported model.

Each program keeps its own head, features and batches (``bert/classifier.py``, ``bert/squad.py``)
and passes them in.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from bertdetr.bert.model import BertConfig
from bertdetr.errors import BertDetrError, require, require_at_least
from bertdetr.fileio import atomic_output


@dataclass(kw_only=True)
class FinetuneConfig:
    """The flags both of Google's fine-tuning programs have (same names and defaults), plus this
    program's own; ``ClassifierConfig`` and ``SquadConfig`` extend it (keyword-only fields, so
    theirs without defaults may follow these)."""

    output_dir: str
    """Features (*.tf_record), checkpoints, results and the fine-tuned model (model/)."""
    vocab_file: str | None = None
    """vocab.txt of the model (default: the one beside --init-checkpoint)."""
    bert_config_file: str | None = None
    """bert_config.json / config.json (default: the one beside --init-checkpoint)."""
    init_checkpoint: str | None = None
    """A HF-format BERT directory (BertModel, BertForPreTraining, BertForMaskedLM or a model this
    command fine-tuned) or a Google TF checkpoint prefix (needs TensorFlow); none: random weights."""
    do_lower_case: bool = True
    """Lowercase the input text (True for uncased models)."""
    max_seq_length: int
    """Total input length after WordPiece tokenization (each program sets Google's default)."""
    do_train: bool = False
    """Fine-tune on the training set."""
    train_batch_size: int = 32
    """Total batch size for training."""
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
    seed: int = 12345
    """Seeds the head's initialisation, the batch order and dropout (not Google's fixed 12345
    shuffle of the SQuAD examples before train.tf_record)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""
    log_every: int = 10
    """Log the training loss every this many steps (scalars.csv)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        # errors name Google's flag spellings, which the command accepts as they are
        require_at_least(self, ("max_seq_length", "train_batch_size", "predict_batch_size", "save_checkpoints_steps",
                                "log_every", "stop_at_step"), 1, "--")
        require_at_least(self, ("keep_checkpoint_max",), 0, "--")
        require(self.learning_rate > 0, f"--learning_rate must be positive, got {self.learning_rate}")
        require(self.num_train_epochs > 0, f"--num_train_epochs must be positive, got {self.num_train_epochs}")
        require(0 <= self.warmup_proportion <= 1,
                f"--warmup_proportion must be in [0, 1], got {self.warmup_proportion}")
        require(not (self.resume and self.overwrite), "--resume and --overwrite: choose one")


def run_checkpoint(output_dir: str, do_train: bool, resume: bool, kind: str,
                   overwrite: bool = False) -> tuple[str, dict] | None:
    """The checkpoint a run starts from, as Google's estimator: without training, the latest one of
    ``output_dir`` (path and state) is what is evaluated or predicted with; training into a
    directory that has checkpoints must say ``resume`` (then ``finetune`` continues from them) or
    ``overwrite`` (the previous run's checkpoints, logs, metrics and model/ are deleted first).
    None: start from --init-checkpoint. A folder holding another kind of run (``kind``: "bert
    classify" or "bert squad"; a pretraining or DETR run) is refused, whatever the flags."""
    from bertdetr.training.checkpoint import latest_checkpoint, load_checkpoint
    from bertdetr.training.folder import FINETUNE_CONFIGS, remove_run_files, run_kind

    found = run_kind(output_dir) if os.path.isdir(output_dir) else None
    if found is not None and found != kind:
        raise BertDetrError(f"{output_dir} holds a `bertdetr {found}` run, not a `bertdetr {kind}` run: choose "
                            "another --output-dir (a pretraining run's model/ goes in --init-checkpoint)")
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


def model_files(bert_config_file: str | None, vocab_file: str | None, init_checkpoint: str | None,
                max_seq_length: int) -> tuple[BertConfig, str]:
    """The model's BertConfig and vocab file: the given files, else beside ``init_checkpoint`` (a
    directory's config.json and vocab.txt, or a TF checkpoint prefix's bert_config.json and
    vocab.txt); checked against each other and against ``max_seq_length`` (Google's check)."""
    from bertdetr.bert.data.tokenization import load_vocab

    beside = None
    if init_checkpoint:
        beside = init_checkpoint if os.path.isdir(init_checkpoint) else os.path.dirname(os.path.abspath(init_checkpoint))
    candidates = [bert_config_file] if bert_config_file else \
        [os.path.join(beside, n) for n in ("config.json", "bert_config.json")] if beside else []
    found = [c for c in candidates if os.path.isfile(c)]
    if not found:
        raise BertDetrError(f"no model config ({', '.join(candidates) or 'none given'}): give --bert-config-file, or "
                            "--init-checkpoint a directory with config.json")
    bert_config = BertConfig.from_json_file(found[0])
    vocab_file = vocab_file or (os.path.join(beside, "vocab.txt") if beside else None)
    if not vocab_file or not os.path.isfile(vocab_file):
        raise BertDetrError(f"vocab file not found: {vocab_file or '(none given)'}: give --vocab-file")
    n = len(load_vocab(vocab_file))
    if n != bert_config.vocab_size:
        raise BertDetrError(f"vocab file {vocab_file} has {n} entries but the model's vocab_size is "
                            f"{bert_config.vocab_size}")
    if max_seq_length > bert_config.max_position_embeddings:
        raise BertDetrError(f"Cannot use sequence length {max_seq_length} because the BERT model was only "
                            f"trained up to sequence length {bert_config.max_position_embeddings}")
    return bert_config, vocab_file


def read_init_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], str]:
    """The HF-named float32 tensors of ``--init-checkpoint`` (a HF-format directory, or a Google TF
    checkpoint prefix, which needs TensorFlow) and the file they came from."""
    from bertdetr.bert.weights import read_hf_weights, read_tf_checkpoint

    if os.path.isdir(path):
        state, source = read_hf_weights(path)
    elif os.path.exists(path + ".index"):
        state, source = read_tf_checkpoint(path), path
    else:
        raise BertDetrError(f"--init-checkpoint {path}: neither a model directory nor a TF checkpoint prefix "
                            f"({path}.index not found)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source


def train_batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The examples of training batch ``step`` (0-based): batches run through one seeded shuffle of
    the examples per epoch, across epoch boundaries (Google repeats the data, then batches with
    drop_remainder). Depends only on its arguments, so a resumed run sees the same batches."""
    out: list[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
        out.extend(order[offset:offset + batch_size - len(out)].tolist())
    return out


def finetune(model: nn.Module, make_batch: Callable[[Sequence[int]], dict[str, torch.Tensor]], num_examples: int,
             options: FinetuneConfig, device: torch.device, num_train_steps: int, num_warmup_steps: int,
             identity: dict, desc: str) -> int:
    """Fine-tunes ``model`` as Google's programs do; returns the last step.

    Each step: ``make_batch`` of ``train_batch_indices`` (the batch on ``device``), ``model(**batch)``
    (a dict with a scalar ``loss``; its other scalar ``*_loss`` terms are logged too), backward,
    clip to global norm 1.0, Google's optimizer and schedule. Checkpoints (atomic, the last
    ``keep_checkpoint_max`` kept) every ``save_checkpoints_steps`` and at the end hold the model,
    optimizer, schedule, step, RNG state and ``identity`` (what the run was made for, e.g. its
    labels): ``options.resume`` continues from the latest one, whose identity must match."""
    from bertdetr.bert.optimization import clip_by_global_norm, create_optimizer
    from bertdetr.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from bertdetr.training.distributed import rng_state, set_rng_state
    from bertdetr.training.scalars import ScalarLog

    optimizer, scheduler = create_optimizer(model, options.learning_rate, num_train_steps, num_warmup_steps)
    identity = {**identity, "num_train_steps": num_train_steps}
    step = 0
    torch.manual_seed(options.seed + 1)  # dropout
    last = latest_checkpoint(options.output_dir) if options.resume else None
    if last:
        state = load_checkpoint(last)
        stored = {k: state.get(k) for k in identity}
        if stored != identity:
            raise BertDetrError(f"cannot resume from {last}: it was made for {stored}, this run is {identity}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        set_rng_state(state["rng"], device)
        print(f"resuming from {last} at step {step}")
    log = ScalarLog(options.output_dir)
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=num_train_steps, initial=step, desc=desc, unit="step", dynamic_ncols=True)
    stop = num_train_steps if options.stop_at_step is None else min(options.stop_at_step, num_train_steps)
    model.train()
    try:
        while step < stop:
            batch = make_batch(train_batch_indices(num_examples, options.train_batch_size, options.seed, step))
            lr = optimizer.param_groups[0]["lr"]
            out = model(**batch)
            loss = out["loss"]
            loss.backward()
            grad_norm = clip_by_global_norm(model.parameters(), 1.0)
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                raise BertDetrError(f"non-finite loss at step {step + 1}: training stopped; lower the learning rate")
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % options.log_every == 0 or step == stop:
                terms = {k: v.item() for k, v in out.items() if k.endswith("loss") and v.dim() == 0}
                log.log(step, {**terms, "lr": lr, "grad_norm": grad_norm.item()})
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
            if bar is not None:
                bar.update(1)
            if step % options.save_checkpoints_steps == 0 or step == stop:
                save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "step": step, "rng": rng_state(device),
                                 **identity}, options.output_dir, step, options.keep_checkpoint_max)
    finally:
        if bar is not None:
            bar.close()
        log.close()
    return step


def export_model(model: nn.Module, vocab_file: str, do_lower_case: bool, path: str) -> str:
    """``model.save_pretrained(path)`` (a HF-format directory) with vocab.txt and
    tokenizer_config.json, as transformers' tokenizers read them."""
    model.save_pretrained(path)
    shutil.copyfile(vocab_file, os.path.join(path, "vocab.txt"))
    with atomic_output(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer"}, f, indent=1)
    return path
