"""DETR's training epoch and step (official DETR's ``engine.py``): ``train_one_epoch``, ``train_step``.

``bertdetr.detr.train`` sets a run up (``DetrTraining``) and calls ``train_one_epoch`` for each epoch;
an epoch hands batches out in the order of ``EpochSampler`` (this rank's share of a permutation
seeded by seed and epoch), so a run resumed in the middle of an epoch sees the batches an
uninterrupted one would. The batches come from the run's ``data.loader.TrainLoader`` (one
DataLoader, persistent workers), their images normalised on the device.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from bertdetr.detr.config import DETRConfig
from bertdetr.detr.data.coco import CocoDetection, CocoIndex, padding_mask_to
from bertdetr.detr.data.loader import EpochSampler, TrainLoader  # noqa: F401 (EpochSampler: where it was)
from bertdetr.detr.loss import DETRCriterion
from bertdetr.detr.model import DETR
from bertdetr.detr.train_config import DataConfig, TrainConfig
from bertdetr.training.distributed import Distributed
from bertdetr.training.precision import MixedPrecision
from bertdetr.training.profiling import StepProfiler
from bertdetr.training.run import Run, RunLog, count_non_finite


@dataclass
class DetrTraining:
    """A DETR training run, set up (``train.setup_training``) and under way."""

    cfg: TrainConfig
    """The train section in force (a resumed run's recorded seed and initialisation)."""
    data: DataConfig
    """Datasets and augmentation."""
    model_config: DETRConfig
    """The model's config (the dataset's class count)."""
    index: CocoIndex
    """The training set."""
    val_index: CocoIndex | None
    """The validation set (None: no evaluation)."""
    model: DETR
    net: torch.nn.Module
    """What the step calls: the model, or the model in DDP."""
    criterion: DETRCriterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: MixedPrecision
    dataset: CocoDetection
    loader: TrainLoader
    """The run's batches, epoch after epoch (its workers persist)."""
    total_iters: int
    """Optimizer steps of the whole run (epochs, or ``max_iters`` if fewer)."""
    env: Distributed
    device: torch.device
    run: Run
    epoch: int = 0
    """Epochs done."""
    batch_in_epoch: int = 0
    """Batches of this rank done in the current epoch."""
    it: int = 0
    """Optimizer steps done."""
    losses: dict[str, float] = field(default_factory=dict)
    health: torch.Tensor | None = None
    """On the device, float32 [4]: the non-finite bookkeeping (``training.run.count_non_finite``)."""
    """The last step's loss terms (last decoder layer) and their sum."""
    t0: float = field(default_factory=time.perf_counter)
    """When the images counted in ``images_seen`` began (for images per second)."""
    images_seen: int = 0
    """Images of all ranks since the last logged step."""


def batches_per_epoch(n: int, env: Distributed, cfg: TrainConfig) -> int:
    """Batches of one rank in an epoch of ``n`` images."""
    return math.ceil(math.ceil(n / env.world_size) / cfg.batch_size)


_END = object()


def train_one_epoch(t: DetrTraining, log: RunLog, profiler: StepProfiler) -> bool:
    """The rest of epoch ``t.epoch`` from batch ``t.batch_in_epoch`` on, a step per ``grad_accum``
    batches, until the epoch's batches or the run's steps run out; returns whether the batches did.
    On SIGTERM/SIGINT: a checkpoint at the iteration (mid-epoch), then ``Preempted``. ``profiler``:
    the run's (``profile_steps``), told where each step begins and ends."""
    cfg = t.cfg
    batches = t.loader.epoch(t.epoch, t.batch_in_epoch)
    exhausted = False
    while t.it < t.total_iters:
        profiler.step_begins(t.it + 1)  # (a step's time includes waiting for its batches)
        group = []
        while len(group) < cfg.grad_accum:
            batch = next(batches, _END)
            if batch is _END:
                exhausted = True
                break
            t.batch_in_epoch += 1
            if batch is not None:  # None: every image of the batch was unreadable (skipped)
                group.append(batch)
        if not group:
            break
        names, terms, grad_norm = train_step(t, group)
        t.it += 1
        t.t0 += profiler.step_ends(t.it)  # (the logged rate leaves the profile's writing out)
        logging_step = t.it % cfg.log_every == 0 or t.it == t.total_iters
        if logging_step:
            # the one read from the device of a logged step (the matcher's costs aside)
            values, skipped = t.run.read_logged(
                [terms, grad_norm], t.health, cfg.max_non_finite_steps,
                lambda v, since, most: f"iteration {since} (epoch {t.epoch + 1}), {most} step(s) in a row skipped")
            t.losses = {"loss": sum(values[:len(names)]),
                        **{k: v for k, v in zip(names, values) if "." not in k}}
            _log_step(t, log, values[len(names)], skipped)
        log.advance()
        if exhausted:
            break
        if t.it < t.total_iters and t.run.stop_requested(t.device, agree=logging_step):
            # mid-epoch: the checkpoint holds the batch the epoch is at, and a resume goes on from it
            t.run.save(checkpoint_state(t), t.it, cfg.keep_last, t.device)
            raise t.run.preempted(f"iteration {t.it} (epoch {t.epoch + 1}, batch {t.batch_in_epoch})")
    return exhausted


def checkpoint_state(t: DetrTraining) -> dict:
    """What a checkpoint holds besides the RNG states (``Run.save`` adds those): weights, optimizer,
    schedule, precision, position (epoch, batch of the epoch, iteration) and the dataset's classes."""
    return {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(), "precision": t.precision.state_dict(), "epoch": t.epoch,
            "batch_in_epoch": t.batch_in_epoch, "iteration": t.it, "world_size": t.env.world_size,
            "category_ids": t.index.category_ids, "class_names": t.index.class_names,
            "health": t.health.tolist()}


def train_step(t: DetrTraining, group: list[dict]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """One optimizer step over ``group`` (``grad_accum`` batches): forward, the criterion's weighted
    terms over every decoder layer, backward (DDP syncs the gradients on the last), gradient
    clipping, AdamW, the lr schedule (which counts batches). Returns the terms' names, their values
    averaged over the group (and the ranks) and the gradient norm, on the device: nothing is read
    back here. A step whose loss or gradient is not finite is skipped on the device (fused AdamW's
    ``found_inf``, as a gradient scaler skips) and counted in ``t.health`` (fp16: an overflow the
    scaler skips instead)."""
    cfg, env = t.cfg, t.env
    names, sums = [], None
    ddp = isinstance(t.net, DistributedDataParallel)
    for m, batch in enumerate(group):
        images, masks = batch["images"].to(t.device, non_blocking=True), padding_mask_to(batch["masks"], t.device)
        # DDP all-reduces the gradients in the backward of the group's last batch only: the others'
        # accumulate locally (the same sum, once over the network instead of once per batch)
        with contextlib.nullcontext() if m == len(group) - 1 or not ddp else t.net.no_sync():
            with t.precision.autocast():
                outputs = t.net(images, masks)
            # the targets stay on the host: the criterion checks them there and copies what
            # the device needs at once (moving each image's boxes would wait for the GPU)
            terms = t.criterion(_float(outputs), batch["targets"])
            t.precision.backward(t.criterion.total(terms) / len(group))
        t.images_seen += len(batch["targets"]) * env.world_size
        stacked = torch.stack([v.detach().float() for v in terms.values()]) / len(group)
        sums, names = (stacked if sums is None else sums + stacked), list(terms)
    if env.world_size > 1:
        torch.distributed.all_reduce(sums)  # the ranks' mean: the same verdict on every rank
        sums /= env.world_size
    t.precision.unscale(t.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.max_grad_norm)
    bad = ~torch.isfinite(sums).all()
    if t.precision.overflow_skips:
        t.precision.step(t.optimizer)  # fp16: the scaler's own skip (it reads the host each step)
    else:
        bad = bad | ~torch.isfinite(grad_norm)
        if t.optimizer.defaults.get("fused"):
            t.optimizer.found_inf = bad.float()  # fused AdamW skips the update on the device
            t.optimizer.step()
        elif not bool(bad):  # (no fused AdamW on this device: one read)
            t.optimizer.step()
    if t.optimizer.defaults.get("fused"):
        # torch's fused AdamW writes the parameters without counting a version (torch 2.14 on a
        # CPU): counted here, so that what is keyed on them (the backbone's folded weights) sees
        # the step
        torch.autograd.graph.increment_version([p for g in t.optimizer.param_groups for p in g["params"]])
    count_non_finite(t.health, bad, t.it + 1)
    t.optimizer.zero_grad(set_to_none=True)
    for _ in group:
        t.scheduler.step()
    return names, sums, grad_norm


def _log_step(t: DetrTraining, log: RunLog, grad_norm: float, skipped: float) -> None:
    rate = t.images_seen / max(time.perf_counter() - t.t0, 1e-9)
    lr = t.optimizer.param_groups[0]["lr"]
    log.log(t.it, {**t.losses, "lr": lr, "grad_norm": grad_norm, "images_per_s": rate,
                   **({"non_finite_steps": skipped} if skipped else {}), **t.precision.scalars()})
    t.t0, t.images_seen = time.perf_counter(), 0
    losses = t.losses
    log.show(loss=f"{losses['loss']:.3f}", cls=f"{losses.get('loss_cls', 0):.3f}", l1=f"{losses.get('loss_bbox', 0):.3f}",
             giou=f"{losses.get('loss_iou', 0):.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")


def _float(v):
    """The criterion runs in fp32 (bf16/fp16 logits would round the matching costs)."""
    if isinstance(v, torch.Tensor):
        return v.float()
    if isinstance(v, dict):  # the outputs and each aux_outputs entry
        return {k: _float(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_float(x) for x in v]
    return v
