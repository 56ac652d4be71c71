"""Parity with MMDetection's DETR on its own weights and inputs: 3.3 (``mmdet3``) and 2.28 (``mmdet2``,
its checkpoint names and config layout) — tests/data/detr, see its README."""

import pytest
import torch

from bertdetr.detr.loss import build_criterion
from bertdetr.detr.data.coco import padding_masks
from bertdetr.detr.postprocess import DetrPostProcess

TOL = dict(rtol=0, atol=1e-4)


@pytest.fixture(scope="module", params=["mmdet3", "mmdet2"])
def case(request, golden, golden_model, golden2, golden2_model):
    """(golden outputs, our model converted from that version's checkpoint and config, its DETRConfig)."""
    if request.param == "mmdet3":
        return (golden, *golden_model)
    return (golden2, *golden2_model)


def _forward(golden, model):
    masks = padding_masks(golden["img_shapes"], golden["batch_input_shape"])
    with torch.no_grad():
        return model(golden["batch_inputs"], masks)


def test_config_read_from_mmdet(case):
    _, _, config = case
    assert config.backbone.depth == 18 and config.embed_dims == 64 and config.num_queries == 10
    assert config.encoder.num_layers == config.decoder.num_layers == 2
    assert config.encoder.feedforward_channels == config.decoder.feedforward_channels == 128
    assert config.bbox_head.num_classes == 5 and config.encoder.num_heads == 8
    assert config.bbox_head.bg_cls_weight == 0.1 and config.test_cfg.max_per_img == 8
    assert config.positional_encoding.normalize and config.positional_encoding.num_feats == 32
    assert (config.assigner.cls_cost, config.assigner.bbox_cost, config.assigner.iou_cost) == (1.0, 5.0, 2.0)


def test_every_decoder_layer_matches_mmdet(case):
    golden, model, _ = case
    out = _forward(golden, model)
    layers = out["aux_outputs"] + [out]
    assert len(layers) == golden["all_layers_cls_scores"].shape[0]
    logits = torch.stack([o["pred_logits"] for o in layers])
    boxes = torch.stack([o["pred_boxes"] for o in layers])
    torch.testing.assert_close(logits, golden["all_layers_cls_scores"], **TOL)
    torch.testing.assert_close(boxes, golden["all_layers_bbox_preds_cxcywh_norm"], **TOL)


def test_predictions_match_mmdet(case):
    golden, model, config = case
    out = _forward(golden, model)
    dets = DetrPostProcess(config.test_cfg.max_per_img)(out, golden["img_shapes"])
    for i, d in enumerate(dets):
        torch.testing.assert_close(d["scores"], golden["pred_scores"][i], **TOL)
        assert torch.equal(d["labels"], golden["pred_labels"][i])
        # pixel boxes of up to 160 px: 1e-4 relative to the image size
        torch.testing.assert_close(d["boxes"], golden["pred_bboxes_xyxy"][i], rtol=0, atol=1e-4 * 160)


def test_losses_match_mmdet(case):
    golden, model, config = case
    out = _forward(golden, model)
    targets = [{"boxes": b, "labels": l} for b, l in zip(golden["gt_bboxes_xyxy"], golden["gt_labels"])]
    losses = build_criterion(config)(out, targets, golden["img_shapes"])
    assert set(losses) == set(golden["losses"])
    for name, expected in golden["losses"].items():
        torch.testing.assert_close(losses[name], expected, **TOL, msg=name)


def test_simple_test_results_match_mmdet2(golden2, golden2_model):
    """mmdet 2.x's ``forward_test`` result: per image, per class, [n, 5] (x1, y1, x2, y2, score) rows
    in score order (its bbox2result of the top max_per_img detections)."""
    model, config = golden2_model
    out = _forward(golden2, model)
    dets = DetrPostProcess(config.test_cfg.max_per_img)(out, golden2["img_shapes"])
    for d, expected in zip(dets, golden2["simple_test_bbox_results"]):
        assert len(expected) == config.bbox_head.num_classes
        for c, rows in enumerate(expected):
            keep = d["labels"] == c
            ours = torch.cat([d["boxes"][keep], d["scores"][keep, None]], dim=1)
            assert ours.shape == rows.shape
            torch.testing.assert_close(ours, rows, rtol=0, atol=1e-4 * 160)


def test_full_images_need_no_mask(golden, golden_model):
    """The unpadded image alone, without a mask, gives what it gives inside the padded batch."""
    model, _ = golden_model
    out = _forward(golden, model)
    with torch.no_grad():
        alone = model(golden["batch_inputs"][:1])  # image 0 is 160x160 = the whole batch
    torch.testing.assert_close(alone["pred_logits"], out["pred_logits"][:1], rtol=0, atol=1e-5)
