"""The two post-processings side by side: mmdet's ``DetrPostProcess`` (top-k by score, boxes
clamped to the image, rescaled) and official DETR's ``PostProcess`` (every query in order, boxes
scaled to the original size, not clamped)."""

import torch

from bertdetr.detr.postprocess import DetrPostProcess, PostProcess


def _outputs():
    logits = torch.tensor([[[0.0, 2.0, 0.5], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0]]])  # 2 classes + no-object
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.95, 0.1, 0.3, 0.4], [0.2, 0.2, 0.1, 0.1]]])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_official_postprocess_keeps_every_query_in_order_unclamped():
    out = PostProcess()(_outputs(), torch.tensor([[100, 200]]))[0]
    probs = _outputs()["pred_logits"][0].softmax(-1)[:, :-1]
    torch.testing.assert_close(out["scores"], probs.max(-1).values)
    assert out["labels"].tolist() == [1, 0, 0]  # the third query's best real class, though no-object wins
    # query 1: cx 0.95, w 0.3 of width 200 -> x2 = 220, past the image's 200: not clamped
    torch.testing.assert_close(out["boxes"][1], torch.tensor([160.0, -10.0, 220.0, 30.0]))


def test_mmdet_postprocess_sorts_and_clamps():
    out = DetrPostProcess(max_per_img=2)(_outputs(), [(100, 200)])[0]
    scores = PostProcess()(_outputs(), torch.tensor([[100, 200]]))[0]["scores"]
    assert out["queries"].tolist() == scores.argsort(descending=True)[:2].tolist()
    assert out["boxes"][:, 0::2].max() <= 200 and out["boxes"][:, 1::2].min() >= 0
