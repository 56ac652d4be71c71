"""The run folder rule of the trainers: a folder holding a run needs --resume or --overwrite, a
folder of the other kind is refused, a resume says which changed settings it applies and which it
keeps, and a new run that fails before its first checkpoint leaves no logs behind; one run at a time
(a second process refused naming the holder, a killed one's lock taken over), and a resume drops
what a killed run left after its last checkpoint (scalars, a cut-off checkpoint file)."""

import json
import os
import shutil

import pytest

from bertdetr.bert.model import BertConfig
from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
from bertdetr.training.checkpoint import list_checkpoints
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from bertdetr.training.scalars import read_scalars
from tests.bert.pretraining.test_pretrain import TINY, VOCAB
from tests.bert.pretraining.test_pretrain import records as record_files  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def records(record_files):
    return record_files[0]


def _config(records, out, **kw):
    base = dict(input_files=[records], output_dir=str(out), model=BertConfig(**TINY), vocab_file=VOCAB,
                batch_size=4, num_train_steps=4, num_warmup_steps=1, learning_rate=1e-3, save_every=2,
                log_every=1, progress=False)
    base.update(kw)
    return PretrainConfig(**base)


def _steps(out):
    return [s for s, _ in read_scalars(os.path.join(out, "scalars.csv"))["loss"]]


def _files(run):
    """The run's files and when each was last written (``.lock`` is written by every attempt)."""
    return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"}


def test_a_folder_holding_a_run_needs_resume_or_overwrite(records, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(_config(records, run, stop_at_step=2))
    before = _files(run)
    with pytest.raises(BertDetrError, match="already holds a run with checkpoints up to step 2.*--resume.*--overwrite"):
        pretrain(_config(records, run))
    assert _files(run) == before
    # the same through the command line: exit 2, nothing changed
    assert main(["bert", "pretrain", "--input-file", records, "--output-dir", str(run), "--bert-config-file",
                 str(_bert_config(tmp_path)), "--vocab-file", VOCAB, "--num-train-steps", "4",
                 "--num-warmup-steps", "1", "--train-batch-size", "4", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("bertdetr: error: ")
    assert _files(run) == before
    # --overwrite starts again: the old steps are gone from the log
    (run / "notes.txt").write_text("mine")
    pretrain(_config(records, run, overwrite=True, save_every=4))
    assert _steps(run) == [1, 2, 3, 4]
    assert [s for s, _ in list_checkpoints(run)] == [4]
    assert (run / "notes.txt").read_text() == "mine"  # not a run file: left alone


def _bert_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**TINY, "hidden_act": "gelu", "type_vocab_size": 2, "initializer_range": 0.02,
                                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}))
    return path


def test_resume_says_what_it_applies_and_keeps(records, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(_config(records, run, stop_at_step=2))
    capsys.readouterr()
    pretrain(_config(records, run, resume=True, learning_rate=5e-4, seed=7, stop_at_step=3))
    out = capsys.readouterr().out
    assert "learning_rate: 0.001 -> 0.0005 (applied)" in out
    assert "seed: kept 12345 from the checkpoint, not 7" in out
    recorded = json.loads((run / "train_config.json").read_text())
    assert recorded["learning_rate"] == 5e-4 and recorded["seed"] == 12345 and recorded["run"] == "bert pretrain"
    # the new peak lr is in force: Google's schedule at step 2 of 4 with 1 warmup step
    lr = dict(read_scalars(run / "scalars.csv")["lr"])[3]
    assert lr == pytest.approx(5e-4 * (1 - 2 / 4))


def test_resume_in_an_empty_folder_starts_a_new_run(records, tmp_path):
    assert pretrain(_config(records, tmp_path / "new", resume=True, num_train_steps=2))["step"] == 2


def test_a_crc_error_in_a_new_run_leaves_no_logs(records, tmp_path):
    data = bytearray(open(records, "rb").read() * 4)  # 140 records: the checks before training read 101
    data[-20] ^= 0xFF  # the last record's payload: found while training
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(data))
    run = tmp_path / "run"
    with pytest.raises(BertDetrError, match="(?i)crc"):
        pretrain(_config(records, run, input_files=[str(bad)]))
    assert not [n for n in os.listdir(run) if not n.startswith(".")]
    assert pretrain(_config(records, run, num_train_steps=2))["step"] == 2  # no --overwrite needed


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, "train", ShapesConfig(num_images=4, min_size=48, max_size=56, max_objects=2, seed=0))
    return root


def _detr_config(shapes, tmp_path, output_dir, **train):
    cfg = {"data": {"train_ann": str(shapes / "train.json"), "train_images": str(shapes / "images"),
                    "train_scales": [48], "max_size": 64, "crop_resize": [48], "crop_size": [32, 48], "test_size": 48},
           "model": {"preset": "r18", "num_queries": 5,
                     "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
                     "decoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
                     "positional_encoding": {"num_feats": 16}},
           "train": {"output_dir": str(output_dir), "epochs": 1, "batch_size": 2, "num_workers": 0,
                     "progress": False, **train}}
    path = tmp_path / "detr.json"
    path.write_text(json.dumps(cfg))
    return path


def test_detr_refuses_a_bert_run_folder_and_the_rule_holds_for_detr(records, shapes, tmp_path, capsys):
    bert_run = tmp_path / "bert"
    pretrain(_config(records, bert_run, num_train_steps=2))
    exported = sorted(p.name for p in (bert_run / "model").iterdir())
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert main(["detr", "train", str(_detr_config(shapes, tmp_path, bert_run)), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bertdetr: error: ") and "holds a `bertdetr bert pretrain` run" in err
    assert sorted(p.name for p in (bert_run / "model").iterdir()) == exported
    detr_run = tmp_path / "detr"
    cfg = _detr_config(shapes, tmp_path, detr_run)
    assert main(["detr", "train", str(cfg)]) == 0
    assert main(["detr", "train", str(cfg)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["detr", "train", str(cfg), "--overwrite"]) == 0
    assert json.loads((detr_run / "train_config.json").read_text())["run"] == "detr train"
    # and BERT refuses the DETR folder
    with pytest.raises(BertDetrError, match="holds a `bertdetr detr train` run"):
        pretrain(_config(records, detr_run, overwrite=True))
    shutil.rmtree(detr_run)


# ---- one run at a time, and what an interrupted run leaves


def _hold_lock(folder):
    """Another process holding the folder's lock, until it is killed."""
    import subprocess
    import sys

    code = ("import sys, time; from bertdetr.training.folder import RunLock; RunLock(sys.argv[1]); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_is_refused_and_a_dead_ones_lock_taken_over(records, shapes, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(_config(records, run, stop_at_step=2))
    before = _files(run)
    holder = _hold_lock(run)
    try:
        with pytest.raises(BertDetrError, match=rf"{run} is in use by another run \(PID {holder.pid}\)"):
            pretrain(_config(records, run, resume=True))
        assert _files(run) == before  # refused at once: nothing written, nothing removed
        detr = _detr_config(shapes, tmp_path, run)
        assert main(["detr", "train", str(detr), "--resume"]) == 2
        assert f"in use by another run (PID {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (as SIGKILL, with no chance to clean up): its lock went with it
    assert pretrain(_config(records, run, resume=True))["step"] == 4


def test_classify_takes_the_folder_lock_too(tmp_path):
    from tests.bert.finetuning.test_classifier import GLUE, TINY as CLS_TINY, VOCAB as CLS_VOCAB
    from bertdetr.bert.finetuning.classifier import ClassifierConfig, run_classifier

    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(json.dumps(BertConfig(**CLS_TINY).to_google_dict()))
    out = tmp_path / "out"
    holder = _hold_lock(out)
    try:
        with pytest.raises(BertDetrError, match=f"in use by another run \\(PID {holder.pid}\\)"):
            run_classifier(ClassifierConfig(task_name="mrpc", data_dir=os.path.join(GLUE, "MRPC"), output_dir=str(out),
                                            vocab_file=CLS_VOCAB, bert_config_file=str(bert_config),
                                            max_seq_length=64, do_train=True, train_batch_size=2, progress=False))
    finally:
        holder.kill()
        holder.wait()


def test_a_resume_drops_what_the_killed_stretch_left(records, tmp_path):
    """A run killed after logging steps 3-4 but before their checkpoint, mid-save: the resume logs
    each step once (the uninterrupted run's rows) and removes the cut-off checkpoint file."""
    pretrain(_config(records, tmp_path / "full", num_train_steps=6))
    run = tmp_path / "run"
    pretrain(_config(records, run, num_train_steps=6, stop_at_step=4))
    os.remove(run / "ckpt-00000004.pt")  # as if killed before saving step 4 ...
    (run / ".ckpt-00000004.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # ... while writing it
    pretrain(_config(records, run, num_train_steps=6, resume=True))
    assert not list(run.glob(".*.tmp"))
    assert _steps(run) == _steps(tmp_path / "full") == [1, 2, 3, 4, 5, 6]
    loss = lambda d: [v for _, v in read_scalars(d / "scalars.csv")["loss"]]  # noqa: E731
    assert loss(run) == loss(tmp_path / "full")
    with open(run / "scalars.csv") as f:
        rows = [line.split(",")[:2] for line in f.read().splitlines()[1:]]
    assert len(rows) == len(set(map(tuple, rows)))  # no (step, name) twice


# ---- preemption: SIGTERM / SIGINT save a checkpoint at the step, then the command exits 143 / 130


def _run_until(args, folder, signum, min_step=3, timeout=120):
    """Starts ``bertdetr ARGS`` in its own process, sends ``signum`` once ``folder/scalars.csv``
    has a row of step ``min_step``; returns (exit status, stderr)."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "bertdetr.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    csv = folder / "scalars.csv"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if csv.exists() and any(line.startswith(f"{min_step},") for line in csv.read_text().splitlines()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_sigterm_saves_the_step_and_resume_goes_on_as_if_never_stopped(records, tmp_path):
    import signal

    full = tmp_path / "full"
    pretrain(_config(records, full, num_train_steps=60, save_every=50))
    run = tmp_path / "run"
    args = ["bert", "pretrain", "--input-file", records, "--output-dir", str(run), "--bert-config-file",
            str(_bert_config(tmp_path)), "--vocab-file", VOCAB, "--num-train-steps", "60", "--num-warmup-steps", "1",
            "--train-batch-size", "4", "--learning-rate", "1e-3", "--save-checkpoints-steps", "50", "--log-every", "1",
            "--no-progress", "--device", "cpu", "--num-threads", "1"]
    status, err = _run_until(args, run, signal.SIGTERM)
    assert status == 143, err[-2000:]
    step = list_checkpoints(run)[-1][0]
    assert 3 <= step < 50  # saved at the step it stopped at, not at a save_every step
    assert f"stopped by SIGTERM at step {step}" in err and "--resume" in err
    assert main(args + ["--resume"]) == 0
    loss = lambda d: [v for _, v in read_scalars(d / "scalars.csv")["loss"]]  # noqa: E731
    assert _steps(run) == list(range(1, 61)) and loss(run) == loss(full)


def test_sigint_stops_detr_mid_epoch_and_resume_goes_on(shapes, tmp_path):
    import signal

    cfg = _detr_config(shapes, tmp_path, tmp_path / "run", epochs=40, batch_size=1, log_every=1, save_every=40)
    status, err = _run_until(["detr", "train", str(cfg), "--num-threads", "1"], tmp_path / "run", signal.SIGINT)
    assert status == 130, err[-2000:]
    (it, path), = list_checkpoints(tmp_path / "run")
    from bertdetr.training.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    assert state["iteration"] == it and 3 <= it < 160
    assert f"stopped by SIGINT at iteration {it} (epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']})" in err
    assert main(["detr", "train", str(cfg), "--resume", "--epochs", "2"]) == 0  # finishes sooner, from there


def test_a_resume_passes_over_a_checkpoint_that_cannot_be_loaded(tmp_path, capsys):
    """The newest checkpoint cut off (a full disk, a kill outside the rename): said, moved aside
    (kept), and the one before it resumed from; every one unreadable: the newest one's error."""
    import torch

    from bertdetr.errors import BertDetrError
    from bertdetr.training.checkpoint import list_checkpoints, save_checkpoint
    from bertdetr.training.distributed import Distributed
    from bertdetr.training.run import Run

    for step in (5, 10):
        save_checkpoint({"step": step, "w": torch.full((3,), float(step))}, tmp_path, step, keep_last=0)
    newest = list_checkpoints(tmp_path)[-1][1]
    with open(newest, "r+b") as f:
        f.truncate(100)
    run = Run(Distributed(), str(tmp_path), "bert pretrain", resumed_from=newest)
    state = run.load_resumed()
    assert state["step"] == 5 and run.resumed_from == list_checkpoints(tmp_path)[-1][1]
    assert "cannot load checkpoint" in capsys.readouterr().out
    assert os.path.isfile(newest + ".unreadable") and [s for s, _ in list_checkpoints(tmp_path)] == [5]
    open(run.resumed_from, "wb").close()  # the last one empty too
    with pytest.raises(BertDetrError, match=r"cannot load checkpoint .*ckpt-0*5\.pt: .* \(an empty file\)"):
        Run(Distributed(), str(tmp_path), "bert pretrain", resumed_from=run.resumed_from).load_resumed()


def test_a_stop_signal_after_the_training_lets_the_run_finish(tmp_path, capsys):
    """SIGTERM between the training loop's end and ``Run.close`` (the export, evaluation, plots):
    said, and the run goes on to finish them; the handlers of before are back after ``close``."""
    import signal
    import time

    from bertdetr.training.distributed import Distributed
    from bertdetr.training.run import Run

    before = signal.getsignal(signal.SIGTERM)
    run = Run(Distributed(), str(tmp_path), "bert pretrain")
    with run.logging(2, 0, "test", "step", progress=False):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # (handled at the next instruction of the main thread: this process goes on)
    assert "SIGTERM: the training is done; finishing its outputs first" in capsys.readouterr().out
    run.close()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_new_run_drops_the_scalars_of_one_killed_before_any_checkpoint(tmp_path):
    """kill -9 (or a lost node) before the first checkpoint leaves scalars.csv and no checkpoint: the
    same command then starts a new run, whose rows followed the dead one's as if one run (step 10
    logged twice). Its recorded config stays; a resumed run keeps its rows up to its checkpoint."""
    from bertdetr.training.distributed import Distributed
    from bertdetr.training.run import Run

    (tmp_path / "scalars.csv").write_text("step,name,value\n10,loss,9.0\n20,loss,8.0\n")
    (tmp_path / "train_config.json").write_text("{}")
    run = Run(Distributed(), str(tmp_path), "bert pretrain")
    with run.logging(30, 0, "test", "step", progress=False) as log:
        log.log(10, {"loss": 7.0})
    run.close()
    assert read_scalars(str(tmp_path / "scalars.csv")) == {"loss": [(10, 7.0)]}
    assert (tmp_path / "train_config.json").exists()
