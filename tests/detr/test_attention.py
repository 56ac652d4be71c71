import io
import json
import os
import random

import numpy as np
import torch
from PIL import Image

from bertdetr.cli import main
from bertdetr.detr.attention import attention_pictures, capture_attention
from bertdetr.detr.boxes import box_cxcywh_to_xyxy
from bertdetr.detr.data.coco import load_image
from bertdetr.detr.model import build_detr
from bertdetr.detr.data.pipelines import official_prepare
from bertdetr.detr.predict import detect_prepared
from bertdetr.detr.train_config import model_config_from_dict
from bertdetr.detr.data.transforms import eval_transforms
from bertdetr.detr.visualize import draw_detections, overlay_heatmap
from bertdetr.detr.weights import save_detr

TINY = {"preset": "r18", "num_queries": 4,
        "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
        "decoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
        "positional_encoding": {"num_feats": 16}}


def test_detection_pictures_are_unchanged_and_match_predict(tmp_path):
    """Each ``<name>_det<k>.png`` is byte for byte what the command wrote before it used
    DetrPostProcess (the k-th best query's decoder attention under its box, boxes = normalised
    boxes times the image size), and its box is the k-th detection of ``detr predict``."""
    torch.manual_seed(0)
    model = build_detr(model_config_from_dict(TINY).with_num_classes(3)).eval()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    image = load_image(str(tmp_path / "img.png"))
    names = ["a", "b", "c"]
    written = attention_pictures(model, str(tmp_path / "img.png"), str(tmp_path / "att"), names, threshold=0.0,
                                 top=3, test_size=64)
    assert [os.path.basename(p) for p in written] == ["img_det0.png", "img_det1.png", "img_det2.png"]

    tensor, target = eval_transforms(64, 1333)(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long(),
                                                       "size": torch.tensor([60, 80])}, random.Random(0))
    H, W = (int(v) for v in target["size"])
    out = capture_attention(model, tensor[None], torch.zeros(1, H, W, dtype=torch.bool))
    scores, labels = out["pred_logits"][0].softmax(-1)[:, :-1].max(-1)
    boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0]) * torch.tensor([80, 60] * 2)
    det = detect_prepared(model, *official_prepare(image, 64, 1333))
    for k, q in enumerate(scores.argsort(descending=True)[:3].tolist()):
        picture = draw_detections(overlay_heatmap(image, out["decoder_attention"][0, q].numpy()),
                                  boxes[q:q + 1].numpy(), scores[q:q + 1].numpy(), labels[q:q + 1].numpy(), names)
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        assert (tmp_path / "att" / f"img_det{k}.png").read_bytes() == buf.getvalue(), k
        torch.testing.assert_close(det["boxes"][k], boxes[q], rtol=1e-5, atol=1e-4)
        assert int(det["labels"][k]) == int(labels[q])


def test_capture_shapes_and_rows_sum_to_one():
    torch.manual_seed(0)
    model = build_detr(model_config_from_dict(TINY).with_num_classes(3)).eval()
    images = torch.randn(1, 3, 64, 96)
    out = capture_attention(model, images, torch.zeros(1, 64, 96, dtype=torch.bool))
    h, w = out["feature_hw"]
    assert (h, w) == (2, 3)
    assert out["decoder_attention"].shape == (1, 4, h, w)
    assert out["encoder_attention"].shape == (1, h * w, h, w)
    torch.testing.assert_close(out["decoder_attention"].sum((-1, -2)), torch.ones(1, 4))
    # the hooks are gone and the outputs equal a plain forward
    torch.testing.assert_close(out["pred_logits"], model(images, torch.zeros(1, 64, 96, dtype=torch.bool))["pred_logits"])


def test_attention_cli_writes_pictures(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = model_config_from_dict(TINY).with_num_classes(2)
    save_detr(build_detr(cfg), cfg, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "classes.json").write_text(json.dumps({"category_ids": [5, 9], "class_names": ["a", "b"]}))
    Image.new("RGB", (80, 60), (30, 120, 200)).save(tmp_path / "img.png")
    assert main(["detr", "attention", "--checkpoint", str(tmp_path / "ckpt"), str(tmp_path / "img.png"),
                 "--out", str(tmp_path / "att"), "--threshold", "0", "--top", "2", "--point", "10,20",
                 "--test-size", "64"]) == 0
    names = sorted(p.name for p in (tmp_path / "att").iterdir())
    assert names == ["img_det0.png", "img_det1.png", "img_enc0.png"]
    assert Image.open(tmp_path / "att" / "img_enc0.png").size == (80, 60)
    assert main(["detr", "attention", "--checkpoint", str(tmp_path / "ckpt"), str(tmp_path / "img.png"),
                 "--out", str(tmp_path / "att"), "--point", "500,20", "--test-size", "64"]) == 2
    assert "outside the image" in capsys.readouterr().err
