"""DETR's set losses as mmdet ``DETRHead.loss_by_feat`` computes them (= official ``SetCriterion``).

For each decoder layer, re-matched (``HungarianMatcher``):
- ``loss_cls``: cross-entropy with class weight ``bg_cls_weight`` (0.1) on background (unmatched
  queries), summed and divided by ``num_pos * 1 + num_neg * bg_cls_weight`` (a weighted mean over
  all B*Q queries, at least 1), times ``loss_cls_weight``;
- ``loss_bbox``: L1 between matched predictions and targets in (cx, cy, w, h) normalised by each
  image's (w, h), divided by the number of matched boxes, times ``loss_bbox_weight``;
- ``loss_iou``: 1 - GIoU of matched pixel (x1, y1, x2, y2) boxes, the same normaliser, times
  ``loss_iou_weight``.
The box normaliser is averaged over processes when ``torch.distributed`` is initialised and
clamped to at least 1 (mmdet ``reduce_mean`` + ``clamp(min=1)``); the class normaliser is local
(mmdet ``sync_cls_avg_factor=False``). mmdet's ``weight_reduce_loss`` adds float32 eps to every
normaliser; so does this. Images without targets contribute background terms only.

Names as mmdet: the last layer's ``loss_cls``, ``loss_bbox``, ``loss_iou`` and ``d{i}.loss_*`` for
the earlier layers. Each value already carries its weight; ``total(losses)`` is their sum.

Dimension letters: B batch, Q queries, K classes + 1, n matched pairs in the batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bertdetr.detr.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou_aligned
from bertdetr.detr.matcher import HungarianMatcher, check_targets, image_factors
from bertdetr.errors import BertDetrError

_EPS = torch.finfo(torch.float32).eps  # mmdet weight_reduce_loss: loss.sum() / (avg_factor + eps)


def _num_boxes_all_processes(n: int, device) -> float:
    num = torch.tensor([float(n)], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return max(float(num.item()), 1.0)


class DETRCriterion(nn.Module):
    """``forward(outputs, targets, img_shapes=None) -> dict[str, scalar tensor]``.

    ``outputs``: the model's dict (``pred_logits`` [B,Q,K], ``pred_boxes`` [B,Q,4],
    ``aux_outputs``). ``targets``: B dicts with ``boxes`` [G,4] pixel xyxy in the image (not the
    padded batch) and ``labels`` [G] in 0..C-1. ``img_shapes``: B (h, w) of each image (default:
    each target's ``size``), used to normalise boxes as mmdet's ``img_shape``.
    """

    def __init__(self, matcher: HungarianMatcher, num_classes: int, loss_cls_weight: float = 1.0,
                 bg_cls_weight: float = 0.1, loss_bbox_weight: float = 5.0, loss_iou_weight: float = 2.0):
        super().__init__()
        self.matcher = matcher
        self.num_classes = num_classes
        self.loss_cls_weight = loss_cls_weight
        self.bg_cls_weight = bg_cls_weight
        self.loss_bbox_weight = loss_bbox_weight
        self.loss_iou_weight = loss_iou_weight
        class_weight = torch.ones(num_classes + 1)
        class_weight[num_classes] = bg_cls_weight
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(self, outputs: dict, targets: list[dict], img_shapes=None) -> dict[str, torch.Tensor]:
        logits = outputs["pred_logits"]
        B, _, K = logits.shape
        if K != self.num_classes + 1:
            raise BertDetrError(f"pred_logits has {K} class logits, the criterion expects num_classes + 1 = {self.num_classes + 1}")
        check_targets(targets, self.num_classes, B)
        if img_shapes is None:
            img_shapes = [tuple(int(v) for v in t["size"]) for t in targets]
        layers = [*outputs.get("aux_outputs", []), outputs]
        per_layer = [self.single_layer(o["pred_logits"], o["pred_boxes"], targets, img_shapes) for o in layers]
        losses = dict(zip(("loss_cls", "loss_bbox", "loss_iou"), per_layer[-1]))
        for i, terms in enumerate(per_layer[:-1]):
            losses.update({f"d{i}.{k}": v for k, v in zip(("loss_cls", "loss_bbox", "loss_iou"), terms)})
        return losses

    @staticmethod
    def total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective: the sum of the (already weighted) terms."""
        return sum(losses.values())

    def single_layer(self, logits, boxes, targets, img_shapes):
        """One decoder layer's (loss_cls, loss_bbox, loss_iou)."""
        B, Q, K = logits.shape
        indices = self.matcher(logits.detach(), boxes.detach(), targets, img_shapes)
        batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(logits.device)
        query_idx = torch.cat([q for q, _ in indices]).to(logits.device)
        num_pos = int(query_idx.numel())

        labels = torch.full((B, Q), self.num_classes, dtype=torch.long, device=logits.device)
        if num_pos:
            labels[batch_idx, query_idx] = torch.cat(
                [t["labels"][g.to(t["labels"].device)] for t, (_, g) in zip(targets, indices)]).to(logits.device)
        ce = F.cross_entropy(logits.reshape(B * Q, K), labels.view(-1), weight=self.class_weight.to(logits.device, logits.dtype),
                             reduction="none")
        cls_avg = max(num_pos * 1.0 + (B * Q - num_pos) * self.bg_cls_weight, 1.0)
        loss_cls = ce.sum() / (cls_avg + _EPS) * self.loss_cls_weight

        num_boxes = _num_boxes_all_processes(num_pos, logits.device)
        if not num_pos:  # mmdet L1Loss/GIoULoss with no positive weight: (pred * 0).sum()
            zero = boxes.sum() * 0.0
            return loss_cls, zero, zero
        factor = image_factors(img_shapes, logits.device, boxes.dtype)[batch_idx]  # [n,4]
        gt_xyxy = torch.cat([t["boxes"][g.to(t["boxes"].device)] for t, (_, g) in zip(targets, indices)])
        gt_xyxy = gt_xyxy.to(device=logits.device, dtype=boxes.dtype)
        gt_cxcywh = box_xyxy_to_cxcywh(gt_xyxy / factor)  # the regression target, as mmdet builds it
        pred = boxes[batch_idx, query_idx]
        loss_bbox = (pred - gt_cxcywh).abs().sum() / (num_boxes + _EPS) * self.loss_bbox_weight
        # mmdet turns the target back into pixels through cxcywh, not the raw target box
        giou = generalized_box_iou_aligned(box_cxcywh_to_xyxy(pred) * factor, box_cxcywh_to_xyxy(gt_cxcywh) * factor)
        loss_iou = (1 - giou).sum() / (num_boxes + _EPS) * self.loss_iou_weight
        return loss_cls, loss_bbox, loss_iou


def build_criterion(config) -> DETRCriterion:
    """The criterion of a ``DETRConfig`` (its ``assigner`` and ``bbox_head`` loss weights)."""
    a, h = config.assigner, config.bbox_head
    return DETRCriterion(HungarianMatcher(a.cls_cost, a.bbox_cost, a.iou_cost), h.num_classes,
                         h.loss_cls_weight, h.bg_cls_weight, h.loss_bbox_weight, h.loss_iou_weight)
