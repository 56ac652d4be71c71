"""The settings of ``bertdetr detr train``: the training config file and its three sections.

A training config is one JSON file: ``{"data": {...DataConfig}, "model": {...DETRConfig} or
{"preset": "r18"|"r50", ...overrides}, "train": {...TrainConfig}}``; relative paths are relative to
the config file (``load_train_setup``). ``full_train_setup`` writes one with every field and what
it means (``bertdetr detr config --full``). The command line turns ``--lr 2e-4`` and the like into
``train`` fields; the trainer (``bertdetr.detr.train``) gets the typed ``DetrTrainSetup``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field

from bertdetr.detr.config import DETRConfig
from bertdetr.detr.data.coco import IMAGE_BACKENDS
from bertdetr.detr.data.transforms import TRAIN_SCALES
from bertdetr.detr.evaluate import COCO_BACKENDS
from bertdetr.errors import BertDetrError, require, require_at_least, require_field_types
from bertdetr.training.compiling import compile_mode_error
from bertdetr.training.profiling import check_profile_steps


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
    image_backend: str = "opencv"
    """How training decodes and resizes: "opencv" (mmdet's: OpenCV's bilinear on uint8; JPEGs decoded by OpenCV, the same pixels as PIL), "pil" (official DETR's PIL bilinear, this trainer's before 2026-12-07). Evaluation keeps PIL's (the bertdetr test pipeline)."""

    def __post_init__(self):
        require_field_types(self, "data.")
        if self.image_backend not in IMAGE_BACKENDS:
            raise BertDetrError(f"data.image_backend must be one of {', '.join(IMAGE_BACKENDS)}, "
                                f"got {self.image_backend!r}")
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
    """DataLoader workers per process (they persist from epoch to epoch)."""
    group_by_aspect_ratio: bool = False
    """Batch images with width >= height apart from the others (mmdet's AspectRatioBatchSampler: less padding). Off by default: it changes which images share a batch, so the run's numbers differ from one without it."""
    num_threads: int | None = None
    """CPU threads of a CPU run (None: the CPUs free for this process at start, see bertdetr.training.threads)."""
    bf16: bool = False
    """bfloat16 autocast for forward and backward."""
    fp16: bool = False
    """float16 autocast with a gradient scaler, for GPUs without bf16 (V100, T4); overflowed steps are skipped and logged."""
    compile: bool = False
    """torch.compile the model (backbone, transformer and head, one graph; its backward compiled with it). Batches differ in size, so the image height and width are compiled dynamic from the first batch (a batch without padding compiles once more; the CUDA-graph modes compile each size)."""
    compile_mode: str = "default"
    """torch.compile's mode: default, reduce-overhead (CUDA graphs, one per batch shape: pair it with fixed sizes), max-autotune, max-autotune-no-cudagraphs."""
    save_every: int = 1
    """Checkpoint every this many epochs (and at the end)."""
    keep_last: int = 3
    """Checkpoints kept (0 = all)."""
    eval_every: int = 1
    """Evaluate every this many epochs (and at the end) when there is a validation set."""
    max_non_finite_steps: int = 1
    """Steps in a row with a non-finite loss or gradient that stop the run (each is skipped on the device and reported at the next logged step)."""
    save_best: bool = False
    """Keep the model of the best validation AP (model_best/, best.json) and export it, not the last (mmdet's save_best='auto')."""
    log_every: int = 10
    """Log scalars every this many steps."""
    profile_steps: list[int] = field(default_factory=list)
    """Two steps, the first and the last profiled with torch.profiler (e.g. 101 105): output_dir/profile gets the time per step, each kernel's and operator's time and a trace (bertdetr.training.profiling)."""
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
        require_field_types(self, "train.")
        require(not (self.bf16 and self.fp16), "train.bf16 and train.fp16: choose one")
        require(compile_mode_error(self.compile_mode, "train.compile_mode") is None,
                compile_mode_error(self.compile_mode, "train.compile_mode"))
        if self.coco_backend not in COCO_BACKENDS:
            raise BertDetrError(f"train.coco_backend must be one of {', '.join(COCO_BACKENDS)}, got {self.coco_backend!r}")
        require_at_least(self, ("epochs", "batch_size", "grad_accum", "save_every", "eval_every", "log_every",
                                "max_iters", "num_threads", "max_non_finite_steps"), 1, "train.")
        require_at_least(self, ("lr", "backbone_lr", "weight_decay", "max_grad_norm"), 0, "train.")
        check_profile_steps(self.profile_steps, "train.profile_steps")


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
    except (TypeError, BertDetrError) as e:  # a field the sections lack, or a value that does not fit its field
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
