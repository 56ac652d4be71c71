"""Box geometry as small pure functions, named by box format.

Formats: ``xyxy`` = (x1, y1, x2, y2) corners; ``cxcywh`` = (center x, center y, width, height).
DETR predicts ``cxcywh`` normalised by each image's own (w, h) (not the padded batch size).

Dimension letters: N, M box counts; ``...`` any leading dimensions.

IoU/GIoU follow mmdet's ``bbox_overlaps``: union and enclosing area are clamped below by ``eps``
(default 1e-6) instead of asserting valid boxes as official DETR does, so zero-area (degenerate)
boxes give finite values and finite gradients.
"""

from __future__ import annotations

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2). mmdet ``bbox_cxcywh_to_xyxy``, official DETR's name."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h). mmdet ``bbox_xyxy_to_cxcywh``, official DETR's name."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> [...] area (negative for inverted boxes, as mmdet: no clamp)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise GIoU: [N, 4] xyxy, [M, 4] xyxy -> [N, M] (mmdet ``bbox_overlaps(mode='giou')``;
    official DETR's name, without its assert on valid boxes).

    The readable reference under the references' name: the matcher computes every layer's and
    image's pairs at once by broadcasting ``generalized_box_iou_aligned`` (a test checks the two
    are equal, and both against torchvision's)."""
    return _giou(boxes1[:, None, :], boxes2[None, :, :], eps)


def generalized_box_iou_aligned(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Element-wise GIoU of matching rows: [..., 4] xyxy, [..., 4] xyxy -> [...] (``is_aligned=True``)."""
    return _giou(boxes1, boxes2, eps)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise IoU: [N, 4] xyxy, [M, 4] xyxy -> [N, M], union clamped below by ``eps``."""
    overlap, union = _overlap_union(boxes1[:, None, :], boxes2[None, :, :])
    return overlap / union.clamp(min=eps)


def _overlap_union(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast [..., 4] xyxy pairs -> (intersection area, union area), both [...]."""
    wh = (torch.minimum(b1[..., 2:], b2[..., 2:]) - torch.maximum(b1[..., :2], b2[..., :2])).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    return overlap, box_area(b1) + box_area(b2) - overlap


def _giou(b1: torch.Tensor, b2: torch.Tensor, eps: float) -> torch.Tensor:
    overlap, union = _overlap_union(b1, b2)
    union = union.clamp(min=eps)
    enclose_wh = (torch.maximum(b1[..., 2:], b2[..., 2:]) - torch.minimum(b1[..., :2], b2[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return overlap / union - (enclose - union) / enclose
