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

Dimension letters: L decoder layers, B batch, Q queries, K classes + 1, n matched pairs of one
layer (the same for every layer: sum over images of min(Q, G_i)).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bertdetr.detr.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou_aligned
from bertdetr.detr.matcher import HostTargets, HungarianMatcher, check_targets, image_factors, to_device
from bertdetr.errors import BertDetrError

_EPS = torch.finfo(torch.float32).eps  # mmdet weight_reduce_loss: loss.sum() / (avg_factor + eps)
_TERMS = ("loss_cls", "loss_bbox", "loss_iou")


def _num_boxes_all_processes(n: int, device) -> float | torch.Tensor:
    """mmdet ``reduce_mean(num_pos).clamp(min=1)``. Alone: a host number. Distributed: a device
    scalar, left on the device so the all-reduce does not make the CPU wait for the GPU; made there
    by a fill (``torch.full``: the count goes to the kernel as an argument), where
    ``torch.tensor([n], device=...)`` would copy it from a host buffer each step, a blocking copy
    (the same value and dtype)."""
    if not (dist.is_available() and dist.is_initialized()):
        return max(float(n), 1.0)
    num = torch.full((1,), float(n), device=device)
    dist.all_reduce(num)
    return (num / dist.get_world_size()).clamp(min=1.0)[0]


class DETRCriterion(nn.Module):
    """``forward(outputs, targets, img_shapes=None) -> dict[str, scalar tensor]``.

    ``outputs``: the model's dict (``pred_logits`` [B,Q,K], ``pred_boxes`` [B,Q,4],
    ``aux_outputs``). ``targets``: B dicts with ``boxes`` [G,4] pixel xyxy in the image (not the
    padded batch) and ``labels`` [G] in 0..C-1, best left on the host (the criterion copies what
    the device needs in one go). ``img_shapes``: B (h, w) of each image (default: each target's
    ``size``), used to normalise boxes as mmdet's ``img_shape``.

    ``forward`` is mmdet 2.x ``DETRHead.loss`` / 3.x ``loss_by_feat``: ``loss_single`` of every
    decoder layer (the auxiliary losses ``d{i}.*``). It takes the accelerated path ``layer_losses``:
    all L decoder layers matched and scored together, one device->host copy of the costs and one
    host->device copy per dtype of the matches, whatever L and B; equal to a loop of
    ``loss_single`` (tests/detr/test_loss.py).
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
        host = check_targets(targets, self.num_classes, B)
        if img_shapes is None:
            img_shapes = [tuple(int(v) for v in t["size"]) for t in targets]
        layers = [*outputs.get("aux_outputs", []), outputs]
        per_layer = self.layer_losses(torch.stack([o["pred_logits"] for o in layers]),
                                      torch.stack([o["pred_boxes"] for o in layers]), host, img_shapes)
        per_layer = list(zip(*per_layer))  # L (loss_cls, loss_bbox, loss_iou)
        # the last layer first, then d0.*, d1.*, ...: ``total`` sums in this order
        losses = dict(zip(_TERMS, per_layer[-1]))
        for i, terms in enumerate(per_layer[:-1]):
            losses.update({f"d{i}.{name}": v for name, v in zip(_TERMS, terms)})
        return losses

    @staticmethod
    def total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective: the sum of the (already weighted) terms."""
        return sum(losses.values())

    def _get_target_single(self, cls_score, bbox_pred, gt_bboxes, gt_labels, img_shape):
        """mmdet ``DETRHead._get_target_single``: one image's ``cls_score`` [Q,K], ``bbox_pred`` [Q,4]
        and targets ``gt_bboxes`` [G,4] pixel xyxy, ``gt_labels`` [G], ``img_shape`` (h, w) ->
        (labels [Q] (num_classes at background), label_weights [Q] (ones: the background's 0.1 is
        ``loss_cls``'s class weight), bbox_targets [Q,4] normalised cxcywh (zeros at background),
        bbox_weights [Q,4] (ones at matched queries), pos_inds, neg_inds), on ``cls_score``'s device."""
        Q, device = cls_score.shape[0], cls_score.device
        assigned_gt_inds, _ = self.matcher.assign(bbox_pred.detach(), cls_score.detach(), gt_bboxes, gt_labels,
                                                  img_shape)
        pos_inds = torch.nonzero(assigned_gt_inds > 0).squeeze(1)
        neg_inds = torch.nonzero(assigned_gt_inds == 0).squeeze(1)
        pos_gt = assigned_gt_inds[pos_inds] - 1
        labels = torch.full((Q,), self.num_classes, dtype=torch.long)
        labels[pos_inds] = gt_labels.cpu().long()[pos_gt]
        factor = image_factors([img_shape], dtype=bbox_pred.dtype)  # [1,4]
        bbox_targets = torch.zeros(Q, 4, dtype=bbox_pred.dtype)
        bbox_targets[pos_inds] = box_xyxy_to_cxcywh(gt_bboxes.cpu().to(bbox_pred.dtype)[pos_gt] / factor)
        bbox_weights = torch.zeros(Q, 4, dtype=bbox_pred.dtype)
        bbox_weights[pos_inds] = 1.0
        return (labels.to(device), torch.ones(Q, dtype=cls_score.dtype, device=device), bbox_targets.to(device),
                bbox_weights.to(device), pos_inds, neg_inds)

    def get_targets(self, cls_scores_list, bbox_preds_list, gt_bboxes_list, gt_labels_list, img_shapes):
        """mmdet ``DETRHead.get_targets``: ``_get_target_single`` of each image -> (labels_list,
        label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos, num_total_neg)."""
        per_image = zip(*[self._get_target_single(*args) for args in zip(
            cls_scores_list, bbox_preds_list, gt_bboxes_list, gt_labels_list, img_shapes)])
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = map(list, per_image)
        return (labels, label_weights, bbox_targets, bbox_weights,
                sum(len(p) for p in pos_inds), sum(len(n) for n in neg_inds))

    def loss_single(self, cls_scores, bbox_preds, targets: list[dict], img_shapes):
        """mmdet 2.x ``DETRHead.loss_single`` (3.x ``loss_by_feat_single``): one decoder layer's
        ``cls_scores`` [B,Q,K] and ``bbox_preds`` [B,Q,4] -> (loss_cls, loss_bbox, loss_iou) scalars.

        The readable per-image form, matching one image at a time; ``forward`` computes the same
        for all layers at once through ``layer_losses``."""
        B, Q, K = cls_scores.shape
        device, dtype = cls_scores.device, bbox_preds.dtype
        labels, label_weights, bbox_targets, bbox_weights, num_total_pos, num_total_neg = self.get_targets(
            list(cls_scores), list(bbox_preds), [t["boxes"] for t in targets], [t["labels"] for t in targets],
            img_shapes)
        labels, label_weights = torch.cat(labels), torch.cat(label_weights)
        bbox_targets, bbox_weights = torch.cat(bbox_targets), torch.cat(bbox_weights)
        # CrossEntropyLoss(class_weight: bg_cls_weight on background), avg_factor num_pos + num_neg * bg_cls_weight
        ce = F.cross_entropy(cls_scores.reshape(B * Q, K), labels, weight=self.class_weight.to(device, cls_scores.dtype),
                             reduction="none")
        cls_avg_factor = max(num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight, 1.0)
        loss_cls = (ce * label_weights).sum() / (cls_avg_factor + _EPS) * self.loss_cls_weight
        num_boxes = _num_boxes_all_processes(num_total_pos, device)
        factors = torch.cat([image_factors([shape], device, dtype).expand(Q, 4) for shape in img_shapes])
        bbox_preds = bbox_preds.reshape(B * Q, 4)
        # GIoULoss on pixel xyxy (the target back from cxcywh, as mmdet); L1Loss on normalised cxcywh
        giou = generalized_box_iou_aligned(box_cxcywh_to_xyxy(bbox_preds) * factors,
                                           box_cxcywh_to_xyxy(bbox_targets) * factors)
        loss_iou = ((1 - giou) * bbox_weights[:, 0]).sum() / (num_boxes + _EPS) * self.loss_iou_weight
        l1 = (bbox_preds - bbox_targets).abs() * bbox_weights
        loss_bbox = l1.sum() / (num_boxes + _EPS) * self.loss_bbox_weight
        return loss_cls, loss_bbox, loss_iou

    def layer_losses(self, logits, boxes, targets: HostTargets, img_shapes):
        """[L,B,Q,K] logits, [L,B,Q,4] boxes -> (loss_cls [L], loss_bbox [L], loss_iou [L]): ``loss_single``
        of every layer, accelerated.

        Every layer matches n = sum_i min(Q, G_i) pairs, so the matched pairs of all layers form one
        [L*n] list (layer-major) whose per-layer sums are a ``view(L, n).sum(1)``; the normalisers
        num_pos = n and num_boxes are the same for every layer."""
        L, B, Q, K = logits.shape
        device = logits.device
        indices = self.matcher.match_layers(logits.detach(), boxes.detach(), targets, img_shapes)
        num_pos = sum(min(Q, g) for g in targets.sizes)

        # the matches, on the host: flat query index into [L*B*Q] and row of the target in ``targets``
        offsets = targets.offsets
        pred_idx = torch.cat([(l * B + i) * Q + q for l, per_image in enumerate(indices)
                              for i, (q, _) in enumerate(per_image)] or [torch.zeros(0, dtype=torch.long)])
        gt_idx = torch.cat([offsets[i] + g for per_image in indices
                            for i, (_, g) in enumerate(per_image)] or [torch.zeros(0, dtype=torch.long)])
        labels = torch.full((L * B * Q,), self.num_classes, dtype=torch.long)
        labels[pred_idx] = targets.labels[gt_idx]
        # regression targets as mmdet builds them: pixels / factor -> cxcywh, and back to pixels
        # through cxcywh for the GIoU (not the raw target box); exact IEEE ops, so host = device
        image_idx = torch.div(pred_idx, Q, rounding_mode="floor") % B
        factor = image_factors(img_shapes, dtype=boxes.dtype)[image_idx]  # [L*n,4]
        gt_cxcywh = box_xyxy_to_cxcywh(targets.boxes[gt_idx].to(boxes.dtype) / factor)
        gt_pixels = box_cxcywh_to_xyxy(gt_cxcywh) * factor
        labels, pred_idx = to_device([labels, pred_idx], device)
        gt_cxcywh, gt_pixels, factor = to_device([gt_cxcywh, gt_pixels, factor], device)

        ce = F.cross_entropy(logits.reshape(L * B * Q, K), labels, weight=self.class_weight.to(device, logits.dtype),
                             reduction="none")
        cls_avg = max(num_pos * 1.0 + (B * Q - num_pos) * self.bg_cls_weight, 1.0)
        loss_cls = ce.view(L, B * Q).sum(1) / (cls_avg + _EPS) * self.loss_cls_weight

        num_boxes = _num_boxes_all_processes(num_pos, device)  # every process, even one without targets
        if not num_pos:  # mmdet L1Loss/GIoULoss with no positive weight: (pred * 0).sum()
            zero = boxes.sum((1, 2, 3)) * 0.0
            return loss_cls, zero, zero
        pred = boxes.reshape(L * B * Q, 4)[pred_idx]  # [L*n,4]
        loss_bbox = (pred - gt_cxcywh).abs().view(L, num_pos * 4).sum(1) / (num_boxes + _EPS) * self.loss_bbox_weight
        giou = generalized_box_iou_aligned(box_cxcywh_to_xyxy(pred) * factor, gt_pixels)
        loss_iou = (1 - giou).view(L, num_pos).sum(1) / (num_boxes + _EPS) * self.loss_iou_weight
        return loss_cls, loss_bbox, loss_iou


def build_criterion(config) -> DETRCriterion:
    """The criterion of a ``DETRConfig`` (its ``assigner`` and ``bbox_head`` loss weights)."""
    a, h = config.assigner, config.bbox_head
    return DETRCriterion(HungarianMatcher(a.cls_cost, a.bbox_cost, a.iou_cost), h.num_classes,
                         h.loss_cls_weight, h.bg_cls_weight, h.loss_bbox_weight, h.loss_iou_weight)
