"""torchrun's ranks on GPUs, without GPUs: ``setup_distributed`` with CUDA and the process group
stood in for (the calls recorded), as torchrun's environment sets a rank up."""

import pytest
import torch
import torch.distributed as dist

from bertdetr.errors import BertDetrError
from bertdetr.training import distributed
from bertdetr.training.distributed import Distributed, data_parallel, setup_distributed


@pytest.fixture
def gpus(monkeypatch):
    """Two GPUs that record ``set_device``, a process group that records ``init_process_group``, and
    the environment torchrun gives rank 3 of 4, its machine's second process (local rank 1).
    Returns the calls, in order."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend=None, **kwargs: calls.append(("init_process_group", backend, kwargs)))
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 3)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 4)
    for name, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    return calls


@pytest.mark.parametrize("requested", [None, "cuda"])
def test_each_torchrun_rank_is_on_its_own_gpu_before_joining_the_group(gpus, requested):
    """The rank's GPU is cuda:LOCAL_RANK (a bare "cuda" was every rank's GPU 0), the current device
    before the group is joined (NCCL's object collectives and barrier use the current one), and
    named to ``init_process_group``."""
    env, device = setup_distributed(requested)
    assert device == torch.device("cuda", 1)
    assert env == Distributed(rank=3, world_size=4, local_rank=1)
    init = {"device_id": torch.device("cuda", 1)} if distributed._INIT_TAKES_DEVICE_ID else {}
    assert gpus == [("set_device", torch.device("cuda", 1)), ("init_process_group", "nccl", init)]


def test_init_process_group_of_this_torch_takes_device_id():
    assert distributed._INIT_TAKES_DEVICE_ID  # (torch >= 2.3; the project needs 2.9)


def test_a_numbered_gpu_is_every_local_rank_s_and_refused(gpus, monkeypatch):
    """torchrun gives every rank the same arguments: "cuda:0" with two processes on the machine
    would put both on GPU 0; refused before the group is joined. With one process per machine it
    chooses that machine's GPU."""
    with pytest.raises(BertDetrError, match="cuda:LOCAL_RANK"):
        setup_distributed("cuda:0")
    assert gpus == []
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    env, device = setup_distributed("cuda:1")
    assert device == torch.device("cuda", 1) and env.local_rank == 0
    assert gpus[0] == ("set_device", torch.device("cuda", 1)) and gpus[1][:2] == ("init_process_group", "nccl")


def test_more_local_processes_than_gpus_is_a_clear_error(gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BertDetrError, match="--nproc_per_node=1"):
        setup_distributed(None)
    assert gpus == []


def test_cpu_ranks_join_with_gloo_and_leave_cuda_alone(gpus):
    env, device = setup_distributed("cpu")
    assert device == torch.device("cpu") and env.world_size == 4
    assert gpus == [("init_process_group", "gloo", {})]


def test_one_process_keeps_the_device_it_was_given(gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert setup_distributed("cuda") == (Distributed(), torch.device("cuda"))
    assert gpus == []  # (an unnumbered device: torch's current one)
    assert setup_distributed(None) == (Distributed(), torch.device("cuda", 0))
    assert gpus == [("set_device", torch.device("cuda", 0))]


def test_ddp_wraps_the_model_on_the_rank_s_gpu(gpus, monkeypatch):
    made = []
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda net, **kwargs: made.append(kwargs) or net)
    env, device = setup_distributed("cuda")
    data_parallel(torch.nn.Linear(2, 2), env, device, find_unused_parameters=False)
    assert made == [{"device_ids": [1], "find_unused_parameters": False}]


def test_without_forward_buffer_sync_is_an_option_of_this_torch_s_ddp():
    import inspect

    (name, value), = distributed.without_forward_buffer_sync().items()
    assert value is False and name in inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
