"""Other projects' DETR checkpoints as our model: ``from_mmdet``, ``from_official``, ``from_hf``, the
class names they keep, and ``convert_checkpoint`` (``bertdetr detr convert``), which writes our
checkpoint directory (``bertdetr.detr.weights``) from them.

Foreign files are read with safetensors or ``torch.load(weights_only=True)`` only
(``weights.read_checkpoint``), their tensor names renamed to ours by ``names``, float tensors upcast to
float32 (the golden mmdet file stores fp16). mmdet's config files are read by ``mmdet_config``; the
official and transformers architectures are read off the weights (``infer_config``).

What a foreign format has no place for, our exports keep under ``EXPORT_RECORD`` (the labels'
dataset category ids, the test pipeline), and ``convert_checkpoint`` reads it back: an export
converted back predicts as the model exported did. The test scale travels in the format's own
place (transformers' ``preprocessor_config.json``, mmdet's test pipeline).
"""

from __future__ import annotations

import json
import os
import warnings
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
from bertdetr.detr.data.pipelines import PIPELINES
from bertdetr.detr.model import DETR
from bertdetr.detr.weights import (
    DEFAULT_MAX_SIZE,
    DEFAULT_TEST_SIZE,
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


def hf_test_scale(directory: str | os.PathLike) -> tuple[int, int] | None:
    """(shorter side, longer side at most) that a transformers directory's ``preprocessor_config.json``
    (``DetrImageProcessor``) resizes to: its ``size`` as transformers writes it since 4.26,
    ``{"shortest_edge", "longest_edge"}``, or the older ``DetrFeatureExtractor`` file's ``size``
    int and ``max_size`` (1333 when absent, as transformers reads one). None without the file or
    without ``size`` (transformers' default then: DETR's 800/1333). A processor that does not keep
    the aspect ratio (``{"height", "width"}``: every image resized to exactly that; ``{"max_height",
    "max_width"}``: fitted into that box) is recorded as its shorter and longer side, and one that
    does not resize or that DETR's processor cannot resize with as DETR's scale: a warning says so,
    as predictions then differ from transformers'."""
    path = os.path.join(directory, "preprocessor_config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            processor = json.load(f)
    except json.JSONDecodeError as e:
        raise BertDetrError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(processor, dict) or processor.get("size") is None:
        return None
    size, default = processor["size"], f"DETR's {DEFAULT_TEST_SIZE}/{DEFAULT_MAX_SIZE} recorded in pipeline.json"
    if processor.get("do_resize") is False:
        warnings.warn(f"{path} does not resize (do_resize false), which bertdetr's pipelines always do: {default}")
        return None
    if isinstance(size, int) and not isinstance(size, bool):  # transformers' get_size_dict of the older form
        size = {"shortest_edge": size, "longest_edge": processor.get("max_size", DEFAULT_MAX_SIZE)}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}

    def whole(*values):
        return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)

    if isinstance(size, dict):
        if whole(size.get("shortest_edge"), size.get("longest_edge")):
            return size["shortest_edge"], size["longest_edge"]
        for h, w in (("height", "width"), ("max_height", "max_width")):
            if whole(size.get(h), size.get(w)):
                scale = min(size[h], size[w]), max(size[h], size[w])
                warnings.warn(f"{path} resizes to size {{{h!r}: {size[h]}, {w!r}: {size[w]}}}, which bertdetr's "
                              f"pipelines do not (they resize the shorter side, the longer at most): recorded as "
                              f"{scale[0]}/{scale[1]} in pipeline.json; predictions differ from transformers'")
                return scale
    warnings.warn(f"{path}: size {processor['size']!r} is no resize of DETR's image processor: {default}")
    return None


# ------------------------------------------------------------------------------- what our exports keep

EXPORT_RECORD = "bertdetr"
"""The key under which our hf and mmdet exports keep what those formats have no place for:
``{"category_ids": [...], "pipeline": "..."}``, the dataset category id of each label (transformers
numbers labels 0..C-1, mmdet names them only) and the test pipeline of the model exported
(``bertdetr.detr.data.pipelines``), so that converting the export back predicts as the model did.
transformers: a key of ``config.json``, which its ``PretrainedConfig`` keeps as an attribute (and
writes again on ``save_pretrained``) and its model ignores; mmdet: a key of the checkpoint's
``meta`` beside ``dataset_meta``, which mmdet's loading passes over."""


def export_record(category_ids: list[int] | None = None, pipeline: str | None = None) -> dict:
    """What an export keeps under ``EXPORT_RECORD``: the parts given."""
    record = {}
    if category_ids is not None:
        record["category_ids"] = [int(i) for i in category_ids]
    if pipeline is not None:
        record["pipeline"] = pipeline
    return record


def read_export_record(record, where: str) -> tuple[list[int] | None, str | None]:
    """(category ids, pipeline) that an export of ours kept under ``EXPORT_RECORD`` (None for each
    part it does not keep: another project's file keeps neither). A part that is not what we write
    (edited by hand, say) is passed over with a warning: the conversion goes on as for a foreign file."""
    if record is None:
        return None, None
    if not isinstance(record, dict):
        warnings.warn(f"{where} is a {type(record).__name__}, not what bertdetr's export writes: passed over")
        return None, None
    ids, pipeline = record.get("category_ids"), record.get("pipeline")
    if ids is not None and not (isinstance(ids, (list, tuple)) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids)):
        warnings.warn(f"{where}: category_ids {str(ids)[:60]} are no list of distinct whole numbers: passed over")
        ids = None
    if pipeline is not None and pipeline not in PIPELINES:
        warnings.warn(f"{where}: pipeline {pipeline!r} is none of {', '.join(PIPELINES)}: passed over")
        pipeline = None
    return (None if ids is None else list(ids)), pipeline


def with_kept_ids(found: tuple[list[int], list[str]] | None, kept_ids: list[int] | None,
                   where: str) -> tuple[tuple[list[int], list[str]] | None, bool]:
    """(``found`` (ids, names) with the category ids our export kept (``where``) where they fit its
    labels, whether they did)."""
    if found is None or kept_ids is None:
        return found, False
    if len(kept_ids) == len(found[1]):
        return (kept_ids, found[1]), True
    warnings.warn(f"{where} lists {len(kept_ids)} category ids for {len(found[1])} classes: passed over")
    return found, False


def _coco_numbered(found: tuple[list[int], list[str]]) -> bool:
    """Whether the labels' ids are COCO's category ids, COCO's names at them (mmdet's COCO classes,
    transformers' COCO checkpoints, whose id2label is keyed by category id): ids no warning is due for."""
    names = dict(zip(*found))
    return all(names.get(i) == n for i, n in zip(COCO_CATEGORY_IDS, COCO_CLASS_NAMES))


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
    classes are known, pipeline.json: the source's test pipeline and scale). ``config``: mmdet's
    model config file (default: the one the checkpoint keeps); ``classes``: "coco80" or "keep" (see
    ``from_official``); ``num_classes`` other than the checkpoint's needs ``reset_head`` (seeded
    by ``seed``). An export of ours (``EXPORT_RECORD``) comes back with its category ids and
    pipeline; a foreign file's labels are numbered as before (COCO's ids for COCO's classes, else
    mmdet 1..C, transformers its id2label keys), in a warning unless they are COCO's."""
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
    pipeline = scale = None  # what the checkpoint records, else the origin's below
    numbered = False  # category ids made up from the labels' order, not kept by the file (nor COCO's)
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
        meta = ckpt.get("meta") if isinstance(ckpt, dict) and isinstance(ckpt.get("meta"), dict) else {}
        where = f"{checkpoint} meta[{EXPORT_RECORD!r}]"
        kept_ids, pipeline = read_export_record(meta.get(EXPORT_RECORD), where)
        if classes == "coco80":
            found = coco80_classes()
        elif names:
            found, kept = with_kept_ids(classes_from_names(names), kept_ids, where)
            numbered = not kept and not _coco_numbered(found)
        else:
            found = None
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
        directory = os.path.isdir(checkpoint)
        hf_config = read_hf_config(checkpoint) if directory else {}
        where = f"{os.path.join(checkpoint, 'config.json')} {EXPORT_RECORD!r}"
        kept_ids, pipeline = read_export_record(hf_config.get(EXPORT_RECORD), where)
        found, origin = hf_classes(hf_config, coco80), "config.json's id2label"
        if not coco80 and found is not None:
            found, kept = with_kept_ids(found, kept_ids, where)
            numbered = not kept and not _coco_numbered(found)
        # transformers' image processor says the test scale (its default: DETR's 800/1333)
        scale = hf_test_scale(checkpoint) if directory else None
    if reset_head:
        found = None  # a re-initialised class FC has no names yet: the dataset it is trained on gives them
    n = cfg.bbox_head.num_classes
    if found is not None and len(found[0]) != n:
        raise BertDetrError(f"{origin} lists {len(found[0])} classes, the checkpoint's class FC has {n} "
                            f"(head.fc_cls.weight {tuple(model.head.fc_cls.weight.shape)}): they do not fit")
    if found is not None and numbered:
        warnings.warn(f"the checkpoint keeps no category ids of its classes: classes.json numbers them "
                      f"{found[0][0]}..{found[0][-1]} (edit its category_ids where the dataset's differ)")
    save_detr(model, cfg, output)
    if found is not None:
        save_classes(output, *found)
    elif os.path.exists(os.path.join(output, "classes.json")):
        os.remove(os.path.join(output, "classes.json"))  # an older conversion's, not this model's
    # the origin's test pipeline (or the one our export kept) and scale: mmdet's config says it (else
    # mmdet's default), transformers' preprocessor_config.json (else its default), official DETR tests
    # at 800/1333
    if source == "mmdet":
        scale = mmdet_test_scale(load_mmdet_config(mmdet_config) if isinstance(mmdet_config, (str, os.PathLike))
                                 else mmdet_config)
    save_pipeline(output, pipeline or ("mmdet" if source == "mmdet" else "official"),
                  *(scale or (DEFAULT_TEST_SIZE, DEFAULT_MAX_SIZE)))
    return Converted(model, cfg, found, origin, config_from)
