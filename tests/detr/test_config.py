import json
import math
import os

import pytest

from bertdetr.detr.config import PRESET_DIR, DETRConfig, load_detr_config
from bertdetr.errors import BertDetrError


def test_r50_preset_is_mmdet_detr_r50_150e():
    c = DETRConfig.r50(num_classes=80)
    assert c.num_queries == 100 and c.backbone.depth == 50 and c.backbone.frozen_stages == 1
    assert c.backbone.out_channels == 2048 and c.embed_dims == 256
    for part in (c.encoder, c.decoder):
        assert (part.num_layers, part.num_heads, part.feedforward_channels, part.dropout, part.ffn_drop) == (6, 8, 2048, 0.1, 0.1)
    pe = c.positional_encoding
    assert (pe.num_feats, pe.temperature, pe.normalize, pe.scale, pe.eps, pe.offset) == (128, 10000, True, 2 * math.pi, 1e-6, 0.0)
    h = c.bbox_head
    assert (h.num_classes, h.loss_cls_weight, h.bg_cls_weight, h.loss_bbox_weight, h.loss_iou_weight) == (80, 1.0, 0.1, 5.0, 2.0)
    assert (c.assigner.cls_cost, c.assigner.bbox_cost, c.assigner.iou_cost) == (1.0, 5.0, 2.0)
    assert c.test_cfg.max_per_img == 100


def test_r18_preset_differs_only_in_backbone():
    r18, r50 = DETRConfig.r18(num_classes=3), DETRConfig.r50(num_classes=3)
    assert r18.backbone.depth == 18 and r18.backbone.out_channels == 512
    assert r18.to_dict() | {"backbone": None} == r50.to_dict() | {"backbone": None}


def test_shipped_json_files_are_the_presets():
    assert load_detr_config(os.path.join(PRESET_DIR, "detr_r50_coco.json")) == DETRConfig.r50(80)
    assert load_detr_config(os.path.join(PRESET_DIR, "detr_r18_coco.json")) == DETRConfig.r18(80)


def test_json_round_trip_and_edit(tmp_path):
    path = tmp_path / "c.json"
    DETRConfig.r18(num_classes=4).save(path)
    d = json.loads(path.read_text())
    d["bbox_head"]["num_classes"] = 7
    path.write_text(json.dumps(d))
    c = load_detr_config(path)
    assert c.bbox_head.num_classes == 7 and c.backbone.depth == 18


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["encoder"].update(num_heads=7), "multiple of num_heads"),
    (lambda d: d["decoder"].update(embed_dims=128, num_heads=8), "decoder.embed_dims 128 differs"),
    (lambda d: d["positional_encoding"].update(num_feats=64), "num_feats"),
    (lambda d: d["backbone"].update(depth=42), "backbone.depth"),
    (lambda d: d["backbone"].update(norm="group"), "backbone.norm"),
    (lambda d: d["backbone"].update(base_channels=0), "base_channels"),
    (lambda d: d["backbone"].update(base_channels=32, pretrained="r18.pth"), "need base_channels 64"),
    (lambda d: d["bbox_head"].update(num_classes=0), "num_classes"),
    (lambda d: d["encoder"].update(dropout=1.5), "encoder.dropout"),
    (lambda d: d["encoder"].update(dropuot=0.1), "unknown key.*dropuot"),
    (lambda d: d.update(extra=1), "unknown key.*extra"),
])
def test_invalid_configs_are_clear_errors(edit, match):
    d = DETRConfig.r50().to_dict()
    edit(d)
    with pytest.raises(BertDetrError, match=match):
        DETRConfig.from_dict(d)


def test_bad_json_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(BertDetrError, match="not valid JSON"):
        load_detr_config(p)
    with pytest.raises(BertDetrError, match="cannot read"):
        load_detr_config(tmp_path / "missing.json")
