"""DETR's outputs to detections, as mmdet ``DETRHead.predict_by_feat`` (softmax classifier), and
as official DETR's ``PostProcess`` (below: what transformers' ``post_process_object_detection``
and its object-detection pipeline do).

Per image: softmax over K = C + 1 classes, drop background, each query's best class and score;
keep the top ``max_per_img`` queries by that score; (cx, cy, w, h) normalised -> pixel
(x1, y1, x2, y2) in the image's own (h, w), clamped to it; divided by the image's scale factor
(w_scale, h_scale) to go back to the original image (mmdet ``rescale=True``) when given.

Dimension letters: B batch, Q queries, K classes + 1, N = min(max_per_img, Q) detections.
"""

from __future__ import annotations

import torch

from bertdetr.detr.boxes import box_cxcywh_to_xyxy


class DetrPostProcess:
    """``__call__(outputs, img_shapes, scale_factors=None) -> list of B dicts`` with ``scores`` [N],
    ``labels`` [N] int64 in 0..C-1, ``boxes`` [N,4] pixel xyxy, best score first, and ``queries``
    [N] int64, the object query each detection came from (for its attention map). ``outputs`` is
    the model's dict (only the last layer's ``pred_logits`` [B,Q,K], ``pred_boxes`` [B,Q,4] are
    used); ``img_shapes`` B (h, w); ``scale_factors`` B (w_scale, h_scale) or None (no rescale).

    ``__call__`` is mmdet 3.x ``predict_by_feat`` (2.x ``get_bboxes``; official DETR ``PostProcess``,
    which takes no top-k), ``_predict_by_feat_single`` its per-image step."""

    def __init__(self, max_per_img: int = 100):
        self.max_per_img = max_per_img

    @torch.no_grad()
    def __call__(self, outputs: dict, img_shapes, scale_factors=None) -> list[dict]:
        # float32 whatever the model ran in (bf16 autocast: the scores' softmax and the boxes' scaling)
        logits, boxes = outputs["pred_logits"].float(), outputs["pred_boxes"].float()
        return [self._predict_by_feat_single(logits[i], boxes[i], img_shape,
                                             None if scale_factors is None else scale_factors[i])
                for i, img_shape in enumerate(img_shapes)]

    def _predict_by_feat_single(self, cls_score, bbox_pred, img_shape, scale_factor=None) -> dict:
        """mmdet 3.x ``DETRHead._predict_by_feat_single`` (2.x ``_get_bboxes_single``): one image's
        ``cls_score`` [Q,K], ``bbox_pred`` [Q,4], ``img_shape`` (h, w), ``scale_factor``
        (w_scale, h_scale) or None -> its dict of detections (see the class)."""
        scores, labels = cls_score.softmax(-1)[..., :-1].max(-1)  # [Q]
        h, w = img_shape
        s, idx = scores.topk(min(self.max_per_img, scores.shape[0]))
        xyxy = box_cxcywh_to_xyxy(bbox_pred[idx])
        xyxy[:, 0::2] = (xyxy[:, 0::2] * w).clamp(min=0, max=w)
        xyxy[:, 1::2] = (xyxy[:, 1::2] * h).clamp(min=0, max=h)
        if scale_factor is not None:
            sw, sh = scale_factor
            xyxy = xyxy / xyxy.new_tensor([sw, sh, sw, sh])
        return {"scores": s, "labels": labels[idx], "boxes": xyxy, "queries": idx}


class PostProcess:
    """Official DETR's ``PostProcess`` (``models/detr.py``), which transformers'
    ``post_process_object_detection`` repeats: ``__call__(outputs, target_sizes) -> list of B dicts``
    with, for every query in query order (no top-k, no sorting), ``scores`` [Q] and ``labels`` [Q]
    (softmax, background dropped, the best class) and ``boxes`` [Q,4] pixel xyxy of the original
    image (``target_sizes`` [B,2] (h, w)), not clamped to it (mmdet's are)."""

    @torch.no_grad()
    def __call__(self, outputs: dict, target_sizes: torch.Tensor) -> list[dict]:
        logits, boxes = outputs["pred_logits"].float(), outputs["pred_boxes"].float()  # (as DetrPostProcess)
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        h, w = target_sizes.unbind(1)
        scale = torch.stack([w, h, w, h], dim=1).to(boxes)
        xyxy = box_cxcywh_to_xyxy(boxes) * scale[:, None, :]
        return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, xyxy)]
