"""Other projects' DETR tensor names to ours: MMDetection (2.x and 3.x), official DETR, transformers.

Rename tables (regular expressions, first match wins) and the few changes that are not renames
(fused q/k/v, the official MLP split into ``reg_fcs`` and ``fc_reg``, transformers' own ResNet
stages, the 80 COCO rows of a 92-logit class head). ``export`` inverts the same tables for the way
back, so each name is spelled once.

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

import re

import torch

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


def rename(sd: dict, rules: list[tuple[str, str]]) -> tuple[dict, dict]:
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


MMDET_RULES = [
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

OFFICIAL_RULES = [
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

HF_RULES = [
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
MMDET2_RULES = [
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
    return rename(sd, MMDET2_RULES)


def mmdet_to_ours(sd: dict) -> tuple[dict, dict]:
    """mmdet 2.x or 3.x DETR state dict -> (ours, ours -> mmdet name)."""
    sd3, origin3 = mmdet2_to_mmdet3(sd)
    ours, origin = rename(sd3, MMDET_RULES)
    return ours, {k: origin3[v] for k, v in origin.items()}


def official_to_ours(sd: dict, coco80: bool = True) -> tuple[dict, dict]:
    """facebookresearch/detr state dict -> (ours, ours -> official name); see the module doc for coco80."""
    out, origin = rename(sd, OFFICIAL_RULES)
    out, origin = _split_mlp(out, origin)
    if coco80:
        out, origin = _select_coco80(out, origin)
    return out, origin


def hf_to_ours(sd: dict, coco80: bool = False) -> tuple[dict, dict]:
    """transformers DetrForObjectDetection state dict -> (ours, ours -> transformers name)."""
    out, origin = rename(sd, HF_RULES)
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
