"""Our checkpoint directory and checked loading (``bertdetr.detr.weights``): round trips, torchvision's
ResNets, tensors that do not fit, bad checkpoints. Conversion is tests/detr/convert/test_load.py."""

import dataclasses

import pytest
import torch
import torchvision

from bertdetr.detr.config import BackboneConfig, DecoderConfig, DETRConfig, EncoderConfig, PositionalEncodingConfig
from bertdetr.detr.convert.load import from_mmdet, from_official
from bertdetr.detr.data.coco import padding_masks
from bertdetr.detr.model import build_detr
from bertdetr.detr.weights import load_detr, load_torchvision_resnet, save_detr
from bertdetr.errors import BertDetrError


def tiny_config(num_classes=5, **kw):
    return DETRConfig(num_queries=7, backbone=BackboneConfig(depth=18),
                      encoder=EncoderConfig(num_layers=1, embed_dims=32, num_heads=4, feedforward_channels=48, dropout=0.0, ffn_drop=0.0),
                      decoder=DecoderConfig(num_layers=2, embed_dims=32, num_heads=4, feedforward_channels=48, dropout=0.0, ffn_drop=0.0),
                      positional_encoding=PositionalEncodingConfig(num_feats=16),
                      bbox_head=dataclasses.replace(DETRConfig().bbox_head, num_classes=num_classes), **kw)


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 96, generator=g)
    return x, padding_masks([(64, 96), (50, 70)], (64, 96))


def _perturb(model, seed=1):
    """Random frozen-BN statistics and biases so that every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("depth,ctor", [(18, torchvision.models.resnet18), (50, torchvision.models.resnet50)])
def test_backbone_equals_torchvision_resnet_from_local_weights(tmp_path, depth, ctor):
    torch.manual_seed(0)
    tv = _perturb(ctor())
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(tv.state_dict(), path)
    model = build_detr(dataclasses.replace(tiny_config(), backbone=BackboneConfig(depth=depth))).eval()
    load_torchvision_resnet(model.backbone, path)
    x = torch.randn(1, 3, 64, 64)
    body = torch.nn.Sequential(*list(tv.children())[:-2])
    with torch.no_grad():
        expected = body(x)
        # folding BN into the convs rounds differently: 1e-5 of the activations' range
        torch.testing.assert_close(model.backbone(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    with pytest.raises(BertDetrError, match="not a torchvision ResNet of this depth"):
        other = tmp_path / "other.pth"
        torch.save(torchvision.models.resnet34().state_dict(), other)
        load_torchvision_resnet(model.backbone, other)


# ---- our format and bad input


def test_save_and_load_round_trip(tmp_path, golden, golden_model):
    model, cfg = golden_model
    save_detr(model, cfg, tmp_path / "ckpt")
    loaded, cfg2 = load_detr(tmp_path / "ckpt")
    assert cfg2 == cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_shape_mismatch_names_the_tensors(golden):
    cfg = dict(golden["config"])
    model_cfg = dict(cfg["model"], num_queries=12)
    with pytest.raises(BertDetrError, match=r"query_embedding.weight \(10, 64\) vs model \(12, 64\)"):
        from_mmdet(dict(cfg, model=model_cfg), golden["state_dict"])
    sd = dict(golden["state_dict"])
    del sd["decoder.layers.1.norms.2.weight"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(BertDetrError, match=r"missing \(1\): decoder.layers.1.norm3.weight.*unexpected \(1\): extra.weight"):
        from_mmdet(golden["config"], sd)


def test_class_count_mismatch_needs_reset_head(golden):
    with pytest.raises(BertDetrError, match=r"5 classes .*bbox_head.fc_cls.weight.*config 3.*reset_head"):
        from_mmdet(golden["config"], golden["state_dict"], num_classes=3)
    g = torch.Generator().manual_seed(0)
    model, cfg = from_mmdet(golden["config"], golden["state_dict"], num_classes=3, reset_head=True, generator=g)
    assert cfg.bbox_head.num_classes == 3 and model.head.fc_cls.weight.shape == (4, 64)
    ref, _ = from_mmdet(golden["config"], golden["state_dict"])
    torch.testing.assert_close(model.head.fc_reg.weight, ref.head.fc_reg.weight)  # the rest is loaded
    again, _ = from_mmdet(golden["config"], golden["state_dict"], num_classes=3, reset_head=True,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.head.fc_cls.weight, model.head.fc_cls.weight)  # randomness passed in


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BertDetrError, match="cannot read checkpoint"):
        from_official(str(bad))
    with pytest.raises(BertDetrError, match="checkpoint not found"):
        from_official(str(tmp_path / "missing.pth"))


def test_another_models_checkpoint_is_named_briefly(golden):
    import torchvision

    sd = {"state_dict": torchvision.models.resnet18().state_dict()}
    with pytest.raises(BertDetrError, match=r"missing \(\d+\): .* and \d+ more") as e:
        from_mmdet(golden["config"], sd)
    assert len(str(e.value)) < 3000
    with pytest.raises(BertDetrError, match="epoch is no tensor"):
        from_mmdet(golden["config"], {"state_dict": {"a": torch.zeros(1), "epoch": 3}})
