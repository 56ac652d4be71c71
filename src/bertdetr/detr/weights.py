"""Loading and saving DETR weights: our checkpoint directory, MMDetection, official DETR, transformers.

Our checkpoint is a directory with ``config.json`` (``DETRConfig.to_dict()``),
``model.safetensors`` (the model's state dict) and ``classes.json`` (label -> category id and name).
mmdet's config files are read by ``mmdet_config``. Foreign checkpoints are read with safetensors or
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

import argparse
import dataclasses
import json
import math
import os
import pickle
import re

import torch
from torch import nn

from bertdetr.detr.config import (
    BackboneConfig,
    BBoxHeadConfig,
    DecoderConfig,
    DETRConfig,
    EncoderConfig,
    PositionalEncodingConfig,
    load_detr_config,
)
from bertdetr.detr.convert.mmdet_config import config_from_mmdet, load_mmdet_config
from bertdetr.detr.model import DETR, build_detr
from bertdetr.errors import BertDetrError

COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
"""The 80 COCO category ids in use, ascending: mmdet label l is category COCO_CATEGORY_IDS[l]."""
COCO_CLASS_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush"]
"""COCO's names of COCO_CATEGORY_IDS, as instances_val2017.json and mmdet's CocoDataset.METAINFO spell them."""
OFFICIAL_NO_OBJECT = 91
"""Official DETR's no-object logit index (its class FC has 92 rows)."""
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
    # transformers 4.x ``fc1`` (also what 5.x writes), 5.x's module ``mlp.fc1``; the first
    # alternative is the spelling ``export.ours_to_hf`` writes
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.(?:|mlp\.)fc(1|2)\.(.*)", r"\1.layers.\2.ffn.fc\3.\4"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)", r"encoder.layers.\1.norm1.\2"),
    (r"model\.encoder\.layers\.(\d+)\.final_layer_norm\.(.*)", r"encoder.layers.\1.norm2.\2"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)", r"decoder.layers.\1.norm1.\2"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(.*)", r"decoder.layers.\1.norm2.\2"),
    (r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(.*)", r"decoder.layers.\1.norm3.\2"),
    (r"model\.decoder\.layernorm\.(.*)", r"decoder.post_norm.\1"),
    (r"class_labels_classifier\.(.*)", r"head.fc_cls.\1"),
    (r"bbox_predictor\.layers\.(\d+)\.(.*)", r"bbox_embed.\1.\2"),
]


# mmdet 2.x -> 3.x names (2.x keeps the transformer, input_proj and query_embedding in the head;
# ``bbox_head.transformer.*`` only exists in 2.x files, so 3.x names never match these rules). Files of
# mmdet before about 2.12 name the same tensors ``self_attn``/``multihead_attn``/``ffn``/``decoder.norm``,
# which 2.28's own ``DETRHead._load_from_state_dict`` renames to ``attentions.0``/``attentions.1``/
# ``ffns.0``/``decoder.post_norm``: both spellings are read.
_MMDET2_RULES = [
    (r"bbox_head\.input_proj\.(.*)", r"neck.convs.0.conv.\1"),
    (r"bbox_head\.query_embedding\.(.*)", r"query_embedding.\1"),
    (r"bbox_head\.transformer\.(encoder|decoder)\.layers\.(\d+)\.(?:attentions\.0|self_attn)\.(.*)",
     r"\1.layers.\2.self_attn.\3"),
    (r"bbox_head\.transformer\.decoder\.layers\.(\d+)\.(?:attentions\.1|multihead_attn)\.(.*)",
     r"decoder.layers.\1.cross_attn.\2"),
    (r"bbox_head\.transformer\.(encoder|decoder)\.layers\.(\d+)\.(?:ffns\.0|ffn)\.(.*)", r"\1.layers.\2.ffn.\3"),
    (r"bbox_head\.transformer\.(encoder|decoder)\.layers\.(\d+)\.norms\.(.*)", r"\1.layers.\2.norms.\3"),
    (r"bbox_head\.transformer\.decoder\.(?:post_norm|norm)\.(.*)", r"decoder.post_norm.\1"),
]


def mmdet2_to_mmdet3(sd: dict) -> tuple[dict, dict]:
    """mmdet 2.x DETR state dict (either 2.x spelling) -> (3.x names, 3.x -> 2.x name); 3.x names pass."""
    return _rename(sd, _MMDET2_RULES)


def mmdet_to_ours(sd: dict) -> tuple[dict, dict]:
    """mmdet 2.x or 3.x DETR state dict -> (ours, ours -> mmdet name)."""
    sd3, origin3 = mmdet2_to_mmdet3(sd)
    ours, origin = _rename(sd3, _MMDET_RULES)
    return ours, {k: origin3[v] for k, v in origin.items()}


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


# ------------------------------------------------------------------------------- entry points


def _with_classes(config: DETRConfig, num_classes: int | None) -> DETRConfig:
    if num_classes is None:
        return config
    return config.replace_section("bbox_head", num_classes=num_classes)


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
    cfg = _with_classes(infer_config(sd, heads, **sections), num_classes)
    return _build_and_load(cfg, sd, origin, reset_head, generator)


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


def _build_and_load(cfg, sd, origin, reset_head, generator):
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


def save_classes(directory: str | os.PathLike, category_ids: list[int], class_names: list[str]) -> None:
    """Writes ``classes.json`` into our checkpoint directory: label ``l`` of the model is dataset
    category ``category_ids[l]``, named ``class_names[l]``."""
    from bertdetr.fileio import atomic_output

    with atomic_output(os.path.join(directory, "classes.json"), "w") as f:
        json.dump({"category_ids": list(category_ids), "class_names": list(class_names)}, f, indent=1)


# ------------------------------------------------------------------------------- classes
#
# What a converted model's labels are, for classes.json: (category ids, names), one per label.


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
