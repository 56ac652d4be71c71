import torch
import torchvision

from bertdetr.detr.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    generalized_box_iou_aligned,
)


def _random_xyxy(n, g):
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat([xy, xy + wh], 1)


def test_format_round_trip_and_values():
    b = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    c = box_xyxy_to_cxcywh(b)
    assert c.tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert box_cxcywh_to_xyxy(c).tolist() == b.tolist()
    assert box_area(b).tolist() == [800.0]


def test_iou_and_giou_match_torchvision():
    g = torch.Generator().manual_seed(0)
    a, b = _random_xyxy(7, g), _random_xyxy(5, g)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))
    torch.testing.assert_close(generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(a, b))
    torch.testing.assert_close(generalized_box_iou_aligned(a[:5], b), torchvision.ops.generalized_box_iou(a[:5], b).diagonal())
    # the matcher's broadcast form equals the pairwise reference
    torch.testing.assert_close(generalized_box_iou_aligned(a[:, None, :], b[None, :, :]), generalized_box_iou(a, b))


def test_degenerate_boxes_are_finite_with_finite_gradients():
    pred = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 0.0], [1.0, 1.0, 4.0, 4.0]], requires_grad=True)
    gt = torch.tensor([[5.0, 5.0, 5.0, 5.0], [2.0, 2.0, 2.0, 8.0], [1.0, 1.0, 4.0, 4.0]])
    giou = generalized_box_iou_aligned(pred, gt)
    assert torch.isfinite(giou).all()
    assert giou[2].item() == 1.0
    assert -1.0 <= giou.min().item() and giou.max().item() <= 1.0
    (1 - giou).sum().backward()
    assert torch.isfinite(pred.grad).all()
