"""Process-group set-up shared by the trainers: one code path from one process to many machines.

Launched plainly, a trainer runs as a single process; launched by ``torchrun`` (``WORLD_SIZE`` > 1)
it joins the process group (nccl on GPU, gloo on CPU) and wraps its model in
DistributedDataParallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
    when there is one, else the CPU."""
    if requested_device:
        device_type = torch.device(requested_device).type
    else:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    env = Distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        env = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if requested_device:
        return env, torch.device(requested_device)
    return env, torch.device("cuda", env.local_rank) if device_type == "cuda" else torch.device("cpu")


def main_then_share(env: Distributed, work):
    """``work()`` on the main process only, its result (or its ``BertDetrError``) given to every
    rank: so no rank looks at a run folder while the main one changes it. Other errors are raised
    on the main process only (the other ranks then wait in the broadcast until torchrun stops
    them)."""
    from bertdetr.errors import BertDetrError

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
