"""Counting reads from the device in tests: the calls that would make a GPU wait (``Tensor.item``,
``tolist``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``), on a CPU, where every tensor is
on the host, told apart by who makes them."""

import sys

import torch

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


def count_reads(monkeypatch, watched: tuple[str, ...], host_side=lambda frame: False) -> list:
    """Patches the read methods of ``torch.Tensor`` (undone by ``monkeypatch``) to record
    ``(method, function)`` for each call made from a file ending with one of ``watched``, unless
    ``host_side(frame)`` says the call reads the host's own data. Returns the (growing) list."""
    reads: list = []

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.endswith(watched) and not host_side(frame):
                reads.append((name, frame.f_code.co_name))
            return real(self, *args, **kwargs)
        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return reads


def in_stack(frame, test) -> bool:
    """Whether ``test(frame)`` holds for ``frame`` or any frame that called it."""
    while frame is not None:
        if test(frame):
            return True
        frame = frame.f_back
    return False
