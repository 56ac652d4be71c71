import os

import pytest
import torch

from bertdetr.training import threads


@pytest.mark.parametrize("cpus,load,expected", [
    (2, 0.0, 2), (2, 1.0, 2), (2, 1.4, 2), (2, 1.6, 1), (2, 2.4, 1), (2, 10.7, 1),
    (16, 1.0, 16), (16, 5.0, 12), (16, 40.0, 1), (1.5, 0.0, 1),
])
def test_free_cpus_leaves_the_load_of_other_work(cpus, load, expected):
    assert threads.free_cpus(cpus, load) == expected


def test_choose_honours_a_request_and_omp_num_threads(monkeypatch):
    assert threads.choose_num_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_num_threads() == torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(threads, "available_cpus", lambda: 2.0)
    assert threads.choose_num_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert threads.choose_num_threads() == 2


def test_available_cpus_is_within_the_affinity():
    assert 1 <= threads.available_cpus() <= len(os.sched_getaffinity(0))
