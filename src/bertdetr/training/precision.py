"""Mixed precision for both trainers: bf16 autocast, or fp16 autocast with a gradient scaler.

bf16 keeps fp32's exponent range, so it needs nothing else; fp16 (GPUs without bf16: V100, T4)
overflows in the backward pass unless the loss is scaled up first (``torch.amp.GradScaler``).
A step whose scaled gradients overflowed is skipped by the scaler (weights untouched, scale
halved); it still counts as a step (its batches are spent and the lr schedule advances, so a
resumed run stays exact), and the trainers log ``skipped_steps`` (total so far) and
``loss_scale``. Weights and optimizer state stay fp32 in every mode.
"""

from __future__ import annotations

import contextlib

import torch

from bertdetr.errors import BertDetrError


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX, as oneDNN reports it).

    Where it does, bf16 autocast is a cheap speed-up of a CPU run (the demo's tiny BERT: 1.25x fewer
    CPU seconds a step, the same figures); where it does not, oneDNN converts to fp32 around every
    matmul and autocast only costs time, so callers keep fp32. (The check is oneDNN's own, a private
    torch op: False if this torch build lacks it.)"""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


INFERENCE_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                    "fp16": torch.float16, "float32": None, "fp32": None, "auto": None}


def inference_dtype(dtype) -> torch.dtype | None:
    """What an inference runs its model in under autocast: None (float32), ``torch.bfloat16`` or
    ``torch.float16``, from a torch dtype or its name (transformers' spellings, ``"auto"``: the
    weights' float32). Anything else is a ``BertDetrError`` listing what is taken."""
    if dtype is None or dtype is torch.float32:
        return None
    if dtype in (torch.bfloat16, torch.float16):
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in INFERENCE_DTYPES:
        return INFERENCE_DTYPES[dtype.lower().removeprefix("torch.")]
    raise BertDetrError(f"dtype must be torch.bfloat16, torch.float16, torch.float32 or one of "
                        f"{', '.join(INFERENCE_DTYPES)}, got {dtype!r}")


def autocast_to(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class MixedPrecision:
    """``autocast()`` around forward, ``backward(loss)``, ``unscale(optimizer)`` before clipping,
    ``step(optimizer)`` instead of ``optimizer.step()``."""

    def __init__(self, device: torch.device, bf16: bool = False, fp16: bool = False):
        if bf16 and fp16:
            raise BertDetrError("choose bf16 or fp16, not both")
        self.device = device
        self.dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else None
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.skipped_steps = 0

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients back to their true size (call before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    @property
    def overflow_skips(self) -> bool:
        """Whether non-finite gradients mean an fp16 overflow (a skipped step), not a failed run."""
        return self.scaler is not None

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """The optimizer step; False when the scaler skipped it (overflow), counted in ``skipped_steps``."""
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        skipped = self.scaler.get_scale() < before  # the scale backs off exactly when it skipped
        self.skipped_steps += int(skipped)
        return not skipped

    def scalars(self) -> dict[str, float]:
        """What the log records: nothing for fp32/bf16; for fp16 the skipped steps and the scale."""
        if self.scaler is None:
            return {}
        return {"skipped_steps": float(self.skipped_steps), "loss_scale": float(self.scaler.get_scale())}

    def state_dict(self) -> dict:
        if self.scaler is None:
            return {}
        return {"scaler": self.scaler.state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
            self.skipped_steps = int(state.get("skipped_steps", 0))
