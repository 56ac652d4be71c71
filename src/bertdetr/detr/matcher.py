"""Hungarian assignment of DETR's queries to target boxes (mmdet ``HungarianAssigner``).

Per image, cost[q, g] = cls_cost * (-softmax(logits[q])[label_g])
                      + bbox_cost * L1(cxcywh_q / (w, h), cxcywh_g / (w, h))
                      + iou_cost * (-GIoU(xyxy_q, xyxy_g))              (pixel boxes)
minimised by ``scipy.optimize.linear_sum_assignment``; every query left unmatched is background.

mmdet quirk matched: the prediction goes normalised cxcywh -> pixel xyxy (``DETRHead``) -> cxcywh
-> normalised again (``BBoxL1Cost(box_format='xywh')``); the round trip is kept so near-ties
break as mmdet's do.

Dimension letters: B batch, Q queries, K classes + 1, G target boxes of one image, M the most
target boxes of any image in the batch.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from bertdetr.detr.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou_aligned
from bertdetr.errors import BertDetrError


def image_factors(img_shapes, device, dtype=torch.float32) -> torch.Tensor:
    """[(h, w)] * B -> [B,4] (w, h, w, h): pixels per normalised unit, as mmdet's ``factor``."""
    return torch.tensor([[w, h, w, h] for h, w in img_shapes], device=device, dtype=dtype)


def check_targets(targets: list[dict], num_classes: int, batch_size: int) -> None:
    """Raises BertDetrError unless ``targets`` is B dicts of ``boxes`` [G,4] finite pixel xyxy with
    x2 >= x1, y2 >= y1 (zero area is allowed) and ``labels`` [G] in 0..num_classes-1."""
    if len(targets) != batch_size:
        raise BertDetrError(f"got {len(targets)} targets for a batch of {batch_size} images")
    for i, t in enumerate(targets):
        boxes, labels = t.get("boxes"), t.get("labels")
        if boxes is None or labels is None:
            raise BertDetrError(f"targets[{i}] needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise BertDetrError(f"targets[{i}]: boxes must be [G,4] and labels [G], got "
                                f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise BertDetrError(f"targets[{i}]['labels'] must be in 0..{num_classes - 1}, got "
                                f"{labels.min().item()}..{labels.max().item()}")
        if boxes.numel():
            if not torch.isfinite(boxes).all():
                raise BertDetrError(f"targets[{i}]['boxes'] has non-finite values")
            if (boxes[:, 2:] < boxes[:, :2]).any():
                raise BertDetrError(f"targets[{i}]['boxes'] has boxes with x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")


class HungarianMatcher:
    """``__call__(pred_logits [B,Q,K], pred_boxes [B,Q,4], targets, img_shapes) -> list of B
    (query_idx [n], target_idx [n]) int64 pairs``, n = min(Q, G), query indices ascending.

    ``targets``: B dicts, ``boxes`` [G,4] pixel xyxy and ``labels`` [G]; ``img_shapes``: B
    (h, w) of each image inside the padded batch. The costs of all images are computed in one
    batched pass over targets padded to M; the assignment is solved per image on its [Q,G] block.
    """

    def __init__(self, cls_cost: float = 1.0, bbox_cost: float = 5.0, iou_cost: float = 2.0):
        self.cls_cost = cls_cost
        self.bbox_cost = bbox_cost
        self.iou_cost = iou_cost

    @torch.no_grad()
    def cost_matrices(self, pred_logits, pred_boxes, targets, img_shapes) -> list[torch.Tensor]:
        """The per-image cost matrices [Q,G] (on the CPU)."""
        B, Q, _ = pred_logits.shape
        sizes = [len(t["labels"]) for t in targets]
        M = max(sizes, default=0)
        if M == 0:
            return [pred_logits.new_zeros(Q, 0).cpu() for _ in range(B)]
        device = pred_logits.device
        gt_boxes = pred_boxes.new_zeros(B, M, 4)
        gt_labels = torch.zeros(B, M, dtype=torch.long, device=device)
        for i, t in enumerate(targets):
            gt_boxes[i, : sizes[i]] = t["boxes"].to(pred_boxes.dtype)
            gt_labels[i, : sizes[i]] = t["labels"]
        factor = image_factors(img_shapes, device, pred_boxes.dtype)[:, None, :]  # [B,1,4]
        prob = pred_logits.float().softmax(-1)
        cls = -torch.gather(prob, 2, gt_labels[:, None, :].expand(B, Q, M))  # [B,Q,M]
        pred_xyxy = box_cxcywh_to_xyxy(pred_boxes) * factor
        l1 = torch.cdist(box_xyxy_to_cxcywh(pred_xyxy) / factor, box_xyxy_to_cxcywh(gt_boxes) / factor, p=1)
        giou = generalized_box_iou_aligned(pred_xyxy[:, :, None, :], gt_boxes[:, None, :, :])  # [B,Q,M]
        cost = (self.cls_cost * cls + self.bbox_cost * l1 + self.iou_cost * -giou).cpu()
        return [cost[i, :, : sizes[i]] for i in range(B)]

    def __call__(self, pred_logits, pred_boxes, targets, img_shapes):
        indices = []
        for c in self.cost_matrices(pred_logits, pred_boxes, targets, img_shapes):
            if c.shape[1] == 0:
                empty = torch.zeros(0, dtype=torch.long)
                indices.append((empty, empty))
                continue
            if not torch.isfinite(c).all():
                raise BertDetrError("matching cost has NaN/inf: predictions or target boxes are not finite")
            rows, cols = linear_sum_assignment(c.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
        return indices
