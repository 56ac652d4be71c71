"""Model structure: frozen parts, training-time behaviour, positional encoding, input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from bertdetr.detr.loss import build_criterion
from bertdetr.detr.model import (EvenPaddedMaxPool, FrozenBatchNorm2d, SinePositionalEncoding, build_detr,
                                 conv_frozen_bn, max_pool_guards_parity)
from bertdetr.errors import BertDetrError
from tests.detr.test_weights import tiny_config


def test_frozen_stages_and_batchnorm_get_no_gradient():
    torch.manual_seed(0)
    model = build_detr(tiny_config())
    for name, p in model.backbone.named_parameters():
        assert p.requires_grad == name.startswith(("layer2", "layer3", "layer4")), name
    assert not any("bn" in n or "downsample.1" in n for n, _ in model.backbone.named_parameters())  # buffers
    model.train()
    out = model(torch.randn(1, 3, 64, 64))
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])}]
    build_criterion(tiny_config()).total(build_criterion(tiny_config())(out, targets, [(64, 64)])).backward()
    assert model.backbone.conv1.weight.grad is None and model.backbone.layer1[0].conv1.weight.grad is None
    assert model.backbone.layer2[0].conv1.weight.grad.abs().sum() > 0
    assert model.head.fc_cls.weight.grad.abs().sum() > 0 and model.query_embedding.weight.grad.abs().sum() > 0


def test_trainable_batchnorm_backbone_for_training_from_scratch():
    import dataclasses

    import torchvision

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, norm="batch", frozen_stages=1))
    torch.manual_seed(0)
    model = build_detr(cfg)
    bb = model.backbone
    # the same names as torchvision's ResNet (BatchNorm counters included), so its weights load
    assert set(bb.state_dict()) == {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert "layer2.0.bn1.weight" in trainable and "layer2.0.downsample.1.bias" in trainable
    assert not any(n.startswith(("conv1", "bn1", "layer1")) for n in trainable)
    model.train()
    # frozen stages keep their BatchNorms in eval mode (running statistics fixed), as mmdet's ResNet.train
    assert not bb.bn1.training and not bb.layer1[0].bn1.training and bb.layer2[0].bn1.training
    frozen_mean = bb.layer1[0].bn1.running_mean.clone()
    out = model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert torch.equal(bb.layer1[0].bn1.running_mean, frozen_mean)
    assert bb.layer2[0].bn1.running_mean.abs().sum() > 0  # a trained stage updates its statistics
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    crit = build_criterion(cfg)
    crit.total(crit(out, targets, [(64, 64)] * 2)).backward()
    assert bb.layer2[0].bn1.weight.grad.abs().sum() > 0 and bb.layer1[0].bn1.weight.grad is None
    model.eval()
    with torch.no_grad():
        a = model(torch.randn(1, 3, 64, 64))["pred_logits"]
    assert torch.isfinite(a).all()


def test_base_channels_scale_the_backbone_width():
    import dataclasses

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, base_channels=16, norm="batch"))
    model = build_detr(cfg)
    assert model.backbone.out_channels == cfg.backbone.out_channels == 128
    assert model.backbone.layer4[0].conv2.weight.shape == (128, 128, 3, 3)
    assert model.input_proj.in_channels == 128
    out = model(torch.randn(2, 3, 64, 64))
    assert out["pred_boxes"].shape == (2, cfg.num_queries, 4)


def _conv_frozen_bn_and_input():
    """A 3x3 conv, a frozen BN with statistics that matter, and an input for them."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = FrozenBatchNorm2d(6)
    for t in (bn.weight, bn.bias, bn.running_mean):
        t.copy_(torch.randn(6, generator=g))
    bn.running_var.copy_(torch.rand(6, generator=g) + 0.1)
    x = torch.randn(2, 4, 9, 9, generator=g)
    return conv, bn, x


def test_folded_conv_bn_equals_conv_then_bn():
    conv, bn, x = _conv_frozen_bn_and_input()
    torch.testing.assert_close(conv_frozen_bn(x, conv, bn), bn(conv(x)), rtol=1e-5, atol=1e-5)
    ref = torch.nn.BatchNorm2d(6).eval()
    ref.load_state_dict({**bn.state_dict(), "num_batches_tracked": torch.tensor(0)})
    torch.testing.assert_close(bn(x[:, :1].expand(2, 6, 9, 9)), ref(x[:, :1].expand(2, 6, 9, 9)))


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    cfg = tiny_config()
    import dataclasses

    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, dropout=0.5, ffn_drop=0.5))
    model = build_detr(cfg)
    x = torch.randn(1, 3, 64, 64)
    layer = model.encoder.layers[0]
    assert layer.dropout.p == 0.5 and layer.ffn_dropout.p == 0.5 and layer.ffn.dropout.p == 0.5
    assert layer.self_attn.attn_dropout == 0.5
    model.eval()
    with torch.no_grad():
        a, b = model(x)["pred_logits"], model(x)["pred_logits"]
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x)["pred_logits"], model(x)["pred_logits"])


def test_sine_encoding_ignores_bottom_right_padding():
    pe = SinePositionalEncoding(num_feats=8)
    mask = torch.zeros(2, 5, 7, dtype=torch.bool)
    mask[1, 3:, :] = True
    mask[1, :, 4:] = True
    pos = pe(mask)
    assert pos.shape == (2, 5, 7, 16)
    small = pe(torch.zeros(1, 3, 4, dtype=torch.bool))
    torch.testing.assert_close(pos[1, :3, :4], small[0])
    # last unpadded row/column is at 2*pi / (1 + eps) -> y channel 0 = sin(~2*pi)
    assert abs(pos[0, -1, 0, 0].item() - math.sin(2 * math.pi * 5 / (5 + 1e-6))) < 1e-5


def test_bad_inputs():
    model = build_detr(tiny_config()).eval()
    with pytest.raises(BertDetrError, match=r"images must be \[B,3,H,W\]"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(BertDetrError, match="masks must be bool"):
        model(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 63, dtype=torch.bool))


def test_folded_weight_cache_follows_weight_changes():
    torch.manual_seed(0)
    model = build_detr(tiny_config()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model.backbone(x)
        assert torch.equal(model.backbone(x), a)  # served from the cache
        model.backbone.layer4[1].conv2.weight.mul_(2)  # an in-place update, as an optimizer step
        b = model.backbone(x)
        model.backbone.layer4[1].bn2.running_var.fill_(4.0)
        c = model.backbone(x)
    assert not torch.equal(a, b) and not torch.equal(b, c)
    fresh = build_detr(tiny_config()).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.backbone(x), c)
        model.load_state_dict(build_detr(tiny_config()).state_dict())
        assert not torch.equal(model.backbone(x), c)


def test_the_fold_is_made_again_after_a_mode_switch():
    """torch's fused AdamW (the trainer's) changes the weights without counting a version on a CPU:
    a user's loop that validates with ``eval()`` after such steps gets the current weights' fold."""
    torch.manual_seed(0)
    model = build_detr(tiny_config())
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        before = model.backbone(x)
    model.train()
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    torch.optim.AdamW(params, lr=0.1, fused=True).step()
    model.eval()
    fresh = build_detr(tiny_config()).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        after = model.backbone(x)
        assert torch.equal(after, fresh.backbone(x)) and not torch.equal(after, before)


def test_a_trainable_convs_fold_keeps_the_bns_part_and_equals_the_whole_fold_bit_for_bit():
    """Where the conv weight trains, the BN's scale and shift are cached on the BN (frozen buffers)
    and only weight * scale is made each step: outputs and weight gradients equal those of the fold
    made whole each time (bit for bit), and a change to the BN's buffers is followed."""
    conv, bn, x = _conv_frozen_bn_and_input()

    def whole_fold():  # the fold as it was made every step before
        scale, shift = bn.scale_shift()
        return F.conv2d(x, conv.weight * scale[:, None, None, None], shift, 1, 1)

    for change in (None, lambda: bn.running_var.mul_(1.5), lambda: bn.weight.add_(0.25)):
        if change is not None:
            with torch.no_grad():
                change()
        out = conv_frozen_bn(x, conv, bn)
        (grad,) = torch.autograd.grad(out.square().sum(), conv.weight)
        expected = whole_fold()
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), conv.weight)
        assert torch.equal(out, expected) and torch.equal(grad, expected_grad)
        assert "_folded" in bn.__dict__ and "_folded" not in conv.__dict__  # the BN's part kept, not the weight's


def test_the_even_padded_max_pool_equals_the_stems_bit_for_bit_forward_and_backward():
    """``EvenPaddedMaxPool`` (what the ONNX export and a compiled training swap in where torch guards
    the strided pool's parity) at odd and even sizes, channels-last as the stem's activations, with
    -inf and NaN inside; the gradient too, on ReLU'd input whose windows hold many equal zeros (the
    element a pool chooses among equals is where the gradient goes)."""
    pool, even = torch.nn.MaxPool2d(3, 2, 1), EvenPaddedMaxPool()
    g = torch.Generator().manual_seed(0)
    for h, w in ((1, 1), (2, 3), (7, 8), (64, 65), (99, 100)):
        x = torch.randn(2, 5, h, w, generator=g).contiguous(memory_format=torch.channels_last)
        x[0, 0, 0, 0], x[1, 1, -1, -1] = float("-inf"), float("nan")
        assert torch.equal(even(x).isnan(), pool(x).isnan())
        assert torch.equal(even(x).nan_to_num(7.0), pool(x).nan_to_num(7.0)), (h, w)
        assert even(x.bfloat16()).dtype == torch.bfloat16 and torch.equal(even(x.bfloat16()).nan_to_num(7.0),
                                                                           pool(x.bfloat16()).nan_to_num(7.0))
        ties = torch.randn(2, 5, h, w, generator=g).round().relu().contiguous(memory_format=torch.channels_last)
        upstream = torch.randn(pool(ties).shape, generator=g)
        grads = []
        for module in (pool, even):
            x = ties.clone().requires_grad_()
            module(x).backward(upstream)
            grads.append(x.grad)
        assert torch.equal(grads[0], grads[1]), (h, w)


def test_torch_export_with_dynamic_image_size(golden_model):
    """torch.export traces the model (no storage-keyed fold cache, no data-dependent mask branch);
    the exported program, at other image sizes than traced, gives the eager model's outputs."""
    if max_pool_guards_parity():  # (the ONNX export goes round it: EvenPaddedMaxPool)
        pytest.skip(f"torch {torch.__version__}: torch.export guards max_pool2d's output size on parity (pytorch#124507)")
    model, _ = golden_model
    H, W, B = torch.export.Dim("H", min=64, max=4096), torch.export.Dim("W", min=64, max=4096), torch.export.Dim("B")
    images, masks = torch.randn(2, 3, 96, 128), torch.zeros(2, 96, 128, dtype=torch.bool)
    masks[1, 70:] = True
    program = torch.export.export(model, (images, masks),
                                  dynamic_shapes=({0: B, 2: H, 3: W}, {0: B, 1: H, 2: W}))
    for b, h, w in ((2, 96, 128), (3, 160, 150), (2, 71, 200)):
        x, m = torch.randn(b, 3, h, w), torch.zeros(b, h, w, dtype=torch.bool)
        m[-1, :, w // 2:] = True
        with torch.no_grad():
            expected, got = model(x, m), program.module()(x, m)
        torch.testing.assert_close(got["pred_logits"], expected["pred_logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(got["pred_boxes"], expected["pred_boxes"], rtol=0, atol=1e-5)
    with torch.no_grad():  # the eager model still serves the folded weights from its cache
        model(images, masks)
    assert "_folded" in model.backbone.conv1.__dict__


def test_dc5_backbone_equals_torchvisions_dilated_resnet():
    """Official DETR's DC5: torchvision's ResNet-50 with replace_stride_with_dilation=[False, False, True]
    and frozen BatchNorm (torchvision.ops.FrozenBatchNorm2d, as official DETR's backbone)."""
    import torchvision

    from bertdetr.detr.model import ResNet

    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True],
                                         norm_layer=torchvision.ops.FrozenBatchNorm2d).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # statistics that matter
        for name, buf in theirs.named_buffers():
            if name.endswith("running_mean") or name.endswith("bias"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var") or name.endswith("weight"):
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    ours = ResNet(50, dilation=True).eval()
    state = {k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state, strict=False)
    x = torch.randn(1, 3, 96, 128)
    body = torch.nn.Sequential(*list(theirs.children())[:-2])
    with torch.no_grad():
        expected, got = body(x), ours(x)
    assert got.shape == expected.shape == (1, 2048, 6, 8)  # stride 16, not 32
    # (random BatchNorm statistics make values in the thousands: float32 rounding, as without dilation)
    torch.testing.assert_close(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4)
    assert ours.layer4[0].conv2.dilation == (1, 1) and ours.layer4[1].conv2.dilation == (2, 2)


def test_an_official_dc5_checkpoint_converts_with_its_dilation(tmp_path):
    """A training checkpoint of official DETR's main.py keeps --dilation in its args: the conversion
    reads it; a released one (weights only) needs --dilation."""
    import argparse
    import dataclasses

    from bertdetr.cli import main
    from bertdetr.detr.convert.load import from_official
    from bertdetr.detr.weights import load_detr
    from tests.detr.convert.test_load import _to_official

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, dilation=True))
    torch.manual_seed(0)
    ref = build_detr(cfg).eval()
    official = _to_official(ref.state_dict())
    trained = tmp_path / "checkpoint.pth"
    torch.save({"model": official, "args": argparse.Namespace(dilation=True, backbone="resnet18")}, trained)
    released = tmp_path / "detr-dc5.pth"
    torch.save({"model": official}, released)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = ref(x)["pred_logits"]
    for path, flags in ((trained, []), (released, ["--dilation"])):
        out = tmp_path / f"out-{path.stem}"
        assert main(["detr", "convert", "--from", "official", "--checkpoint", str(path), "--output", str(out),
                     "--classes", "keep", "--num-heads", str(cfg.encoder.num_heads), *flags]) == 0
        model, config = load_detr(out)
        assert config.backbone.dilation
        with torch.no_grad():
            torch.testing.assert_close(model(x)["pred_logits"], expected, atol=1e-5, rtol=1e-5)
    model, config = from_official(str(released), coco80=False, num_heads=cfg.encoder.num_heads)
    assert not config.backbone.dilation  # without the flag a released file reads as plain (not visible)


def test_every_gradient_has_its_parameters_layout():
    """DDP copies a gradient whose strides differ from its parameter's into its bucket each step
    (and warns): the 1x1 input projection after the channels-last backbone was one."""
    from bertdetr.detr import DETRConfig, build_detr

    torch.manual_seed(0)
    model = build_detr(DETRConfig.r18()).train()
    out = model(torch.randn(2, 3, 96, 128), None)
    sum(v.float().sum() for v in out.values() if torch.is_tensor(v)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()] == []
