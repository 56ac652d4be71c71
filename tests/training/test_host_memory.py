"""Freed host memory kept between steps (glibc's mallopt) where the allocator is the user's to leave alone
or not."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from bertdetr.training import host_memory
from bertdetr.training.host_memory import chosen_elsewhere, keep_freed_memory


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
        return sys.platform.startswith("linux")
    except (OSError, AttributeError):
        return False


@pytest.mark.parametrize("environ, reason", [
    ({}, None),
    ({"PATH": "/usr/bin", "LD_PRELOAD": ""}, None),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD has jemalloc"),
    ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "LD_PRELOAD has tcmalloc"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}, "GLIBC_TUNABLES sets glibc.malloc"),
    ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}, None),
    ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX is set"),
])
def test_the_users_own_allocator_settings_are_found(environ, reason):
    assert chosen_elsewhere(environ) == reason


def test_left_alone_where_the_user_chose(monkeypatch):
    monkeypatch.setattr(host_memory, "_kept", None)
    assert keep_freed_memory({"MALLOC_TRIM_THRESHOLD_": "1"}) is False
    assert keep_freed_memory({}) is False  # decided once per process


# A fresh process frees and allocates again a 40 MiB tensor 20 times (over glibc's largest mmap
# threshold, so by default a mapping of its own each time) and counts the page faults of the loop.
# Kept, the heap grows a few times before the tensor's place is free for the next one (a small
# allocation of Python's between two tensors can take the start of the freed block): 2 to 4 times
# the tensor's pages measured, then none.
_LOOP = """
import json, resource, sys, torch
if sys.argv[1] == "setup":
    from bertdetr.training.run import setup_process
    setup_process("cpu", 1)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    x = torch.ones(10 << 20)
    del x
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
"""


def _faults(mode: str, environ: dict) -> int:
    out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, check=True, env=environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")
def test_a_cpu_trainer_keeps_freed_memory_for_the_next_step():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    pages = (40 << 20) // 4096
    kept = _faults("setup", environ)
    assert kept < 8 * pages  # faulted in a few times, then reused
    assert _faults("plain", environ) > 18 * pages  # glibc's default: mapped and faulted in each time
    assert _faults("setup", {**environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_max=65536"}) > 18 * pages  # the user's
