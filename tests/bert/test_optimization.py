import numpy as np
import pytest
import torch
from torch import nn

from bertdetr.bert.optimization import (
    FLAT_ALIGN,
    LAMB_CHUNK,
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


# --- the flat update (AdamWeightDecay(flat=True), the trainers' choice) ---------------------------

from bertdetr.bert.model import BertConfig, build_bert_for_pretraining  # noqa: E402
from tests.kernel_count import CountOps  # noqa: E402


@torch.no_grad()
def _per_tensor_reference_step(opt, skip=None):
    """The per-tensor ``_foreach`` update ``AdamWeightDecay.step`` had before the flat buffers,
    transcribed (the oracle of "results equal to today's")."""
    keep = None if skip is None else (~skip).to(torch.float32)
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if keep is not None:
            grads = [torch.where(skip, torch.zeros(()), g) for g in grads]
        state = [opt.state.setdefault(p, {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}) for p in params]
        ms, vs = [s["m"] for s in state], [s["v"] for s in state]
        beta1, beta2 = group["betas"]
        w1 = 1 - beta1 if keep is None else keep * (1 - beta1)
        b2 = beta2 if keep is None else torch.where(skip, torch.ones_like(keep), torch.full_like(keep, beta2))
        torch._foreach_lerp_(ms, grads, w1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, group["eps"])
        updates = torch._foreach_div(ms, denom)
        if group["weight_decay"]:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            if group["lamb"]:
                w = torch.stack(torch._foreach_norm(params))
                u = torch.stack(torch._foreach_norm(updates))
                ratios = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
                torch._foreach_mul_(updates, list(ratios.unbind()))
        if keep is not None:
            torch._foreach_mul_(updates, keep)
        torch._foreach_add_(params, updates, alpha=-group["lr"])


def _tiny_bert(seed=0, layers=2):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return build_bert_for_pretraining(cfg)


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return dict(input_ids=torch.randint(0, 40, (3, 8), generator=g), segment_ids=torch.zeros(3, 8, dtype=torch.long),
                input_mask=torch.ones(3, 8, dtype=torch.long), masked_lm_positions=torch.tensor([[1, 2]] * 3),
                masked_lm_ids=torch.randint(0, 40, (3, 2), generator=g), masked_lm_weights=torch.ones(3, 2),
                next_sentence_labels=torch.randint(0, 2, (3, 1), generator=g))


def _train(lamb, flat, steps=4, nan_at=None, reference=False):
    model = _tiny_bert()
    opt, sched = create_optimizer(model, 1e-2, 10, 2, lamb=lamb, flat=flat)
    norms = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        model(**_batch(step))["loss"].backward()
        if step == nan_at:
            next(model.parameters()).grad[0, 0] = float("nan")
        norms.append(clip_by_global_norm(opt.flat_parameters(), 1.0))
        skip = ~torch.isfinite(norms[-1])
        _per_tensor_reference_step(opt, skip) if reference else opt.step(skip=skip)
        sched.step()
    return model, opt, norms


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_flat_adam_equals_the_per_tensor_update_bit_for_bit():
    ref, _, ref_norms = _train(lamb=False, flat=False, nan_at=2, reference=True)
    flat, opt, norms = _train(lamb=False, flat=True, nan_at=2)
    assert len(opt._buckets[0]) == 1 and len(opt._buckets[0][0].params) > 10  # one buffer per group
    for (name, a), b in zip(ref.state_dict().items(), flat.state_dict().values()):
        # the same per-element arithmetic; only the global norm's summation order differs (clipping):
        # a clip factor one ulp apart moves later gradients a few ulps, and where a gradient is
        # near zero Adam's m / (sqrt(v) + eps) magnifies that (torch 2.11's init: 4.7e-7 on one
        # weight of 0.05). A slip in the update itself (eps, decay, bias correction) moves ~1e-3.
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    torch.testing.assert_close(torch.stack(ref_norms), torch.stack(norms), equal_nan=True)
    # unclipped (norm under the clip), the updates are the same bits
    unclipped = _tiny_bert()
    a, _ = create_optimizer(unclipped, 1e-2, 10, 0, flat=False)
    b_model = _tiny_bert()
    b, _ = create_optimizer(b_model, 1e-2, 10, 0, flat=True)
    for model, opt, step in ((unclipped, a, _per_tensor_reference_step), (b_model, b, AdamWeightDecay.step)):
        for i in range(3):
            opt.zero_grad()
            model(**_batch(i))["loss"].backward()
            step(opt)
    for x, y in zip(unclipped.parameters(), b_model.parameters()):
        assert torch.equal(x, y)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_flat_lamb_equals_the_per_tensor_update():
    ref, _, _ = _train(lamb=True, flat=False, reference=True)
    flat, _, _ = _train(lamb=True, flat=True)
    for a, b in zip(ref.parameters(), flat.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("skip", [None, False, True])
def test_flat_lamb_takes_parameters_of_any_size(skip):
    """LAMB's buffers give each parameter whole rows of ``LAMB_CHUNK`` elements: a parameter of a
    few elements, of exactly a row, of several rows and a part, each with its own trust ratio; the
    padding stays zero and apart from the norms."""
    sizes = [(3, LAMB_CHUNK + 900), (7,), (LAMB_CHUNK,), (40, 50)]

    def run(flat):
        g = torch.Generator().manual_seed(3)
        params = [nn.Parameter(torch.randn(*shape, generator=g)) for shape in sizes]
        bias = nn.Parameter(torch.randn(5, generator=g))
        opt = AdamWeightDecay([{"params": params}, {"params": [bias], "weight_decay": 0.0}], lr=0.1,
                              weight_decay=0.01, lamb=True, flat=flat)
        for step in range(3):
            for p in (*params, bias):
                p.grad = torch.randn(p.shape, generator=g) * (step + 1)
            flag = None if skip is None else torch.tensor(skip and step == 1)
            _per_tensor_reference_step(opt, flag) if not flat else opt.step(skip=flag)
        return params, bias, opt

    ref, ref_bias, _ = run(False)
    params, bias, opt = run(True)
    for a, b in zip((*ref, ref_bias), (*params, bias)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    (bucket,), (plain,) = opt._buckets
    assert all(offset % LAMB_CHUNK == 0 for offset in bucket.offsets) and plain.align == 1  # (a CPU's)
    assert bucket.values.numel() == (6 + 1 + 1 + 2) * LAMB_CHUNK  # 5772 elements take 6 rows
    padding = torch.ones_like(bucket.values, dtype=torch.bool)
    for i in range(len(params)):
        bucket._view(padding, i).fill_(False)
    for buffer in (bucket.values, bucket.values.grad, bucket.m, bucket.v):
        assert buffer[padding].abs().sum() == 0


def test_a_skipped_flat_step_changes_nothing():
    model, opt, _ = _train(lamb=True, flat=True, steps=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [s["m"].clone() for s in opt.state.values()]
    model(**_batch(9))["loss"].backward()
    next(model.parameters()).grad.fill_(float("inf"))
    opt.step(skip=torch.tensor(True))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(a, s["m"]) for a, s in zip(moments, opt.state.values()))


def _kernels_per_step(layers, flat, lamb=True):
    model = _tiny_bert(layers=layers)
    opt, _ = create_optimizer(model, 1e-3, 10, 0, lamb=lamb, flat=flat)
    for _ in range(2):  # the second step: buffers made
        opt.zero_grad()
        model(**_batch(0))["loss"].backward()
        with CountOps() as counter:
            clip_by_global_norm(opt.flat_parameters(), 1.0)
            opt.step(skip=torch.tensor(False))
            opt.zero_grad()
    return counter.count, len(list(model.parameters()))


def test_flat_update_kernels_do_not_grow_with_the_parameter_tensors():
    (small, n_small), (large, n_large) = _kernels_per_step(1, True), _kernels_per_step(6, True)
    assert n_large > 2 * n_small and small == large
    (small_ref, _), (large_ref, _) = _kernels_per_step(1, False), _kernels_per_step(6, False)
    assert large_ref > small_ref > small  # per tensor they grow (the reason for the buffers)


@pytest.mark.parametrize("lamb", [False, True])
def test_flat_state_round_trips_through_a_checkpoint(tmp_path, lamb):
    model, opt, _ = _train(lamb=lamb, flat=True, steps=2)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    for flat_after in (True, False):  # a flat checkpoint loads flat or per tensor, and back
        resumed = _tiny_bert(seed=5)
        resumed.load_state_dict(state["model"])
        opt2, _ = create_optimizer(resumed, 1e-2, 10, 2, lamb=lamb, flat=flat_after)
        opt2.load_state_dict(state["optimizer"])
        for m, o in ((model, opt), (resumed, opt2)):
            o.zero_grad()
            m(**_batch(7))["loss"].backward()
            clip_by_global_norm(o.flat_parameters(), 1.0)
            o.step()
        for a, b in zip(model.parameters(), resumed.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        model, opt, _ = _train(lamb=lamb, flat=True, steps=2)


def test_a_tensor_lr_stays_a_tensor_through_a_checkpoint():
    """A compiled update reads its lr as a tensor (``use_tensor_lr``): loading a checkpoint, whether
    an eager run's (a float) or a compiled one's (a tensor), keeps it a float32 tensor on the
    parameters' device, with the checkpoint's value; without ``use_tensor_lr`` it stays a float."""
    model, eager, schedule = _train(lamb=False, flat=True, steps=2)
    compiled, _ = create_optimizer(model, 1e-2, 10, 2)
    compiled.use_tensor_lr()
    for saved in (eager.state_dict(), compiled.state_dict()):
        resumed, _ = create_optimizer(_tiny_bert(seed=5), 1e-2, 10, 2)
        resumed.use_tensor_lr()
        resumed.load_state_dict(saved)
        lr = resumed.param_groups[0]["lr"]
        assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float32 and lr.dim() == 0
        assert lr.item() == pytest.approx(float(saved["param_groups"][0]["lr"]))
    plain, _ = create_optimizer(_tiny_bert(seed=5), 1e-2, 10, 2)
    plain.load_state_dict(eager.state_dict())
    assert isinstance(plain.param_groups[0]["lr"], float)


def test_flat_buffers_survive_grads_set_to_none_and_skip_params_without_gradients():
    model = _tiny_bert()
    pooler = [p for n, p in model.named_parameters() if "pooler" in n or "seq_relationship" in n]
    opt, _ = create_optimizer(model, 1e-2, 10, 0, flat=True)
    before = [p.clone() for p in pooler]
    for step in range(3):
        model.zero_grad(set_to_none=True)  # not the optimizer's zero_grad: gradients replaced, copied back in
        batch = _batch(step)
        batch.pop("next_sentence_labels")
        out = model(**batch)
        out["masked_lm_loss"].backward()  # the pooler and NSP head get no gradient
        opt.step()
    # as Google's update: a parameter with no gradient is not touched (no weight decay either)
    assert all(torch.equal(a, b) for a, b in zip(before, pooler))
    reference = _tiny_bert()
    ref_opt, _ = create_optimizer(reference, 1e-2, 10, 0, flat=False)
    for step in range(3):
        ref_opt.zero_grad()
        batch = _batch(step)
        batch.pop("next_sentence_labels")
        reference(**batch)["masked_lm_loss"].backward()
        ref_opt.step()
    for a, b in zip(reference.parameters(), model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("lamb", [False, True], ids=["adam", "lamb"])
def test_flat_views_are_aligned_and_the_update_reads_nothing_back(lamb, monkeypatch):
    """Each parameter's view in a flat buffer starts at a multiple of 64 elements (a compiled GPU
    step's kernels assume 16-byte aligned inputs; rooms of the parameters' own odd sizes put views
    8 or 12 bytes off), and clipping and the update call no ``.item()`` inside torch (LAMB's
    segment sums did, twice a bucket: a wait for the GPU each, no CUDA-graph capture)."""
    from torch.profiler import profile

    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(n, generator=g)) for n in (7, 30522, 3, 768, 1)]
    opt = AdamWeightDecay(params, lr=0.1, weight_decay=0.01, lamb=lamb, flat=True)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    with monkeypatch.context() as patched:  # the rooms a GPU's parameters get (a CPU's need none)
        patched.setattr(torch.Tensor, "is_cuda", property(lambda t: True))
        opt.prepare()
    assert all(p.data_ptr() % 16 == 0 for p in params)
    (bucket,), = opt._buckets
    assert all(offset % FLAT_ALIGN == 0 for offset in bucket.offsets) and bucket.align in (FLAT_ALIGN, LAMB_CHUNK)
    with profile() as prof:
        clip_by_global_norm(params, 1.0)
        opt.step(skip=torch.tensor(False))
    reads = [e.name for e in prof.events() if e.name in ("aten::item", "aten::_local_scalar_dense")]
    assert reads == []
