"""Exporting our DETR: ONNX, a transformers ``DetrForObjectDetection`` directory, an mmdet 3.x
checkpoint with its config.

The name maps are the inverses of the import tables of ``names``, computed from them (``invert_rules``):
each import rule ``(their regex, our replacement)`` becomes ``(our regex, their replacement)``,
capture groups carried across. Where an import rule accepts several spellings of a name (an
optional ``(?:conv_encoder\\.)?``, alternatives ``(?:out_proj|o_proj)``), the export writes the
first spelling, with optional parts present: transformers 4.x's on-disk names, which transformers
5.x reads too (and writes itself). Where several import rules lead to one of our names, the first
rule's spelling is written. The structural steps of the import (fused q/k/v, the box MLP split
into ``reg_fcs``/``fc_reg``, transformers' ResNet stages) are undone by their own inverses here.

Outputs, each written under a temporary name and renamed into place:
- ONNX: inputs ``images`` float32 [B,3,H,W] (normalised as the model's pipeline does) and ``masks``
  bool [B,H,W] (True at padding), B, H and W dynamic; outputs ``pred_logits`` [B,Q,K] and
  ``pred_boxes`` [B,Q,4] of the last decoder layer.
- hf: ``config.json`` (``DetrConfig`` with transformers' own ResNet backbone, ``id2label``),
  ``model.safetensors``, ``preprocessor_config.json`` (``DetrImageProcessor`` at the checkpoint's
  test scale).
- mmdet: ``model.pth`` (``{'meta': {'dataset_meta': {'classes': ...}}, 'state_dict': ...}`` with
  mmdet 3.x names) and ``config.py`` (the model and its test pipeline, loadable by ``init_detector``).

Neither format has a place for the labels' dataset category ids (transformers' ``id2label`` is keyed
by logit index, mmdet's ``dataset_meta`` names classes only) nor for our test pipeline: both keep
them under ``load.EXPORT_RECORD`` (a key of hf's config.json, of mmdet's ``meta``), which their
loaders pass over and ``bertdetr detr convert`` reads back, so that an export converted back
predicts as the checkpoint exported.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re

import torch
from torch import nn

from bertdetr.detr.config import DETRConfig
from bertdetr.detr.convert.load import EXPORT_RECORD, export_record
from bertdetr.detr.convert.names import HF_RULES, MMDET_RULES, rename
from bertdetr.detr.model import DETR, RESNET_LAYOUTS, Bottleneck, pool_for_dynamic_sizes
from bertdetr.detr.weights import load_checkpoint_dir
from bertdetr.errors import BertDetrError
from bertdetr.fileio import atomic_output

FORMATS = ("onnx", "hf", "mmdet")
"""Export formats (``bertdetr detr export --format``)."""


# ------------------------------------------------------------------------------- inverse name maps


def _parse_rule_pattern(pattern: str) -> list[tuple[str, str]]:
    """A rule's regex -> tokens ``("lit", text)`` / ``("group", regex)``: escaped characters are
    literal, a capture group is kept as its regex, a non-capturing group ``(?:a|b)`` becomes its
    first alternative (``?`` after it is dropped: the optional part is written)."""
    tokens, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            tokens.append(("lit", pattern[i + 1]))
            i += 2
        elif c == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1 + (pattern[j] == "\\")
            inner = pattern[i + 1:j - 1]
            if inner.startswith("?:"):
                first = inner[2:].split("|")[0]
                tokens.append(("lit", re.sub(r"\\(.)", r"\1", first)))
                j += pattern[j:j + 1] == "?"
            else:
                tokens.append(("group", inner))
            i = j
        elif c in ".*+?[]{}|^$":
            raise ValueError(f"cannot invert the regex construct {c!r} in {pattern!r}")
        else:
            tokens.append(("lit", c))
            i += 1
    return tokens


def invert_rules(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Import rules (theirs regex -> ours replacement) -> export rules (ours regex -> theirs
    replacement), in the same order (the first matching rule wins, as on import)."""
    inverse = []
    for pattern, repl in rules:
        groups = [regex for kind, regex in _parse_rule_pattern(pattern) if kind == "group"]
        refs = [int(n) for n in re.findall(r"\\(\d+)", repl)]
        # our side: the replacement with each \k turned back into group k's regex
        ours = "".join(f"({groups[int(part[1:]) - 1]})" if re.fullmatch(r"\\\d+", part) else re.escape(part)
                       for part in re.split(r"(\\\d+)", repl) if part)
        # their side: the pattern with group k referring to its place among our groups
        theirs, k = [], 0
        for kind, text in _parse_rule_pattern(pattern):
            if kind == "lit":
                theirs.append(text.replace("\\", "\\\\"))
            else:
                k += 1
                theirs.append(f"\\{refs.index(k) + 1}")
        inverse.append((ours, "".join(theirs)))
    return inverse


_OURS_TO_MMDET = invert_rules(MMDET_RULES)
_OURS_TO_HF = invert_rules(HF_RULES)


def _rename_all(sd: dict, rules) -> dict:
    return rename(sd, rules)[0]


def ours_to_mmdet(sd: dict, num_reg_fcs: int) -> dict:
    """Our state dict -> mmdet 3.x DETR names. mmcv's FFN keeps its last FC bare
    (``reg_ffn.layers.{n-1}``), the others inside a Sequential (``reg_ffn.layers.j.0``); mmdet's
    backbone BatchNorms count batches (``num_batches_tracked``, 0 here: frozen, never counted)."""
    out = _rename_all(sd, _OURS_TO_MMDET)
    last = f"bbox_head.reg_ffn.layers.{num_reg_fcs - 1}.0."
    out = {(k.replace(last, last[:-2]) if k.startswith(last) else k): v for k, v in out.items()}
    for k in [k for k in out if k.startswith("backbone.") and k.endswith(".running_mean")]:
        out[k[:-len("running_mean")] + "num_batches_tracked"] = torch.tensor(0)
    return out


def ours_to_hf(sd: dict) -> dict:
    """Our state dict -> transformers ``DetrForObjectDetection`` names (its own ResNet backbone):
    the inverse of ``names.hf_to_ours`` with ``coco80=False``."""
    staged = {}
    for k, v in sd.items():  # inverse of names._hf_resnet_stages
        m = re.fullmatch(r"backbone\.layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.(.*)", k)
        d = re.fullmatch(r"backbone\.layer(\d+)\.(\d+)\.(downsample\.\d+\..*)", k)
        if m:
            k = f"hfstage.{int(m[1]) - 1}.{m[2]}.{m[3]}.{int(m[4]) - 1}.{m[5]}"
        elif d:
            k = f"hfstage.{int(d[1]) - 1}.{d[2]}.{d[3]}"
        staged[k] = v
    mlp = sorted(int(k.split(".")[2]) for k in staged if k.startswith("head.reg_fcs.") and k.endswith(".weight"))
    split = {}
    for k, v in staged.items():  # inverses of weights._split_mlp and weights._fuse_qkv
        k = k.replace(".cross_attn.", ".encoder_attn.")
        if k.startswith("head.reg_fcs."):
            split["bbox_embed." + k[len("head.reg_fcs."):]] = v
        elif k.startswith("head.fc_reg."):
            split[f"bbox_embed.{len(mlp)}." + k[len("head.fc_reg."):]] = v
        elif m := re.fullmatch(r"(.*)\.in_proj_(weight|bias)", k):
            for name, part in zip("qkv", v.chunk(3)):
                split[f"{m[1]}.{name}.{m[2]}"] = part
        else:
            split[k] = v
    return _rename_all(split, _OURS_TO_HF)


# ------------------------------------------------------------------------------- ONNX


class _OnnxOutputs(nn.Module):
    """The model with tensor outputs (last decoder layer only) for ONNX."""

    def __init__(self, model: DETR):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, masks: torch.Tensor):
        out = self.model(images, masks)
        return out["pred_logits"], out["pred_boxes"]


def export_onnx(model: DETR, path: str | os.PathLike, opset: int = 18) -> None:
    """Writes ``model`` as ONNX (see the module doc) through ``torch.onnx.export(dynamo=True)``."""
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise BertDetrError("ONNX export needs onnx and onnxscript: pip install 'bertdetr[export]'") from None
    model = copy.deepcopy(model)  # the caller's model keeps its pool
    pool_for_dynamic_sizes(model.backbone)
    wrapper = _OnnxOutputs(model).eval()
    # traced on two 160x192 images, the second padded, so that the masked attention is exported
    images = torch.zeros(2, 3, 160, 192, device=next(model.parameters()).device)
    masks = torch.zeros(2, 160, 192, dtype=torch.bool, device=images.device)
    masks[1, 128:, :] = masks[1, :, 160:] = True
    B, H, W = torch.export.Dim("batch"), torch.export.Dim("height", min=64), torch.export.Dim("width", min=64)
    program = torch.onnx.export(wrapper, (images, masks), dynamo=True, opset_version=opset,
                                input_names=["images", "masks"], output_names=["pred_logits", "pred_boxes"],
                                dynamic_shapes=({0: B, 2: H, 3: W}, {0: B, 1: H, 2: W}), verbose=False)
    program.optimize()
    with atomic_output(path, "wb") as f:
        f.write(program.model_proto.SerializeToString())


# ------------------------------------------------------------------------------- transformers


def _check_standard(config: DETRConfig, fmt: str) -> None:
    """The parts of a DETR that transformers' and mmdet's DETR fix: frozen BatchNorm, the sine
    encoding of official DETR, a 3-layer box MLP (hf)."""
    pe = config.positional_encoding
    problems = []
    if config.backbone.norm != "frozen":
        problems.append(f"backbone.norm {config.backbone.norm!r} (frozen BatchNorm only)")
    if config.backbone.dilation:
        # mmdet's ResNet dilates a stage's first block too; transformers dilates only timm backbones
        problems.append("backbone.dilation (DC5: neither mmdet's ResNet nor transformers' own dilates as official DETR)")
    if fmt == "hf":
        if (pe.normalize, pe.temperature, pe.scale, pe.eps, pe.offset) != (True, 10000.0, 2 * math.pi, 1e-6, 0.0):
            problems.append("positional_encoding other than DETR's (normalize, temperature 10000, scale 2pi, "
                            "eps 1e-6, offset 0)")
        if config.bbox_head.num_reg_fcs != 2:
            problems.append(f"bbox_head.num_reg_fcs {config.bbox_head.num_reg_fcs} (transformers' box MLP has 3 layers)")
    if problems:
        raise BertDetrError(f"cannot export to {fmt}: " + "; ".join(problems))


def _whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def hf_config(config: DETRConfig, class_names: list[str]) -> dict:
    """transformers ``DetrConfig`` (as its config.json) of ``config``, with transformers' own ResNet
    (``use_timm_backbone=False``: no timm needed to load it)."""
    bb, enc, dec, head = config.backbone, config.encoder, config.decoder, config.bbox_head
    block, depths = RESNET_LAYOUTS[bb.depth]
    widths = [bb.base_channels * 2**i * block.expansion for i in range(4)]
    return {
        "architectures": ["DetrForObjectDetection"], "model_type": "detr",
        # no "backbone_kwargs": null (transformers 4.x's default), which 5.17's DetrConfig reads with .get
        "use_timm_backbone": False, "backbone": None, "use_pretrained_backbone": False,
        "backbone_config": {"model_type": "resnet", "num_channels": 3, "embedding_size": bb.base_channels,
                            "hidden_sizes": widths, "depths": list(depths), "hidden_act": "relu",
                            "layer_type": "bottleneck" if block is Bottleneck else "basic",
                            "downsample_in_first_stage": False, "downsample_in_bottleneck": False,
                            "out_features": ["stage4"], "out_indices": [4]},
        "num_channels": 3, "num_queries": config.num_queries, "d_model": config.embed_dims,
        "encoder_layers": enc.num_layers, "decoder_layers": dec.num_layers,
        "encoder_attention_heads": enc.num_heads, "decoder_attention_heads": dec.num_heads,
        "encoder_ffn_dim": enc.feedforward_channels, "decoder_ffn_dim": dec.feedforward_channels,
        "activation_function": "relu", "dropout": enc.dropout, "attention_dropout": enc.dropout,
        "activation_dropout": enc.ffn_drop, "position_embedding_type": "sine", "dilation": False,
        "auxiliary_loss": False, "init_std": 0.02, "init_xavier_std": 1.0,
        # transformers 5.x types the costs and loss coefficients int (their defaults are whole)
        "class_cost": _whole(config.assigner.cls_cost), "bbox_cost": _whole(config.assigner.bbox_cost),
        "giou_cost": _whole(config.assigner.iou_cost), "bbox_loss_coefficient": _whole(head.loss_bbox_weight),
        "giou_loss_coefficient": _whole(head.loss_iou_weight), "eos_coefficient": head.bg_cls_weight,
        "id2label": {str(i): name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
    }


def export_hf(model: DETR, config: DETRConfig, class_names: list[str], directory: str | os.PathLike,
              test_scale: tuple[int, int] = (800, 1333), category_ids: list[int] | None = None,
              pipeline: str | None = None) -> None:
    """Writes a transformers ``DetrForObjectDetection`` directory (see the module doc); its image
    processor resizes to ``test_scale`` (shorter side, longer at most). ``category_ids`` (of the
    labels) and ``pipeline`` (the checkpoint's test pipeline), when given, are kept in config.json
    under ``EXPORT_RECORD``."""
    from safetensors.torch import save

    _check_standard(config, "hf")
    sd = ours_to_hf({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})
    os.makedirs(directory, exist_ok=True)
    with atomic_output(os.path.join(directory, "model.safetensors")) as f:
        f.write(save(sd, metadata={"format": "pt"}))
    processor = {"image_processor_type": "DetrImageProcessor", "format": "coco_detection", "do_resize": True,
                 "size": {"shortest_edge": test_scale[0], "longest_edge": test_scale[1]}, "resample": 2, "do_rescale": True,
                 "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                 "image_std": [0.229, 0.224, 0.225], "do_pad": True}
    detr_config = hf_config(config, class_names)
    record = export_record(category_ids, pipeline)
    if record:  # transformers' PretrainedConfig keeps an unknown key as an attribute; its model ignores it
        detr_config[EXPORT_RECORD] = record
    for name, content in (("preprocessor_config.json", processor), ("config.json", detr_config)):
        with atomic_output(os.path.join(directory, name), "w") as f:
            json.dump(content, f, indent=2)


# ------------------------------------------------------------------------------- mmdet


def _py(value, indent: int = 0) -> str:
    """A value as mmengine config source: dicts as ``dict(...)``, one key a line."""
    pad = "    " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "dict()"
        items = ",\n".join(f"{pad}{k}={_py(v, indent + 1)}" for k, v in value.items())
        return f"dict(\n{items})"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_py(v, indent + 1) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def to_mmdet_config(config: DETRConfig, class_names: list[str], test_scale: tuple[int, int] = (800, 1333)) -> dict:
    """mmdet 3.x config (model, test pipeline, dataset classes) of ``config``: what
    ``mmdet_config.config_from_mmdet`` reads back to ``config``."""
    bb, enc, dec, pe, head, a = (config.backbone, config.encoder, config.decoder, config.positional_encoding,
                                 config.bbox_head, config.assigner)
    D = config.embed_dims

    def layer(cfg, cross: bool) -> dict:
        attn = dict(embed_dims=D, num_heads=cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        out = dict(self_attn_cfg=attn)
        if cross:
            out["cross_attn_cfg"] = dict(attn)
        out["ffn_cfg"] = dict(embed_dims=D, feedforward_channels=cfg.feedforward_channels, num_fcs=2,
                              ffn_drop=cfg.ffn_drop, act_cfg=dict(type="ReLU", inplace=True))
        return out

    model = dict(
        type="DETR", num_queries=config.num_queries,
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_size_divisor=1),
        backbone=dict(type="ResNet", depth=bb.depth, num_stages=4, out_indices=(3,), frozen_stages=bb.frozen_stages,
                      base_channels=bb.base_channels, norm_cfg=dict(type="BN", requires_grad=False), norm_eval=True,
                      style="pytorch", init_cfg=None),
        neck=dict(type="ChannelMapper", in_channels=[bb.out_channels],
                  kernel_size=1, out_channels=D, act_cfg=None, norm_cfg=None, num_outs=1),
        encoder=dict(num_layers=enc.num_layers, layer_cfg=layer(enc, False)),
        decoder=dict(num_layers=dec.num_layers, layer_cfg=layer(dec, True), return_intermediate=True),
        positional_encoding=dict(num_feats=pe.num_feats, temperature=pe.temperature, normalize=pe.normalize,
                                 scale=pe.scale, eps=pe.eps, offset=pe.offset),
        bbox_head=dict(type="DETRHead", num_classes=head.num_classes, embed_dims=D, num_reg_fcs=head.num_reg_fcs,
                       loss_cls=dict(type="CrossEntropyLoss", bg_cls_weight=head.bg_cls_weight, use_sigmoid=False,
                                     loss_weight=head.loss_cls_weight, class_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=head.loss_bbox_weight),
                       loss_iou=dict(type="GIoULoss", loss_weight=head.loss_iou_weight)),
        train_cfg=dict(assigner=dict(type="HungarianAssigner", match_costs=[
            dict(type="ClassificationCost", weight=a.cls_cost),
            dict(type="BBoxL1Cost", weight=a.bbox_cost, box_format="xywh"),
            dict(type="IoUCost", iou_mode="giou", weight=a.iou_cost)])),
        test_cfg=dict(max_per_img=config.test_cfg.max_per_img),
    )
    test_pipeline = [dict(type="LoadImageFromFile", backend_args=None),
                     dict(type="Resize", scale=(test_scale[1], test_scale[0]), keep_ratio=True),
                     dict(type="LoadAnnotations", with_bbox=True),
                     dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape",
                                                           "scale_factor"))]
    return dict(default_scope="mmdet", model=model, test_pipeline=test_pipeline,
                test_dataloader=dict(batch_size=1, num_workers=2, dataset=dict(
                    type="CocoDataset", metainfo=dict(classes=tuple(class_names)), test_mode=True,
                    pipeline=test_pipeline)))


def export_mmdet(model: DETR, config: DETRConfig, class_names: list[str], directory: str | os.PathLike,
                 test_scale: tuple[int, int] = (800, 1333), category_ids: list[int] | None = None,
                 pipeline: str | None = None) -> None:
    """Writes ``model.pth`` and ``config.py`` for mmdet 3.x (see the module doc); its test pipeline
    resizes to ``test_scale`` (shorter side, longer at most). ``category_ids`` and ``pipeline``,
    when given, are kept in the checkpoint's ``meta`` under ``EXPORT_RECORD``."""
    _check_standard(config, "mmdet")
    sd = ours_to_mmdet({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                       config.bbox_head.num_reg_fcs)
    cfg = to_mmdet_config(config, class_names, test_scale)
    os.makedirs(directory, exist_ok=True)
    meta = {"dataset_meta": {"classes": tuple(class_names)}, "exported_by": "bertdetr"}
    record = export_record(category_ids, pipeline)
    if record:  # beside dataset_meta: mmdet's init_detector reads that one only
        meta[EXPORT_RECORD] = record
    checkpoint = {"meta": meta, "state_dict": sd}
    with atomic_output(os.path.join(directory, "model.pth"), "wb") as f:
        torch.save(checkpoint, f)
    source = "# mmdet 3.x config written by bertdetr detr export (self-contained: no _base_)\n"
    source += "".join(f"{k} = {_py(v)}\n" for k, v in cfg.items())
    with atomic_output(os.path.join(directory, "config.py"), "w") as f:
        f.write(source)


# ------------------------------------------------------------------------------- our checkpoint in


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, output: str | os.PathLike, opset: int = 18) -> str:
    """Our checkpoint directory -> ``fmt`` (one of ``FORMATS``) at ``output`` (onnx: a file; hf,
    mmdet: a directory); returns what was written, in words. Class names from ``classes.json``; its
    category ids, the test pipeline and scale (``pipeline.json``) go with hf and mmdet exports."""
    from bertdetr.fileio import check_writable

    if fmt not in FORMATS:
        raise BertDetrError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    checkpoint, output = os.fspath(checkpoint), os.fspath(output)
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        raise BertDetrError(f"not a checkpoint directory (no config.json): {checkpoint}")
    if fmt != "onnx" and os.path.realpath(output) == os.path.realpath(checkpoint):
        # (its config.json and weights would be replaced by another library's: the model lost)
        raise BertDetrError(f"--output {output} is the checkpoint folder itself: export {fmt} into another folder")
    first = {"onnx": output, "hf": os.path.join(output, "config.json"), "mmdet": os.path.join(output, "model.pth")}
    check_writable(first[fmt])
    ckpt = load_checkpoint_dir(checkpoint)
    model, config, names = ckpt.model, ckpt.config, ckpt.class_names
    if fmt == "onnx":
        export_onnx(model, output, opset)
        return f"{output} (ONNX opset {opset}: images [B,3,H,W], masks [B,H,W] -> pred_logits, pred_boxes)"
    scale = (ckpt.test_size, ckpt.max_size)  # the test scale the checkpoint records
    kept = dict(category_ids=ckpt.category_ids, pipeline=ckpt.pipeline)  # for convert to read back
    if fmt == "hf":
        export_hf(model, config, names, output, scale, **kept)
        return f"{output} (transformers DetrForObjectDetection, {len(names)} labels)"
    export_mmdet(model, config, names, output, scale, **kept)
    return f"{output}/model.pth and {output}/config.py (mmdet 3.x DETR, {len(names)} classes)"
