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

import functools
import itertools
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn

from bertdetr.errors import BertDetrError
from bertdetr.training.compiling import CUDA_GRAPH_MODES

LAMB_CHUNK = 1024
"""Elements per row of a LAMB flat buffer: each parameter starts a row, its last one padded with
zeros (BERT-base: 1536 elements more, 0.001%), so that its norm is a sum of row sums and its
trust ratio one scale per row, with no per-element segment ids (``Segments``)."""

FLAT_ALIGN = 64
"""Elements each parameter's room in an Adam flat buffer on a GPU is a multiple of (256 bytes of
float32): a parameter's view then starts as aligned as the buffer. A compiled step's GPU kernels
assume 16-byte aligned inputs (Inductor checks that only of inputs that were unaligned when
compiled, and parameters are made views of the buffers after the first compiled forward); a room
of the parameter's own size would put e.g. the LayerNorm after a [30522] bias 8 bytes off. On a
CPU the rooms stay the parameters' own size: its kernels need no alignment, and with padded rooms
a stopped and resumed CPU run's losses left the uninterrupted run's in the 6th digit after the
resume (``test_sigterm_saves_the_step_and_resume_goes_on_as_if_never_stopped``; not explained)."""


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
    # (clamp, not maximum with torch.tensor(clip_norm, device=...): a host-to-device copy, which
    # waits for the GPU; NaN passes through both)
    scale = clip_norm / global_norm.clamp(min=clip_norm)
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return global_norm


def weight_decay_groups(model: nn.Module, weight_decay: float,
                        head_lrs: dict[str, float] | None = None) -> list[dict]:
    """Two parameter groups: decayed weights, and LayerNorm parameters and biases with no decay.

    Google excludes variables whose name matches "LayerNorm", "layer_norm" or "bias"; our names
    differ from TF's, so we decide by what the parameter is (a LayerNorm's, or a bias) instead.

    ``head_lrs`` (parameter name prefix -> lr): the parameters under each prefix in two groups of
    their own with that ``lr`` (as CLUENER's BERT+CRF baseline gives its CRF and classifier
    ``--crf_learning_rate``), after the two above; a prefix that names no parameter is an error.
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
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": skip, "weight_decay": 0.0},
    ]
    names = {id(p): name for name, p in model.named_parameters()}
    for prefix, lr in (head_lrs or {}).items():
        mine = [[p for p in group["params"] if names[id(p)].startswith(prefix)] for group in groups[:2]]
        if not any(mine):
            raise BertDetrError(f"no parameter of the model is named {prefix}*")
        for group, own in zip(groups[:2], mine):
            group["params"] = [p for p in group["params"] if not names[id(p)].startswith(prefix)]
        groups += [{"params": own, "weight_decay": wd, "lr": lr}
                   for own, wd in zip(mine, (weight_decay, 0.0)) if own]
    return groups


class AdamWeightDecay(torch.optim.Optimizer):
    """Google's ``AdamWeightDecayOptimizer``: Adam without bias correction, decoupled weight decay.

    ``update = m / (sqrt(v) + eps) + weight_decay * param``; ``param -= lr * update``.
    With ``lamb=True`` the update of each parameter tensor is scaled by the LAMB trust ratio
    ``||param|| / ||update||`` (You et al. 2019; 1 where either norm is 0), for large batches.
    Parameters of a group with ``weight_decay == 0`` (LayerNorm, bias) get no trust ratio either, as
    in NVIDIA's BERT LAMB.

    ``flat=True`` (the trainers' choice): at the first step the parameters that have gradients are
    moved into one contiguous buffer per group (and device and dtype), each parameter's data and
    gradient becoming a view of its group's buffers (as Megatron's and DeepSpeed's contiguous
    gradients), and Adam's moments live in two more such buffers. Each update is then a fixed
    handful of operations on whole buffers, however many parameter tensors the model has (BERT-base
    has 200: a per-tensor or ``_foreach`` update launches kernels in proportion; LAMB's per-tensor
    trust ratios come from segment sums over rows of ``LAMB_CHUNK`` elements, each parameter
    starting a row of its buffer). The arithmetic is the same per element: results equal the
    per-tensor update (``flat=False``) exactly for Adam, and to rounding for LAMB's norms.
    Requirements of the flat layout: gradients are zeroed with ``zero_grad`` (which zeroes the
    buffers in place: ``set_to_none`` is not honoured, autograd then adds into the views), and a
    parameter without a gradient at the first step is updated on its own (Google's update skips a
    parameter with no gradient; a flattened one that later gets none is updated with a zero one).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        lamb: bool = False,
        flat: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise BertDetrError(f"invalid optimizer settings lr={lr} eps={eps} wd={weight_decay} betas={betas}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, lamb=lamb))
        self.flat = flat
        self._buckets: list[list[FlatBucket]] | None = None  # per group, made at the first step (flat)
        self._work: list[tuple[list[FlatBucket], list[torch.Tensor]]] = []  # per group, by prepare()
        self._outside: list[list[torch.Tensor]] = []  # per group, the parameters not in its buffers

    def flat_parameters(self) -> list[torch.Tensor]:
        """What to clip (``clip_by_global_norm``): one tensor per flat buffer, its ``.grad`` the
        buffer's gradients, and each parameter outside the buffers; all parameters when not flat."""
        self.prepare()
        return self.clip_targets()

    def clip_targets(self) -> list[torch.Tensor]:
        """``flat_parameters`` after ``prepare`` (tensors only: traceable)."""
        return [b.values for bs in self._buckets or () for b in bs] + self._loose()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zeroes the gradients; with flat buffers, the buffers in place (whatever ``set_to_none``)."""
        if self._buckets is None:
            return super().zero_grad(set_to_none)
        for buckets in self._buckets:
            for b in buckets:
                b.values.grad.zero_()
        for p in self._loose():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's, then the loaded moments into the flat buffers; an optimizer whose lr is a tensor
        (``use_tensor_lr``) keeps it one, on its parameters' device, whatever the checkpoint held
        (a float from an eager run, a tensor mapped to the CPU): a compiled update would otherwise
        recompile at each new lr, or leave its CUDA graphs for a CPU input."""
        tensor_lr = any(isinstance(group["lr"], torch.Tensor) for group in self.param_groups)
        super().load_state_dict(state_dict)
        if tensor_lr:
            self.use_tensor_lr()
        for buckets in self._buckets or ():
            for b in buckets:
                b.adopt_state(self.state)  # the loaded moments into the buffers, the state views again

    @torch.no_grad()
    def step(self, closure=None, skip: torch.Tensor | None = None):
        """One update. ``skip``: a 0-dim bool tensor (on the parameters' device) that, when true,
        leaves parameters and moments as they are, decided on the device (no host read: the
        trainer passes "the loss or the gradients are not finite", as a gradient scaler skips an
        overflowed step). The gradients of a skipped step may hold NaN: they are replaced by zeros
        first; a kept step gives the results of ``skip=None`` bit for bit."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.prepare()
        self.update(skip)
        return loss

    def prepare(self) -> None:
        """The host's part of a step, before ``update``: the flat buffers made (at the first call,
        from the parameters that have gradients then) or a parameter whose data or gradient
        something replaced (e.g. a ``model.zero_grad()`` that set it to None) copied back in, and
        which other parameters have gradients this step, with their state. No device reads."""
        # The schedulers learn that a step was taken from a wrapper of ``step`` (a compiled update
        # goes by ``prepare`` + ``update``): without this they warn of a scheduler step before it.
        self._opt_called = True
        if self.flat and self._buckets is None:
            self._buckets = [FlatBucket.make_all([p for p in group["params"] if p.grad is not None], self.state,
                                                 LAMB_CHUNK if group["lamb"] and group["weight_decay"] else
                                                 FLAT_ALIGN if group["params"][0].is_cuda else 1)
                             for group in self.param_groups]
            inside = {id(p) for b in self.buckets() for p in b.params}
            self._outside = [[p for p in group["params"] if id(p) not in inside] for group in self.param_groups]
        elif self.flat:
            for b in self.buckets():
                b.reattach()
        self._work = []
        for i, group in enumerate(self.param_groups):
            outside = self._outside[i] if self._buckets is not None else group["params"]
            loose = [p for p in outside if p.grad is not None]
            for p in loose:
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buckets = self._buckets[i] if self._buckets else []
            if group["lamb"] and group["weight_decay"]:
                for b in buckets:
                    b.segments()  # made here, not in a compiled update (their sizes come from data)
            self._work.append((buckets, loose))

    @torch.no_grad()
    def update(self, skip: torch.Tensor | None = None) -> None:
        """The device's part of a step (after ``prepare``): tensor operations only, so that
        ``torch.compile`` takes it whole (``clip_and_update``). A group's ``lr`` may be a 0-dim
        tensor (``use_tensor_lr``), so that a compiled update is not recompiled as it changes."""
        for group, (buckets, loose) in zip(self.param_groups, self._work):
            beta1, beta2 = group["betas"]
            hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                         weight_decay=group["weight_decay"], lamb=group["lamb"], skip=skip)
            for b in buckets:
                adam_update(b.values, b.values.grad, b.m, b.v, scratch=b.scratch,
                            segments=b.segments() if group["lamb"] and group["weight_decay"] else None, **hyper)
            for p in loose:
                adam_update(p, p.grad, self.state[p]["m"], self.state[p]["v"], **hyper)

    def use_tensor_lr(self) -> None:
        """Each group's lr as a 0-dim float32 tensor on its parameters' device (the schedulers fill
        it in place), for a compiled update (``load_state_dict`` keeps it so)."""
        for group in self.param_groups:
            lr, device = group["lr"], group["params"][0].device
            if not (isinstance(lr, torch.Tensor) and lr.device == device and lr.dtype == torch.float32):
                group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)

    def buckets(self) -> list[FlatBucket]:
        """The flat buffers (none before the first ``prepare``, or when not flat)."""
        return [b for buckets in self._buckets or () for b in buckets]

    def _loose(self) -> list[torch.Tensor]:
        """The parameters outside the flat buffers (all of them before the buffers are made)."""
        if self._buckets is None:
            return [p for g in self.param_groups for p in g["params"]]
        return [p for outside in self._outside for p in outside]


class FlatBucket:
    """Parameters of one group, device and dtype in one contiguous buffer (``values``), their
    gradients in another (``values.grad``) and Adam's moments in two more (``m``, ``v``); each
    parameter's data, gradient and state tensors are views of them."""

    def __init__(self, params: list[nn.Parameter], state: dict, align: int = 1):
        self.params = params
        self.align = align
        self.spans = [-(-p.numel() // align) * align for p in params]  # each parameter's room, zeros after it
        self.offsets = [0, *itertools.accumulate(self.spans)][:-1]
        self.values = params[0].new_zeros(sum(self.spans))
        self.values.grad = torch.zeros_like(self.values)
        for i, p in enumerate(params):
            self._view(self.values, i).copy_(p.detach())
            self._view(self.values.grad, i).copy_(p.grad.detach())
        self.m = torch.zeros_like(self.values)
        self.v = torch.zeros_like(self.values)
        self.scratch = torch.empty_like(self.values)  # each step's update
        self._segments: Segments | None = None
        for i, p in enumerate(params):
            p.data = self._view(self.values, i)
            p.grad = self._view(self.values.grad, i)
        self.adopt_state(state)

    def segments(self) -> Segments:
        """LAMB's segments (made at the first LAMB step: Adam needs none); the bucket must be made
        with ``align`` = ``LAMB_CHUNK``."""
        if self._segments is None:
            if self.align != LAMB_CHUNK:
                raise BertDetrError(f"LAMB's flat buffers are aligned to {LAMB_CHUNK} elements, this one to {self.align}")
            device = self.values.device
            chunks = torch.tensor([span // LAMB_CHUNK for span in self.spans], device=device)
            ids = torch.repeat_interleave(torch.arange(len(self.spans), device=device), chunks)
            self._segments = Segments(LAMB_CHUNK, chunks, ids)
        return self._segments

    @classmethod
    def make_all(cls, params: list[nn.Parameter], state: dict, align: int = 1) -> list[FlatBucket]:
        """One bucket per (device, dtype) of ``params``, in their order, each parameter starting at
        a multiple of ``align`` elements."""
        kinds: dict[tuple, list[nn.Parameter]] = {}
        for p in params:
            kinds.setdefault((p.device, p.dtype), []).append(p)
        return [cls(ps, state, align) for ps in kinds.values()]

    def _view(self, buffer: torch.Tensor, i: int) -> torch.Tensor:
        """The part of ``buffer`` that is parameter ``i``, in its shape."""
        p = self.params[i]
        return buffer[self.offsets[i]:self.offsets[i] + p.numel()].view(p.shape)

    def adopt_state(self, state: dict) -> None:
        """Each parameter's moments as views of ``m`` and ``v``: values already in ``state`` (a
        resumed run's) copied in, zeros where it has none."""
        for i, p in enumerate(self.params):
            s = state[p]
            for key, buffer in (("m", self.m), ("v", self.v)):
                view = self._view(buffer, i)
                if key in s and s[key] is not view:
                    view.copy_(s[key])
                elif key not in s:
                    view.zero_()
                s[key] = view

    def reattach(self) -> None:
        """Copies in a parameter's data or gradient that is no longer a view of the buffers."""
        for i, p in enumerate(self.params):
            start = self.values.data_ptr() + self.offsets[i] * self.values.element_size()
            if p.data_ptr() != start:  # e.g. load_state_dict(assign=True)
                view = self._view(self.values, i)
                view.copy_(p.detach())
                p.data = view
            if p.grad is None or p.grad.data_ptr() != self.values.grad.data_ptr() + start - self.values.data_ptr():
                grad = self._view(self.values.grad, i)
                grad.copy_(p.grad) if p.grad is not None else grad.zero_()
                p.grad = grad


class Segments(NamedTuple):
    """The parameters of a flat buffer as its segments, for LAMB's per-parameter norms and ratios:
    the buffer seen as rows of ``chunk`` elements [E/C, C], each parameter a run of whole rows
    (its room padded with zeros, which add nothing to a norm and are never updated)."""

    chunk: int
    """C, the elements of a row (``LAMB_CHUNK``)."""
    lengths: torch.Tensor
    """[P] int64: each parameter's number of rows, in buffer order."""
    ids: torch.Tensor
    """[E/C] int64: each row's parameter (to spread the P ratios over the rows)."""


def adam_update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, lr: float | torch.Tensor,
                beta1: float, beta2: float, eps: float, weight_decay: float, lamb: bool,
                skip: torch.Tensor | None, scratch: torch.Tensor | None = None,
                segments: Segments | None = None) -> None:
    """Google's update of one tensor in place (a flat buffer of many, or one parameter):
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, ``param -= lr (m / (sqrt(v) + eps) + wd param)``,
    LAMB's trust ratio per segment (the parameters of a flat buffer; the whole tensor without).
    ``skip`` (0-dim bool on the device): leave everything as it is (``grad`` is zeroed).
    ``scratch``: where the update is made (a flat buffer's: on a CPU, allocating a buffer-sized
    temporary each step costs more than the arithmetic, as its pages are faulted in again).

    With ``skip`` the factors are tensors that are the same numbers when the step is kept (bit for
    bit the same results) and leave m and v exactly as they are when skipped: lerp weight 0, decay
    1, and a zeroed gradient adding nothing."""
    w1: float | torch.Tensor = 1 - beta1
    b2: float | torch.Tensor = beta2
    keep = None
    if skip is not None:
        keep = (~skip).to(torch.float32)
        grad.masked_fill_(skip, 0.0)  # a skipped step's NaN must not reach m and v (0 * NaN is NaN)
        w1 = keep * (1 - beta1)
        b2 = torch.where(skip, torch.ones_like(keep), torch.full_like(keep, beta2))
    m.lerp_(grad, w1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - beta2)
    update = torch.sqrt(v, out=scratch) if scratch is not None else v.sqrt()
    torch.div(m, update.add_(eps), out=update)
    if weight_decay:
        update.add_(param, alpha=weight_decay)
        if lamb:
            w, u = _norms(param, segments), _norms(update, segments)
            ratios = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
            if segments is None:
                update.mul_(ratios)
            else:
                update.view(-1, segments.chunk).mul_(ratios.index_select(0, segments.ids).unsqueeze(1))
    if isinstance(lr, torch.Tensor):  # (a compiled update's: no alpha from a tensor)
        param.sub_(update.mul_(lr if keep is None else lr * keep))
        return
    if keep is not None:
        update.mul_(keep)
    param.add_(update, alpha=-lr)


def _norms(x: torch.Tensor, segments: Segments | None) -> torch.Tensor:
    """The L2 norm of ``x`` (0-dim), or [P] of each of its segments: the sums of squares of its
    rows (one reduction over the buffer, no temporary of its size), then of each segment's rows
    (a segment sum over E/C numbers: over the E elements it took 190 ms for BERT-base on a core)."""
    if segments is None:
        return torch.linalg.vector_norm(x.float())
    rows = torch.linalg.vector_norm(x.view(-1, segments.chunk), dim=1, dtype=torch.float32)
    # unsafe: the lengths are ours (whole rows of the buffer); checked, segment_reduce reads them on
    # the host (two .item(): a wait for the GPU each, and no CUDA graph capture of the update)
    return torch.segment_reduce(rows.square(), "sum", lengths=segments.lengths, unsafe=True).sqrt()


@torch.no_grad()
def clip_and_update(optimizer: AdamWeightDecay, losses: torch.Tensor, clip_norm: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's update after its backward, all on the device (``optimizer.prepare()`` first):
    gradients clipped to global norm ``clip_norm`` (Google's train op), then Google's update,
    skipped where ``losses`` or the gradients are not finite. Returns (the norm before clipping,
    0-dim bool "skipped"). Tensor operations only: ``compile_update`` compiles it as one graph."""
    grad_norm = clip_by_global_norm(optimizer.clip_targets(), clip_norm)
    bad = ~torch.isfinite(losses).all() | ~torch.isfinite(grad_norm)
    optimizer.update(skip=bad)
    return grad_norm, bad


def compile_update(optimizer: AdamWeightDecay, mode: str = "default"):
    """``clip_and_update`` of ``optimizer`` compiled whole (``fullgraph``: a graph break is an
    error, not a silently slower step); call it as ``clip_and_update(losses, clip_norm)`` after
    ``optimizer.prepare()``. The lr becomes a tensor (``use_tensor_lr``: a float would be baked
    into the graph and recompiled at each new value). With CUDA graphs (``reduce-overhead``,
    ``max-autotune``) the flat buffers, which the update writes in place, are marked as static
    addresses, as torch's compiled optimizers mark their state."""
    optimizer.use_tensor_lr()
    compiled = torch.compile(clip_and_update, mode=mode, fullgraph=True)
    marked = [False]

    def update(losses: torch.Tensor, clip_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
        if not marked[0] and mode in CUDA_GRAPH_MODES:
            for b in optimizer.buckets():
                for tensor in (b.values, b.values.grad, b.m, b.v, b.scratch):
                    torch._dynamo.mark_static_address(tensor)
            marked[0] = True
        return compiled(optimizer, losses, clip_norm)

    return update


def compile_step(model: nn.Module, optimizer: AdamWeightDecay, compile: bool, mode: str = "default"
                 ) -> tuple[nn.Module, Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]]:
    """What a BERT trainer's step calls: the model (forward and losses; their backward is compiled
    with them) and the update after the backward (``clip_and_update`` of ``optimizer``: (losses,
    clip norm) -> (norm, skipped)); with ``compile`` each compiled in ``mode``, the update whole
    (``compile_update``), else as they are."""
    if not compile:
        return model, functools.partial(clip_and_update, optimizer)
    return torch.compile(model, mode=mode), compile_update(optimizer, mode)


def create_optimizer(model: nn.Module, init_lr: float, num_train_steps: int, num_warmup_steps: int,
                     weight_decay: float = 0.01, lamb: bool = False, flat: bool = True,
                     head_lrs: dict[str, float] | None = None
                     ) -> tuple[AdamWeightDecay, torch.optim.lr_scheduler.LambdaLR]:
    """Google's ``create_optimizer``: ``AdamWeightDecay`` (Google's ``AdamWeightDecayOptimizer``,
    beta 0.9/0.999, eps 1e-6) over ``model``'s parameters, weight decay on all but LayerNorm and
    biases (``weight_decay_groups``), and Google's warmup/decay schedule (``google_lr_schedule``).
    Google's function also clips the gradients to global norm 1.0 inside the train op; here the
    training loop calls ``clip_by_global_norm`` before ``optimizer.step()``. ``lamb``: the LAMB
    trust ratio on top (not in Google's release). ``flat``: the update on flat buffers (the
    trainers'; see ``AdamWeightDecay``), so the caller clips ``optimizer.flat_parameters()``.
    ``head_lrs``: other initial lrs by parameter name prefix (``weight_decay_groups``), on the same
    schedule."""
    optimizer = AdamWeightDecay(weight_decay_groups(model, weight_decay, head_lrs), lr=init_lr, weight_decay=weight_decay,
                                lamb=lamb, flat=flat)
    return optimizer, google_lr_schedule(optimizer, num_train_steps, num_warmup_steps)
