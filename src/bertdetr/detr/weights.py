"""Our DETR checkpoint directory, and checkpoint files read safely.

Our checkpoint is a directory with ``config.json`` (``DETRConfig.to_dict()``), ``model.safetensors``
(the model's state dict), ``classes.json`` (label -> category id and name) and ``pipeline.json``
(the test-time pipeline of the model's origin): ``save_detr``/``load_detr``,
``save_classes``/``load_classes``, ``save_pipeline``/``load_pipeline``, and
``load_checkpoint_dir``, which reads all of it for ``predict``, ``eval``, ``attention`` and
``export``. Checkpoint files (ours, other projects', torchvision's ResNets) are read with safetensors
or ``torch.load(weights_only=True)`` only (``read_checkpoint``), and loaded with every tensor
accounted for (``load_into``). Other projects' names and classes are ``bertdetr.detr.convert``'s.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
import os
import pickle
import re

import torch
from torch import nn

from bertdetr.detr.config import DETRConfig, load_detr_config
from bertdetr.detr.data.pipelines import check_pipeline
from bertdetr.detr.model import DETR, build_detr
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output

SAFE_CHECKPOINT_GLOBALS = (argparse.Namespace,)
"""Python types rebuilt when a checkpoint holds them beside its tensors, and no others: official DETR's
``main.py`` saves its command line as an ``argparse.Namespace`` under ``'args'`` (a plain attribute
bag of strings and numbers). Anything else is refused rather than unpickled."""


# ------------------------------------------------------------------------------- reading files


def read_checkpoint(path: str | os.PathLike):
    """What a checkpoint file holds: a ``.safetensors`` state dict, or a torch file's object read with
    ``torch.load(weights_only=True)`` and ``SAFE_CHECKPOINT_GLOBALS`` allowed. A file holding other
    Python objects is refused, naming them (never unpickled: unpickling runs code the file names)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BertDetrError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:  # corrupt file: the user's to fix
            raise BertDetrError(f"cannot read checkpoint {path}: {e}") from None
    try:
        with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        allowed = {f"{t.__module__}.{t.__qualname__}" for t in SAFE_CHECKPOINT_GLOBALS}
        try:
            unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
        except Exception:  # a legacy (non-zip) torch file: the first object torch's message names
            unsafe = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not unsafe:
            raise BertDetrError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[-300:]}") from None
        raise BertDetrError(
            f"refusing to read checkpoint {path}: besides tensors it holds Python objects of {', '.join(unsafe)}, "
            f"which are not on the allow-list of harmless types ({', '.join(sorted(allowed))}); loading them would "
            f"run code the file names. Save its state dict alone (mmdet: tools/model_converters/publish_model.py "
            f"strips training state)") from None
    except Exception as e:  # corrupt or not a checkpoint: the user's to fix
        raise BertDetrError(f"cannot read checkpoint {path}: {e}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint file -> flat state dict (float tensors as float32). Accepts ``.safetensors``, or
    a torch file holding a state dict, mmdet's ``{'state_dict': ...}`` or official ``{'model': ...}``."""
    return unwrap_state_dict(read_checkpoint(path), os.fspath(path))


def unwrap_state_dict(sd, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """mmdet ``{'state_dict'}`` / official ``{'model'}`` wrappers off; float tensors to float32."""
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise BertDetrError(f"{where} holds no state dict of tensors (found {type(sd).__name__}"
                            + (f" with keys {', '.join(map(str, list(sd)[:8]))})" if isinstance(sd, dict) else ")"))
    others = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise BertDetrError(f"{where} holds no state dict of tensors: {', '.join(map(str, others[:8]))} "
                            f"{'are' if len(others) > 1 else 'is'} no tensor")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


# ------------------------------------------------------------------------------- loading checked


def load_into(model: DETR, sd: dict, origin: dict | None = None, reset_head: bool = False,
              generator: torch.Generator | None = None) -> None:
    """Loads our-named ``sd`` into ``model``, every tensor accounted for.

    Errors (BertDetrError) name the tensors (ours and the checkpoint's name) that are missing,
    unexpected or of another shape. A class FC of another class count is an error unless
    ``reset_head``: then the class FC keeps its fresh initialisation (drawn from ``generator``)
    and everything else loads, as DETR users fine-tune on a new dataset.
    """
    origin = origin or {}
    expected = model.state_dict()

    def name(k):
        return k if origin.get(k, k) == k else f"{k} (checkpoint: {origin[k]})"

    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected and not k.endswith("num_batches_tracked") and not k.startswith("backbone.fc.")]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    head = [k for k in wrong if k.startswith("head.fc_cls.")]
    wrong = [k for k in wrong if k not in head]

    def listed(items, most=12):  # a checkpoint of another model would list hundreds
        return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")

    problems = []
    if missing:
        problems.append(f"missing ({len(missing)}): " + listed(missing))
    if unexpected:
        problems.append(f"unexpected ({len(unexpected)}): " + listed([name(k) for k in unexpected]))
    if wrong:
        problems.append("shape mismatch: " + listed(
            [f"{name(k)} {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong]))
    if problems:
        raise BertDetrError("checkpoint does not fit the config: " + "; ".join(problems))
    non_finite = [name(k) for k, v in sd.items() if k in expected and v.is_floating_point()
                  and not bool(torch.isfinite(v).all())]
    if non_finite:  # every output would be NaN: say so here, not as "score": NaN in a results file
        raise BertDetrError(f"checkpoint holds values that are not finite numbers (NaN or infinity) in "
                            f"{listed(non_finite)}: a diverged or damaged checkpoint")
    if head and not reset_head:
        k = "head.fc_cls.weight"
        raise BertDetrError(
            f"checkpoint has {sd[k].shape[0] - 1} classes ({name(k)} {tuple(sd[k].shape)}), the config "
            f"{expected[k].shape[0] - 1} (model {tuple(expected[k].shape)}); pass reset_head=True "
            f"(--reset-head) to re-initialise the class FC for fine-tuning")
    to_load = {k: v for k, v in sd.items() if k in expected and not (reset_head and k.startswith("head.fc_cls."))}
    if reset_head:
        reset_class_head(model, generator)
    model.load_state_dict(to_load, strict=False)


def reset_class_head(model: DETR, generator: torch.Generator | None = None) -> None:
    """Re-initialises the class FC as ``nn.Linear`` does (kaiming-uniform a=sqrt(5), uniform bias)."""
    fc = model.head.fc_cls
    with torch.no_grad():
        nn.init.kaiming_uniform_(fc.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fc.weight.shape[1])
        nn.init.uniform_(fc.bias, -bound, bound, generator=generator)


def load_torchvision_resnet(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Loads a torchvision ImageNet ResNet state dict (e.g. ``resnet50-0676ba61.pth``) from a local
    file into the backbone; its ``fc.*`` classifier is dropped. Nothing is downloaded."""
    sd = read_state_dict(path)
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    expected = backbone.state_dict()
    bad = [k for k in expected if k not in sd] + [k for k in sd if k not in expected and not k.endswith("num_batches_tracked")]
    bad += [f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
            if k in sd and sd[k].shape != expected[k].shape]
    if bad:
        raise BertDetrError(f"{path} is not a torchvision ResNet of this depth: {', '.join(bad[:8])}"
                            + (" ..." if len(bad) > 8 else ""))
    backbone.load_state_dict(sd, strict=False)


# ------------------------------------------------------------------------------- our checkpoint directory

PIPELINE_FILE = "pipeline.json"


def build_and_load(cfg: DETRConfig, sd: dict, origin: dict | None, reset_head: bool,
                   generator: torch.Generator | None) -> tuple[DETR, DETRConfig]:
    """``build_detr(cfg)`` with our-named ``sd`` loaded (``load_into``), in eval mode."""
    model = build_detr(cfg)
    load_into(model, sd, origin, reset_head=reset_head, generator=generator)
    return model.eval(), cfg


def save_detr(model: DETR, config: DETRConfig, directory: str | os.PathLike) -> None:
    """Writes our checkpoint directory: ``config.json`` and ``model.safetensors`` (each atomically)."""
    from safetensors.torch import save

    os.makedirs(directory, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(os.path.join(directory, "model.safetensors")) as f:
        f.write(save(sd, metadata={"format": "pt", "bertdetr": "detr"}))
    config.save(os.path.join(directory, "config.json"))


def save_classes(directory: str | os.PathLike, category_ids: list[int], class_names: list[str]) -> None:
    """Writes ``classes.json`` into our checkpoint directory: label ``l`` of the model is dataset
    category ``category_ids[l]``, named ``class_names[l]``."""
    with atomic_output(os.path.join(directory, "classes.json"), "w") as f:
        # names as written (Chinese ones readable in the file), UTF-8 as atomic_output writes text
        json.dump({"category_ids": list(category_ids), "class_names": list(class_names)}, f, indent=1,
                  ensure_ascii=False)


def load_classes(directory: str | os.PathLike, num_classes: int) -> tuple[list[int], list[str]]:
    """Category ids and names stored with a checkpoint (``classes.json``), or 1..C / "class k"."""
    path = os.path.join(directory, "classes.json")
    if not os.path.isfile(path):
        return list(range(1, num_classes + 1)), [f"class {k}" for k in range(num_classes)]
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        ids, names = [int(i) for i in d["category_ids"]], [str(n) for n in d["class_names"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BertDetrError(f"{path} is not a classes file ({{\"category_ids\": [...], \"class_names\": [...]}}): "
                            f"{type(e).__name__} {e}") from None
    if len(ids) != num_classes or len(names) != num_classes:
        raise BertDetrError(f"{path} lists {len(ids)} category ids and {len(names)} names for a model of "
                            f"{num_classes} classes")
    return ids, names


def _check_our_checkpoint(directory: str) -> None:
    """Says what a directory is when it is not our checkpoint: missing, a training run folder, or a
    transformers ``save_pretrained`` DETR (whose config.json is not ours)."""
    if not os.path.isdir(directory):
        raise BertDetrError(f"checkpoint directory not found: {directory}")
    config = os.path.join(directory, "config.json")
    if not os.path.isfile(config):
        if os.path.isfile(os.path.join(directory, "model", "config.json")):
            raise BertDetrError(f"{directory} is a training run folder; its model is "
                                f"{os.path.join(directory, 'model')}")
        raise BertDetrError(f"{directory} has no config.json: not a DETR checkpoint directory")
    try:
        with open(config, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError):
        return  # load_detr_config reports it
    if not isinstance(d, dict):
        return
    kind = d.get("model_type")
    if kind == "detr" or "architectures" in d and kind is None:
        raise BertDetrError(f"{directory} is a transformers DETR checkpoint; convert it first with "
                            f"`bertdetr detr convert --from hf --checkpoint {directory} --output DIR`")
    if "architectures" in d or isinstance(kind, str):  # a BERT folder (ours or transformers'), say
        what = ", ".join(map(str, d.get("architectures") or [])) or kind
        raise BertDetrError(f"{directory} holds a {what} model ({kind or 'transformers'}), not a DETR checkpoint")


def load_detr(directory: str | os.PathLike, num_classes: int | None = None, reset_head: bool = False,
              generator: torch.Generator | None = None) -> tuple[DETR, DETRConfig]:
    """Reads our checkpoint directory -> (model in eval mode, config)."""
    directory = os.fspath(directory)
    _check_our_checkpoint(directory)
    cfg = load_detr_config(os.path.join(directory, "config.json")).with_num_classes(num_classes)
    sd = read_state_dict(os.path.join(directory, "model.safetensors"))
    return build_and_load(cfg, sd, None, reset_head, generator)


DEFAULT_TEST_SIZE, DEFAULT_MAX_SIZE = 800, 1333
"""DETR's test scale (mmdet's ``Resize(scale=(1333, 800))``, official DETR's 800/1333): the one of
a checkpoint that records none."""


def save_pipeline(directory: str | os.PathLike, pipeline: str, test_size: int = DEFAULT_TEST_SIZE,
                  max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Records in our checkpoint directory how images go to the model at test time
    (``pipeline.json``): the pipeline of the model's origin (see ``bertdetr.detr.data.pipelines``)
    and the test scale it was trained or evaluated at (shorter side, longer at most)."""
    with atomic_output(os.path.join(directory, PIPELINE_FILE), "w") as f:
        json.dump({"pipeline": check_pipeline(pipeline), "test_size": int(test_size), "max_size": int(max_size)}, f)


def load_test_settings(directory: str | os.PathLike) -> tuple[str, int, int]:
    """(pipeline, test size, max size) recorded with a checkpoint: ``bertdetr`` at DETR's 800/1333
    when it records none (an older folder records the pipeline only)."""
    path = os.path.join(directory, PIPELINE_FILE)
    if not os.path.isfile(path):
        return "bertdetr", DEFAULT_TEST_SIZE, DEFAULT_MAX_SIZE
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        name = found["pipeline"]
        test_size, max_size = int(found.get("test_size", DEFAULT_TEST_SIZE)), int(found.get("max_size", DEFAULT_MAX_SIZE))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BertDetrError(f"cannot read {path}: {e}") from None
    if test_size < 1 or max_size < 1:
        raise BertDetrError(f"{path}: test_size and max_size must be positive, got {test_size}, {max_size}")
    return check_pipeline(name), test_size, max_size


def load_pipeline(directory: str | os.PathLike) -> str:
    """The pipeline recorded with a checkpoint; ``bertdetr`` (trained here) when none is."""
    return load_test_settings(directory)[0]


@dataclass
class DetrCheckpoint:
    """Everything our checkpoint directory holds, as ``load_checkpoint_dir`` reads it."""

    model: DETR
    """The model, in eval mode, on the device asked for."""
    config: DETRConfig
    """Its config (``config.json``)."""
    category_ids: list[int]
    """Dataset category id of each label (``classes.json``; 1..C without one)."""
    class_names: list[str]
    """Name of each label (``classes.json``; "class k" without one)."""
    has_classes: bool
    """Whether the directory has a ``classes.json`` (names to match a dataset's by)."""
    pipeline: str
    """The test-time pipeline of the model's origin (``pipeline.json``; "bertdetr" without one)."""
    test_size: int = DEFAULT_TEST_SIZE
    """The shorter image side it was trained or evaluated at (``pipeline.json``; 800 without one)."""
    max_size: int = DEFAULT_MAX_SIZE
    """The longer side at most (``pipeline.json``; 1333 without one)."""


def load_checkpoint_dir(directory: str | os.PathLike, device: str | torch.device | None = None) -> DetrCheckpoint:
    """Reads our checkpoint directory: model (moved to ``device``), config, classes and pipeline."""
    directory = os.fspath(directory)
    model, config = load_detr(directory)
    pipeline, test_size, max_size = load_test_settings(directory)
    if device is not None:
        model.to(torch.device(device))
    ids, names = load_classes(directory, config.bbox_head.num_classes)
    return DetrCheckpoint(model, config, ids, names, os.path.isfile(os.path.join(directory, "classes.json")),
                          pipeline, test_size, max_size)
