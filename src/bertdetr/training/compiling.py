"""What both trainers' ``compile`` options share: torch.compile's modes, checked where a config is
made (no torch import here: the configs are read before torch is)."""

from __future__ import annotations

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""torch.compile's modes; reduce-overhead and max-autotune run the graphs as CUDA graphs."""

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
"""The modes that record CUDA graphs (tensors a graph writes in place must keep their addresses)."""


def compile_mode_error(mode: str, field: str) -> str | None:
    """The message for a mode torch.compile does not have (None when it has it)."""
    if mode in COMPILE_MODES:
        return None
    return f"{field} must be one of {', '.join(COMPILE_MODES)}, got {mode!r}"
