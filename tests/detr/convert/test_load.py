"""Other projects' checkpoints as our DETR (``bertdetr.detr.convert.load``): official DETR and
transformers (test-only oracles: the same outputs and losses), mmdet 2.x spellings, class names."""

import pytest
import torch

from bertdetr.detr.convert.load import (
    classes_from_names,
    from_hf,
    from_mmdet,
    from_official,
    mmdet_class_names,
)
from bertdetr.detr.convert.names import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from bertdetr.detr.model import build_detr
from bertdetr.errors import BertDetrError
from tests.detr.test_weights import _inputs, _perturb, tiny_config


# ---- official DETR: a state dict in facebookresearch/detr's naming (models/detr.py, transformer.py,
# backbone.py: backbone.0.body.*, input_proj, query_embed, transformer.{encoder,decoder}.layers.i.
# {self_attn,multihead_attn,linear1,linear2,norm1..3}, transformer.decoder.norm, class_embed,
# bbox_embed.layers.0..2), built from one of our models with a 92-logit head.


def _to_official(sd):
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            k = "backbone.0.body." + k[len("backbone."):]
        elif k.startswith(("encoder.", "decoder.layers.")):
            k = "transformer." + k.replace(".cross_attn.", ".multihead_attn.").replace(".ffn.fc1.", ".linear1.").replace(".ffn.fc2.", ".linear2.")
        elif k.startswith("decoder.post_norm."):
            k = k.replace("decoder.post_norm.", "transformer.decoder.norm.")
        k = k.replace("query_embedding.", "query_embed.").replace("head.fc_cls.", "class_embed.")
        k = k.replace("head.reg_fcs.", "bbox_embed.layers.").replace("head.fc_reg.", "bbox_embed.layers.2.")
        out[k] = v
    return out


def test_from_official_coco80_and_keep():
    torch.manual_seed(0)
    ref = _perturb(build_detr(tiny_config(num_classes=91)))
    official = {"model": _to_official(ref.state_dict())}
    assert "transformer.decoder.layers.1.multihead_attn.in_proj_weight" in official["model"]
    assert "bbox_embed.layers.2.weight" in official["model"] and "class_embed.weight" in official["model"]
    x, masks = _inputs()
    with torch.no_grad():
        expected = ref(x, masks)
    keep, cfg = from_official(official, coco80=False, num_heads=4)
    assert cfg.bbox_head.num_classes == 91 and cfg.num_queries == 7 and cfg.backbone.depth == 18
    coco, cfg80 = from_official(official, num_heads=4)
    assert cfg80.bbox_head.num_classes == 80
    with torch.no_grad():
        a, b = keep(x, masks), coco(x, masks)
    torch.testing.assert_close(a["pred_logits"], expected["pred_logits"])
    torch.testing.assert_close(a["pred_boxes"], expected["pred_boxes"])
    torch.testing.assert_close(b["pred_logits"], expected["pred_logits"][..., COCO_CATEGORY_IDS + [91]])
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[:3] == [1, 2, 3] and COCO_CATEGORY_IDS[-1] == 90


def test_from_official_rejects_a_non_coco_head_for_coco80():
    torch.manual_seed(0)
    official = _to_official(build_detr(tiny_config(num_classes=5)).state_dict())
    with pytest.raises(BertDetrError, match="92-logit.*class_embed.weight"):
        from_official(official, num_heads=4)


# ---- transformers as a test-only oracle


def _hf_pair(num_labels=5):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bb = transformers.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                   embedding_size=64, out_features=["stage4"])
    cfg = transformers.DetrConfig(backbone_config=bb, use_timm_backbone=False, d_model=32, encoder_layers=2,
                                  decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                                  encoder_ffn_dim=48, decoder_ffn_dim=48, num_queries=7, num_labels=num_labels,
                                  dropout=0.0, auxiliary_loss=False)
    hf = transformers.DetrForObjectDetection(cfg)
    sd = hf.state_dict()
    g = torch.Generator().manual_seed(1)
    for k, v in sd.items():
        if k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith(("running_mean", "bias")):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.startswith(("class_labels_classifier", "bbox_predictor")) and k.endswith("weight"):
            v.mul_(20)  # spread predictions apart so that matching has no near-ties
    hf.load_state_dict(sd)
    return hf.eval(), sd


def test_matches_transformers_detr_outputs_and_losses():
    hf, sd = _hf_pair()
    ours, cfg = from_hf(sd, hf_config=hf.config.to_dict())
    assert cfg.encoder.num_heads == 4 and cfg.bbox_head.num_classes == 5 and cfg.encoder.dropout == 0.0
    x, masks = _inputs()
    shapes = [(64, 96), (50, 70)]
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 50.0], [30.0, 10.0, 90.0, 60.0]]), "labels": torch.tensor([1, 4])},
               {"boxes": torch.tensor([[0.0, 0.0, 69.0, 30.0]]), "labels": torch.tensor([0])}]
    labels = []
    for t, (h, w) in zip(targets, shapes):
        b = t["boxes"] / torch.tensor([w, h, w, h])
        labels.append({"class_labels": t["labels"],
                       "boxes": torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)})
    with torch.no_grad():
        o = hf(pixel_values=x, pixel_mask=(~masks).long(), labels=labels)
        mine = ours(x, masks)
    assert o.logits.abs().max() > 1  # not a trivially small comparison
    torch.testing.assert_close(mine["pred_logits"], o.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mine["pred_boxes"], o.pred_boxes, rtol=1e-4, atol=1e-5)
    # transformers 4.x files name the same tensors differently
    legacy = {k.replace("model.backbone.model.", "model.backbone.conv_encoder.model.").replace(".o_proj.", ".out_proj.")
              .replace(".mlp.fc", ".fc"): v for k, v in sd.items()}
    assert legacy.keys() != sd.keys()
    old, _ = from_hf(legacy, hf_config=hf.config.to_dict())
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), ours.state_dict().values()))
    from bertdetr.detr.loss import build_criterion

    losses = build_criterion(cfg)(mine, targets, shapes)
    torch.testing.assert_close(losses["loss_cls"], o.loss_dict["loss_ce"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses["loss_bbox"] / 5, o.loss_dict["loss_bbox"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses["loss_iou"] / 2, o.loss_dict["loss_giou"], rtol=1e-4, atol=1e-5)


def test_from_hf_directory_and_coco80(tmp_path):
    hf, _ = _hf_pair(num_labels=91)
    hf.save_pretrained(tmp_path)
    ours, cfg = from_hf(tmp_path, coco80=True)
    assert cfg.bbox_head.num_classes == 80 and cfg.decoder.num_heads == 4
    x, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["pred_logits"], hf(pixel_values=x).logits[..., COCO_CATEGORY_IDS + [91]],
                                   rtol=1e-4, atol=1e-4)


# ---- backbone = torchvision's ResNet, loaded from a local file


# ---- mmdet 2.x names


def test_mmdet2_older_names_load_the_same_model(golden2, golden2_model):
    """Files of mmdet before ~2.12 spell the transformer's tensors self_attn / multihead_attn / ffn /
    decoder.norm (2.28's DETRHead._load_from_state_dict renames them); both spellings load."""
    from tests.conftest import DATA

    def older(k):
        return (k.replace(".attentions.0.", ".self_attn.").replace(".attentions.1.", ".multihead_attn.")
                .replace(".ffns.0.", ".ffn.").replace("decoder.post_norm.", "decoder.norm."))

    sd = {older(k): v for k, v in golden2["state_dict"].items()}
    assert "bbox_head.transformer.decoder.layers.1.multihead_attn.attn.in_proj_weight" in sd
    assert "bbox_head.transformer.decoder.norm.weight" in sd and "bbox_head.transformer.encoder.layers.0.ffn.layers.1.bias" in sd
    model, _ = from_mmdet(DATA / "detr" / "mmdet2_detr_small.config.py", {"state_dict": sd})
    ref, _ = golden2_model
    for (k, a), (k2, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_mmdet2_mismatch_names_the_2x_tensors(golden2):
    from tests.conftest import DATA

    sd = dict(golden2["state_dict"])
    sd["bbox_head.query_embedding.weight"] = torch.zeros(12, 64)
    del sd["bbox_head.transformer.decoder.layers.1.attentions.1.attn.out_proj.bias"]
    with pytest.raises(BertDetrError, match=r"missing \(1\): decoder.layers.1.cross_attn.out_proj.bias.*"
                       r"query_embedding.weight \(checkpoint: bbox_head.query_embedding.weight\) \(12, 64\)"):
        from_mmdet(DATA / "detr" / "mmdet2_detr_small.config.py", sd)


def test_class_names_kept_by_mmdet_checkpoints():
    assert mmdet_class_names({"meta": {"CLASSES": ("a", "b")}, "state_dict": {}}) == ["a", "b"]  # 2.x
    assert mmdet_class_names({"meta": {"dataset_meta": {"classes": ["c"], "palette": [(1, 2, 3)]}}}) == ["c"]  # 3.x
    assert mmdet_class_names({"state_dict": {}}) is None and mmdet_class_names({}) is None
    ids, names = classes_from_names(COCO_CLASS_NAMES)  # mmdet's COCO labels: COCO's own category ids
    assert ids == COCO_CATEGORY_IDS and names[0] == "person" and names[-1] == "toothbrush"
    assert classes_from_names(["x", "y"]) == ([1, 2], ["x", "y"])
