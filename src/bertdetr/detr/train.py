"""``bertdetr detr train CONFIG``: DETR training on COCO-format data, as a short explicit loop.

As mmdet's ``detr_r50_8xb2-150e_coco.py`` (and official DETR): AdamW, lr 1e-4 with the backbone
at 1e-5, weight decay 1e-4, gradient norm clipped at 0.1, the lr dropped tenfold at chosen epochs;
loss = the criterion's weighted terms summed over every decoder layer. ``num_classes`` comes from
the dataset, and the label -> category mapping is stored with every checkpoint and export.

The same command runs under ``torchrun`` with DistributedDataParallel (gloo on CPU, nccl on GPU):
each rank takes every ``world_size``-th image of the epoch's permutation, and the criterion
averages the number of target boxes over processes. Checkpoints (atomic, last K kept) hold model,
optimizer, scheduler, epoch and iteration, and RNG states; ``resume`` continues exactly (same
batches, same augmentation: both depend only on seed, epoch and position). A non-finite loss stops
the run with the iteration and keeps the last good checkpoint.

Config file (JSON): ``{"data": {...DataConfig}, "model": {...DETRConfig} or {"preset": "r18"|"r50",
...overrides}, "train": {...TrainConfig}}``; relative paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from bertdetr.training.checkpoint import load_checkpoint, load_training_state, save_checkpoint
from bertdetr.detr.config import DETRConfig
from bertdetr.detr.data.coco import CocoDetection, CocoIndex, check_images, collate, load_coco
from bertdetr.detr.evaluate import COCO_BACKENDS, evaluate_detr
from bertdetr.detr.loss import build_criterion
from bertdetr.detr.model import DETR, build_detr
from bertdetr.detr.data.transforms import TRAIN_SCALES, train_transforms
from bertdetr.detr.weights import load_detr, load_torchvision_resnet, save_classes, save_detr
from bertdetr.training.distributed import (
    Distributed,
    all_ranks_ok,
    gather_rng_states,
    set_rng_state,
    setup_distributed,
)
from bertdetr.errors import BertDetrError, require, require_at_least
from bertdetr.fileio import atomic_output, check_writable
from bertdetr.training.precision import MixedPrecision
from bertdetr.training.folder import (
    DETR_TRAIN,
    recorded_config,
    remove_unfinished_logs,
    resume_changes,
    settle_run_folder,
)
from bertdetr.training.scalars import ScalarLog, plot_curves, tensorboard_writer
from bertdetr.training.threads import set_num_threads


@dataclass
class DataConfig:
    train_ann: str
    """COCO annotation json of the training set."""
    train_images: str
    """Folder of the training images."""
    val_ann: str | None = None
    """COCO annotation json of the validation set (None: no evaluation)."""
    val_images: str | None = None
    """Folder of the validation images."""
    train_scales: list[int] = field(default_factory=lambda: list(TRAIN_SCALES))
    """Shorter-side sizes of the multi-scale resize (480..800 step 32)."""
    max_size: int = 1333
    """Longer side at most this."""
    crop_resize: list[int] = field(default_factory=lambda: [400, 500, 600])
    """Shorter-side sizes before the random crop."""
    crop_size: list[int] = field(default_factory=lambda: [384, 600])
    """Random crop side range [min, max]."""
    test_size: int = 800
    """Shorter side at evaluation."""
    skip_bad_images: bool = True
    """Skip unreadable images with a warning (False: stop at the first)."""

    def __post_init__(self):
        if not self.train_scales or min(self.train_scales) < 1:
            raise BertDetrError(f"train_scales must be positive sizes, got {self.train_scales}")
        if len(self.crop_size) != 2 or not 0 < self.crop_size[0] <= self.crop_size[1]:
            raise BertDetrError(f"crop_size must be [min, max], got {self.crop_size}")
        if (self.val_ann is None) != (self.val_images is None):
            raise BertDetrError("give both val_ann and val_images, or neither")


@dataclass
class TrainConfig:
    output_dir: str
    """Checkpoints, logs, metrics and the exported model go here."""
    epochs: int = 150
    """Passes over the training set."""
    max_iters: int | None = None
    """Stop after this many optimizer steps in all (overrides epochs when reached first)."""
    batch_size: int = 2
    """Images per batch per process (mmdet: 8 GPUs x 2)."""
    grad_accum: int = 1
    """Batches per optimizer step."""
    lr: float = 1e-4
    """AdamW learning rate of the transformer and heads."""
    backbone_lr: float = 1e-5
    """Learning rate of the backbone (mmdet's lr_mult 0.1)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_grad_norm: float = 0.1
    """Gradient norm clip."""
    lr_drop: list[int] = field(default_factory=lambda: [100])
    """Epochs at which the lr is multiplied by lr_drop_factor."""
    lr_drop_factor: float = 0.1
    """Step decay factor."""
    init_checkpoint: str | None = None
    """Our checkpoint directory to fine-tune from (convert mmdet/official weights first)."""
    reset_head: bool = False
    """Re-initialise the class FC when the dataset's class count differs from the checkpoint's."""
    seed: int = 0
    """Seeds the data order, augmentation and dropout."""
    num_workers: int = 2
    """DataLoader workers per process."""
    num_threads: int | None = None
    """CPU threads of a CPU run (None: the CPUs free for this process at start, see bertdetr.training.threads)."""
    bf16: bool = False
    """bfloat16 autocast for forward and backward."""
    fp16: bool = False
    """float16 autocast with a gradient scaler, for GPUs without bf16 (V100, T4); overflowed steps are skipped and logged."""
    save_every: int = 1
    """Checkpoint every this many epochs (and at the end)."""
    keep_last: int = 3
    """Checkpoints kept (0 = all)."""
    eval_every: int = 1
    """Evaluate every this many epochs (and at the end) when there is a validation set."""
    log_every: int = 10
    """Log scalars every this many steps."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir (a new run if it has none)."""
    overwrite: bool = False
    """Start again in an output_dir that holds a run, deleting its checkpoints and logs."""
    device: str | None = None
    """"cpu", "cuda", ... (default: cuda when available)."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    tensorboard: bool = False
    """Also write TensorBoard event files."""
    coco_backend: str = "pycocotools"
    """COCO mAP back-end of the evaluations: "pycocotools" or "faster-coco-eval" (extra fast-eval)."""

    def __post_init__(self):
        require(not (self.bf16 and self.fp16), "train.bf16 and train.fp16: choose one")
        if self.coco_backend not in COCO_BACKENDS:
            raise BertDetrError(f"train.coco_backend must be one of {', '.join(COCO_BACKENDS)}, got {self.coco_backend!r}")
        require_at_least(self, ("epochs", "batch_size", "grad_accum", "save_every", "eval_every", "log_every",
                                "max_iters", "num_threads"), 1, "train.")
        require_at_least(self, ("lr", "backbone_lr", "weight_decay", "max_grad_norm"), 0, "train.")


@dataclass
class DetrTrainSetup:
    data: DataConfig
    """Datasets and augmentation."""
    model: DETRConfig
    """The detector (num_classes is replaced by the dataset's)."""
    train: TrainConfig
    """Optimisation, checkpoints, logging."""


def _resolve(base: str, path: str | None) -> str | None:
    if path is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


def load_train_setup(path: str | os.PathLike, **train_overrides) -> DetrTrainSetup:
    """Reads a training config JSON (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BertDetrError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise BertDetrError(f"{path} is not valid JSON: {e}") from None
    unknown = set(raw) - {"data", "model", "train", "_doc"}  # _doc: what full_train_setup explains
    if unknown or "data" not in raw or "train" not in raw:
        raise BertDetrError(f"{path}: expected sections data, model, train (unknown: {sorted(unknown)})")
    base = os.path.dirname(os.path.abspath(path))
    data = dict(raw["data"])
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        data[key] = _resolve(base, data.get(key))
    train = {**raw["train"], **{k: v for k, v in train_overrides.items() if v is not None}}
    for key in ("output_dir", "init_checkpoint"):
        train[key] = _resolve(base, train.get(key))
    try:
        return DetrTrainSetup(DataConfig(**data), model_config_from_dict(raw.get("model", {})), TrainConfig(**train))
    except TypeError as e:
        raise BertDetrError(f"{path}: {e}") from None


def _docs(cls) -> dict[str, str]:
    """The docstring of each field of a config dataclass (its bases' fields included)."""
    from bertdetr.options import field_specs

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update({k: v.doc for k, v in field_specs(klass.__module__, klass.__name__).items()})
    return docs


def full_train_setup(model: DETRConfig, output_dir: str = "runs/detr") -> dict:
    """A complete training config file as a dict: every field of data, model and train (COCO 2017
    paths relative to the file, the defaults otherwise) and, under ``_doc``, what each field means
    (``"train.lr": "..."``); ``load_train_setup`` ignores ``_doc``."""
    data = DataConfig(train_ann="coco/annotations/instances_train2017.json", train_images="coco/train2017",
                      val_ann="coco/annotations/instances_val2017.json", val_images="coco/val2017")
    train = TrainConfig(output_dir=output_dir)
    doc = {f"data.{k}": v for k, v in _docs(DataConfig).items()}
    for f in dataclasses.fields(DETRConfig):
        section = getattr(model, f.name)
        if dataclasses.is_dataclass(section):
            doc.update({f"model.{f.name}.{k}": v for k, v in _docs(type(section)).items()})
        else:
            doc[f"model.{f.name}"] = _docs(DETRConfig).get(f.name, "")
    doc.update({f"train.{k}": v for k, v in _docs(TrainConfig).items()})
    return {"data": asdict(data), "model": model.to_dict(), "train": asdict(train), "_doc": doc}


def model_config_from_dict(d: dict) -> DETRConfig:
    """A DETRConfig from a full dict, or from ``{"preset": "r18"|"r50", **section overrides}``."""
    d = dict(d)
    preset = d.pop("preset", None)
    if preset is None:
        return DETRConfig.from_dict(d) if d else DETRConfig.r50()
    if preset not in ("r18", "r50"):
        raise BertDetrError(f"model preset must be 'r18' or 'r50', got {preset!r}")
    base = getattr(DETRConfig, preset)().to_dict()
    for key, value in d.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return DETRConfig.from_dict(base)


class EpochSampler(torch.utils.data.Sampler):
    """This rank's indices of an epoch: a permutation seeded by (seed, epoch), every world_size-th
    index from ``rank`` (padded by wrapping so all ranks take equal steps), from ``start`` on."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).tolist()
        per_rank = math.ceil(n / world_size)
        perm = (perm * math.ceil(per_rank * world_size / n))[: per_rank * world_size]
        self.indices = perm[rank::world_size][start:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_optimizer(model: DETR, cfg: TrainConfig) -> torch.optim.AdamW:
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    # fused: one kernel for all parameters (CPU and CUDA) instead of torch's per-parameter loop on
    # CPU: measured 81 -> 63 ms per step of the demo's tiny DETR on 2 cores (same numbers, to rounding)
    fused = all(p.device.type in ("cpu", "cuda") for p in backbone + rest)
    return torch.optim.AdamW([{"params": rest, "lr": cfg.lr}, {"params": backbone, "lr": cfg.backbone_lr}],
                             lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _loader(dataset, batch_size, sampler, num_workers, seed):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       collate_fn=collate, generator=torch.Generator().manual_seed(seed))


def _export(model: DETR, config: DETRConfig, index: CocoIndex, directory: str) -> None:
    save_detr(model, config, directory)
    save_classes(directory, index.category_ids, index.class_names)


def train_detr(setup: DetrTrainSetup) -> dict:
    """Trains (or resumes); returns a summary: iterations, last losses, metrics, paths."""
    cfg, data = setup.train, setup.data
    if cfg.tensorboard:
        tensorboard_writer()
    env, device = setup_distributed(cfg.device)
    if device.type == "cpu":
        set_num_threads(cfg.num_threads)

    index = load_coco(data.train_ann, data.train_images)
    index, bad = check_images(index, data.skip_bad_images)
    val_index = None
    if data.val_ann:
        val_index, _ = check_images(load_coco(data.val_ann, data.val_images), data.skip_bad_images)
        if val_index.category_ids != index.category_ids:
            raise BertDetrError("the validation set's categories differ from the training set's")
    if env.main:
        check_writable(os.path.join(cfg.output_dir, "train_config.json"))
        print(f"train data: {index.summary()}" + (f"; skipped {bad} unreadable images" if bad else ""))
    last_path = settle_run_folder(env, cfg.output_dir, DETR_TRAIN, cfg.resume, cfg.overwrite)
    model_config = setup.model.with_num_classes(index.num_classes)
    if last_path:
        cfg, model_config = _settings_in_force(setup, model_config, env)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    if cfg.init_checkpoint and not last_path:
        model, model_config = load_detr(cfg.init_checkpoint, num_classes=index.num_classes,
                                        reset_head=cfg.reset_head, generator=torch.Generator().manual_seed(cfg.seed))
    else:
        model = build_detr(model_config)
        if model_config.backbone.pretrained:  # ImageNet weights for a fresh model, not over a checkpoint
            load_torchvision_resnet(model.backbone, model_config.backbone.pretrained)
    model.to(device).train()
    criterion = build_criterion(model_config).to(device)
    optimizer = build_optimizer(model, cfg)
    dataset = CocoDetection(index, train_transforms(data.train_scales, data.max_size, data.crop_resize,
                                                    tuple(data.crop_size)), seed=cfg.seed,
                            skip_bad_images=data.skip_bad_images)
    steps_per_epoch = _batches_per_epoch(len(index.images), env, cfg)
    # The lr drops at epoch boundaries; counted in batches so a resume mid-epoch keeps it.
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [e * steps_per_epoch for e in cfg.lr_drop], gamma=cfg.lr_drop_factor)

    epoch, batch_in_epoch, it = 0, 0, 0
    torch.manual_seed(cfg.seed + 1 + env.rank)
    precision = MixedPrecision(device, cfg.bf16, cfg.fp16)
    resumed = last_path is not None
    if last_path:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        load_training_state(optimizer, scheduler, state)
        precision.load_state_dict(state.get("precision", {}))
        epoch, batch_in_epoch, it = int(state["epoch"]), int(state["batch_in_epoch"]), int(state["iteration"])
        if int(state["world_size"]) == env.world_size:
            set_rng_state(state["rng"][env.rank], device)
        else:
            batch_in_epoch = 0  # another process count: restart the interrupted epoch's data

    net: torch.nn.Module = model
    if env.world_size > 1 and device.type == "cuda" and model_config.backbone.norm == "batch":
        # batch statistics over all processes' images (SyncBatchNorm needs a GPU; on CPU each
        # process normalises by its own batch and DDP broadcasts rank 0's running statistics)
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    if env.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)
    if env.main:  # the config in force
        with atomic_output(os.path.join(cfg.output_dir, "train_config.json"), "w") as f:
            json.dump({"run": DETR_TRAIN, "data": asdict(data), "model": model_config.to_dict(), "train": asdict(cfg),
                       "world_size": env.world_size}, f, indent=1)
    log = ScalarLog(cfg.output_dir, cfg.tensorboard) if env.main else None
    total_iters = cfg.epochs * math.ceil(steps_per_epoch / cfg.grad_accum)
    if cfg.max_iters is not None:
        total_iters = min(total_iters, cfg.max_iters)
    bar = None
    if env.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_iters, initial=it, desc="detr train", unit="it", dynamic_ncols=True)
    metrics: dict = {}
    losses: dict[str, float] = {}
    t0, images_seen = time.perf_counter(), 0
    try:
        while epoch < cfg.epochs and it < total_iters:
            dataset.set_epoch(epoch)
            sampler = EpochSampler(len(dataset), cfg.seed, epoch, env.rank, env.world_size,
                                   batch_in_epoch * cfg.batch_size)
            batches = iter(_loader(dataset, cfg.batch_size, sampler, cfg.num_workers, cfg.seed + epoch))
            exhausted = False
            while it < total_iters:
                group = []
                while len(group) < cfg.grad_accum:
                    batch = next(batches, _END)
                    if batch is _END:
                        exhausted = True
                        break
                    batch_in_epoch += 1
                    if batch is not None:  # None: every image of the batch was unreadable (skipped)
                        group.append(batch)
                if not group:
                    break
                terms_sum: dict[str, float] = {}
                for batch in group:
                    images, masks = batch["images"].to(device), batch["masks"].to(device)
                    with precision.autocast():
                        outputs = net(images, masks)
                    # the targets stay on the host: the criterion checks them there and copies what
                    # the device needs at once (moving each image's boxes would wait for the GPU)
                    terms = criterion(_float(outputs), batch["targets"])
                    precision.backward(criterion.total(terms) / len(group))
                    images_seen += len(batch["targets"]) * env.world_size
                    # all terms to the host in one copy, not one wait per term and layer
                    values = torch.stack([v.detach() for v in terms.values()]).tolist()
                    for name, v in zip(terms, values):
                        terms_sum[name] = terms_sum.get(name, 0.0) + v / len(group)
                precision.unscale(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                total = sum(terms_sum.values())
                # fp16: non-finite gradients are an overflow the scaler skips, not a failed run
                finite = math.isfinite(total) and (precision.overflow_skips or bool(torch.isfinite(grad_norm)))
                if not all_ranks_ok(finite, env, device):
                    where = f"; the last good checkpoint is {last_path}" if last_path else "; no checkpoint yet"
                    raise BertDetrError(f"non-finite loss at iteration {it + 1} (epoch {epoch}): training "
                                        f"stopped{where}. Lower the learning rate or check the data.")
                precision.step(optimizer)
                optimizer.zero_grad(set_to_none=True)
                for _ in group:
                    scheduler.step()
                it += 1
                losses = {"loss": total, **{k: v for k, v in terms_sum.items() if "." not in k}}
                if log is not None and (it % cfg.log_every == 0 or it == total_iters):
                    rate = images_seen / max(time.perf_counter() - t0, 1e-9)
                    log.log(it, {**losses, "lr": optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm),
                                 "images_per_s": rate, **precision.scalars()})
                    t0, images_seen = time.perf_counter(), 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{total:.3f}", cls=f"{losses.get('loss_cls', 0):.3f}",
                                        l1=f"{losses.get('loss_bbox', 0):.3f}", giou=f"{losses.get('loss_iou', 0):.3f}",
                                        lr=f"{optimizer.param_groups[0]['lr']:.2e}", img_s=f"{rate:.1f}")
                if bar is not None:
                    bar.update(1)
                if exhausted:
                    break
            if exhausted or batch_in_epoch >= _batches_per_epoch(len(dataset), env, cfg):
                exhausted = True
                epoch += 1
                batch_in_epoch = 0
            finished = it >= total_iters or epoch >= cfg.epochs
            if finished or (exhausted and epoch % cfg.save_every == 0):
                last_path = _save(cfg, env, model, optimizer, scheduler, precision, epoch, batch_in_epoch, it, index,
                                  device)
            if val_index is not None and (finished or (exhausted and epoch % cfg.eval_every == 0)):
                metrics = evaluate_detr(model, val_index, data.val_ann, data.test_size, data.max_size,
                                        model_config.test_cfg.max_per_img, device, cfg.batch_size, env,
                                        os.path.join(cfg.output_dir, "eval_detections.json") if env.main else None,
                                        cfg.coco_backend).metrics
                if log is not None:
                    log.log(it, {f"eval_{k}": v for k, v in metrics.items()})
    except BaseException:
        if log is not None:
            log.close()
            log = None
            if not resumed:  # a new run that never reached a checkpoint leaves no logs
                remove_unfinished_logs(cfg.output_dir)
        raise
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()

    summary = {"iterations": it, "epoch": epoch, "checkpoint": last_path, "losses": losses, "metrics": metrics}
    if env.main:
        export = os.path.join(cfg.output_dir, "model")
        _export(model, model_config, index, export)
        summary["export"] = export
        if metrics:
            with atomic_output(os.path.join(cfg.output_dir, "eval_metrics.json"), "w") as f:
                json.dump({"iteration": it, "epoch": epoch, **metrics}, f, indent=1)
        if os.path.exists(os.path.join(cfg.output_dir, "scalars.csv")):
            plot_curves(os.path.join(cfg.output_dir, "scalars.csv"), os.path.join(cfg.output_dir, "loss_curves.png"),
                        ["loss", "loss_cls", "loss_bbox", "loss_iou", "lr", "eval_AP"], title="bertdetr detr train")
    return summary


_END = object()


def _float(v):
    """The criterion runs in fp32 (bf16/fp16 logits would round the matching costs)."""
    if isinstance(v, torch.Tensor):
        return v.float()
    if isinstance(v, dict):  # the outputs and each aux_outputs entry
        return {k: _float(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_float(x) for x in v]
    return v


# Settings a resumed run keeps from the run it continues, and why (the others it applies).
_KEPT_ON_RESUME = {"model": "the weights are the checkpoint's", "init_checkpoint": "the weights are the checkpoint's",
                   "reset_head": "the weights are the checkpoint's",
                   "seed": "the data order, augmentation and dropout continue the run's"}
_NOT_SETTINGS = {"resume", "overwrite", "progress", "device", "output_dir"}


def _settings_in_force(setup: DetrTrainSetup, model_config: DETRConfig, env) -> tuple[TrainConfig, DETRConfig]:
    """The train section and model of a resumed run: the recorded run's model, seed and
    initialisation, the new values otherwise; says on the main process which changed settings it
    applies and which it keeps."""
    cfg = setup.train
    recorded = recorded_config(cfg.output_dir)
    if recorded is None:
        return cfg, model_config
    old = {**recorded.get("data", {}), **recorded.get("train", {}), "model": recorded.get("model")}
    new = {**asdict(setup.data), **asdict(cfg), "model": model_config.to_dict()}
    if env.main:
        lines = resume_changes(old, new, _KEPT_ON_RESUME, _NOT_SETTINGS)
        if lines:
            print(f"resuming {cfg.output_dir} with changed settings:\n" + "\n".join(lines))
    if isinstance(old["model"], dict) and old["model"] != new["model"]:
        model_config = DETRConfig.from_dict(old["model"])
    kept = {k: old[k] for k in ("init_checkpoint", "reset_head", "seed") if k in old}
    return dataclasses.replace(cfg, **kept), model_config


def _batches_per_epoch(n: int, env: Distributed, cfg: TrainConfig) -> int:
    return math.ceil(math.ceil(n / env.world_size) / cfg.batch_size)


def _save(cfg, env, model, optimizer, scheduler, precision, epoch, batch_in_epoch, it, index, device) -> str | None:
    rng = gather_rng_states(env, device)
    if not env.main:
        return None
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "precision": precision.state_dict(),
             "epoch": epoch, "batch_in_epoch": batch_in_epoch, "iteration": it, "world_size": env.world_size,
             "rng": rng, "category_ids": index.category_ids, "class_names": index.class_names}
    return save_checkpoint(state, cfg.output_dir, it, cfg.keep_last)
