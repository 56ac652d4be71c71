import contextlib
import os
import pathlib

import pytest
import torch

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def quiet_load_average(monkeypatch):
    """The trainers take their CPU threads from the load of other work at start
    (``training.threads``): under a load that changes between two runs (the test's own subprocesses,
    anything else on the machine) twin runs would take different thread counts and sum their floats
    in another order, and runs compared bit for bit would differ. So every test sees a quiet
    machine (tests of the thread choice set the load they need)."""
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.fixture
def data_dir() -> pathlib.Path:
    """tests/data: golden outputs of the reference implementations (copied from shared/golden)."""
    return DATA


# Tensor methods that read a tensor's values on the host: on a GPU each waits for the device.
HOST_READS = ("cpu", "item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@pytest.fixture
def host_reads(monkeypatch):
    """``with host_reads() as calls:`` lists the host reads (``HOST_READS``) made inside, by name.
    Counting calls is how a CPU-only test sees the device syncs a GPU run would make."""

    @contextlib.contextmanager
    def counting():
        calls: list[str] = []

        def wrap(name):
            original = getattr(torch.Tensor, name)

            def wrapper(self, *args, **kwargs):
                calls.append(name)
                return original(self, *args, **kwargs)
            return wrapper

        with monkeypatch.context() as patch:
            for name in HOST_READS:
                patch.setattr(torch.Tensor, name, wrap(name))
            yield calls

    return counting
