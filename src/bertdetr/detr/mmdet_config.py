"""Reading MMDetection DETR configs: its ``.py`` config files parsed (never executed) and the
resulting dict turned into our ``DETRConfig``.

mmdet's config files are Python, read by mmengine (3.x) or mmcv (2.x) by executing them. Here they are
parsed with ``ast``: only assignments of literals, ``dict(...)``, lists, tuples, earlier names and simple
arithmetic, with ``_base_`` files merged first as mmengine merges them. Anything else is an error
naming the line, so a config file can never run code here.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re

from bertdetr.detr.config import (
    AssignerConfig,
    BackboneConfig,
    BBoxHeadConfig,
    DecoderConfig,
    DETRConfig,
    EncoderConfig,
    PositionalEncodingConfig,
    TestConfig,
)
from bertdetr.errors import BertDetrError


def load_mmdet_config(path: str | os.PathLike) -> dict:
    """An mmdet config file -> its dict. ``.json`` is read as is; ``.py``
    is *parsed*, never executed: top-level assignments of literals, ``dict(...)``, lists, tuples,
    names assigned earlier and simple arithmetic, with ``_base_`` files merged first (mmengine's
    rules: nested dicts merge, ``_delete_=True`` replaces, everything else overrides)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BertDetrError(f"mmdet config not found: {path}")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if not path.endswith(".py"):
        raise BertDetrError(f"mmdet config must be a .py or .json file: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            tree = ast.parse(f.read(), filename=path)
        except SyntaxError as e:
            raise BertDetrError(f"cannot parse mmdet config {path}: {e}") from None
    ns: dict = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue  # docstrings; imports only serve custom_imports/lazy configs we do not need
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise BertDetrError(f"{path}:{node.lineno}: unsupported statement in an mmdet config (only NAME = value)")
        ns[node.targets[0].id] = _eval(node.value, ns, path)
    cfg: dict = {}
    bases = ns.pop("_base_", [])
    for base in [bases] if isinstance(bases, str) else bases:
        cfg = _merge(cfg, load_mmdet_config(os.path.join(os.path.dirname(path), base)))
    return _merge(cfg, ns)


def _eval(node, ns, path):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(e, ns, path) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_eval(k, ns, path): _eval(v, ns, path) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _eval(kw.value, ns, path) for kw in node.keywords}
    if isinstance(node, ast.Name):
        if node.id in ns:
            return ns[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, ns, path)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv)):
        a, b = _eval(node.left, ns, path), _eval(node.right, ns, path)
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b, ast.FloorDiv: lambda: a // b}[type(node.op)]()
    raise BertDetrError(f"{path}:{node.lineno}: unsupported expression in an mmdet config: {ast.unparse(node)}")


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_delete_", False):
            out[k] = _merge(out[k], v)
        else:
            out[k] = {kk: vv for kk, vv in v.items() if kk != "_delete_"} if isinstance(v, dict) else v
    return out


def _attn_dropout(cfg: dict, where: str) -> float:
    # mmcv MultiheadAttention: the deprecated ``dropout`` sets both attn_drop and dropout_layer.
    if "dropout" in cfg:
        return float(cfg["dropout"])
    attn_drop = float(cfg.get("attn_drop", 0.0))
    drop = float((cfg.get("dropout_layer") or {}).get("drop_prob", 0.0))
    if attn_drop != drop or float(cfg.get("proj_drop", 0.0)) != 0.0:
        raise BertDetrError(f"{where}: attn_drop {attn_drop}, dropout_layer {drop}, proj_drop "
                            f"{cfg.get('proj_drop', 0.0)}: only equal attention/output dropout is supported")
    return attn_drop


def _ffn_section(layer_cfg: dict, where: str) -> dict:
    ffn = layer_cfg.get("ffn_cfg", {})
    act = (ffn.get("act_cfg") or {"type": "ReLU"}).get("type")
    if act != "ReLU" or ffn.get("num_fcs", 2) != 2:
        raise BertDetrError(f"{where}.ffn_cfg: only a 2-FC ReLU FFN is supported (got {act}, num_fcs {ffn.get('num_fcs')})")
    attn = layer_cfg.get("self_attn_cfg", {})
    return dict(embed_dims=int(attn.get("embed_dims", ffn.get("embed_dims", 256))), num_heads=int(attn.get("num_heads", 8)),
                feedforward_channels=int(ffn.get("feedforward_channels", 1024)),
                dropout=_attn_dropout(attn, f"{where}.self_attn_cfg"), ffn_drop=float(ffn.get("ffn_drop", 0.0)))


def _parse_class_weight(value):
    if isinstance(value, str):  # a dumped, already-built config: "tensor([1., ..., 0.1000])"
        m = re.fullmatch(r"\s*tensor\(\[(.*)\]\)\s*", value, re.S)
        if not m:
            raise BertDetrError(f"cannot read loss_cls.class_weight {value!r}")
        value = [float(x) for x in m.group(1).split(",")]
    return value


def config_from_mmdet(cfg: dict) -> DETRConfig:
    """An mmdet DETR config dict (whole file or its ``model``) -> DETRConfig. Anything of it we do
    not implement (another detector, caffe-style or trainable-BN backbone, sigmoid classifier, ...)
    is an error naming the field."""
    model = cfg.get("model", cfg)
    if model.get("type") != "DETR":
        raise BertDetrError(f"model.type is {model.get('type')!r}; only 'DETR' is supported")
    bb = model.get("backbone", {})
    if bb.get("type", "ResNet") != "ResNet" or bb.get("style", "pytorch") != "pytorch":
        raise BertDetrError(f"model.backbone: only ResNet style 'pytorch' is supported (got {bb.get('type')}, {bb.get('style')})")
    if list(bb.get("out_indices", (3,))) != [3] or not bb.get("norm_eval", False) or \
            (bb.get("norm_cfg") or {}).get("requires_grad", True):
        raise BertDetrError("model.backbone: only out_indices (3,) with frozen BatchNorm (norm_eval=True, "
                            "norm_cfg.requires_grad=False) is supported, as mmdet's DETR configs")
    enc = _ffn_section(model["encoder"]["layer_cfg"], "model.encoder.layer_cfg")
    dec_layer = model["decoder"]["layer_cfg"]
    dec = _ffn_section(dec_layer, "model.decoder.layer_cfg")
    cross = _attn_dropout(dec_layer.get("cross_attn_cfg", {}), "model.decoder.layer_cfg.cross_attn_cfg")
    if cross != dec["dropout"]:
        raise BertDetrError(f"decoder cross-attention dropout {cross} differs from self-attention {dec['dropout']}")
    neck = model.get("neck", {})
    if neck.get("out_channels", enc["embed_dims"]) != enc["embed_dims"] or neck.get("kernel_size", 1) != 1:
        raise BertDetrError(f"model.neck: a 1x1 ChannelMapper to embed_dims {enc['embed_dims']} is expected")
    pe = model.get("positional_encoding", {})
    head = model.get("bbox_head", {})
    loss_cls = head.get("loss_cls", {})
    if loss_cls.get("use_sigmoid", False):
        raise BertDetrError("bbox_head.loss_cls.use_sigmoid=True is not supported (DETR uses softmax)")
    num_classes = int(head.get("num_classes", 80))
    class_weight = _parse_class_weight(loss_cls.get("class_weight"))
    if class_weight is None:
        raise BertDetrError("bbox_head.loss_cls.class_weight is required (mmdet's DETR sets class_weight=1.0)")
    if isinstance(class_weight, list):
        if len(class_weight) != num_classes + 1 or any(w != 1.0 for w in class_weight[:-1]):
            raise BertDetrError("bbox_head.loss_cls.class_weight: only 1.0 for every foreground class is supported")
        bg = class_weight[-1]
    else:
        if float(class_weight) != 1.0:
            raise BertDetrError("bbox_head.loss_cls.class_weight: only 1.0 is supported")
        bg = loss_cls.get("bg_cls_weight", class_weight)  # mmdet DETRHead: defaults to class_weight
    train_cfg = model.get("train_cfg") or head.get("train_cfg") or {}
    costs = {c["type"]: c for c in (train_cfg.get("assigner") or {}).get("match_costs", [])}
    if costs.get("BBoxL1Cost", {}).get("box_format", "xywh") != "xywh" or \
            costs.get("IoUCost", {}).get("iou_mode", "giou") != "giou":
        raise BertDetrError("assigner: only BBoxL1Cost box_format 'xywh' and IoUCost iou_mode 'giou' are supported")
    test_cfg = model.get("test_cfg") or head.get("test_cfg") or {}
    return DETRConfig(
        num_queries=int(model.get("num_queries", 100)),
        backbone=BackboneConfig(depth=int(bb.get("depth", 50)), frozen_stages=int(bb.get("frozen_stages", 1))),
        encoder=EncoderConfig(num_layers=int(model["encoder"].get("num_layers", 6)), **enc),
        decoder=DecoderConfig(num_layers=int(model["decoder"].get("num_layers", 6)), **dec),
        positional_encoding=PositionalEncodingConfig(
            num_feats=int(pe.get("num_feats", 128)), temperature=float(pe.get("temperature", 10000)),
            normalize=bool(pe.get("normalize", False)), scale=float(pe.get("scale", 2 * math.pi)),
            eps=float(pe.get("eps", 1e-6)), offset=float(pe.get("offset", 0.0))),
        bbox_head=BBoxHeadConfig(
            num_classes=num_classes, num_reg_fcs=int(head.get("num_reg_fcs", 2)),
            loss_cls_weight=float(loss_cls.get("loss_weight", 1.0)), bg_cls_weight=float(bg),
            loss_bbox_weight=float(head.get("loss_bbox", {}).get("loss_weight", 5.0)),
            loss_iou_weight=float(head.get("loss_iou", {}).get("loss_weight", 2.0))),
        assigner=AssignerConfig(cls_cost=float(costs.get("ClassificationCost", {}).get("weight", 1.0)),
                                bbox_cost=float(costs.get("BBoxL1Cost", {}).get("weight", 5.0)),
                                iou_cost=float(costs.get("IoUCost", {}).get("weight", 2.0))),
        test_cfg=TestConfig(max_per_img=int(test_cfg.get("max_per_img", 100))),
    )
