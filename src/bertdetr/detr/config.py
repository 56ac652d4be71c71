"""Typed DETR configs mirroring the sections of an MMDetection DETR config, and their JSON files.

``DETRConfig.r50(num_classes=80)`` is mmdet's ``detr_r50_8xb2-150e_coco.py`` model section and
``DETRConfig.r18(...)`` its ``detr_r18_8xb2-500e_coco.py`` (ResNet-18, neck in_channels 512); the
same presets are shipped as ``configs/detr_r50_coco.json`` / ``configs/detr_r18_coco.json`` beside
this file for users to copy and edit, read back with ``load_detr_config(path)``.

mmdet's ``dropout`` in an attention config means both attention-probability dropout and dropout
of the attention output before the residual add (mmcv ``MultiheadAttention`` turns the deprecated
``dropout`` into ``attn_drop`` and ``dropout_layer``); ``ffn_drop`` is the FFN's dropout after the
ReLU and after the second FC. Both are 0.1 in mmdet's and official DETR's configs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from bertdetr.errors import BertDetrError, require, require_field_types

RESNET_DEPTHS = (18, 34, 50, 101, 152)


def _check_prob(name: str, value: float) -> None:
    require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")


@dataclass
class BackboneConfig:
    """mmdet ``ResNet`` (style 'pytorch', out_indices (3,)); BatchNorms frozen as DETR's configs
    (``norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True``) unless ``norm`` is "batch"."""

    depth: int = 50
    """ResNet depth: 18, 34, 50, 101 or 152 (torchvision's layouts)."""
    frozen_stages: int = 1
    """The stem and stages 1..frozen_stages get no gradient (mmdet ``frozen_stages``); -1 trains all."""
    pretrained: str | None = None
    """Local path of torchvision ImageNet weights the trainer loads into a fresh model (None: random init)."""
    base_channels: int = 64
    """Width of the stem and of the first stage, doubled at each later stage (mmdet ``base_channels``);
    64 is the standard ResNet (and the only width torchvision's weights fit). Smaller widths make a
    cheap backbone for small images trained from scratch."""
    norm: str = "frozen"
    """"frozen": fixed statistics and affine, folded into the convs (DETR's setting, for a pretrained
    backbone). "batch": BatchNorm that trains (batch statistics, learned affine; mmdet
    ``requires_grad=True, norm_eval=False``), for a backbone trained from scratch, whose frozen
    statistics would be meaningless; SyncBatchNorm under DDP. Frozen stages keep theirs fixed."""
    dilation: bool = False
    """The last stage dilated instead of strided: official DETR's DC5 models (features at stride 16)."""

    def __post_init__(self):
        require_field_types(self, "backbone.")
        require(self.depth in RESNET_DEPTHS, f"backbone.depth must be one of {RESNET_DEPTHS}, got {self.depth}")
        require(-1 <= self.frozen_stages <= 4, f"backbone.frozen_stages must be in -1..4, got {self.frozen_stages}")
        require(self.norm in ("frozen", "batch"), f"backbone.norm must be 'frozen' or 'batch', got {self.norm!r}")
        require(self.base_channels >= 1, f"backbone.base_channels must be >= 1, got {self.base_channels}")
        require(self.base_channels == 64 or not self.pretrained,
               f"backbone.pretrained weights need base_channels 64, got {self.base_channels}")

    @property
    def out_channels(self) -> int:
        """Channels of the last stage: 512 for ResNet-18/34, 2048 for the bottleneck ResNets."""
        return self.base_channels * 8 * (1 if self.depth < 50 else 4)


@dataclass
class EncoderConfig:
    """mmdet ``DetrTransformerEncoder``: post-norm self-attention + FFN layers."""

    num_layers: int = 6
    """Number of layers."""
    embed_dims: int = 256
    """Model width D (encoder and decoder alike)."""
    num_heads: int = 8
    """Attention heads (must divide embed_dims)."""
    feedforward_channels: int = 2048
    """FFN hidden width."""
    dropout: float = 0.1
    """Attention-probability dropout and attention-output dropout (mmdet ``*_attn_cfg.dropout``)."""
    ffn_drop: float = 0.1
    """FFN dropout after the ReLU and after the second FC (mmcv ``FFN.ffn_drop``)."""

    def __post_init__(self):
        require_field_types(self, "encoder.")
        self._validate("encoder", min_layers=0)

    def _validate(self, where: str, min_layers: int) -> None:
        require(self.num_layers >= min_layers, f"{where}.num_layers must be >= {min_layers}, got {self.num_layers}")
        require(self.embed_dims > 0 and self.num_heads > 0 and self.embed_dims % self.num_heads == 0,
               f"{where}.embed_dims {self.embed_dims} must be a positive multiple of num_heads {self.num_heads}")
        require(self.feedforward_channels > 0, f"{where}.feedforward_channels must be > 0")
        _check_prob(f"{where}.dropout", self.dropout)
        _check_prob(f"{where}.ffn_drop", self.ffn_drop)


@dataclass
class DecoderConfig(EncoderConfig):
    """mmdet ``DetrTransformerDecoder``: self-attention, cross-attention (same heads and dropout),
    FFN; every layer's output is returned through the shared ``post_norm`` (mmdet
    ``return_intermediate=True``, always). Same fields as the encoder; at least one layer."""

    def __post_init__(self):
        require_field_types(self, "decoder.")
        self._validate("decoder", min_layers=1)


@dataclass
class PositionalEncodingConfig:
    """mmdet ``SinePositionalEncoding`` (official DETR's ``PositionEmbeddingSine``)."""

    num_feats: int = 128
    """Features per axis; the encoding has 2 * num_feats = embed_dims channels (y first, then x)."""
    temperature: float = 10000.0
    """Base of the geometric frequency progression."""
    normalize: bool = True
    """Divide the cumulative positions by the last one (per image) and multiply by ``scale``."""
    scale: float = 2 * math.pi
    """Range of normalised positions."""
    eps: float = 1e-6
    """Added to the normaliser (mmdet's and official DETR's 1e-6)."""
    offset: float = 0.0
    """Added to positions before normalising (mmdet's ``offset``; 0 for DETR, -0.5 for later DETRs)."""

    def __post_init__(self):
        require_field_types(self, "positional_encoding.")
        require(self.num_feats > 0 and self.num_feats % 2 == 0,
               f"positional_encoding.num_feats must be positive and even, got {self.num_feats}")
        require(self.temperature > 0, "positional_encoding.temperature must be > 0")


@dataclass
class BBoxHeadConfig:
    """mmdet ``DETRHead``: class FC (background last) and box FFN; its losses and their weights."""

    num_classes: int = 80
    """Foreground classes C; the class FC has C + 1 outputs, background (no object) last."""
    num_reg_fcs: int = 2
    """FCs (each followed by ReLU) before the final box FC (mmdet ``num_reg_fcs``)."""
    loss_cls_weight: float = 1.0
    """Weight of the cross-entropy class loss (``loss_cls.loss_weight``)."""
    bg_cls_weight: float = 0.1
    """Class weight of background in the CE and in its normaliser (official DETR's ``eos_coef``)."""
    loss_bbox_weight: float = 5.0
    """Weight of the L1 loss on normalised (cx, cy, w, h) (``loss_bbox.loss_weight``)."""
    loss_iou_weight: float = 2.0
    """Weight of the GIoU loss on pixel (x1, y1, x2, y2) (``loss_iou.loss_weight``)."""

    def __post_init__(self):
        require_field_types(self, "bbox_head.")
        require(self.num_classes >= 1, f"bbox_head.num_classes must be >= 1, got {self.num_classes}")
        require(self.num_reg_fcs >= 1, f"bbox_head.num_reg_fcs must be >= 1, got {self.num_reg_fcs}")
        for name in ("loss_cls_weight", "bg_cls_weight", "loss_bbox_weight", "loss_iou_weight"):
            require(getattr(self, name) >= 0, f"bbox_head.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class AssignerConfig:
    """mmdet ``HungarianAssigner`` match costs (train_cfg.assigner)."""

    cls_cost: float = 1.0
    """``ClassificationCost`` weight: cost -softmax probability of the target class."""
    bbox_cost: float = 5.0
    """``BBoxL1Cost`` weight, box_format 'xywh': L1 on (cx, cy, w, h) normalised by the image size."""
    iou_cost: float = 2.0
    """``IoUCost`` weight, iou_mode 'giou': cost -GIoU of pixel (x1, y1, x2, y2) boxes."""

    def __post_init__(self):
        require_field_types(self, "assigner.")
        require(min(self.cls_cost, self.bbox_cost, self.iou_cost) >= 0, "assigner costs must be >= 0")
        require(self.cls_cost + self.bbox_cost + self.iou_cost > 0, "assigner costs cannot all be 0")


@dataclass
class TestConfig:
    """mmdet ``test_cfg``."""

    __test__ = False  # not a pytest test class

    max_per_img: int = 100
    """Detections kept per image: the top queries by their best foreground score."""

    def __post_init__(self):
        require_field_types(self, "test_cfg.")
        require(self.max_per_img >= 1, f"test_cfg.max_per_img must be >= 1, got {self.max_per_img}")


@dataclass
class DETRConfig:
    """A whole DETR: backbone, input projection (mmdet ``ChannelMapper`` 1x1 conv to embed_dims),
    positional encoding, encoder, decoder with ``num_queries`` learned queries, head, assigner."""

    num_queries: int = 100
    """Object queries Q."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """ResNet backbone."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Transformer encoder."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """Transformer decoder."""
    positional_encoding: PositionalEncodingConfig = field(default_factory=PositionalEncodingConfig)
    """Sine positional encoding of the feature map."""
    bbox_head: BBoxHeadConfig = field(default_factory=BBoxHeadConfig)
    """Class and box heads and the loss weights."""
    assigner: AssignerConfig = field(default_factory=AssignerConfig)
    """Hungarian matching costs (mmdet ``train_cfg.assigner``)."""
    test_cfg: TestConfig = field(default_factory=TestConfig)
    """Post-processing."""

    def __post_init__(self):
        require_field_types(self, "")
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _section_from_dict(cls, value, name))
            elif not isinstance(value, cls):
                raise BertDetrError(f"{name} must be a {cls.__name__} or a dict, got {type(value).__name__}")
        require(self.num_queries >= 1, f"num_queries must be >= 1, got {self.num_queries}")
        D = self.encoder.embed_dims
        require(self.decoder.embed_dims == D,
               f"decoder.embed_dims {self.decoder.embed_dims} differs from encoder.embed_dims {D}")
        require(2 * self.positional_encoding.num_feats == D,
               f"2 * positional_encoding.num_feats ({2 * self.positional_encoding.num_feats}) must equal "
               f"embed_dims {D}")

    @property
    def embed_dims(self) -> int:
        """Model width D (encoder = decoder = input projection output = 2 * num_feats)."""
        return self.encoder.embed_dims

    @classmethod
    def r50(cls, num_classes: int = 80, **overrides: Any) -> "DETRConfig":
        """mmdet ``detr_r50_8xb2-150e_coco.py``: ResNet-50, 6+6 layers of width 256, 100 queries."""
        config = cls(bbox_head=BBoxHeadConfig(num_classes=num_classes))
        return dataclasses.replace(config, **overrides) if overrides else config

    @classmethod
    def r18(cls, num_classes: int = 80, **overrides: Any) -> "DETRConfig":
        """mmdet ``detr_r18_8xb2-500e_coco.py``: the R50 config with ResNet-18 (neck in_channels 512)."""
        return cls.r50(num_classes, backbone=BackboneConfig(depth=18), **overrides)

    def replace_section(self, section: str, **changes: Any) -> "DETRConfig":
        """A copy with fields of one section changed, e.g. ``replace_section("bbox_head",
        num_classes=3)`` (the one way a class count or a backbone file is changed)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    def with_num_classes(self, num_classes: int | None) -> "DETRConfig":
        """A copy for ``num_classes`` foreground classes (the dataset's or a converted head's);
        itself for None."""
        return self if num_classes is None else self.replace_section("bbox_head", num_classes=num_classes)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-ready), one key per section."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DETRConfig":
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        if not isinstance(d, dict):
            raise BertDetrError(f"a DETR config must be a JSON object, got {type(d).__name__}")
        return _section_from_dict(cls, d, "config")

    def save(self, path: str | os.PathLike) -> None:
        """Writes the config as indented JSON (atomically)."""
        from bertdetr.fileio import atomic_output

        with atomic_output(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")


_SECTIONS = {
    "backbone": BackboneConfig,
    "encoder": EncoderConfig,
    "decoder": DecoderConfig,
    "positional_encoding": PositionalEncodingConfig,
    "bbox_head": BBoxHeadConfig,
    "assigner": AssignerConfig,
    "test_cfg": TestConfig,
}


def _section_from_dict(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise BertDetrError(f"{where} must be an object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise BertDetrError(f"unknown key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    try:
        return cls(**d)
    except TypeError as e:
        raise BertDetrError(f"bad {where}: {e}") from None


def load_detr_config(path: str | os.PathLike) -> DETRConfig:
    """Reads a JSON file written by ``DETRConfig.save`` (or a copy of ``configs/*.json``, edited)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise BertDetrError(f"cannot read DETR config {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise BertDetrError(f"DETR config {path} is not valid JSON: {e}") from None
    return DETRConfig.from_dict(d)


PRESET_DIR = os.path.join(os.path.dirname(__file__), "configs")
