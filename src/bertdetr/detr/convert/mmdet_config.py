"""Reading MMDetection DETR configs: mmdet 2.x and 3.x config files resolved (never executed) and
the resulting dict turned into our ``DETRConfig``.

- ``load_mmdet_config``: a config file of mmdet's ``configs/`` tree (or a ``work_dirs/`` copy) -> dict.
  mmengine (3.x) and mmcv 1.x (2.x) execute config files; here they are parsed with ``ast`` and
  resolved by mmengine's rules (``_base_`` lists, ``_delete_``, ``{{_base_.x}}``, ``_base_.x``,
  predefined variables). Anything else is an error naming the line: a config never runs code here.
  ``mmdet_config_from_text``: the same for the config text a checkpoint keeps in its ``meta``.
- ``config_from_mmdet``: the dict -> ``DETRConfig``. 3.x's layout is read directly; 2.x's (the
  transformer in ``bbox_head``, mmcv 1.x layer configs; mmdet before 2.12's flat ``Transformer``)
  is rewritten into 3.x's first. What we do not implement is an error naming the field.
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


_PREDEFINED = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")
_BASE_VAR = re.compile(r"\{\{\s*_base_\.([\w\.]+)\s*\}\}")
_PLACEHOLDER = "__bertdetr_base_var__:"
"""``{{_base_.x}}`` becomes this string + ``x`` before parsing, the base's value after (mmengine's way:
it puts a random string there, executes the file, then swaps the base value in)."""


def load_mmdet_config(path: str | os.PathLike) -> dict:
    """An mmdet config file (``.py`` or ``.json``) -> its dict, resolved as mmengine's (3.x) and mmcv
    1.x's (2.x) ``Config.fromfile`` resolve it, without executing anything.

    - ``_base_``: a path or a list of paths relative to the file; the bases are read first (keys
      shared by two bases are an error), then this file's values merged into them: dicts merge key
      by key, ``_delete_=True`` replaces the base's dict, anything else replaces the base's value.
    - ``{{_base_.a.b}}`` is the merged bases' value at ``a.b``; in ``.py`` files ``_base_.a.b`` and
      ``_base_['a']`` read it too (mmengine's Python syntax).
    - ``{{ fileDirname }}``, ``{{ fileBasename }}``, ``{{ fileBasenameNoExtension }}``,
      ``{{ fileExtname }}`` are replaced in the text as mmengine's predefined variables.
    - ``.py`` files are parsed: ``NAME = expression`` statements of literals, ``dict(...)`` (with
      ``**``), lists, tuples, names assigned earlier, ``_base_`` reads, f-strings and arithmetic;
      imports and docstrings are passed over; anything else is an error naming the line.
    """
    return _file2dict(os.path.abspath(os.fspath(path)), ())


def mmdet_test_scale(cfg: dict) -> tuple[int, int] | None:
    """(shorter side, longer side at most) of an mmdet config's test pipeline: 3.x's
    ``Resize(scale=(1333, 800), keep_ratio=True)`` in ``test_pipeline`` (or the test dataloader's),
    2.x's ``MultiScaleFlipAug(img_scale=(1333, 800))``; None when it has no such step."""
    pipelines = [cfg.get("test_pipeline"),
                 ((cfg.get("test_dataloader") or {}).get("dataset") or {}).get("pipeline"),
                 (((cfg.get("data") or {}).get("test")) or {}).get("pipeline")]

    def scales(steps):
        for step in steps or []:
            if not isinstance(step, dict):
                continue
            scale = step.get("scale") if step.get("type") == "Resize" else \
                step.get("img_scale") if step.get("type") == "MultiScaleFlipAug" else None
            if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, int) for v in scale):
                yield min(scale), max(scale)
            yield from scales(step.get("transforms"))

    for steps in pipelines:
        found = next(scales(steps), None)
        if found is not None:
            return found
    return None


def mmdet_config_from_text(text: str, where: str = "the checkpoint's config") -> dict:
    """A resolved mmdet config as text -> its dict, parsed as a ``.py`` config file (never executed).
    mmdet checkpoints keep one in their ``meta`` (2.x ``meta['config']``, 3.x ``meta['cfg']``: the
    config they were trained with, its ``_base_`` files already merged in)."""
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as e:
        raise BertDetrError(f"cannot parse {where}: {e}") from None
    if _base_files(tree, where):
        raise BertDetrError(f"{where} inherits _base_ files it does not carry; give the config file (--config)")
    return _assignments(tree, where, None)


def _file2dict(path: str, chain: tuple) -> dict:
    where = f" (a _base_ of {chain[-1]})" if chain else ""
    if not os.path.isfile(path):
        raise BertDetrError(f"mmdet config not found: {path}{where}")
    if path in chain:
        raise BertDetrError(f"mmdet config {path} inherits from itself: {' -> '.join(chain + (path,))}")
    ext = os.path.splitext(path)[1]
    if ext not in (".py", ".json"):
        raise BertDetrError(f"mmdet config must be a .py or .json file: {path}{where}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    name = os.path.basename(path)
    values = dict(fileDirname=os.path.dirname(path), fileBasename=name,
                  fileBasenameNoExtension=os.path.splitext(name)[0], fileExtname=ext)
    for key in _PREDEFINED:
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", lambda _, v=values[key]: v.replace("\\", "/"), text)
    if re.search(r"\{\{\s*\$", text):
        raise BertDetrError(f"{path}: environment variables in a config ({{{{$NAME:default}}}}) are not supported")
    text = _BASE_VAR.sub(lambda m: json.dumps(_PLACEHOLDER + m.group(1)), text)
    if ext == ".json":
        try:
            ns = json.loads(text)
        except json.JSONDecodeError as e:
            raise BertDetrError(f"cannot parse mmdet config {path}: {e}") from None
        bases, tree = ns.pop("_base_", []), None
    else:
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as e:
            raise BertDetrError(f"cannot parse mmdet config {path}: {e}") from None
        bases = _base_files(tree, path)
    base_cfg: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        if not isinstance(base, str):
            raise BertDetrError(f"{path}: _base_ must be a path or a list of paths, got {base!r}")
        if "::" in base:
            raise BertDetrError(f"{path}: _base_ {base!r} names a config inside an installed package; "
                                f"give its file path instead (mmdet's configs/ tree)")
        cfg = _file2dict(os.path.normpath(os.path.join(os.path.dirname(path), base)), chain + (path,))
        shared = sorted(base_cfg.keys() & cfg.keys())
        if shared:
            raise BertDetrError(f"{path}: the _base_ files both set {', '.join(shared)} (mmengine does not "
                                f"allow a key in two bases)")
        base_cfg.update(cfg)
    if tree is not None:
        ns = _assignments(tree, path, base_cfg if bases else None)
    ns = {k: v for k, v in ns.items() if not k.startswith("__")}
    return _merge_into(_substitute_base_vars(ns, base_cfg, path), base_cfg, path)


def _base_files(tree: ast.Module, path: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                raise BertDetrError(f"{path}:{node.lineno}: _base_ must be a literal path or list of paths") from None
    return []


def _assignments(tree: ast.Module, path: str, base_cfg: dict | None) -> dict:
    ns: dict = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue  # modules are no config values (mmengine drops them); custom_imports need none here
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstrings
        if isinstance(node, ast.With):
            raise BertDetrError(f"{path}:{node.lineno}: pure-Python configs (with read_base(): ...) are not "
                                f"supported; use the config of mmdet's configs/ tree")
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise BertDetrError(f"{path}:{node.lineno}: unsupported statement in an mmdet config (only NAME = value): "
                                f"{ast.unparse(node)[:80]}")
        if node.targets[0].id != "_base_":
            ns[node.targets[0].id] = _eval(node.value, ns, path, base_cfg)
    return ns


def _eval(node, ns, path, base_cfg):
    def ev(n):
        return _eval(n, ns, path, base_cfg)

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [ev(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            out.update(_mapping(ev(v), node, path) if k is None else {ev(k): ev(v)})
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and len(node.args) <= 1:
        out = _mapping(ev(node.args[0]), node, path) if node.args else {}
        for kw in node.keywords:
            out.update(_mapping(ev(kw.value), node, path) if kw.arg is None else {kw.arg: ev(kw.value)})
        return out
    if isinstance(node, ast.Name):
        if node.id == "_base_" and base_cfg is not None:
            return base_cfg
        if node.id in ns:
            return ns[node.id]
    if isinstance(node, ast.Attribute):
        value = ev(node.value)
        if isinstance(value, dict) and node.attr in value:
            return value[node.attr]
        raise BertDetrError(f"{path}:{node.lineno}: {ast.unparse(node)}: no such value in the config")
    if isinstance(node, ast.Subscript):
        value, key = ev(node.value), ev(node.slice)
        try:
            return value[key]
        except (KeyError, IndexError, TypeError):
            raise BertDetrError(f"{path}:{node.lineno}: {ast.unparse(node)}: no such value in the config") from None
    if isinstance(node, ast.JoinedStr) and all(
            isinstance(v, ast.Constant) or (v.conversion == -1 and v.format_spec is None) for v in node.values):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else str(ev(v.value)) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = ev(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv)):
        a, b = ev(node.left), ev(node.right)
        try:
            return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                    ast.Div: lambda: a / b, ast.FloorDiv: lambda: a // b}[type(node.op)]()
        except (TypeError, ZeroDivisionError) as e:
            raise BertDetrError(f"{path}:{node.lineno}: {ast.unparse(node)}: {e}") from None
    raise BertDetrError(f"{path}:{node.lineno}: unsupported expression in an mmdet config: {ast.unparse(node)}")


def _mapping(value, node, path) -> dict:
    if not isinstance(value, dict):
        raise BertDetrError(f"{path}:{node.lineno}: {ast.unparse(node)}: ** needs a dict")
    return dict(value)


def _substitute_base_vars(value, base_cfg: dict, path: str):
    """Placeholders of ``{{_base_.a.b}}`` -> the bases' value at a.b (in dicts, lists and tuples)."""
    if isinstance(value, str) and value.startswith(_PLACEHOLDER):
        found = base_cfg
        for key in value[len(_PLACEHOLDER):].split("."):
            if not isinstance(found, dict) or key not in found:
                raise BertDetrError(f"{path}: {{{{_base_.{value[len(_PLACEHOLDER):]}}}}}: the _base_ configs have "
                                    f"no such value")
            found = found[key]
        return found
    if isinstance(value, dict):
        return {k: _substitute_base_vars(v, base_cfg, path) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute_base_vars(v, base_cfg, path) for v in value)
    return value


def _merge_into(child: dict, base: dict, path: str, prefix: str = "") -> dict:
    """mmengine's ``Config._merge_a_into_b``: ``child`` over ``base``, neither modified. Where the base
    has the key, ``_delete_`` is taken out of the child's dict (whatever its value) and, when true,
    the child's dict replaces the base's; a key new to the base keeps its ``_delete_`` (as mmengine)."""
    out = dict(base)
    for k, v in child.items():
        if isinstance(v, dict) and k in base:
            delete = v.get("_delete_", False)
            v = {kk: vv for kk, vv in v.items() if kk != "_delete_"}
            if not delete:
                if not isinstance(base[k], dict):
                    raise BertDetrError(f"{path}: {prefix}{k} is a dict here but a {type(base[k]).__name__} in "
                                        f"the _base_ config; set _delete_=True in it to replace the base's value")
                v = _merge_into(v, base[k], path, f"{prefix}{k}.")
        out[k] = v
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
    if not ffn.get("add_identity", True):
        raise BertDetrError(f"{where}.ffn_cfg.add_identity=False is not supported (DETR's FFN adds its input)")
    attn = layer_cfg.get("self_attn_cfg", {})
    dims = int(attn.get("embed_dims", ffn.get("embed_dims", 256)))
    if int(ffn.get("embed_dims", dims)) != dims:
        raise BertDetrError(f"{where}.ffn_cfg.embed_dims {ffn['embed_dims']} differs from the attention's {dims}")
    cross = layer_cfg.get("cross_attn_cfg")
    if cross is not None and (int(cross.get("embed_dims", dims)), int(cross.get("num_heads", 8))) != \
            (dims, int(attn.get("num_heads", 8))):
        raise BertDetrError(f"{where}.cross_attn_cfg: embed_dims/num_heads ({cross.get('embed_dims')}, "
                            f"{cross.get('num_heads')}) differ from self_attn_cfg's ({dims}, {attn.get('num_heads', 8)})")
    return dict(embed_dims=dims, num_heads=int(attn.get("num_heads", 8)),
                feedforward_channels=int(ffn.get("feedforward_channels", 1024)),
                dropout=_attn_dropout(attn, f"{where}.self_attn_cfg"), ffn_drop=float(ffn.get("ffn_drop", 0.0)))


# ------------------------------------------------------------------------------- mmdet 2.x layout
#
# mmdet 2.x (mmcv 1.x) nests the transformer in the head: bbox_head.transformer.{encoder,decoder} with
# num_layers and transformerlayers (attn_cfgs, ffn_cfgs or the deprecated feedforward_channels /
# ffn_dropout / ffn_num_fcs, operation_order); bbox_head.positional_encoding, bbox_head.in_channels
# (3.x: a 1x1 ChannelMapper neck), bbox_head.num_query (3.x num_queries), assigner cls_cost /
# reg_cost / iou_cost (3.x a match_costs list). Same model, other words: it is rewritten into 3.x's
# layout and read from there.

_ENCODER_ORDER = ("self_attn", "norm", "ffn", "norm")
_DECODER_ORDER = ("self_attn", "norm", "cross_attn", "norm", "ffn", "norm")
# mmcv 1.x BaseTransformerLayer's default ffn_cfgs (replaced whole when a config gives ffn_cfgs)
_MMCV1_FFN = dict(type="FFN", embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.0,
                  act_cfg=dict(type="ReLU", inplace=True))
# mmdet 2.x HungarianAssigner's defaults, in match_costs order
_MMDET2_COSTS = (("cls_cost", dict(type="ClassificationCost", weight=1.0)),
                 ("reg_cost", dict(type="BBoxL1Cost", weight=1.0)),
                 ("iou_cost", dict(type="IoUCost", iou_mode="giou", weight=1.0)))


def _mmdet2_layer_cfg(section: dict, order: tuple, where: str) -> dict:
    """A 2.x ``transformerlayers`` (mmcv 1.x BaseTransformerLayer arguments) -> 3.x ``layer_cfg``."""
    layers = section.get("transformerlayers")
    if isinstance(layers, (list, tuple)):  # one config per layer: equal ones are one layer config
        if any(layer != layers[0] for layer in layers):
            raise BertDetrError(f"{where}.transformerlayers: layers configured differently are not supported")
        layers = layers[0] if layers else None
    where = f"{where}.transformerlayers"
    if not isinstance(layers, dict):
        raise BertDetrError(f"{where} is missing")
    got = tuple(layers.get("operation_order") or ())
    if got != order:
        raise BertDetrError(f"{where}.operation_order {got}: only DETR's post-norm order {order} is supported")
    # mmcv: one attn_cfgs dict serves every attention of operation_order, a list gives one each
    n_attn = sum(op in ("self_attn", "cross_attn") for op in order)
    attns = layers.get("attn_cfgs")
    attns = [attns] * n_attn if isinstance(attns, dict) else list(attns or [])
    if len(attns) != n_attn:
        raise BertDetrError(f"{where}.attn_cfgs: {n_attn} attention config(s) expected (one per attention "
                            f"of operation_order), got {len(attns)}")
    for attn in attns:
        if attn.get("type", "MultiheadAttention") != "MultiheadAttention" or "embed_dims" not in attn:
            raise BertDetrError(f"{where}.attn_cfgs: a MultiheadAttention with embed_dims is expected, got {attn}")
    ffn = layers.get("ffn_cfgs")
    if isinstance(ffn, (list, tuple)):
        if len(ffn) != 1:
            raise BertDetrError(f"{where}.ffn_cfgs: one FFN expected, got {len(ffn)}")
        ffn = ffn[0]
    ffn = dict(_MMCV1_FFN if ffn is None else ffn)
    for old, new in (("feedforward_channels", "feedforward_channels"), ("ffn_dropout", "ffn_drop"),
                     ("ffn_num_fcs", "num_fcs")):
        if old in layers:  # mmcv 1.x's deprecated arguments override ffn_cfgs
            ffn[new] = layers[old]
    if ffn.get("type", "FFN") != "FFN":
        raise BertDetrError(f"{where}.ffn_cfgs: type {ffn.get('type')!r} is not supported (FFN)")
    dims = attns[0]["embed_dims"]
    if ffn.setdefault("embed_dims", dims) != dims:  # mmcv asserts this too
        raise BertDetrError(f"{where}: the FFN's embed_dims {ffn['embed_dims']} differ from the attention's {dims} "
                            f"(without ffn_cfgs mmcv 1.x's default FFN has embed_dims 256)")
    out = dict(self_attn_cfg=attns[0], ffn_cfg=ffn)
    if "cross_attn" in order:
        out["cross_attn_cfg"] = attns[1]
    return out


def _mmdet2_assigner(train_cfg):
    assigner = (train_cfg or {}).get("assigner")
    if not assigner or "match_costs" in assigner:
        return train_cfg
    if "cls_weight" in assigner:  # mmdet before 2.12: weights only, L1 on (cx, cy, w, h) boxes
        costs = [dict(type="ClassificationCost", weight=assigner["cls_weight"]),
                 dict(type="BBoxL1Cost", weight=assigner.get("bbox_weight", 1.0), box_format="xywh"),
                 dict(type="IoUCost", iou_mode=assigner.get("iou_mode", "giou"), weight=assigner.get("iou_weight", 1.0))]
        return dict(train_cfg, assigner=dict(type=assigner.get("type", "HungarianAssigner"), match_costs=costs))
    costs = [dict(assigner.get(key) or default) for key, default in _MMDET2_COSTS]
    return dict(train_cfg, assigner=dict(type=assigner.get("type", "HungarianAssigner"), match_costs=costs))


def _mmdet_flat_transformer(tr: dict, where: str) -> dict:
    """mmdet before 2.12 (``TransformerHead``): one flat ``Transformer`` config -> 2.12+'s nested one.
    Its layers had the same modules (see ``weights._MMDET2_RULES``) with ``dropout`` on the attention
    weights, after the attention and in and after the FFN, as 2.12+'s ``dropout``/``ffn_dropout``."""
    missing = [k for k in ("embed_dims", "num_heads", "feedforward_channels") if k not in tr]
    if missing:
        raise BertDetrError(f"{where}: the flat (pre-2.12) Transformer config lacks {', '.join(missing)}")
    if tr.get("pre_norm", False) or not tr.get("return_intermediate_dec", False) or tr.get("num_fcs", 2) != 2 or \
            (tr.get("act_cfg") or {"type": "ReLU"}).get("type") != "ReLU" or (tr.get("norm_cfg") or {"type": "LN"}).get("type") != "LN":
        raise BertDetrError(f"{where}: only DETR's post-norm (pre_norm=False) transformer with return_intermediate_dec=True, "
                            f"2-FC ReLU FFNs and LayerNorm is supported")
    drop = tr.get("dropout", 0.0)
    attn = dict(type="MultiheadAttention", embed_dims=tr["embed_dims"], num_heads=tr["num_heads"], dropout=drop)
    ffn = dict(type="FFN", embed_dims=tr["embed_dims"], feedforward_channels=tr["feedforward_channels"], num_fcs=2,
               ffn_drop=drop, act_cfg=tr.get("act_cfg") or dict(type="ReLU", inplace=True))
    return dict(
        type="Transformer",
        encoder=dict(type="DetrTransformerEncoder", num_layers=tr.get("num_encoder_layers", 6), transformerlayers=dict(
            type="BaseTransformerLayer", attn_cfgs=[attn], ffn_cfgs=ffn, operation_order=_ENCODER_ORDER)),
        decoder=dict(type="DetrTransformerDecoder", num_layers=tr.get("num_decoder_layers", 6), return_intermediate=True,
                     transformerlayers=dict(type="DetrTransformerDecoderLayer", attn_cfgs=attn, ffn_cfgs=ffn,
                                            operation_order=_DECODER_ORDER)))


def _mmdet2_model(model: dict) -> dict:
    """mmdet 2.x's DETR model config -> the same model in 3.x's layout."""
    head = dict(model["bbox_head"])
    tr = head.pop("transformer")
    if head.pop("type", "DETRHead") == "TransformerHead" and "num_reg_fcs" not in head:
        head["num_reg_fcs"] = head.pop("num_fcs", 2)  # mmdet before 2.12 named the head and this so
    where = "model.bbox_head.transformer"
    if not isinstance(tr, dict) or tr.get("type", "Transformer") != "Transformer":
        raise BertDetrError(f"{where}: only mmdet's DETR 'Transformer' is supported, got {tr if not isinstance(tr, dict) else tr.get('type')!r}")
    if "encoder" not in tr and "decoder" not in tr and "num_encoder_layers" in tr:
        tr = _mmdet_flat_transformer(tr, where)
    if "encoder" not in tr or "decoder" not in tr:
        raise BertDetrError(f"{where} has no encoder/decoder (nor the flat num_encoder_layers/num_decoder_layers "
                            f"of mmdet before 2.12)")
    enc, dec = tr["encoder"], tr["decoder"]
    for section, name, kind in ((enc, "encoder", "DetrTransformerEncoder"), (dec, "decoder", "DetrTransformerDecoder")):
        if section.get("type", kind) != kind or "num_layers" not in section:
            raise BertDetrError(f"{where}.{name}: a {kind} with num_layers is expected, got type {section.get('type')!r}")
    if not dec.get("return_intermediate", False):
        raise BertDetrError(f"{where}.decoder.return_intermediate must be True (DETR's outputs of every decoder layer)")
    if (dec.get("post_norm_cfg", {"type": "LN"}) or {}).get("type") != "LN":
        raise BertDetrError(f"{where}.decoder.post_norm_cfg: DETR's LayerNorm after the decoder is expected")
    if "in_channels" not in head:
        raise BertDetrError("model.bbox_head.in_channels is missing (the backbone's output channels)")
    enc_layer = _mmdet2_layer_cfg(enc, _ENCODER_ORDER, f"{where}.encoder")
    dec_layer = _mmdet2_layer_cfg(dec, _DECODER_ORDER, f"{where}.decoder")
    out = {k: v for k, v in model.items() if k != "bbox_head"}
    out.update(
        num_queries=head.pop("num_query", 100),
        neck=dict(type="ChannelMapper", in_channels=[head.pop("in_channels")], kernel_size=1,
                  out_channels=enc_layer["self_attn_cfg"]["embed_dims"]),
        encoder=dict(num_layers=enc["num_layers"], layer_cfg=enc_layer),
        decoder=dict(num_layers=dec["num_layers"], layer_cfg=dec_layer, return_intermediate=True),
        positional_encoding=head.pop("positional_encoding", {}),
        bbox_head=dict(head, train_cfg=_mmdet2_assigner(head.get("train_cfg"))),
        train_cfg=_mmdet2_assigner(model.get("train_cfg")),
    )
    return out


def _parse_class_weight(value):
    if isinstance(value, str):  # a dumped, already-built config: "tensor([1., ..., 0.1000])"
        m = re.fullmatch(r"\s*tensor\(\[(.*)\]\)\s*", value, re.S)
        if not m:
            raise BertDetrError(f"cannot read loss_cls.class_weight {value!r}")
        value = [float(x) for x in m.group(1).split(",")]
    return value


def config_from_mmdet(cfg: dict) -> DETRConfig:
    """An mmdet 2.x or 3.x DETR config dict (whole file or its ``model``) -> DETRConfig. Anything of
    it we do not implement (another detector, caffe-style or trainable-BN backbone, sigmoid
    classifier, pre-norm layers, ...) is an error naming the field."""
    model = cfg.get("model", cfg)
    if not isinstance(model, dict) or model.get("type") != "DETR":
        raise BertDetrError(f"model.type is {model.get('type') if isinstance(model, dict) else None!r}; "
                            f"only 'DETR' is supported")
    if model is not cfg:  # mmdet before 2.12 (and 2.x configs of that style) kept these beside the model
        model = dict(model)
        for key, mark in (("train_cfg", "assigner"), ("test_cfg", "max_per_img")):
            if key not in model and isinstance(cfg.get(key), dict) and mark in cfg[key]:
                model[key] = cfg[key]
    head = model.get("bbox_head") or {}
    if head.get("type", "DETRHead") not in ("DETRHead", "TransformerHead") or \
            (head.get("type") == "TransformerHead" and "transformer" not in head):
        raise BertDetrError(f"model.bbox_head.type is {head.get('type')!r}; only 'DETRHead' is supported")
    if "transformer" in head:
        model = _mmdet2_model(model)
        head = model["bbox_head"]
    elif "encoder" not in model or "decoder" not in model:
        raise BertDetrError("model has neither encoder/decoder (mmdet 3.x) nor bbox_head.transformer (mmdet 2.x)")
    bb = model.get("backbone", {})
    if bb.get("type", "ResNet") != "ResNet" or bb.get("style", "pytorch") != "pytorch":
        raise BertDetrError(f"model.backbone: only ResNet style 'pytorch' is supported (got {bb.get('type')}, {bb.get('style')})")
    if list(bb.get("out_indices", (3,))) != [3] or not bb.get("norm_eval", False) or \
            (bb.get("norm_cfg") or {}).get("requires_grad", True):
        raise BertDetrError("model.backbone: only out_indices (3,) with frozen BatchNorm (norm_eval=True, "
                            "norm_cfg.requires_grad=False) is supported, as mmdet's DETR configs")
    depth = int(bb.get("depth", 50))
    enc = _ffn_section(model["encoder"].get("layer_cfg") or {}, "model.encoder.layer_cfg")
    dec_layer = model["decoder"].get("layer_cfg") or {}
    dec = _ffn_section(dec_layer, "model.decoder.layer_cfg")
    cross = _attn_dropout(dec_layer.get("cross_attn_cfg", {}), "model.decoder.layer_cfg.cross_attn_cfg")
    if cross != dec["dropout"]:
        raise BertDetrError(f"decoder cross-attention dropout {cross} differs from self-attention {dec['dropout']}")
    if enc["embed_dims"] != dec["embed_dims"]:
        raise BertDetrError(f"encoder embed_dims {enc['embed_dims']} differ from the decoder's {dec['embed_dims']}")
    neck = model.get("neck", {})
    if neck.get("out_channels", enc["embed_dims"]) != enc["embed_dims"] or neck.get("kernel_size", 1) != 1:
        raise BertDetrError(f"model.neck: a 1x1 ChannelMapper to embed_dims {enc['embed_dims']} is expected")
    channels = 512 * (4 if depth >= 50 else 1)  # ResNet's last stage (bottleneck blocks from 50 on)
    if list(neck.get("in_channels", [channels])) != [channels]:
        raise BertDetrError(f"model.neck.in_channels (2.x: bbox_head.in_channels) {neck['in_channels']} does not fit "
                            f"ResNet-{depth}'s {channels} output channels")
    pe = model.get("positional_encoding", {})
    if pe.get("type", "SinePositionalEncoding") != "SinePositionalEncoding":
        raise BertDetrError(f"positional_encoding type {pe.get('type')!r}: only SinePositionalEncoding is supported")
    loss_cls = head.get("loss_cls", {})
    if loss_cls.get("use_sigmoid", False):
        raise BertDetrError("bbox_head.loss_cls.use_sigmoid=True is not supported (DETR uses softmax)")
    for name, kind in (("loss_cls", "CrossEntropyLoss"), ("loss_bbox", "L1Loss"), ("loss_iou", "GIoULoss")):
        if head.get(name, {}).get("type", kind) != kind:
            raise BertDetrError(f"bbox_head.{name}: only {kind} is supported, got {head[name]['type']!r}")
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
    weights = _match_cost_weights(model.get("train_cfg") or head.get("train_cfg") or {})
    test_cfg = model.get("test_cfg") or head.get("test_cfg") or {}
    return DETRConfig(
        num_queries=int(model.get("num_queries", 100)),
        backbone=BackboneConfig(depth=depth, frozen_stages=int(bb.get("frozen_stages", 1))),
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
        assigner=AssignerConfig(*weights),
        test_cfg=TestConfig(max_per_img=int(test_cfg.get("max_per_img", 100))),
    )


def _match_cost_weights(train_cfg: dict) -> tuple[float, float, float]:
    """(class, L1, GIoU) cost weights of a 3.x ``HungarianAssigner(match_costs=[...])`` (2.x's are
    rewritten to this); DETR's 1, 5, 2 when the config has no assigner (inference-only configs)."""
    assigner = train_cfg.get("assigner")
    if not assigner:
        return 1.0, 5.0, 2.0
    if assigner.get("type", "HungarianAssigner") != "HungarianAssigner":
        raise BertDetrError(f"train_cfg.assigner: only HungarianAssigner is supported, got {assigner['type']!r}")
    costs = {c.get("type"): c for c in assigner.get("match_costs", [])}
    kinds = ("ClassificationCost", "BBoxL1Cost", "IoUCost")
    if sorted(costs, key=str) != sorted(kinds) or len(assigner["match_costs"]) != 3:
        raise BertDetrError(f"train_cfg.assigner: DETR's costs {', '.join(kinds)} are expected, got "
                            f"{[c.get('type') for c in assigner.get('match_costs', [])]}")
    # mmdet's own defaults where a cost leaves them out: BBoxL1Cost box_format 'xyxy', weights 1
    if costs["BBoxL1Cost"].get("box_format", "xyxy") != "xywh" or costs["IoUCost"].get("iou_mode", "giou") != "giou":
        raise BertDetrError("train_cfg.assigner: only BBoxL1Cost box_format 'xywh' and IoUCost iou_mode 'giou' "
                            f"are supported, got {costs['BBoxL1Cost'].get('box_format', 'xyxy')!r}, "
                            f"{costs['IoUCost'].get('iou_mode', 'giou')!r}")
    return tuple(float(costs[k].get("weight", 1.0)) for k in kinds)
