"""Hungarian assignment of DETR's queries to target boxes (mmdet ``HungarianAssigner``).

Per image, cost[q, g] = cls_cost * (-softmax(logits[q])[label_g])
                      + bbox_cost * L1(cxcywh_q / (w, h), cxcywh_g / (w, h))
                      + iou_cost * (-GIoU(xyxy_q, xyxy_g))              (pixel boxes)
minimised by ``scipy.optimize.linear_sum_assignment``; every query left unmatched is background.

mmdet quirk matched: the prediction goes normalised cxcywh -> pixel xyxy (``DETRHead``) -> cxcywh
-> normalised again (``BBoxL1Cost(box_format='xywh')``); the round trip is kept so near-ties
break as mmdet's do.

Host-device traffic: the targets are read on the host (``HostTargets``: one device->host copy per
dtype when they live on an accelerator, none when they come from the DataLoader), the costs of
every decoder layer and image are computed in one batched pass and brought to the host in one
copy. Each blocking copy stalls the CPU until the GPU drains, so their number, not their size,
bounds a training step on a fast GPU.

Dimension letters: L decoder layers, B batch, Q queries, K classes + 1, G target boxes of one
image, M the most target boxes of any image in the batch, T all target boxes of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bertdetr.detr.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou_aligned
from bertdetr.errors import BertDetrError


def image_factors(img_shapes, device=None, dtype=torch.float32) -> torch.Tensor:
    """[(h, w)] * B -> [B,4] (w, h, w, h): pixels per normalised unit, as mmdet's ``factor``.

    Built on the host by default; ``to_device`` moves it together with other host tensors."""
    return torch.tensor([[w, h, w, h] for h, w in img_shapes], device=device, dtype=dtype)


def to_device(tensors: list[torch.Tensor], device) -> list[torch.Tensor]:
    """Host tensors of one dtype -> the same tensors on ``device``, in one copy.

    A copy from pageable host memory makes the CPU wait for the GPU stream, so the tensors go
    flattened into one pinned buffer copied asynchronously (pinned memory stays alive until the
    copy is done: PyTorch's caching host allocator records the stream)."""
    device = torch.device(device)
    if device.type == "cpu":
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    else:
        flat = flat.to(device)
    return [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


@dataclass(frozen=True)
class HostTargets:
    """The batch's targets concatenated on the host.

    ``boxes`` [T,4] pixel xyxy (float), ``labels`` [T] int64, ``sizes`` the B counts G_i
    (T = sum G_i); image i's targets are rows ``offsets[i] : offsets[i] + sizes[i]``."""

    boxes: torch.Tensor
    labels: torch.Tensor
    sizes: tuple[int, ...]

    @property
    def offsets(self) -> list[int]:
        return [0, *np.cumsum(self.sizes[:-1]).tolist()] if self.sizes else []

    def padded(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (boxes [B,M,4] of ``dtype``, labels [B,M]), rows past G_i zero."""
        B, M = len(self.sizes), max(self.sizes, default=0)
        boxes = torch.zeros(B, M, 4, dtype=dtype)
        labels = torch.zeros(B, M, dtype=torch.long)
        for i, (start, n) in enumerate(zip(self.offsets, self.sizes)):
            boxes[i, :n] = self.boxes[start:start + n]
            labels[i, :n] = self.labels[start:start + n]
        return boxes, labels

    @classmethod
    def of(cls, targets: list[dict]) -> "HostTargets":
        """B dicts with ``boxes`` [G,4] and ``labels`` [G], wherever they live -> host copies;
        tensors on an accelerator are concatenated there and copied once per dtype."""
        sizes = tuple(len(t["labels"]) for t in targets)
        if not targets:
            return cls(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), sizes)
        boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets])
        labels = torch.cat([t["labels"].reshape(-1) for t in targets])
        boxes = boxes if boxes.device.type == "cpu" else boxes.cpu()
        labels = labels if labels.device.type == "cpu" else labels.cpu()
        return cls(boxes, labels.long(), sizes)


def check_targets(targets: list[dict], num_classes: int, batch_size: int) -> HostTargets:
    """Raises BertDetrError unless ``targets`` is B dicts of ``boxes`` [G,4] finite pixel xyxy with
    x2 >= x1, y2 >= y1 (zero area is allowed) and ``labels`` [G] in 0..num_classes-1.

    Returns the targets' host copies: the values are checked there, so that validating a batch
    costs at most one device->host copy per dtype instead of several per image."""
    if len(targets) != batch_size:
        raise BertDetrError(f"got {len(targets)} targets for a batch of {batch_size} images")
    for i, t in enumerate(targets):
        boxes, labels = t.get("boxes"), t.get("labels")
        if boxes is None or labels is None:
            raise BertDetrError(f"targets[{i}] needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise BertDetrError(f"targets[{i}]: boxes must be [G,4] and labels [G], got "
                                f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
    host = HostTargets.of(targets)
    labels_ok = bool(((host.labels >= 0) & (host.labels < num_classes)).all())
    finite = bool(torch.isfinite(host.boxes).all())
    if labels_ok and finite and not bool((host.boxes[:, 2:] < host.boxes[:, :2]).any()):
        return host
    # something is wrong: find the first offending image, checking each as a whole in turn
    for i, (start, n) in enumerate(zip(host.offsets, host.sizes)):
        boxes, labels = host.boxes[start:start + n], host.labels[start:start + n]
        if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise BertDetrError(f"targets[{i}]['labels'] must be in 0..{num_classes - 1}, got "
                                f"{labels.min().item()}..{labels.max().item()}")
        if n and not torch.isfinite(boxes).all():
            raise BertDetrError(f"targets[{i}]['boxes'] has non-finite values")
        if n and (boxes[:, 2:] < boxes[:, :2]).any():
            raise BertDetrError(f"targets[{i}]['boxes'] has boxes with x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
    raise AssertionError("unreachable: a failed batch check names an image")  # pragma: no cover


class HungarianMatcher:
    """mmdet ``HungarianAssigner`` with match costs ``ClassificationCost`` (``cls_cost``),
    ``BBoxL1Cost`` (``bbox_cost``, box_format='xywh') and ``IoUCost`` (``iou_cost``, iou_mode='giou');
    official DETR ``HungarianMatcher``. ``assign`` is mmdet's per-image call.

    ``__call__(pred_logits [B,Q,K], pred_boxes [B,Q,4], targets, img_shapes) -> list of B
    (query_idx [n], target_idx [n]) int64 pairs``, n = min(Q, G), query indices ascending.

    ``match_layers`` does the same for L decoder layers at once ([L,B,Q,K], [L,B,Q,4] -> L such
    lists), with one device->host copy for all of them.

    ``targets``: B dicts, ``boxes`` [G,4] pixel xyxy and ``labels`` [G] (or their ``HostTargets``);
    ``img_shapes``: B (h, w) of each image inside the padded batch. The costs of all layers and
    images are computed in one batched pass over targets padded to M; the assignment is solved per
    (layer, image) on its [Q,G] block.
    """

    def __init__(self, cls_cost: float = 1.0, bbox_cost: float = 5.0, iou_cost: float = 2.0):
        self.cls_cost = cls_cost
        self.bbox_cost = bbox_cost
        self.iou_cost = iou_cost

    @torch.no_grad()
    def layer_costs(self, pred_logits, pred_boxes, targets, img_shapes) -> torch.Tensor:
        """[L,B,Q,K], [L,B,Q,4] -> the costs [L,B,Q,M] on the host (columns past G_i: padding)."""
        L, B, Q, _ = pred_logits.shape
        host = targets if isinstance(targets, HostTargets) else HostTargets.of(targets)
        M = max(host.sizes, default=0)
        if M == 0:
            return torch.zeros(L, B, Q, 0)
        gt_boxes, gt_labels = host.padded(pred_boxes.dtype)
        factor = image_factors(img_shapes, dtype=pred_boxes.dtype)
        gt_boxes, factor = to_device([gt_boxes, factor], pred_boxes.device)
        (gt_labels,) = to_device([gt_labels], pred_boxes.device)
        factor = factor[:, None, :]  # [B,1,4]
        prob = pred_logits.float().softmax(-1)
        cls = -torch.gather(prob, 3, gt_labels[None, :, None, :].expand(L, B, Q, M))  # [L,B,Q,M]
        pred_xyxy = box_cxcywh_to_xyxy(pred_boxes) * factor  # [L,B,Q,4]
        l1 = torch.cdist(box_xyxy_to_cxcywh(pred_xyxy) / factor,
                         (box_xyxy_to_cxcywh(gt_boxes) / factor).expand(L, B, M, 4), p=1)
        giou = generalized_box_iou_aligned(pred_xyxy[:, :, :, None, :], gt_boxes[None, :, None, :, :])
        return (self.cls_cost * cls + self.bbox_cost * l1 + self.iou_cost * -giou).cpu()

    def match_layers(self, pred_logits, pred_boxes, targets, img_shapes) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """[L,B,Q,K], [L,B,Q,4] -> L lists of B (query_idx [n], target_idx [n]) host int64 pairs."""
        host = targets if isinstance(targets, HostTargets) else HostTargets.of(targets)
        cost = self.layer_costs(pred_logits, pred_boxes, host, img_shapes).numpy()
        empty = torch.zeros(0, dtype=torch.long)
        out = []
        for layer in cost:
            indices = []
            for c, n in zip(layer, host.sizes):
                if n == 0:
                    indices.append((empty, empty))
                    continue
                c = c[:, :n]
                if not np.isfinite(c).all():
                    raise BertDetrError("matching cost has NaN/inf: predictions or target boxes are not finite")
                rows, cols = linear_sum_assignment(c)
                indices.append((torch.from_numpy(rows).long(), torch.from_numpy(cols).long()))
            out.append(indices)
        return out

    def __call__(self, pred_logits, pred_boxes, targets, img_shapes):
        return self.match_layers(pred_logits[None], pred_boxes[None], targets, img_shapes)[0]

    def assign(self, bbox_pred, cls_pred, gt_bboxes, gt_labels, img_shape) -> tuple[torch.Tensor, torch.Tensor]:
        """mmdet ``HungarianAssigner.assign`` for one image: ``bbox_pred`` [Q,4] normalised cxcywh,
        ``cls_pred`` [Q,K], ``gt_bboxes`` [G,4] pixel xyxy, ``gt_labels`` [G], ``img_shape`` (h, w) ->
        (``assigned_gt_inds`` [Q] int64: 0 background, g + 1 matched to target g;
        ``assigned_labels`` [Q] int64: the target's label, -1 background), on the host, as
        mmdet's ``AssignResult``. Training assigns all layers and images at once (``match_layers``)."""
        (q, g), = self(cls_pred[None], bbox_pred[None], [{"boxes": gt_bboxes, "labels": gt_labels}], [img_shape])
        assigned_gt_inds = torch.zeros(cls_pred.shape[0], dtype=torch.long)
        assigned_gt_inds[q] = g + 1
        assigned_labels = torch.full((cls_pred.shape[0],), -1, dtype=torch.long)
        assigned_labels[q] = gt_labels.cpu().long()[g]
        return assigned_gt_inds, assigned_labels
