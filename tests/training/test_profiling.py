"""``profile_steps`` (bertdetr.training.profiling): the window of steps recorded and nothing else, the
files (a report and a gzipped trace) written when the window ends and not when a run stops inside
it, a resumed run starting inside it, bad windows refused before training, and each trainer
(bert pretrain, detr train, the fine-tuning programs) profiling with the same numbers as without."""

import gzip
import json
import os

import pytest
import torch

from bertdetr.bert.pretraining.pretrain import pretrain
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from bertdetr.training.profiling import StepProfiler, check_profile_steps, device_line, memory_line
from bertdetr.training.scalars import read_scalars
from tests.bert.pretraining.test_pretrain import VOCAB
from tests.training.test_folder import _bert_config, _config, _detr_config
from tests.training.test_folder import records  # noqa: F401 (a fixture)
from tests.training.test_folder import record_files  # noqa: F401 (a fixture)
from tests.training.test_folder import shapes  # noqa: F401 (a fixture)


def _loop(directory, steps, run=range(1, 8), stop_at=None):
    """A training loop of a linear model, each step marked ``step-N`` in the profile; returns what
    ``step_ends`` returned per step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spent = {}
    with StepProfiler(steps, str(directory), torch.device("cpu"), "test loop") as profiler:
        for step in run:
            profiler.step_begins(step)
            with torch.profiler.record_function(f"step-{step}"):
                model(torch.randn(4, 16)).square().sum().backward()
                opt.step()
                opt.zero_grad()
            spent[step] = profiler.step_ends(step)
            if step == stop_at:
                break
    return spent


def _marked_steps(trace_file):
    with gzip.open(trace_file, "rt") as f:
        events = json.load(f)["traceEvents"]
    return sorted(int(e["name"][5:]) for e in events if e.get("name", "").startswith("step-"))


def test_the_window_and_only_it_is_recorded(tmp_path):
    spent = _loop(tmp_path, [3, 5])
    assert sorted(os.listdir(tmp_path / "profile")) == ["steps-3-5.json.gz", "steps-3-5.txt"]
    # the step before (2) warmed the profiler up, unrecorded; nothing after the window
    assert _marked_steps(tmp_path / "profile" / "steps-3-5.json.gz") == [3, 4, 5]
    report = (tmp_path / "profile" / "steps-3-5.txt").read_text()
    assert report.startswith("test loop: steps 3-5 (3 profiled), rank 0 of 1, cpu, torch ")
    assert "wall time per step: " in report and "aten::addmm" in report
    # the writing's time is handed back once, at the window's end, for the rate to leave out
    assert spent[5] > 0 and all(spent[s] == 0 for s in spent if s != 5)


def test_a_window_from_the_first_step_and_a_resume_inside_it(tmp_path):
    _loop(tmp_path / "first", [1, 2])
    assert _marked_steps(tmp_path / "first" / "profile" / "steps-1-2.json.gz") == [1, 2]
    # a run resumed at step 4 inside the window 3-5 records from there
    _loop(tmp_path / "resumed", [3, 5], run=range(4, 8))
    assert sorted(os.listdir(tmp_path / "resumed" / "profile")) == ["steps-4-5.json.gz", "steps-4-5.txt"]
    assert _marked_steps(tmp_path / "resumed" / "profile" / "steps-4-5.json.gz") == [4, 5]


def test_a_run_that_stops_inside_the_window_writes_nothing_and_no_window_does_nothing(tmp_path):
    _loop(tmp_path / "stopped", [3, 5], stop_at=4)
    assert not os.path.exists(tmp_path / "stopped" / "profile")
    assert not torch.autograd.profiler._is_profiler_enabled  # the profiler was stopped
    assert set(_loop(tmp_path / "none", []).values()) == {0.0}
    assert not os.path.exists(tmp_path / "none" / "profile")


def test_a_failing_profiler_is_a_warning_and_the_training_goes_on(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", fail)
    with pytest.warns(UserWarning, match=r"profile of steps 3-5 was not written \(OSError: .*No space left.*the "
                                         r"training goes on"):
        spent = _loop(tmp_path / "full", [3, 5])
    assert sorted(spent) == list(range(1, 8))  # every step ran
    assert os.listdir(tmp_path / "full" / "profile") == ["steps-3-5.txt"]  # whole files only, no temporaries
    assert not torch.autograd.profiler._is_profiler_enabled

    monkeypatch.setattr(torch.profiler.profile, "start", lambda self: fail())
    with pytest.warns(UserWarning, match="profile of steps 3-5 could not start"):
        spent = _loop(tmp_path / "no_start", [3, 5])
    assert sorted(spent) == list(range(1, 8)) and not os.path.exists(tmp_path / "no_start" / "profile")


def test_the_device_line_counts_the_devices_events_only():
    """(GPU events cannot be made on a CPU: key_averages' rows as torch gives them, by hand.)"""
    from types import SimpleNamespace as Row

    from torch.autograd import DeviceType

    rows = [Row(device_type=DeviceType.CUDA, is_user_annotation=False, self_device_time_total=6000, count=40),
            Row(device_type=DeviceType.CUDA, is_user_annotation=False, self_device_time_total=2000, count=4),
            Row(device_type=DeviceType.CUDA, is_user_annotation=True, self_device_time_total=9000, count=2),
            Row(device_type=DeviceType.CPU, is_user_annotation=False, self_device_time_total=8000, count=100)]
    assert device_line(rows, wall=0.010, steps=2) == (
        "device: 22 kernels and copies per step, busy 4.00 ms per step (80% of the wall time; the rest it "
        "waited for the host)")


def test_the_gpu_report_with_torch_cuda_stood_in(tmp_path, monkeypatch):
    """The report's GPU branch on this CPU: torch.cuda's calls stood in (no kernels are recorded,
    so the device line says 0), the clock's synchronisations where the window begins and ends."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: calls.append(("sync", str(device))))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", str(device))))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 80 * 2**30}))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "H100 stand-in")
    model = torch.nn.Linear(8, 8)
    starts = []
    real_profile = torch.autograd.profiler.profile
    monkeypatch.setattr(torch.autograd.profiler, "profile", lambda *a, **k: starts.append(1) or real_profile(*a, **k))
    with pytest.warns(UserWarning, match="CUDA is not available"):  # (torch.profiler: no CUDA activity here)
        with StepProfiler([2, 3], str(tmp_path), torch.device("cuda"), "test") as profiler:
            assert starts == [1]  # once before any step: before CUDA graphs are captured (pytorch#75504)
            for step in range(1, 5):
                profiler.step_begins(step)
                model(torch.randn(4, 8)).sum().backward()
                profiler.step_ends(step)
    assert calls == [("sync", "cuda"), ("reset", "cuda"), ("sync", "cuda")]
    lines = (tmp_path / "profile" / "steps-2-3.txt").read_text().splitlines()
    assert lines[0].startswith("test: steps 2-3 (2 profiled), rank 0 of 1, cuda (H100 stand-in), torch ")
    assert lines[2].startswith("device: 0 kernels and copies per step, busy 0.00 ms per step (0% of the wall time")
    assert lines[3] == "memory: at most 3.00 GiB allocated (4% of the device's 80.0 GiB)"
    assert lines[4] == "" and "Self CPU" in lines[6]  # (the table: no CUDA columns without kernels)


def test_the_memory_line():
    assert memory_line(20 * 2**30, 80 * 2**30) == "memory: at most 20.00 GiB allocated (25% of the device's 80.0 GiB)"


@pytest.mark.parametrize("steps, message", [
    ([3], "takes two steps"), ([5, 3], "takes two steps"), ([0, 2], "takes two steps"),
    ([1, 2, 3], "takes two steps"), ([5, 7], "the run has 6 steps")])
def test_bad_windows_are_refused(steps, message):
    with pytest.raises(BertDetrError, match=message):
        check_profile_steps(steps, "profile_steps", 6)
    check_profile_steps([], "profile_steps", 6)
    check_profile_steps([6, 6], "profile_steps", 6)


def test_bert_pretrain_profiles_with_the_same_numbers(records, tmp_path, capsys):
    plain = tmp_path / "plain"
    pretrain(_config(records, plain))
    profiled = tmp_path / "profiled"
    assert main(["bert", "pretrain", "--input-file", records, "--output-dir", str(profiled), "--bert-config-file",
                 str(_bert_config(tmp_path)), "--vocab-file", VOCAB, "--num-train-steps", "4",
                 "--num-warmup-steps", "1", "--train-batch-size", "4", "--learning-rate", "1e-3", "--save-every", "2",
                 "--log-every", "1", "--no-progress", "--profile-steps", "2", "3"]) == 0
    assert sorted(os.listdir(profiled / "profile")) == ["steps-2-3.json.gz", "steps-2-3.txt"]
    assert (profiled / "profile" / "steps-2-3.txt").read_text().startswith("bert pretrain: steps 2-3 (2 profiled)")
    assert _losses(plain) == _losses(profiled)
    # a window beyond the run: refused before any work
    assert main(["bert", "pretrain", "--input-file", records, "--output-dir", str(tmp_path / "bad"),
                 "--model-size", "tiny", "--vocab-file", VOCAB, "--num-train-steps", "4", "--num-warmup-steps", "1",
                 "--profile-steps", "3", "5"]) == 2
    assert "profile_steps 3 5: the run has 4 steps" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad")
    # --overwrite removes the profile with the rest of the run
    pretrain(_config(records, profiled, overwrite=True, num_train_steps=2))
    assert not os.path.exists(profiled / "profile")


def test_detr_train_profiles_with_the_same_numbers(shapes, tmp_path, capsys):
    assert main(["detr", "train", str(_detr_config(shapes, tmp_path, tmp_path / "plain", log_every=1))]) == 0
    config = _detr_config(shapes, tmp_path, tmp_path / "profiled", log_every=1)
    assert main(["detr", "train", str(config), "--profile-steps", "1", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "profiled" / "profile")) == ["steps-1-2.json.gz", "steps-1-2.txt"]
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "profiled")
    assert main(["detr", "train", str(config), "--overwrite", "--profile-steps", "2", "3"]) == 2
    assert "train.profile_steps 2 3: the run has 2 steps" in capsys.readouterr().err


def test_fine_tuning_profiles_with_the_same_numbers(tmp_path, capsys):
    from tests.bert.finetuning.test_classifier import TINY as CLS_TINY
    from bertdetr.bert.finetuning.classifier import run_classifier
    from bertdetr.bert.model import BertConfig
    from tests.bert.finetuning.test_classifier import _config as classify_config

    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(json.dumps(BertConfig(**CLS_TINY).to_google_dict()))
    run_classifier(classify_config(str(bert_config), tmp_path / "plain", log_every=1))
    run_classifier(classify_config(str(bert_config), tmp_path / "profiled", log_every=1, profile_steps=[5, 6]))
    assert sorted(os.listdir(tmp_path / "profiled" / "profile")) == ["steps-5-6.json.gz", "steps-5-6.txt"]
    assert (tmp_path / "profiled" / "profile" / "steps-5-6.txt").read_text().startswith("bert classify: steps 5-6")
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "profiled")
    with pytest.raises(BertDetrError, match="--profile-steps 5 7: the run has 6 steps"):
        run_classifier(classify_config(str(bert_config), tmp_path / "bad", profile_steps=[5, 7]))


def _losses(run):
    return [v for _, v in read_scalars(os.path.join(run, "scalars.csv"))["loss"]]

