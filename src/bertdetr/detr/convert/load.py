"""Other projects' DETR checkpoints as our model: ``from_mmdet``, ``from_official``, ``from_hf``, the
class names they keep, and ``convert_checkpoint`` (``bertdetr detr convert``), which writes our
checkpoint directory (``bertdetr.detr.weights``) from them.

Foreign files are read with safetensors or ``torch.load(weights_only=True)`` only
(``weights.read_checkpoint``), their tensor names renamed to ours by ``names``, float tensors upcast to
float32 (the golden mmdet file stores fp16). mmdet's config files are read by ``mmdet_config``; the
official and transformers architectures are read off the weights (``infer_config``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from bertdetr.detr.config import (
    BackboneConfig,
    BBoxHeadConfig,
    DecoderConfig,
    DETRConfig,
    EncoderConfig,
    PositionalEncodingConfig,
)
from bertdetr.detr.convert.mmdet_config import (config_from_mmdet, load_mmdet_config, mmdet_config_from_text,
                                               mmdet_test_scale)
from bertdetr.detr.convert.names import (
    COCO_CATEGORY_IDS,
    COCO_CLASS_NAMES,
    OFFICIAL_NO_OBJECT,
    hf_to_ours,
    mmdet_to_ours,
    official_to_ours,
)
from bertdetr.detr.model import DETR
from bertdetr.detr.weights import (
    build_and_load,
    read_checkpoint,
    read_state_dict,
    save_classes,
    save_detr,
    save_pipeline,
    unwrap_state_dict,
)
from bertdetr.errors import BertDetrError
from bertdetr.fileio import check_writable


def infer_config(sd: dict, num_heads: int = 8, dilation: bool = False, **sections) -> DETRConfig:
    """A DETRConfig with the architecture read off an our-named state dict (heads are not
    visible in weights: ``num_heads``; nor is a dilated last stage: ``dilation``, DC5); other
    sections (dropouts, losses, ...) at mmdet defaults unless given as keyword arguments."""
    def count(prefix):
        return len({k.split(".")[2] for k in sd if k.startswith(prefix)})

    try:
        D = sd["query_embedding.weight"].shape[1]
        bottleneck = "backbone.layer1.0.conv3.weight" in sd
        blocks = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"backbone.layer{i}.")}) for i in range(1, 5))
        depth = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
                 (True, (3, 4, 23, 3)): 101, (True, (3, 8, 36, 3)): 152}.get((bottleneck, blocks))
        if depth is None:
            raise BertDetrError(f"backbone is no ResNet-18/34/50/101/152 (blocks per stage {blocks})")
        enc_ffn = sd["encoder.layers.0.ffn.fc1.weight"].shape[0] if count("encoder.layers.") else 2048
        dec_ffn = sd["decoder.layers.0.ffn.fc1.weight"].shape[0]
        num_classes = sd["head.fc_cls.weight"].shape[0] - 1
        num_reg_fcs = count("head.reg_fcs.") or 1
        num_queries = sd["query_embedding.weight"].shape[0]
    except KeyError as e:
        raise BertDetrError(f"checkpoint lacks {e.args[0]} (is it a DETR checkpoint?)") from None
    enc = dict(num_layers=count("encoder.layers."), embed_dims=D, num_heads=num_heads, feedforward_channels=enc_ffn)
    dec = dict(num_layers=count("decoder.layers."), embed_dims=D, num_heads=num_heads, feedforward_channels=dec_ffn)
    enc.update(sections.pop("encoder", {}))
    dec.update(sections.pop("decoder", {}))
    head = dict(num_classes=num_classes, num_reg_fcs=num_reg_fcs)
    head.update(sections.pop("bbox_head", {}))
    return DETRConfig(num_queries=num_queries,
                      backbone=sections.pop("backbone", BackboneConfig(depth=depth, dilation=dilation)),
                      encoder=EncoderConfig(**enc), decoder=DecoderConfig(**dec),
                      positional_encoding=PositionalEncodingConfig(num_feats=D // 2),
                      bbox_head=BBoxHeadConfig(**head), **sections)


def _as_state_dict(checkpoint) -> dict:
    return read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap_state_dict(checkpoint)


def from_mmdet(config, checkpoint, num_classes: int | None = None, reset_head: bool = False,
               generator: torch.Generator | None = None) -> tuple[DETR, DETRConfig]:
    """Builds our DETR from an mmdet DETR ``config`` (its ``.py``/``.json`` file path or dict) and
    loads ``checkpoint`` (path, state dict or ``{'state_dict': ...}``) -> (model in eval mode, config).
    ``num_classes`` other than the checkpoint's needs ``reset_head=True`` (class FC re-initialised)."""
    cfg = config_from_mmdet(load_mmdet_config(config) if isinstance(config, (str, os.PathLike)) else config)
    cfg = cfg.with_num_classes(num_classes)
    sd, origin = mmdet_to_ours(_as_state_dict(checkpoint))
    return build_and_load(cfg, sd, origin, reset_head, generator)


def from_official(checkpoint, coco80: bool = True, num_heads: int = 8, num_classes: int | None = None,
                  reset_head: bool = False, generator: torch.Generator | None = None,
                  dilation: bool | None = None) -> tuple[DETR, DETRConfig]:
    """facebookresearch/detr checkpoint (path or ``{'model': ...}``/state dict) -> (model, config).
    The architecture is read off the weights (``num_heads`` is not visible in them: 8 in every
    released model). ``dilation``: a DC5 model (detr-r50-dc5, detr-r101-dc5: the last stage
    dilated, torchvision's ``replace_stride_with_dilation``), not visible in the weights either;
    None: ``args.dilation`` of a training checkpoint (main.py keeps its command line), else False.
    See the module doc for ``coco80``."""
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(checkpoint)
    if dilation is None:
        args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
        dilation = bool(getattr(args, "dilation", False) if args is not None and not isinstance(args, dict)
                        else (args or {}).get("dilation", False))
    sd, origin = official_to_ours(_as_state_dict(checkpoint), coco80=coco80)
    cfg = infer_config(sd, num_heads, dilation=dilation).with_num_classes(num_classes)
    return build_and_load(cfg, sd, origin, reset_head, generator)


def from_hf(checkpoint, coco80: bool = False, num_heads: int | None = None, num_classes: int | None = None,
            reset_head: bool = False, generator: torch.Generator | None = None,
            hf_config: dict | None = None) -> tuple[DETR, DETRConfig]:
    """transformers ``DetrForObjectDetection`` weights -> (model, config). ``checkpoint``: a
    ``save_pretrained`` directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``),
    a weights file, or a state dict. Heads and dropout come from the directory's config.json or
    ``hf_config`` (``model.config.to_dict()``) when given. transformers' ``dropout`` becomes ours
    (attention output and FFN); its ``attention_dropout`` (0.0 in its configs, 0.1 in official
    DETR) has no separate place here: ours drops attention probabilities with ``dropout`` as mmdet.
    Its DETR is official DETR's (92 logits for the COCO checkpoints): ``coco80`` as ``from_official``."""
    hf_cfg = dict(hf_config or {})
    if isinstance(checkpoint, (str, os.PathLike)) and os.path.isdir(checkpoint):
        hf_cfg = read_hf_config(checkpoint) or hf_cfg
        for fname in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(checkpoint, fname)):
                checkpoint = os.path.join(checkpoint, fname)
                break
        else:
            raise BertDetrError(f"{checkpoint} has no model.safetensors or pytorch_model.bin")
    sd, origin = hf_to_ours(_as_state_dict(checkpoint), coco80=coco80)
    heads = num_heads or int(hf_cfg.get("encoder_attention_heads", 8))
    dec_heads = num_heads or int(hf_cfg.get("decoder_attention_heads", heads))
    sections = {}
    if hf_cfg:
        sections = dict(encoder=dict(dropout=float(hf_cfg.get("dropout", 0.1)), ffn_drop=float(hf_cfg.get("dropout", 0.1))),
                        decoder=dict(num_heads=dec_heads, dropout=float(hf_cfg.get("dropout", 0.1)),
                                     ffn_drop=float(hf_cfg.get("dropout", 0.1))))
    cfg = infer_config(sd, heads, dilation=bool(hf_cfg.get("dilation", False)), **sections).with_num_classes(num_classes)
    return build_and_load(cfg, sd, origin, reset_head, generator)


def read_hf_config(directory: str | os.PathLike) -> dict:
    """A transformers ``save_pretrained`` directory's ``config.json`` ({} when there is none)."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BertDetrError(f"{path} is not valid JSON: {e}") from None


def coco80_classes() -> tuple[list[int], list[str]]:
    """mmdet's 80 COCO labels: COCO's category ids (1..90 with gaps) and names."""
    return list(COCO_CATEGORY_IDS), list(COCO_CLASS_NAMES)


def official_classes(coco80: bool = True) -> tuple[list[int], list[str]]:
    """Official DETR's COCO labels: ``coco80`` as ``from_official``; otherwise label = category id
    0..90, the unused ids named "N/A" as official DETR and transformers name them."""
    if coco80:
        return coco80_classes()
    names = dict(zip(COCO_CATEGORY_IDS, COCO_CLASS_NAMES))
    return list(range(OFFICIAL_NO_OBJECT)), [names.get(i, "N/A") for i in range(OFFICIAL_NO_OBJECT)]


def mmdet_class_names(checkpoint) -> list[str] | None:
    """The class names an mmdet checkpoint keeps in its ``meta``: 2.x ``meta['CLASSES']``, 3.x
    ``meta['dataset_meta']['classes']`` (None when it has none)."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    names = meta.get("CLASSES")
    if names is None and isinstance(meta.get("dataset_meta"), dict):
        names = meta["dataset_meta"].get("classes")
    return None if names is None else [str(n) for n in ([names] if isinstance(names, str) else names)]


def mmdet_config_text(checkpoint) -> str | None:
    """The config an mmdet checkpoint was trained with, as text: 2.x ``meta['config']``, 3.x
    ``meta['cfg']`` (None when it keeps none). Read it with ``mmdet_config.mmdet_config_from_text``."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    text = (meta.get("config") or meta.get("cfg")) if isinstance(meta, dict) else None
    return text if isinstance(text, str) and text.strip() else None


def classes_from_names(names: list[str]) -> tuple[list[int], list[str]]:
    """Labels known by name only (an mmdet checkpoint's): COCO's category ids when the names are COCO's
    80 in mmdet's order, else 1..C. (mmdet itself looks the ids up by name in the annotation file it
    evaluates on; ``evaluate.label_category_ids`` does that too.)"""
    if list(names) == COCO_CLASS_NAMES:
        return coco80_classes()
    return list(range(1, len(names) + 1)), list(names)


def hf_classes(hf_config: dict, coco80: bool = False) -> tuple[list[int], list[str]] | None:
    """transformers' ``id2label`` (its keys are the category ids); ``coco80`` as ``from_hf``. None
    when the config has no labels."""
    id2label = {int(k): str(v) for k, v in (hf_config.get("id2label") or {}).items()}
    if coco80:
        coco = dict(zip(COCO_CATEGORY_IDS, COCO_CLASS_NAMES))
        return list(COCO_CATEGORY_IDS), [id2label.get(i, coco[i]) for i in COCO_CATEGORY_IDS]
    if not id2label:
        return None
    ids = sorted(id2label)
    return ids, [id2label[i] for i in ids]


# ------------------------------------------------------------------------------- the command

SOURCES = ("mmdet", "official", "hf")


@dataclass
class Converted:
    """What ``convert_checkpoint`` wrote."""

    model: DETR
    """The converted model, in eval mode."""
    config: DETRConfig
    """Its config (written as config.json)."""
    classes: tuple[list[int], list[str]] | None
    """Category ids and names of its labels (classes.json), None when the source names none."""
    classes_from: str
    """Where the class names came from, in words."""
    config_from: str | None
    """Where the model config came from when it was not given (an mmdet checkpoint's meta)."""


def convert_checkpoint(source: str, checkpoint: str, output: str, config: str | None = None,
                       classes: str | None = None, num_classes: int | None = None, reset_head: bool = False,
                       num_heads: int | None = None, seed: int = 0, dilation: bool | None = None) -> Converted:
    """``bertdetr detr convert``: another project's checkpoint (``source`` one of ``SOURCES``) ->
    our checkpoint directory ``output`` (config.json, model.safetensors, classes.json when the
    classes are known, pipeline.json: the source's test pipeline). ``config``: mmdet's model config
    file (default: the one the checkpoint keeps); ``classes``: "coco80" or "keep" (see
    ``from_official``); ``num_classes`` other than the checkpoint's needs ``reset_head`` (seeded
    by ``seed``)."""
    existed = os.path.isdir(output)
    check_writable(os.path.join(output, "config.json"))  # (creates the folder)
    try:
        return _convert(source, checkpoint, output, config, classes, num_classes, reset_head, num_heads, seed,
                        dilation)
    except BaseException:
        if not existed and os.path.isdir(output) and not os.listdir(output):
            os.rmdir(output)  # a failed conversion leaves no empty folder behind
        raise


def _convert(source, checkpoint, output, config, classes, num_classes, reset_head, num_heads, seed,
             dilation=None) -> Converted:
    if source not in SOURCES:
        raise BertDetrError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if dilation and source != "official":
        raise BertDetrError("--dilation is for official DETR's DC5 checkpoints (transformers' config.json says "
                            "it itself; mmdet has no DC5 DETR)")
    if num_classes is not None and num_classes < 1:
        raise BertDetrError(f"--num-classes must be >= 1, got {num_classes}")
    common = dict(num_classes=num_classes, reset_head=reset_head, generator=torch.Generator().manual_seed(seed))
    config_from = None
    mmdet_config = None
    if source == "mmdet":
        ckpt = read_checkpoint(checkpoint)
        mmdet_config = config
        if not mmdet_config:
            text = mmdet_config_text(ckpt)
            if text is None:
                raise BertDetrError("--from mmdet needs --config (the mmdet model config .py or .json): "
                                    f"{checkpoint} keeps no config in its meta")
            mmdet_config = mmdet_config_from_text(text, f"the config kept in {checkpoint}")
            config_from = f"the one kept in {checkpoint}"
        model, cfg = from_mmdet(mmdet_config, ckpt, **common)
        names = mmdet_class_names(ckpt)
        found = coco80_classes() if classes == "coco80" else classes_from_names(names) if names else None
        origin = "--classes coco80" if classes == "coco80" else "the checkpoint's meta"
    elif source == "official":
        coco80 = (classes or "coco80") == "coco80"
        model, cfg = from_official(checkpoint, coco80=coco80, num_heads=num_heads or 8, dilation=dilation, **common)
        # a 92-logit head is COCO's; other counts are fine-tuned models whose names the file does not keep
        coco = coco80 or cfg.bbox_head.num_classes == OFFICIAL_NO_OBJECT
        found, origin = (official_classes(coco80) if coco else None), "COCO's"
    else:
        coco80 = (classes or "keep") == "coco80"
        model, cfg = from_hf(checkpoint, coco80=coco80, num_heads=num_heads, **common)
        hf_config = read_hf_config(checkpoint) if os.path.isdir(checkpoint) else {}
        found, origin = hf_classes(hf_config, coco80), "config.json's id2label"
    if reset_head:
        found = None  # a re-initialised class FC has no names yet: the dataset it is trained on gives them
    n = cfg.bbox_head.num_classes
    if found is not None and len(found[0]) != n:
        raise BertDetrError(f"{origin} lists {len(found[0])} classes, the checkpoint's class FC has {n} "
                            f"(head.fc_cls.weight {tuple(model.head.fc_cls.weight.shape)}): they do not fit")
    save_detr(model, cfg, output)
    if found is not None:
        save_classes(output, *found)
    elif os.path.exists(os.path.join(output, "classes.json")):
        os.remove(os.path.join(output, "classes.json"))  # an older conversion's, not this model's
    # the origin's test pipeline and scale: mmdet's config says it (else mmdet's default), official
    # DETR tests at 800/1333, transformers' processor likewise
    scale = (mmdet_test_scale(load_mmdet_config(mmdet_config) if isinstance(mmdet_config, (str, os.PathLike))
                              else mmdet_config) if source == "mmdet" else None) or (800, 1333)
    save_pipeline(output, "mmdet" if source == "mmdet" else "official", *scale)
    return Converted(model, cfg, found, origin, config_from)
