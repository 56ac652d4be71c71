"""Hungarian matching and the set losses: optimality, batching, and the edge cases."""

import itertools

import pytest
import torch

from bertdetr.detr.loss import DETRCriterion
from bertdetr.detr.matcher import HungarianMatcher
from bertdetr.errors import BertDetrError

C, Q = 4, 6


def _outputs(B, g, layers=2, requires_grad=False):
    def one():
        logits = torch.randn(B, Q, C + 1, generator=g).requires_grad_(requires_grad)
        boxes = (torch.rand(B, Q, 4, generator=g) * 0.5 + 0.25).requires_grad_(requires_grad)
        return {"pred_logits": logits, "pred_boxes": boxes}

    out = one()
    out["aux_outputs"] = [one() for _ in range(layers - 1)]
    return out


def _targets(sizes, g, hw=(80, 120)):
    h, w = hw
    out = []
    for n in sizes:
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2]) + 1
        out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, C, (n,), generator=g)})
    return out


def _cost_matrices(matcher, pred_logits, pred_boxes, targets, img_shapes):
    """[B,Q,K], [B,Q,4] -> the per-image cost matrices [Q,G] (``layer_costs`` of one layer, cut to
    each image's targets: what ``match_layers`` assigns on)."""
    cost = matcher.layer_costs(pred_logits[None], pred_boxes[None], targets, img_shapes)[0]
    return [cost[i, :, :len(t["labels"])] for i, t in enumerate(targets)]


def _criterion():
    return DETRCriterion(HungarianMatcher(1.0, 5.0, 2.0), C)


def test_assignment_is_optimal_by_brute_force():
    g = torch.Generator().manual_seed(0)
    out, targets = _outputs(1, g), _targets([3], g)
    matcher = HungarianMatcher()
    cost = _cost_matrices(matcher, out["pred_logits"], out["pred_boxes"], targets, [(80, 120)])[0]
    (rows, cols), = matcher(out["pred_logits"], out["pred_boxes"], targets, [(80, 120)])
    best = min(sum(cost[q, j] for j, q in enumerate(p)) for p in itertools.permutations(range(Q), 3))
    assert cost[rows, cols].sum().item() == pytest.approx(best.item(), rel=1e-6)
    assert sorted(cols.tolist()) == [0, 1, 2]


def test_batched_assignment_equals_per_image():
    g = torch.Generator().manual_seed(1)
    shapes = [(80, 120), (60, 90), (80, 50)]
    out, targets = _outputs(3, g), _targets([2, 0, 5], g)
    matcher = HungarianMatcher()
    batched = matcher(out["pred_logits"], out["pred_boxes"], targets, shapes)
    for i in range(3):
        (r, c), = matcher(out["pred_logits"][i:i + 1], out["pred_boxes"][i:i + 1], targets[i:i + 1], shapes[i:i + 1])
        assert torch.equal(batched[i][0], r) and torch.equal(batched[i][1], c)
        # mmdet's per-image form: AssignResult's gt_inds (0 background, g + 1) and labels (-1 background)
        gt_inds, labels = matcher.assign(out["pred_boxes"][i], out["pred_logits"][i], targets[i]["boxes"],
                                         targets[i]["labels"], shapes[i])
        assert torch.equal(torch.nonzero(gt_inds).squeeze(1), r) and torch.equal(gt_inds[r] - 1, c)
        assert torch.equal(labels[r], targets[i]["labels"][c]) and bool((labels[gt_inds == 0] == -1).all())
    batched_costs = _cost_matrices(matcher, out["pred_logits"], out["pred_boxes"], targets, shapes)
    one = _cost_matrices(matcher, out["pred_logits"][2:], out["pred_boxes"][2:], targets[2:], shapes[2:])[0]
    torch.testing.assert_close(batched_costs[2], one)


def test_no_targets_box_losses_zero_class_loss_positive_and_differentiable():
    g = torch.Generator().manual_seed(2)
    out = _outputs(2, g, requires_grad=True)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = _criterion()(out, [empty, empty], [(80, 120), (80, 120)])
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_iou", "d0.loss_cls", "d0.loss_bbox", "d0.loss_iou"}
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_iou"].item() == 0.0
    assert losses["loss_cls"].item() > 0
    # all queries background: weighted mean CE = plain mean of -log p(background)
    expected = -out["pred_logits"].log_softmax(-1)[..., C].mean()
    torch.testing.assert_close(losses["loss_cls"], expected)
    DETRCriterion.total(losses).backward()
    assert torch.isfinite(out["pred_boxes"].grad).all() and out["pred_logits"].grad.abs().sum() > 0


def test_degenerate_target_boxes_give_finite_losses_and_gradients():
    g = torch.Generator().manual_seed(3)
    out = _outputs(1, g, requires_grad=True)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 10.0, 30.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 120.0, 80.0]]),
                "labels": torch.tensor([0, 1, 2])}]
    losses = _criterion()(out, targets, [(80, 120)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() > 0 and losses["loss_iou"].item() > 0
    DETRCriterion.total(losses).backward()
    assert torch.isfinite(out["pred_boxes"].grad).all() and torch.isfinite(out["pred_logits"].grad).all()


def test_batch_mixing_empty_and_degenerate_equals_hand_computation():
    g = torch.Generator().manual_seed(4)
    out = _outputs(2, g, layers=1)
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
               {"boxes": torch.tensor([[10.0, 10.0, 10.0, 30.0], [20.0, 5.0, 70.0, 50.0]]), "labels": torch.tensor([3, 1])}]
    shapes = [(80, 120), (60, 90)]
    losses = _criterion()(out, targets, shapes)
    (_, _), (rows, cols) = HungarianMatcher()(out["pred_logits"], out["pred_boxes"], targets, shapes)
    # by hand: CE weight 0.1 on background, normaliser 2 * 1 + 10 * 0.1
    labels = torch.full((2, Q), C)
    labels[1, rows] = targets[1]["labels"][cols]
    weight = torch.ones(C + 1)
    weight[C] = 0.1
    ce = torch.nn.functional.cross_entropy(out["pred_logits"].reshape(-1, C + 1), labels.view(-1), weight=weight,
                                           reduction="sum")
    torch.testing.assert_close(losses["loss_cls"], ce / (2 + 0.1 * (2 * Q - 2)))
    f = torch.tensor([90.0, 60.0, 90.0, 60.0])
    gt = targets[1]["boxes"][cols] / f
    gt_c = torch.stack([(gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2, gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]], 1)
    l1 = (out["pred_boxes"][1, rows] - gt_c).abs().sum() / 2
    torch.testing.assert_close(losses["loss_bbox"], 5 * l1)
    assert "d0.loss_cls" not in losses


def test_bad_targets_are_clear_errors():
    g = torch.Generator().manual_seed(5)
    out = _outputs(1, g)
    crit = _criterion()
    with pytest.raises(BertDetrError, match="labels.*0..3"):
        crit(out, [{"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([C])}], [(80, 120)])
    with pytest.raises(BertDetrError, match="x2 < x1"):
        crit(out, [{"boxes": torch.tensor([[6.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([0])}], [(80, 120)])
    with pytest.raises(BertDetrError, match="2 targets for a batch of 1"):
        crit(out, _targets([1, 1], g), [(80, 120)])
    with pytest.raises(BertDetrError, match="boxes must be"):
        crit(out, [{"boxes": torch.zeros(2, 5), "labels": torch.zeros(2, dtype=torch.long)}], [(80, 120)])


def test_img_shapes_default_to_target_size():
    g = torch.Generator().manual_seed(6)
    out, targets = _outputs(1, g), _targets([2], g, hw=(60, 90))
    a = _criterion()(out, targets, [(60, 90)])
    targets[0]["size"] = torch.tensor([60, 90])
    b = _criterion()(out, targets)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_count_of_outputs_must_match_the_criterion():
    g = torch.Generator().manual_seed(7)
    out = _outputs(1, g, layers=1)
    with pytest.raises(BertDetrError, match="5 class logits.*num_classes \\+ 1 = 4"):
        DETRCriterion(HungarianMatcher(), C - 1)(out, _targets([1], g), [(80, 120)])


def _per_layer_reference(crit, outputs, targets, shapes):
    """The criterion as mmdet's loop: ``loss_single`` of each layer, each image matched alone."""
    per_layer = [crit.loss_single(o["pred_logits"], o["pred_boxes"], targets, shapes)
                 for o in [*outputs.get("aux_outputs", []), outputs]]
    losses = dict(zip(("loss_cls", "loss_bbox", "loss_iou"), per_layer[-1]))
    for i, terms in enumerate(per_layer[:-1]):
        losses.update({f"d{i}.{k}": v for k, v in zip(("loss_cls", "loss_bbox", "loss_iou"), terms)})
    return losses


@pytest.mark.parametrize("layers,sizes", [(1, [2, 0, 1]), (3, [0, 1, 4, 9]), (6, [9, 7, 0, 1, 3]), (3, [0, 0])])
def test_all_layers_at_once_equal_a_per_layer_loop(layers, sizes):
    """0, 1 and many targets, more targets (9, 7) than queries (6), several layers, no targets at all."""
    g = torch.Generator().manual_seed(10 + layers)
    B = len(sizes)
    out = _outputs(B, g, layers=layers, requires_grad=True)
    shapes = [(80, 120), (60, 90), (80, 50), (100, 100), (70, 64)][:B]
    targets = [{"boxes": t["boxes"] * torch.tensor([w / 120, h / 80] * 2), "labels": t["labels"]}
               for t, (h, w) in zip(_targets(sizes, g), shapes)]
    crit = _criterion()
    losses = crit(out, targets, shapes)
    expected = _per_layer_reference(crit, out, targets, shapes)
    assert list(losses) == list(expected)
    for name in expected:
        torch.testing.assert_close(losses[name], expected[name], msg=name)
    inputs = [out["pred_logits"], out["pred_boxes"]] + [x for o in out["aux_outputs"] for x in o.values()]
    grads = torch.autograd.grad(DETRCriterion.total(losses), inputs)
    for got, want in zip(grads, torch.autograd.grad(DETRCriterion.total(expected), inputs)):
        torch.testing.assert_close(got, want)
    # the multi-layer matcher gives what matching each layer alone gives
    stacked = [torch.stack([o[k] for o in [*out["aux_outputs"], out]]).detach() for k in ("pred_logits", "pred_boxes")]
    for layer, o in zip(crit.matcher.match_layers(*stacked, targets, shapes), [*out["aux_outputs"], out]):
        alone = crit.matcher(o["pred_logits"].detach(), o["pred_boxes"].detach(), targets, shapes)
        assert all(torch.equal(a, b) for pa, pb in zip(layer, alone) for a, b in zip(pa, pb))


def test_device_to_host_reads_do_not_grow_with_layers_or_images(host_reads):
    """On a GPU each read of a tensor's values on the host waits for the device. Without a GPU, count
    the calls that would be such reads during one criterion call and its backward: their number must
    not grow with the number of decoder layers and images (it was several per layer and image)."""

    def count(layers, sizes):
        g = torch.Generator().manual_seed(20)
        out = _outputs(len(sizes), g, layers=layers, requires_grad=True)
        targets = _targets(sizes, g)
        shapes = [(80, 120)] * len(sizes)
        crit = _criterion()
        with host_reads() as calls:
            DETRCriterion.total(crit(out, targets, shapes)).backward()
        return len(calls)

    small = count(1, [1])
    assert small <= 8
    for layers, sizes in [(2, [1, 3]), (6, [2, 0, 9, 1, 4, 4, 3, 2])]:
        assert count(layers, sizes) <= small, (layers, sizes)


def _two_ranks(monkeypatch, reduced):
    """``torch.distributed`` as the criterion sees it in a run of two processes with the same
    count of boxes each (the all-reduce doubles; ``reduced`` records what it was given)."""
    import torch.distributed as dist

    def all_reduce(tensor, *args, **kwargs):
        reduced.append(tensor)
        tensor.mul_(2)

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)


def test_num_boxes_under_ddp_is_made_on_the_device_not_copied_from_the_host(monkeypatch):
    """Under DDP the number of boxes is all-reduced on the device; a tensor made from a host list
    there (``torch.tensor([n], device=...)``) is a blocking host-to-device copy each step. Made on
    the "meta" device, where torch functions show what a GPU would be asked; the values on the CPU,
    as official DETR's ``num_boxes`` (all-reduced, over the world size, at least 1)."""
    from torch.overrides import TorchFunctionMode

    from bertdetr.detr.loss import _num_boxes_all_processes

    class HostData(TorchFunctionMode):
        """Records the torch functions that make a tensor off the host from host data."""

        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            from_data = func in (torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor)
            moved = func in (torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cuda) and any(
                isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)
            if (from_data or moved) and isinstance(out, torch.Tensor) and out.device.type != "cpu":
                self.calls.append(func.__name__)
            return out

    reduced = []
    _two_ranks(monkeypatch, reduced)
    with HostData() as mode:
        on_meta = _num_boxes_all_processes(3, torch.device("meta"))
    assert mode.calls == [] and on_meta.device.type == "meta" and reduced[0].device.type == "meta"
    for n, expected in [(3, 3.0), (0, 1.0), (1, 1.0)]:
        got = _num_boxes_all_processes(n, torch.device("cpu"))
        assert got.dtype == torch.get_default_dtype() and got.shape == () and got.item() == expected


def test_losses_under_ddp_equal_one_process_s_when_the_ranks_count_alike(monkeypatch):
    g = torch.Generator().manual_seed(30)
    out, targets = _outputs(3, g, layers=2), _targets([2, 0, 3], g)
    alone = _criterion()(out, targets, [(80, 120)] * 3)
    reduced = []
    _two_ranks(monkeypatch, reduced)
    distributed = _criterion()(out, targets, [(80, 120)] * 3)
    assert reduced and list(distributed) == list(alone)
    for name in alone:
        assert torch.equal(distributed[name], alone[name]), name
