"""DETR as MMDetection 3.x structures it, in one file: small modules first, the full model last.

backbone (ResNet, frozen BatchNorm) -> input projection (1x1 conv, mmdet's ``ChannelMapper``) ->
sine positional encoding of the padding mask -> post-norm transformer encoder -> decoder with
learned object queries -> class FC and box FFN, on every decoder layer's output.

Dimension letters: B batch, H/W padded input height/width, h/w feature map height/width
(H/32, W/32 rounded up; H/16, W/16 with a dilated last stage, DC5), C backbone output channels, D model width (embed_dims), T = h*w encoder
tokens, Q object queries, K = num_classes + 1 class logits (background last), L decoder layers.

Conventions (mmdet's, identical to official DETR's):
- masks are True at padding; the feature-map mask is the input mask resized by *nearest*
  interpolation (``F.interpolate`` default);
- positional encodings are added to attention queries and keys, never to values;
- the decoder starts from zeros, object queries are the query *positions*; each layer's output
  goes through the shared final LayerNorm (``post_norm``) before the heads;
- boxes are sigmoid (cx, cy, w, h) normalised by each image's own size, not the padded size;
- dropout (training only) as mmcv's layers and official DETR's: on the attention probabilities
  and on the attention output before the residual add (mmdet ``dropout``), after the FFN's ReLU
  and after its second FC before the residual add (``ffn_drop``); none in the head.

Speed (the backbone is 70-80% of an inference or a training step of DETR-R50 on CPU): a frozen
BatchNorm is folded into the preceding convolution (``conv(x, w * s) + t`` instead of
``conv(x, w) * s + t``: one pass over the activations less per conv; the folded weights are cached
where no gradient flows to them); activations and conv weights are channels-last; ReLU and residual
adds run in place; the frozen stem and stage 1 build no autograd graph; attention runs as
``scaled_dot_product_attention`` and drops the mask when no image in the batch is padded.
See BENCHMARKS.md.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from bertdetr.detr.config import DETRConfig
from bertdetr.errors import BertDetrError
from bertdetr.nn.transformer import (
    FeedForward,
    MultiHeadAttention,
    PostNormDecoderLayer,
    PostNormEncoderLayer,
    key_padding_to_additive_mask,
)


# --------------------------------------------------------------------------------------------
# Backbone: torchvision's ResNet layout and parameter names (= mmdet ResNet style 'pytorch':
# the stride of a bottleneck is on its 3x3 conv), every BatchNorm frozen (DETR) or, to train a
# backbone from scratch, ordinary trainable BatchNorm.
# --------------------------------------------------------------------------------------------


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine (mmdet ``norm_eval=True, requires_grad=False``):
    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, all four buffers."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # nn.BatchNorm2d's counter, meaningless here
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) with ``y = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        return x * scale[:, None, None] + shift[:, None, None]


def conv_frozen_bn(x: torch.Tensor, conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> torch.Tensor:
    """``bn(conv(x))`` as one convolution with the BatchNorm folded into its weight and bias.

    Where no gradient can flow to the weight (inference, frozen stages) the folded pair is cached
    on the conv, keyed by the storage and version counters of the conv weight and the four BN
    buffers, so that it is recomputed after any in-place change (optimizer step, load_state_dict)
    or move; this saves a pass over all backbone weights per forward. Where the weight trains, the
    BN's own part of the fold (its per-channel scale, as ``[C,1,1,1]``, and shift: constants of
    frozen buffers) is cached on the BN the same way, and only ``weight * scale`` is made each step:
    one operation in place of nine (the count of dispatched operations, each host time on a GPU:
    ``bench/count_step_ops.py``), the same numbers bit for bit. The caches are also dropped when
    the backbone changes mode (``ResNet.train``: validation after training steps): torch's fused
    AdamW changes parameters in place without counting a version (torch 2.14 on a CPU), so a
    training loop of the user's with it would otherwise validate the weights of its first
    validation (``detr train`` also counts them itself after each step). Under ``torch.compile`` /
    ``torch.export`` the tensors are traced stand-ins without storage to key on: the fold is then
    written into the graph, where the compiler or exporter folds it once as a constant.
    """
    if torch.compiler.is_compiling():
        weight, bias = _fold(conv, bn)
    elif torch.is_grad_enabled() and conv.weight.requires_grad:
        scale, bias = _cached(bn, (bn.weight, bn.bias, bn.running_mean, bn.running_var), lambda: _scale_shift_4d(bn))
        weight = conv.weight * scale
    else:
        tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        weight, bias = _cached(conv, tensors, lambda: _fold(conv, bn))
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


def _cached(owner: nn.Module, tensors: tuple[torch.Tensor, ...], make) -> tuple[torch.Tensor, torch.Tensor]:
    """``make()`` (no gradient), kept on ``owner`` until one of ``tensors`` is changed in place or
    replaced (their storage and version counters are the key)."""
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = owner.__dict__.get("_folded")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, *make())
        owner.__dict__["_folded"] = cached
    return cached[1], cached[2]


def _scale_shift_4d(bn: FrozenBatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = bn.scale_shift()
    return scale[:, None, None, None], shift


def _fold(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = _scale_shift_4d(bn)
    return conv.weight * scale, shift


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """``bn(conv(x))``: folded into one convolution when the BatchNorm is frozen."""
    if isinstance(bn, FrozenBatchNorm2d):
        return conv_frozen_bn(x, conv, bn)
    return bn(conv(x))


def _norm_layer(kind: str) -> type[nn.Module]:
    """The BatchNorm class of ``BackboneConfig.norm``."""
    return {"frozen": FrozenBatchNorm2d, "batch": nn.BatchNorm2d}[kind]


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False)


class _ResidualBlock(nn.Module):
    """``relu(bnN(convN(...relu(bn1(conv1(x))))) + shortcut(x))`` (a frozen BN folded into its conv);
    the shortcut is a strided 1x1 conv + BN (``downsample``) when the shape changes, else identity.
    ``norm`` is the BatchNorm class (``FrozenBatchNorm2d`` or ``nn.BatchNorm2d``)."""

    def _add_shortcut(self, cin: int, cout: int, stride: int, norm: type[nn.Module]) -> None:
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, 1, stride), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else conv_bn(x, *self.downsample)
        out = x
        for i in range(1, self.num_convs + 1):
            out = conv_bn(out, getattr(self, f"conv{i}"), getattr(self, f"bn{i}"))
            if i < self.num_convs:
                out = out.relu_()
        return out.add_(identity).relu_()


class BasicBlock(_ResidualBlock):
    """ResNet-18/34 block: two 3x3 convs, the first strided."""

    expansion, num_convs = 1, 2

    def __init__(self, cin: int, width: int, stride: int = 1, norm: type[nn.Module] = FrozenBatchNorm2d,
                 dilation: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, width, 3, stride, dilation), norm(width)
        self.conv2, self.bn2 = _conv(width, width, 3, dilation=dilation), norm(width)
        self._add_shortcut(cin, width, stride, norm)


class Bottleneck(_ResidualBlock):
    """ResNet-50/101/152 block: 1x1 reduce, 3x3 (strided, torchvision/mmdet 'pytorch' style), 1x1 expand."""

    expansion, num_convs = 4, 3

    def __init__(self, cin: int, width: int, stride: int = 1, norm: type[nn.Module] = FrozenBatchNorm2d,
                 dilation: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 1), norm(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride, dilation), norm(width)
        self.conv3, self.bn3 = _conv(width, cout, 1), norm(cout)
        self._add_shortcut(cin, cout, stride, norm)


class EvenPaddedMaxPool(nn.Module):
    """``nn.MaxPool2d(3, stride=2, padding=1)`` (the ResNet stem's) on its input padded with -inf
    to an even height and width: equal to it bit for bit, forward and backward (the added row or
    column lies where the last window's own -inf padding was; NaN and -inf alike).

    For a torch whose dynamic shapes guard the parity of the strided pool's output size
    (``max_pool_guards_parity``: torch 2.9 and 2.11 here, not 2.14; pytorch#124507, "ResNet with
    dynamic height"), where an even size's is plain: the ONNX export (2.9's failed) and
    ``detr train --compile`` (each new parity of a batch's height or width compiled the model
    again) swap it in. (A stride-1 pool at every other row and column, the export's way before,
    has the guard too under torch.compile, in its output's layout test.) In onnxruntime on a CPU
    the pad costs about 2% of an 800x1067 inference (``bench/bench_onnx_pool.py``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        # the padded sizes written as twice an integer, so that their evenness is plain to sympy
        # (``H % 2`` as the amount left torch.export 2.9 a guard it could not prove)
        x = F.pad(x, (0, 2 * ((W + 1) // 2) - W, 0, 2 * ((H + 1) // 2) - H), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


@functools.cache
def max_pool_guards_parity() -> bool:
    """Whether this torch's dynamic shapes guard the parity of a strided max pool's output size
    (probed once with torch.export; torch.compile's dynamic shapes have the same guard)."""
    size = torch.export.Dim("size", min=64)
    try:
        torch.export.export(nn.MaxPool2d(3, 2, 1), (torch.zeros(1, 1, 96, 96),), dynamic_shapes=({2: size},))
    except Exception:  # torch's ConstraintViolationError / UserError (or any other: take the safe path)
        return True
    return False


def pool_for_dynamic_sizes(backbone: nn.Module) -> None:
    """Before tracing at dynamic sizes (torch.compile, torch.export): where this torch guards the
    parity of a strided max pool's size (``max_pool_guards_parity``), ``backbone``'s stem pool
    becomes ``EvenPaddedMaxPool`` (equal bit for bit; no state, so state dicts do not change)."""
    if max_pool_guards_parity():
        backbone.maxpool = EvenPaddedMaxPool()


RESNET_LAYOUTS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """``forward(images [B,3,H,W]) -> [B,C,h,w]``: the last stage (mmdet ``out_indices=(3,)``),
    channels-last in memory. Parameter names are torchvision's, so its ImageNet state dicts and
    mmdet's ``backbone.*`` load as they are (``fc.*`` is ignored). ``norm``: "frozen" (DETR) or
    "batch" (trainable BatchNorm, to train from scratch; see ``BackboneConfig.norm``);
    ``base_channels``: the stem's and first stage's width, doubled per stage (mmdet's);
    ``dilation``: the last stage dilated instead of strided (official DETR's DC5), as torchvision's
    ``replace_stride_with_dilation=[False, False, True]`` does it: its first block keeps dilation 1
    (unstrided), the others dilate by 2 (mmdet's ResNet would dilate the first block too)."""

    def __init__(self, depth: int, frozen_stages: int = 1, norm: str = "frozen", base_channels: int = 64,
                 dilation: bool = False):
        super().__init__()
        block, counts = RESNET_LAYOUTS[depth]
        norm_layer = _norm_layer(norm)
        self.conv1, self.bn1 = _conv(3, base_channels, 7, 2), norm_layer(base_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # a module (torchvision's name): EvenPaddedMaxPool swaps in
        cin = base_channels
        for i, n in enumerate(counts):
            width = base_channels * 2**i
            dilated = dilation and i == len(counts) - 1
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0 and not dilated) else 1
                blocks.append(block(cin, width, stride=stride, norm=norm_layer, dilation=2 if dilated and j > 0 else 1))
                cin = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = cin
        self.frozen_stages = frozen_stages
        if norm == "batch":
            # torchvision's ResNet init for training from scratch: kaiming-normal (fan_out) convs,
            # BN weight 1 and bias 0 (nn.BatchNorm2d's own); weights loaded later replace it.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # mmdet ``_freeze_stages``: frozen_stages >= 0 freezes the stem, >= i freezes layer{i}
        for module in self._frozen_modules():
            module.requires_grad_(False)
        # conv weights channels-last like the activations: oneDNN then neither reorders the
        # weights nor converts their gradients back to NCHW (a few % of a training step)
        self.to(memory_format=torch.channels_last)

    def _frozen_modules(self) -> list[nn.Module]:
        return ([self.conv1, self.bn1] if self.frozen_stages >= 0 else []) + [
            getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)
        ]

    def train(self, mode: bool = True) -> "ResNet":
        # As mmdet's ResNet.train: the BatchNorms of frozen stages stay in eval mode (their running
        # statistics fixed) whatever the mode of the model; frozen BN has no modes to speak of.
        for module in self.modules():  # the folds made before (conv_frozen_bn: a step may not show)
            module.__dict__.pop("_folded", None)
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = conv_bn(x, self.conv1, self.bn1).relu_()
        x = self.maxpool(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


# --------------------------------------------------------------------------------------------
# Positional encoding, encoder, decoder, head
# --------------------------------------------------------------------------------------------


class SinePositionalEncoding(nn.Module):
    """mmdet ``SinePositionalEncoding`` / official DETR ``PositionEmbeddingSine``.

    ``forward(mask [B,h,w] bool, True at padding) -> [B,h,w,D]`` with D = 2 * num_feats: the
    y encoding's num_feats channels, then x's; within each, sin/cos interleaved (sin of even
    frequencies at even channels). Positions are the cumulative count of *unpadded* cells along
    each axis (1-based), so padding at the bottom/right leaves the image's encoding unchanged;
    normalised as ``(pos + offset) / (last + eps) * scale``. Channel-last so that flattening to
    [B,T,D] tokens is a view (mmdet returns [B,D,h,w] and permutes).
    """

    def __init__(self, num_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float = 2 * math.pi, eps: float = 1e-6, offset: float = 0.0):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        B, h, w = mask.shape
        not_mask = (~mask).to(torch.float32)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        if self.normalize:
            y = (y + self.offset) / (y[:, -1:, :] + self.eps) * self.scale
            x = (x + self.offset) / (x[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_feats)
        pos_x = x[..., None] / dim_t
        pos_y = y[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).view(B, h, w, -1)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).view(B, h, w, -1)
        return torch.cat((pos_y, pos_x), dim=3)


class DetrEncoder(nn.Module):
    """mmdet ``DetrTransformerEncoder`` (layers: ``DetrTransformerEncoderLayer``, here
    ``nn/transformer.py`` ``PostNormEncoderLayer``) / official DETR ``TransformerEncoder``.
    Stack of post-norm encoder layers (no final norm, as mmdet's and official DETR's).

    ``forward(x [B,T,D], pos [B,T,D], attn_mask [B,1,1,T] additive (-inf at padding) | None) -> [B,T,D]``.
    """

    def __init__(self, layers: list[PostNormEncoderLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos, attn_mask)
        return x


class DetrDecoder(nn.Module):
    """mmdet ``DetrTransformerDecoder`` (layers: ``DetrTransformerDecoderLayer``, here
    ``nn/transformer.py`` ``PostNormDecoderLayer``) / official DETR ``TransformerDecoder``.
    Stack of post-norm decoder layers whose every output goes through the shared ``post_norm``.

    ``forward(query_pos [B,Q,D], memory [B,T,D], memory_pos [B,T,D], memory_mask) -> [L,B,Q,D]``.
    The first layer's input is zeros; each layer takes the previous layer's output *before*
    ``post_norm`` (mmdet ``return_intermediate``; official DETR's ``intermediate.append(norm(x))``).
    """

    def __init__(self, layers: list[PostNormDecoderLayer], post_norm: nn.LayerNorm):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.post_norm = post_norm

    def forward(self, query_pos, memory, memory_pos, memory_mask):
        x = torch.zeros_like(query_pos)
        outs = []
        for layer in self.layers:
            x = layer(x, memory, query_pos, memory_pos, memory_mask)
            outs.append(self.post_norm(x))
        return torch.stack(outs)


class DetrHead(nn.Module):
    """mmdet ``DETRHead`` / official DETR ``class_embed`` + ``bbox_embed``.

    ``forward(hs [..., D]) -> (logits [..., K], boxes [..., 4])``, mmdet 3.x
    ``DETRHead.forward(hidden_states)`` (the rest of 2.x ``forward_single`` is ``DETR.forward_single``):
    ``fc_cls`` to num_classes + 1 (background last); boxes = sigmoid(fc_reg(ReLU(reg_fcs(hs)))), where ``reg_fcs`` is
    ``num_reg_fcs`` x (Linear, ReLU): mmdet's ``reg_ffn`` (FFN without residual: Linear, ReLU,
    Linear) followed by ``activate`` ReLU, equal to official DETR's 3-layer MLP.
    """

    def __init__(self, embed_dims: int, num_classes: int, num_reg_fcs: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.fc_cls = nn.Linear(embed_dims, num_classes + 1)
        self.reg_fcs = nn.ModuleList(nn.Linear(embed_dims, embed_dims) for _ in range(num_reg_fcs))
        self.fc_reg = nn.Linear(embed_dims, 4)

    def forward(self, hs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = hs
        for fc in self.reg_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(hs), self.fc_reg(x).sigmoid()


def feature_mask(masks: torch.Tensor | None, B: int, h: int, w: int, device) -> torch.Tensor:
    """[B,H,W] bool input padding mask (or None = no padding) -> [B,h,w] bool by nearest resizing."""
    if masks is None:
        return torch.zeros(B, h, w, dtype=torch.bool, device=device)
    return F.interpolate(masks[None].float(), size=(h, w)).to(torch.bool)[0]


# --------------------------------------------------------------------------------------------
# The full model
# --------------------------------------------------------------------------------------------


class DETR(nn.Module):
    """``forward(images [B,3,H,W], masks [B,H,W] | None) -> dict``.

    ``images`` normalised (ImageNet mean/std, RGB) and zero-padded at the bottom/right; ``masks``
    True at padding (None: no image is padded). Returns ``pred_logits`` [B,Q,K] and
    ``pred_boxes`` [B,Q,4] (sigmoid cx, cy, w, h normalised by each image's own size) of the last
    decoder layer, and ``aux_outputs``: the same dict for each earlier layer, first layer first.
    """

    def __init__(self, backbone: ResNet, input_proj: nn.Conv2d, positional_encoding: SinePositionalEncoding,
                 encoder: DetrEncoder, decoder: DetrDecoder, query_embedding: nn.Embedding, head: DetrHead):
        super().__init__()
        self.backbone = backbone
        self.input_proj = input_proj
        self.positional_encoding = positional_encoding
        self.encoder = encoder
        self.decoder = decoder
        self.query_embedding = query_embedding
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> dict:
        if images.dim() != 4 or images.shape[1] != 3:
            raise BertDetrError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        if masks is not None and (masks.shape != (images.shape[0], *images.shape[2:]) or masks.dtype != torch.bool):
            raise BertDetrError(f"masks must be bool [B,H,W] = {(images.shape[0], *images.shape[2:])} "
                                f"matching images, got {masks.dtype} {tuple(masks.shape)}")
        return self.forward_single(self.backbone(images), masks)

    def forward_single(self, x: torch.Tensor, masks: torch.Tensor | None) -> dict:
        """mmdet 2.x ``DETRHead.forward_single(x, img_metas)``: one feature level to the outputs.

        ``x`` [B,C,h,w] the backbone's last stage, ``masks`` [B,H,W] bool True at padding or None
        -> the dict of ``forward``. As mmdet's: input projection, the padding mask resized to the
        feature map, positional encoding, transformer, then the heads on every decoder layer's
        output. It lives on the model, not the head, because the module tree is mmdet 3.x's
        (``input_proj``, ``encoder``, ``decoder`` on the detector: 3.x ``DETR.forward_transformer``;
        ``DetrHead`` only the 3.x ``DETRHead.forward`` FCs), so state-dict names are 3.x's.
        """
        feat = self.input_proj(x)  # [B,D,h,w], channels-last
        B, D, h, w = feat.shape
        mask = feature_mask(masks, B, h, w, feat.device)
        pos = self.positional_encoding(mask).view(B, h * w, D)
        tokens = feat.permute(0, 2, 3, 1).reshape(B, h * w, D)
        # nn.MultiheadAttention's key_padding_mask (-inf at padded keys) as the shared blocks'
        # additive key mask. Without ``masks`` (nothing padded: the callers know it on the host,
        # before the batch goes to the device) there is none, which lets SDPA take its unmasked
        # kernel; reading the mask here to decide would wait for the device every step.
        attn_mask = None
        if masks is not None:
            attn_mask = key_padding_to_additive_mask(mask.view(B, h * w), tokens.dtype, float("-inf"))
        memory = self.encoder(tokens, pos, attn_mask)
        query_pos = self.query_embedding.weight.unsqueeze(0).expand(B, -1, -1)
        hs = self.decoder(query_pos, memory, pos, attn_mask)  # [L,B,Q,D]
        logits, boxes = self.head(hs)
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out


def build_detr(config: DETRConfig) -> DETR:
    """Builds the model of ``config`` (official DETR ``build`` in models/detr.py; mmdet builds from
    its config through the registry), randomly initialised as mmdet (xavier for transformer weights).
    Reads no files: ``config.backbone.pretrained`` is loaded by whoever starts from it (the trainer,
    through ``weights.load_torchvision_resnet``), checkpoints by ``weights.load_detr`` or ``convert.load.from_*``."""
    D = config.embed_dims
    enc, dec, pe = config.encoder, config.decoder, config.positional_encoding
    bb = config.backbone
    backbone = ResNet(bb.depth, bb.frozen_stages, bb.norm, bb.base_channels, bb.dilation)

    def ffn(cfg) -> FeedForward:
        return FeedForward(D, cfg.feedforward_channels, nn.ReLU(inplace=True), activation_dropout=cfg.ffn_drop)

    encoder = DetrEncoder([
        PostNormEncoderLayer(MultiHeadAttention(D, enc.num_heads, enc.dropout), ffn(enc),
                             dropout=enc.dropout, ffn_dropout=enc.ffn_drop)
        for _ in range(enc.num_layers)
    ])
    decoder = DetrDecoder([
        PostNormDecoderLayer(MultiHeadAttention(D, dec.num_heads, dec.dropout),
                             MultiHeadAttention(D, dec.num_heads, dec.dropout), ffn(dec),
                             dropout=dec.dropout, ffn_dropout=dec.ffn_drop)
        for _ in range(dec.num_layers)
    ], nn.LayerNorm(D))
    for layers in (encoder.layers, decoder.layers):  # mmdet DETR.init_weights: xavier_uniform on matrices
        for p in layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
    return DETR(
        backbone=backbone,
        # channels-last as the backbone's convs and its input: its weight's gradient comes so (strides
        # of the size-1 dims), which DDP would otherwise copy into its bucket each step, warning
        input_proj=nn.Conv2d(backbone.out_channels, D, kernel_size=1).to(memory_format=torch.channels_last),
        positional_encoding=SinePositionalEncoding(pe.num_feats, pe.temperature, pe.normalize, pe.scale,
                                                   pe.eps, pe.offset),
        encoder=encoder,
        decoder=decoder,
        query_embedding=nn.Embedding(config.num_queries, D),
        head=DetrHead(D, config.bbox_head.num_classes, config.bbox_head.num_reg_fcs),
    )
