"""Process-group set-up shared by the trainers: one code path from one process to many machines.

Launched plainly, a trainer runs as a single process; launched by ``torchrun`` (``WORLD_SIZE`` > 1)
it joins the process group (nccl on GPU, gloo on CPU) and wraps its model in
DistributedDataParallel.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bertdetr.errors import BertDetrError


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self.rank == 0


def setup_distributed(requested_device: str | None) -> tuple[Distributed, torch.device]:
    """Joins the process group when launched by torchrun (``WORLD_SIZE`` > 1; nccl for GPUs, gloo
    otherwise) and picks this rank's device: ``requested_device`` if given, else this rank's GPU
    when there is one, else the CPU.

    Under torchrun a GPU is this rank's own, ``cuda:LOCAL_RANK`` (``rank_device``), made the
    process's current device (``torch.cuda.set_device``) before the group is joined, and named to
    ``init_process_group`` (``device_id``), as torch's DDP and torchrun examples do: NCCL's object
    collectives (``broadcast_object_list``, ``all_gather_object``: the run's start and each save),
    ``barrier`` and the DataLoader's pinning thread use the *current* device, which otherwise stays
    cuda:0 on every rank ("Duplicate GPU detected" from NCCL, or a hang)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else 0
    device = rank_device(requested_device, local_rank, world_size > 1)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    env = Distributed()
    if world_size > 1:
        if not dist.is_initialized():
            options = {"device_id": device} if device.type == "cuda" and _INIT_TAKES_DEVICE_ID else {}
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", **options)
        env = Distributed(dist.get_rank(), dist.get_world_size(), local_rank)
    return env, device


def _takes_device_id() -> bool:
    """Whether this torch's ``init_process_group`` takes ``device_id`` (torch 2.3 on; a torch built
    without distributed support has no ``init_process_group`` at all)."""
    try:
        return "device_id" in inspect.signature(dist.init_process_group).parameters
    except (AttributeError, TypeError, ValueError):
        return False


_INIT_TAKES_DEVICE_ID = _takes_device_id()  # (asked once, of the real function: tests replace it)


def rank_device(requested_device: str | None, local_rank: int, distributed: bool) -> torch.device:
    """This process's device. Run plainly: ``requested_device`` as given, or (None) cuda:0 when
    there is a GPU, else the CPU. Under torchrun (``distributed``) an unnamed GPU (None, "cuda") is
    ``cuda:LOCAL_RANK``: torchrun gives every rank the same arguments, so a bare "cuda" would put
    them all on GPU 0. A numbered one ("cuda:K") is taken only where torchrun runs one process on
    this machine (``LOCAL_WORLD_SIZE`` 1: one GPU chosen per machine); with several it would be
    every local rank's GPU, which NCCL refuses (or hangs on), so it is an error here."""
    if requested_device:
        device = torch.device(requested_device)
    else:
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if not distributed or device.type != "cuda":
        return device
    local_processes = local_world_size()
    if requested_device and device.index is not None:
        if local_processes > 1:
            raise BertDetrError(
                f"device {requested_device!r} under torchrun with {local_processes} processes on this machine: "
                f"each would use GPU {device.index}; give \"cuda\" (or no device) for each process its own GPU "
                "(cuda:LOCAL_RANK), and choose the GPUs with CUDA_VISIBLE_DEVICES")
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise BertDetrError(f"device {requested_device!r} is a GPU, and torch sees none (CUDA is not available)")
    if max(local_processes, local_rank + 1) > count:
        raise BertDetrError(f"torchrun runs {max(local_processes, local_rank + 1)} processes on this machine, each on "
                            f"its own GPU, and torch sees {count}: give --nproc_per_node={count} (at most)")
    return torch.device("cuda", local_rank)


def main_then_share(env: Distributed, work):
    """``work()`` on the main process only, its result (or its ``BertDetrError``) given to every
    rank: so no rank looks at a run folder while the main one changes it. Other errors are raised
    on the main process only (the other ranks then wait in the broadcast until torchrun stops
    them)."""
    answer: tuple = ("ok", None)
    if env.main:
        try:
            answer = ("ok", work())
        except BertDetrError as e:
            answer = ("error", str(e))
    if env.world_size > 1:
        box = [answer]
        dist.broadcast_object_list(box, src=0)
        answer = box[0]
    if answer[0] == "error":
        raise BertDetrError(answer[1])
    return answer[1]


def local_world_size() -> int:
    """Processes of this run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 when run plainly)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def data_parallel(net: torch.nn.Module, env: Distributed, device: torch.device, **options) -> torch.nn.Module:
    """``net`` in DistributedDataParallel (on a GPU, this rank's; ``options`` are DDP's) when the
    run has several processes; ``net`` itself otherwise."""
    if env.world_size == 1:
        return net
    return torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, **options)


def without_forward_buffer_sync() -> dict:
    """The DDP option (for ``data_parallel``) that stops its broadcast of rank 0's buffers before
    each forward, for a model whose buffers never change: ``forward_sync_buffers=False`` where this
    torch has it (2.14, where ``broadcast_buffers`` is deprecated; the buffers are still synced
    when DDP is built), else ``broadcast_buffers=False`` (which skips that sync too: fine for
    buffers every rank builds or loads alike)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def rng_state(device: torch.device) -> dict:
    """This process's torch RNG state (and its GPU's), for exact resume of dropout."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(env: Distributed, device: torch.device) -> list[dict]:
    """Every rank's RNG state, in rank order (a collective: all ranks must call it)."""
    mine = rng_state(device)
    if env.world_size == 1:
        return [mine]
    states: list = [None] * env.world_size
    dist.all_gather_object(states, mine)
    return states
