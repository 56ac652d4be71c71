"""BERT's optimizer as Google's ``optimization.py``: Adam without bias correction, decoupled weight
decay, global-norm clipping, linear warmup then linear decay; LAMB as an option for large batches.

``create_optimizer`` builds the optimizer and schedule as Google's function of that name does.
Google's ``create_optimizer`` in one step, for reference (``step`` = global_step before the update,
starting at 0)::

    lr = init_lr * (1 - min(step, N) / N)                  # polynomial_decay, power 1, end 0
    if step < W: lr = init_lr * step / W                   # linear warmup, replaces the decay
    grads = clip_by_global_norm(grads, 1.0)                # g * 1 / max(||g||, 1)
    m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2             # no bias correction
    update = m / (sqrt(v) + 1e-6) + 0.01 * param           # decay not for LayerNorm / bias
    param -= lr * update

Quirks kept on purpose (results equal Google's): the very first step has lr 0 when warmup is used
(``step / W`` with step 0); the lr is not continuous at the end of warmup (it jumps from
``init_lr * (W-1)/W`` to ``init_lr * (1 - W/N)``); Adam has no bias correction, so early updates are
smaller than ``torch.optim.AdamW``'s; clipping divides by ``max(norm, clip)`` with no epsilon (torch's
``clip_grad_norm_`` uses ``clip / (norm + 1e-6)``).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from bertdetr.errors import BertDetrError


def google_lr_factor(step: int, num_train_steps: int, num_warmup_steps: int) -> float:
    """Multiplier of ``init_lr`` at ``step`` (0-based global step of the update), as Google's graph."""
    if num_warmup_steps and step < num_warmup_steps:
        return step / num_warmup_steps
    return 1.0 - min(step, num_train_steps) / num_train_steps


def google_lr_schedule(
    optimizer: torch.optim.Optimizer, num_train_steps: int, num_warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` giving Google's lr; call ``scheduler.step()`` after each ``optimizer.step()``.

    ``LambdaLR`` sets the lr for step 0 at construction, so the first update uses Google's
    ``global_step == 0`` value.
    """
    if num_train_steps <= 0:
        raise BertDetrError(f"num_train_steps must be positive, got {num_train_steps}")
    if not 0 <= num_warmup_steps <= num_train_steps:
        raise BertDetrError(
            f"num_warmup_steps must be in [0, num_train_steps={num_train_steps}], got {num_warmup_steps}"
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: google_lr_factor(step, num_train_steps, num_warmup_steps)
    )


@torch.no_grad()
def clip_by_global_norm(parameters: Iterable[torch.Tensor], clip_norm: float = 1.0) -> torch.Tensor:
    """Scales all gradients by ``clip_norm / max(global_norm, clip_norm)`` (``tf.clip_by_global_norm``).

    Returns the global norm before clipping (non-finite if any gradient is).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch._foreach_norm(grads)
    global_norm = torch.linalg.vector_norm(torch.stack([n.to(torch.float32) for n in norms]))
    scale = clip_norm / torch.maximum(global_norm, torch.tensor(clip_norm, device=global_norm.device))
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return global_norm


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: decayed weights, and LayerNorm parameters and biases with no decay.

    Google excludes variables whose name matches "LayerNorm", "layer_norm" or "bias"; our names
    differ from TF's, so we decide by what the parameter is (a LayerNorm's, or a bias) instead.
    """
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, skip = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in no_decay or name.endswith("bias"):
            skip.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": skip, "weight_decay": 0.0},
    ]


class AdamWeightDecay(torch.optim.Optimizer):
    """Google's ``AdamWeightDecayOptimizer``: Adam without bias correction, decoupled weight decay.

    ``update = m / (sqrt(v) + eps) + weight_decay * param``; ``param -= lr * update``.
    With ``lamb=True`` the update of each parameter tensor is scaled by the LAMB trust ratio
    ``||param|| / ||update||`` (You et al. 2019; 1 where either norm is 0), for large batches.
    Parameters of a group with ``weight_decay == 0`` (LayerNorm, bias) get no trust ratio either, as
    in NVIDIA's BERT LAMB.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        lamb: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise BertDetrError(f"invalid optimizer settings lr={lr} eps={eps} wd={weight_decay} betas={betas}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, lamb=lamb))

    @torch.no_grad()
    def step(self, closure=None, skip: torch.Tensor | None = None):
        """One update. ``skip``: a 0-dim bool tensor (on the parameters' device) that, when true,
        leaves parameters and moments as they are, decided on the device (no host read: the
        trainer passes "the loss or the gradients are not finite", as a gradient scaler skips an
        overflowed step). The gradients of a skipped step may hold NaN: each is replaced by zeros
        first (a ``where`` per tensor); a kept step gives the results of ``skip=None`` bit for bit."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        keep = None if skip is None else (~skip).to(torch.float32)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if keep is not None:
                zero = torch.zeros((), dtype=grads[0].dtype, device=grads[0].device)
                grads = [torch.where(skip, zero, g) for g in grads]
            ms, vs = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms.append(state["m"])
                vs.append(state["v"])
            beta1, beta2 = group["betas"]
            # With ``skip`` the factors are tensors that are the same numbers when the step is kept
            # (bit for bit the same results) and leave m and v exactly as they are when skipped:
            # lerp weight 0, decay 1, and a zeroed gradient adding nothing.
            w1 = 1 - beta1 if keep is None else keep * (1 - beta1)
            b2 = beta2 if keep is None else torch.where(skip, torch.ones_like(keep), torch.full_like(keep, beta2))
            torch._foreach_lerp_(ms, grads, w1)  # m = b1 m + (1 - b1) g
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(ms, denom)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
                if group["lamb"]:
                    # the trust ratios of all tensors at once (not a where per tensor)
                    w = torch.stack(torch._foreach_norm(params))
                    u = torch.stack(torch._foreach_norm(updates))
                    ratios = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
                    torch._foreach_mul_(updates, list(ratios.unbind()))
            if keep is not None:
                torch._foreach_mul_(updates, keep)
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss


def create_optimizer(model: nn.Module, init_lr: float, num_train_steps: int, num_warmup_steps: int,
                     weight_decay: float = 0.01, lamb: bool = False
                     ) -> tuple[AdamWeightDecay, torch.optim.lr_scheduler.LambdaLR]:
    """Google's ``create_optimizer``: ``AdamWeightDecay`` (Google's ``AdamWeightDecayOptimizer``,
    beta 0.9/0.999, eps 1e-6) over ``model``'s parameters, weight decay on all but LayerNorm and
    biases (``weight_decay_groups``), and Google's warmup/decay schedule (``google_lr_schedule``).
    Google's function also clips the gradients to global norm 1.0 inside the train op; here the
    training loop calls ``clip_by_global_norm`` before ``optimizer.step()``. ``lamb``: the LAMB
    trust ratio on top (not in Google's release)."""
    optimizer = AdamWeightDecay(weight_decay_groups(model, weight_decay), lr=init_lr, weight_decay=weight_decay,
                                lamb=lamb)
    return optimizer, google_lr_schedule(optimizer, num_train_steps, num_warmup_steps)
