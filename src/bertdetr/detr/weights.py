"""Loading and saving DETR weights: our checkpoint directory, MMDetection, official DETR, transformers.

Our checkpoint is a directory with ``config.json`` (``DETRConfig.to_dict()``) and
``model.safetensors`` (the model's state dict). Foreign checkpoints are read with safetensors or
``torch.load(weights_only=True)`` only, their tensor names renamed to ours by the tables below,
float tensors upcast to float32 (the golden mmdet file stores fp16).

Name maps (ours <- theirs; ``i`` layer, ``j`` FC):
- backbone: ours use torchvision's names = mmdet's ``backbone.*`` = official ``backbone.0.body.*``
  = timm's (transformers' ``model.backbone[.conv_encoder].model.*``); transformers' own ResNet
  (``embedder``/``encoder.stages``) is renamed too.
- ``input_proj`` <- mmdet ``neck.convs.0.conv``, official ``input_proj``, hf ``model.input_projection``.
- attention: fused ``in_proj_weight`` [3D,D] as mmdet (``*.attn.``) and official; transformers'
  separate q/k/v projections are concatenated in q, k, v order.
- ``query_embedding`` <- mmdet ``query_embedding``, official ``query_embed``, hf
  ``model.query_position_embeddings``.
- head: ``head.fc_cls`` <- mmdet ``bbox_head.fc_cls``, official ``class_embed``, hf
  ``class_labels_classifier``; ``head.reg_fcs.j`` / ``head.fc_reg`` <- mmdet ``reg_ffn`` / ``fc_reg``,
  official ``bbox_embed.layers.j`` (the last is ``fc_reg``), hf ``bbox_predictor.layers.j``.

Official DETR (and the transformers port of it) classify into 92 logits: index = COCO category id
(1..90, eleven of which are unused ids such as 12 and 26), 0 unused ("N/A"), 91 = no object. mmdet
uses 80 contiguous labels in ascending category-id order, background last. ``coco80=True`` keeps
the rows ``COCO_CATEGORY_IDS + [91]`` of the class FC, so label ``l`` here is COCO category
``COCO_CATEGORY_IDS[l]``; ``coco80=False`` keeps all 92 (num_classes 91, label = category id).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import re

import torch
from torch import nn

from bertdetr.detr.config import (
    AssignerConfig,
    BackboneConfig,
    BBoxHeadConfig,
    DecoderConfig,
    DETRConfig,
    EncoderConfig,
    PositionalEncodingConfig,
    TestConfig,
    load_detr_config,
)
from bertdetr.detr.model import DETR, build_detr
from bertdetr.errors import BertDetrError

COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
"""The 80 COCO category ids in use, ascending: mmdet label l is category COCO_CATEGORY_IDS[l]."""
OFFICIAL_NO_OBJECT = 91
"""Official DETR's no-object logit index (its class FC has 92 rows)."""


# ------------------------------------------------------------------------------- reading files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint file -> flat state dict (float tensors as float32). Accepts ``.safetensors``, or
    a torch file holding a state dict, mmdet's ``{'state_dict': ...}`` or official ``{'model': ...}``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BertDetrError(f"checkpoint not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or corrupt file: the user's to fix
        raise BertDetrError(f"cannot read checkpoint {path}: {e}") from None
    return unwrap_state_dict(sd, path)


def unwrap_state_dict(sd, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """mmdet ``{'state_dict'}`` / official ``{'model'}`` wrappers off; float tensors to float32."""
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BertDetrError(f"{where} holds no state dict of tensors")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


# ------------------------------------------------------------------------------- renaming


def _rename(sd: dict, rules: list[tuple[str, str]]) -> tuple[dict, dict]:
    """Applies the first matching regex rule to each name -> (renamed state dict, ours -> theirs).
    Names no rule matches are kept as they are (and reported as unexpected on load)."""
    out, origin = {}, {}
    for name, value in sd.items():
        new = name
        for pattern, repl in rules:
            if re.fullmatch(pattern, name):
                new = re.sub(pattern, repl, name)
                break
        out[new] = value
        origin[new] = name
    return out, origin


_MMDET_RULES = [
    (r"neck\.convs\.0\.conv\.(.*)", r"input_proj.\1"),
    (r"(encoder|decoder)\.layers\.(\d+)\.(self_attn|cross_attn)\.attn\.(.*)", r"\1.layers.\2.\3.\4"),
    (r"(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.0\.0\.(.*)", r"\1.layers.\2.ffn.fc1.\3"),
    (r"(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.1\.(.*)", r"\1.layers.\2.ffn.fc2.\3"),
    (r"(encoder|decoder)\.layers\.(\d+)\.norms\.0\.(.*)", r"\1.layers.\2.norm1.\3"),
    (r"(encoder|decoder)\.layers\.(\d+)\.norms\.1\.(.*)", r"\1.layers.\2.norm2.\3"),
    (r"decoder\.layers\.(\d+)\.norms\.2\.(.*)", r"decoder.layers.\1.norm3.\2"),
    (r"bbox_head\.fc_cls\.(.*)", r"head.fc_cls.\1"),
    (r"bbox_head\.fc_reg\.(.*)", r"head.fc_reg.\1"),
    # mmcv FFN(num_fcs=n, add_residual=False): layers.j.0 (Linear in Sequential with ReLU) for
    # j < n-1, then a bare Linear layers.(n-1); our reg_fcs.j are all of them in order.
    (r"bbox_head\.reg_ffn\.layers\.(\d+)\.0\.(.*)", r"head.reg_fcs.\1.\2"),
    (r"bbox_head\.reg_ffn\.layers\.(\d+)\.(weight|bias)", r"head.reg_fcs.\1.\2"),
]

_OFFICIAL_RULES = [
    (r"backbone\.0\.body\.(.*)", r"backbone.\1"),
    (r"query_embed\.weight", r"query_embedding.weight"),
    (r"transformer\.(encoder|decoder)\.layers\.(\d+)\.multihead_attn\.(.*)", r"\1.layers.\2.cross_attn.\3"),
    (r"transformer\.(encoder|decoder)\.layers\.(\d+)\.linear1\.(.*)", r"\1.layers.\2.ffn.fc1.\3"),
    (r"transformer\.(encoder|decoder)\.layers\.(\d+)\.linear2\.(.*)", r"\1.layers.\2.ffn.fc2.\3"),
    (r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.*)", r"\1.layers.\2.\3"),
    (r"transformer\.decoder\.norm\.(.*)", r"decoder.post_norm.\1"),
    (r"class_embed\.(.*)", r"head.fc_cls.\1"),
    (r"bbox_embed\.layers\.(\d+)\.(.*)", r"bbox_embed.\1.\2"),  # split into reg_fcs / fc_reg below
]

_HF_RULES = [
    (r"model\.backbone\.(?:conv_encoder\.)?model\.embedder\.embedder\.convolution\.(.*)", r"backbone.conv1.\1"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.embedder\.embedder\.normalization\.(.*)", r"backbone.bn1.\1"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.(.*)",
     r"hfstage.\1.\2.downsample.0.\3"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(.*)",
     r"hfstage.\1.\2.downsample.1.\3"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.(.*)",
     r"hfstage.\1.\2.conv.\3.\4"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.(.*)",
     r"hfstage.\1.\2.bn.\3.\4"),
    (r"model\.backbone\.(?:conv_encoder\.)?model\.(.*)", r"backbone.\1"),  # timm ResNet = torchvision names
    (r"model\.input_projection\.(.*)", r"input_proj.\1"),
    (r"model\.query_position_embeddings\.weight", r"query_embedding.weight"),
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)\.(q|k|v)_proj\.(.*)", r"\1.layers.\2.\3.\4.\5"),
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)\.(?:out_proj|o_proj)\.(.*)",
     r"\1.layers.\2.\3.out_proj.\4"),
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.(?:mlp\.)?fc(1|2)\.(.*)", r"\1.layers.\2.ffn.fc\3.\4"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)", r"encoder.layers.\1.norm1.\2"),
    (r"model\.encoder\.layers\.(\d+)\.final_layer_norm\.(.*)", r"encoder.layers.\1.norm2.\2"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)", r"decoder.layers.\1.norm1.\2"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(.*)", r"decoder.layers.\1.norm2.\2"),
    (r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(.*)", r"decoder.layers.\1.norm3.\2"),
    (r"model\.decoder\.layernorm\.(.*)", r"decoder.post_norm.\1"),
    (r"class_labels_classifier\.(.*)", r"head.fc_cls.\1"),
    (r"bbox_predictor\.layers\.(\d+)\.(.*)", r"bbox_embed.\1.\2"),
]


def mmdet_to_ours(sd: dict) -> tuple[dict, dict]:
    """mmdet DETR state dict -> (ours, ours -> mmdet name)."""
    return _rename(sd, _MMDET_RULES)


def official_to_ours(sd: dict, coco80: bool = True) -> tuple[dict, dict]:
    """facebookresearch/detr state dict -> (ours, ours -> official name); see the module doc for coco80."""
    out, origin = _rename(sd, _OFFICIAL_RULES)
    out, origin = _split_mlp(out, origin)
    if coco80:
        out, origin = _select_coco80(out, origin)
    return out, origin


def hf_to_ours(sd: dict, coco80: bool = False) -> tuple[dict, dict]:
    """transformers DetrForObjectDetection state dict -> (ours, ours -> transformers name)."""
    out, origin = _rename(sd, _HF_RULES)
    out, origin = _fuse_qkv(out, origin)
    out, origin = _hf_resnet_stages(out, origin)
    out, origin = _split_mlp(out, origin)
    if coco80:
        out, origin = _select_coco80(out, origin)
    return out, origin


def _split_mlp(sd, origin):
    """``bbox_embed.j`` (official 3-layer MLP): the last layer is ``head.fc_reg``, others ``head.reg_fcs.j``."""
    js = {int(k.split(".")[1]) for k in sd if k.startswith("bbox_embed.")}
    if not js:
        return sd, origin
    last = max(js)
    out, org = {}, {}
    for k, v in sd.items():
        if k.startswith("bbox_embed."):
            _, j, rest = k.split(".", 2)
            new = f"head.fc_reg.{rest}" if int(j) == last else f"head.reg_fcs.{j}.{rest}"
        else:
            new = k
        out[new], org[new] = v, origin[k]
    return out, org


def _fuse_qkv(sd, origin):
    """transformers' ``q_proj/k_proj/v_proj`` -> one ``in_proj_weight``/``in_proj_bias`` (q, k, v order)."""
    out, org = {}, {}
    for k, v in sd.items():
        m = re.fullmatch(r"(.*)\.(self_attn|encoder_attn)\.([qkv])\.(weight|bias)", k)
        if not m:
            out[k], org[k] = v, origin[k]
            continue
        if m.group(3) != "q":
            continue
        prefix, attn, _, kind = m.groups()
        ours_attn = "cross_attn" if attn == "encoder_attn" else "self_attn"
        parts = [f"{prefix}.{attn}.{x}.{kind}" for x in "qkv"]
        missing = [p for p in parts if p not in sd]
        if missing:
            raise BertDetrError(f"checkpoint lacks {', '.join(origin.get(p, p) for p in missing)}")
        new = f"{prefix}.{ours_attn}.in_proj_{kind}"
        out[new], org[new] = torch.cat([sd[p] for p in parts]), origin[parts[0]].replace(".q_proj.", ".{q,k,v}_proj.")
    for k in list(out):
        if ".encoder_attn." in k:
            new = k.replace(".encoder_attn.", ".cross_attn.")
            out[new], org[new] = out.pop(k), org.pop(k)
    return out, org


def _hf_resnet_stages(sd, origin):
    """transformers' own ResNet: stage s block b ``conv.k`` / ``bn.k`` -> ``layer{s+1}.b.conv{k+1}`` / ``bn{k+1}``."""
    out, org = {}, {}
    for k, v in sd.items():
        m = re.fullmatch(r"hfstage\.(\d+)\.(\d+)\.(.*)", k)
        new = k
        if m:
            s, b, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = re.sub(r"^(conv|bn)\.(\d+)\.", lambda x: f"{x.group(1)}{int(x.group(2)) + 1}.", rest)
            new = f"backbone.layer{s + 1}.{b}.{rest}"
        out[new], org[new] = v, origin[k]
    return out, org


def _select_coco80(sd, origin):
    rows = torch.tensor(COCO_CATEGORY_IDS + [OFFICIAL_NO_OBJECT])
    out, org = dict(sd), dict(origin)
    for name in ("head.fc_cls.weight", "head.fc_cls.bias"):
        if name not in sd:
            raise BertDetrError("checkpoint has no class head (class_embed)")
        if sd[name].shape[0] != 92:
            raise BertDetrError(f"coco80 needs the official 92-logit class head; {origin[name]} has "
                                f"{sd[name].shape[0]} rows (pass coco80=False / --keep-classes)")
        out[name] = sd[name][rows]
    return out, org


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
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(name(k) for k in unexpected))
    if wrong:
        problems.append("shape mismatch: " + ", ".join(
            f"{name(k)} {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong))
    if problems:
        raise BertDetrError("checkpoint does not fit the config: " + "; ".join(problems))
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


# ------------------------------------------------------------------------------- config inference


def infer_config(sd: dict, num_heads: int = 8, **sections) -> DETRConfig:
    """A DETRConfig with the architecture read off an our-named state dict (heads are not
    visible in weights: ``num_heads``); other sections (dropouts, losses, ...) at mmdet defaults
    unless given as keyword arguments."""
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
    return DETRConfig(num_queries=num_queries, backbone=sections.pop("backbone", BackboneConfig(depth=depth)),
                      encoder=EncoderConfig(**enc), decoder=DecoderConfig(**dec),
                      positional_encoding=PositionalEncodingConfig(num_feats=D // 2),
                      bbox_head=BBoxHeadConfig(**head), **sections)


# ------------------------------------------------------------------------------- mmdet configs


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


# ------------------------------------------------------------------------------- entry points


def _with_classes(config: DETRConfig, num_classes: int | None) -> DETRConfig:
    if num_classes is None:
        return config
    return dataclasses.replace(config, bbox_head=dataclasses.replace(config.bbox_head, num_classes=num_classes))


def _as_state_dict(checkpoint) -> dict:
    return read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap_state_dict(checkpoint)


def from_mmdet(config, checkpoint, num_classes: int | None = None, reset_head: bool = False,
               generator: torch.Generator | None = None) -> tuple[DETR, DETRConfig]:
    """Builds our DETR from an mmdet DETR ``config`` (its ``.py``/``.json`` file path or dict) and
    loads ``checkpoint`` (path, state dict or ``{'state_dict': ...}``) -> (model in eval mode, config).
    ``num_classes`` other than the checkpoint's needs ``reset_head=True`` (class FC re-initialised)."""
    cfg = config_from_mmdet(load_mmdet_config(config) if isinstance(config, (str, os.PathLike)) else config)
    cfg = _with_classes(cfg, num_classes)
    sd, origin = mmdet_to_ours(_as_state_dict(checkpoint))
    return _build_and_load(cfg, sd, origin, reset_head, generator)


def from_official(checkpoint, coco80: bool = True, num_heads: int = 8, num_classes: int | None = None,
                  reset_head: bool = False, generator: torch.Generator | None = None) -> tuple[DETR, DETRConfig]:
    """facebookresearch/detr checkpoint (path or ``{'model': ...}``/state dict) -> (model, config).
    The architecture is read off the weights (``num_heads`` is not visible in them: 8 in every
    released model); dilated (DC5) checkpoints are not supported. See the module doc for ``coco80``."""
    sd, origin = official_to_ours(_as_state_dict(checkpoint), coco80=coco80)
    cfg = _with_classes(infer_config(sd, num_heads), num_classes)
    return _build_and_load(cfg, sd, origin, reset_head, generator)


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
        cfg_path = os.path.join(checkpoint, "config.json")
        if os.path.isfile(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                hf_cfg = json.load(f)
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
    cfg = _with_classes(infer_config(sd, heads, **sections), num_classes)
    return _build_and_load(cfg, sd, origin, reset_head, generator)


def _build_and_load(cfg, sd, origin, reset_head, generator):
    # weights come from the checkpoint: do not also load ImageNet backbone weights
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))
    model = build_detr(cfg)
    load_into(model, sd, origin, reset_head=reset_head, generator=generator)
    return model.eval(), cfg


def save_detr(model: DETR, config: DETRConfig, directory: str | os.PathLike) -> None:
    """Writes our checkpoint directory: ``config.json`` and ``model.safetensors`` (each atomically)."""
    from safetensors.torch import save

    from bertdetr.fileio import atomic_output

    os.makedirs(directory, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(os.path.join(directory, "model.safetensors")) as f:
        f.write(save(sd, metadata={"format": "pt", "bertdetr": "detr"}))
    config.save(os.path.join(directory, "config.json"))


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
    if isinstance(d, dict) and (d.get("model_type") == "detr" or "architectures" in d):
        raise BertDetrError(f"{directory} is a transformers DETR checkpoint; convert it first with "
                            f"`bertdetr detr convert --from hf --checkpoint {directory} --output DIR`")


def load_detr(directory: str | os.PathLike, num_classes: int | None = None, reset_head: bool = False,
              generator: torch.Generator | None = None) -> tuple[DETR, DETRConfig]:
    """Reads our checkpoint directory -> (model in eval mode, config)."""
    directory = os.fspath(directory)
    _check_our_checkpoint(directory)
    cfg = _with_classes(load_detr_config(os.path.join(directory, "config.json")), num_classes)
    sd = read_state_dict(os.path.join(directory, "model.safetensors"))
    return _build_and_load(cfg, sd, None, reset_head, generator)
