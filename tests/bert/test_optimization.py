import numpy as np
import pytest
import torch
from torch import nn

from bertdetr.bert.optimization import (
    AdamWeightDecay,
    clip_by_global_norm,
    create_optimizer,
    google_lr_factor,
    google_lr_schedule,
    weight_decay_groups,
)
from bertdetr.errors import BertDetrError


def test_schedule_is_googles_including_its_quirks():
    # warmup 2 of 10 steps: step 0 has lr 0; after warmup the decay counts from step 0
    f = [google_lr_factor(s, 10, 2) for s in range(12)]
    assert f[:4] == [0.0, 0.5, 1 - 2 / 10, 1 - 3 / 10]
    assert f[10] == 0.0 and f[11] == 0.0
    assert [google_lr_factor(s, 4, 0) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_clip_matches_tf_formula():
    a = nn.Parameter(torch.zeros(2))
    b = nn.Parameter(torch.zeros(1))
    a.grad = torch.tensor([3.0, 0.0])
    b.grad = torch.tensor([4.0])
    norm = clip_by_global_norm([a, b], 1.0)
    assert norm.item() == pytest.approx(5.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(b.grad, torch.tensor([0.8]))
    a.grad = torch.tensor([0.3, 0.0])
    clip_by_global_norm([a], 1.0)  # under the clip: untouched (TF divides by max(norm, clip))
    torch.testing.assert_close(a.grad, torch.tensor([0.3, 0.0]))


def _google_step_numpy(param, grad, m, v, lr, wd):
    """Google's AdamWeightDecayOptimizer.apply_gradients, transcribed."""
    next_m = 0.9 * m + (1 - 0.9) * grad
    next_v = 0.999 * v + (1 - 0.999) * grad * grad
    update = next_m / (np.sqrt(next_v) + 1e-6)
    update = update + wd * param
    return param - lr * update, next_m, next_v


def test_three_steps_equal_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))
    groups = weight_decay_groups(model, 0.01)
    assert [len(g["params"]) for g in groups] == [1, 3]  # Linear weight | Linear bias, LN weight, LN bias
    opt = AdamWeightDecay(groups, lr=0.1)
    sched = google_lr_schedule(opt, num_train_steps=5, num_warmup_steps=2)
    ref = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
    mv = {n: (np.zeros_like(x), np.zeros_like(x)) for n, x in ref.items()}
    x = torch.randn(4, 3)
    for step in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        grads = {n: p.grad.double().numpy().copy() for n, p in model.named_parameters()}
        gnorm = np.sqrt(sum((g**2).sum() for g in grads.values()))
        clip_by_global_norm(model.parameters(), 1.0)
        opt.step()
        sched.step()
        lr = 0.1 * google_lr_factor(step, 5, 2)
        for n in ref:
            g = grads[n] / max(gnorm, 1.0)
            wd = 0.01 if n == "0.weight" else 0.0
            ref[n], m, v = _google_step_numpy(ref[n], g, *mv[n], lr, wd)
            mv[n] = (m, v)
        # refresh the reference with our params (both sides compute the next grads from them)
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().double().numpy(), ref[n], rtol=1e-5, atol=1e-7)
    # step 0 had lr 0: parameters changed only from step 1 on, so m/v still carry step 0's grads
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 3 / 5))


def test_lamb_scales_by_trust_ratio():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad = torch.tensor([1.0, 1.0])
    opt = AdamWeightDecay([p], lr=1.0, weight_decay=0.01, lamb=True)
    opt.step()
    update = torch.tensor([0.1, 0.1]) / (torch.sqrt(torch.tensor([0.001, 0.001])) + 1e-6) + 0.01 * torch.tensor([3.0, 4.0])
    expected = torch.tensor([3.0, 4.0]) - update * (5.0 / update.norm())
    torch.testing.assert_close(p.detach(), expected)


def test_bad_settings_are_clear_errors():
    p = nn.Parameter(torch.zeros(1))
    with pytest.raises(BertDetrError, match="lr=-1"):
        AdamWeightDecay([p], lr=-1)
    with pytest.raises(BertDetrError, match="num_warmup_steps"):
        google_lr_schedule(AdamWeightDecay([p]), 10, 11)


def test_create_optimizer_is_googles():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt, sched = create_optimizer(model, 1e-3, num_train_steps=10, num_warmup_steps=2, weight_decay=0.01)
    assert isinstance(opt, AdamWeightDecay)
    decay, skip = opt.param_groups
    assert decay["weight_decay"] == 0.01 and [p.shape for p in decay["params"]] == [(4, 3)]
    assert skip["weight_decay"] == 0.0 and len(skip["params"]) == 3  # linear bias, LayerNorm gamma and beta
    assert decay["betas"] == (0.9, 0.999) and decay["eps"] == 1e-6
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3 * google_lr_factor(s, 10, 2) for s in range(4)])
