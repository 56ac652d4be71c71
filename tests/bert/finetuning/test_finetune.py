"""The fine-tuning commands' run folders: each kind of run keeps to its own folder."""

import json

import pytest

from bertdetr.bert.finetuning.finetune import run_checkpoint
from bertdetr.errors import BertDetrError
from bertdetr.training.folder import BERT_PRETRAIN, prepare_run_folder, run_kind


def _folder(tmp_path, name, content):
    d = tmp_path / name
    d.mkdir()
    for file, value in content.items():
        (d / file).write_text(json.dumps(value))
    return str(d)


def test_fine_tuning_refuses_another_kind_of_run(tmp_path):
    pretrain = _folder(tmp_path, "pretrain", {"train_config.json": {"run": BERT_PRETRAIN}})
    classify = _folder(tmp_path, "classify", {"classify_config.json": {"task_name": "mrpc"}})
    with pytest.raises(BertDetrError, match=r"holds a `bertdetr bert pretrain` run.*--init-checkpoint"):
        run_checkpoint(pretrain, do_train=True, resume=True, kind="bert classify")
    with pytest.raises(BertDetrError, match=r"holds a `bertdetr bert classify` run, not a `bertdetr bert squad`"):
        run_checkpoint(classify, do_train=False, resume=False, kind="bert squad")
    # its own folder (and a new one) are fine
    assert run_checkpoint(classify, do_train=True, resume=False, kind="bert classify") is None
    assert run_checkpoint(str(tmp_path / "new"), do_train=True, resume=False, kind="bert squad") is None


@pytest.mark.parametrize("situation", ["held", "ner"])
def test_a_refused_folder_keeps_its_features(tmp_path, situation, capsys):
    """A folder another process's run holds, or a run of another kind, is refused before the features
    are written: the files there are as they were (they were overwritten, then the run refused)."""
    from bertdetr.cli import main
    from bertdetr.training.folder import RunLock

    out = tmp_path / "out"
    if situation == "ner":
        assert main(_ner_args(tmp_path, out, "--train-batch-size", "8", "--stop-at-step", "2")) == 0
    else:
        out.mkdir()
        (out / "train.tf_record").write_bytes(b"theirs")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".tf_record"}
    lock = RunLock(str(out)) if situation == "held" else None
    try:
        assert main(["bert", "classify", "--task-name", "tnews", "--data-dir", TNEWS, "--output-dir", str(out),
                     "--vocab-file", VOCAB_ZH, "--bert-config-file", _bert_config(tmp_path), "--max-seq-length", "16",
                     "--do-train", "--no-progress"]) == 2
    finally:
        if lock:
            lock.release()
    err = capsys.readouterr().err
    assert ("is in use by another run" in err) if situation == "held" else \
        ("holds a `bertdetr bert ner` run, not a `bertdetr bert classify` run: choose another --output-dir\n" in err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".tf_record"} == before


def test_trainers_do_not_take_a_fine_tuning_folder_for_their_own(tmp_path):
    # a classify run exports a BERT directory (model/vocab.txt), which alone would read as pretraining's
    squad = _folder(tmp_path, "squad", {"squad_config.json": {}})
    (tmp_path / "squad" / "model").mkdir()
    (tmp_path / "squad" / "model" / "vocab.txt").write_text("[PAD]\n")
    assert run_kind(squad) == "bert squad"
    with pytest.raises(BertDetrError, match="holds a `bertdetr bert squad` run"):
        prepare_run_folder(squad, BERT_PRETRAIN, resume=False, overwrite=True)
    assert (tmp_path / "squad" / "model" / "vocab.txt").exists()


# ---- fine-tuning at scale: micro-batches, processes, precision ------------------------------------

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

from bertdetr.bert.finetuning.finetune import FinetuneConfig, make_tuning, rank_batches, train_batch_indices  # noqa: E402
from bertdetr.bert.heads import BertForTokenClassification  # noqa: E402
from bertdetr.bert.model import BertConfig  # noqa: E402
from bertdetr.cli import main  # noqa: E402
from bertdetr.training.distributed import Distributed  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
NER = os.path.join(DATA, "zh", "ner")
VOCAB_ZH = os.path.join(DATA, "zh", "vocab_zh.txt")
TNEWS = os.path.join(DATA, "clue", "tnews")


@pytest.mark.parametrize("world, accum", [(1, 1), (1, 3), (2, 1), (2, 2), (4, 2)])
def test_the_ranks_of_a_step_see_exactly_the_one_process_global_batch(world, accum):
    options = FinetuneConfig(output_dir="unused", max_seq_length=8, train_batch_size=3, grad_accum=accum, seed=7)
    for step in range(5):
        together = [i for rank in range(world) for micro in rank_batches(17, options, Distributed(rank, world), step)
                    for i in micro]
        assert together == train_batch_indices(17, 3 * accum * world, 7, step)
        assert all(len(micro) == 3 for micro in rank_batches(17, options, Distributed(0, world), step))


def test_compile_and_precision_settings_reach_the_step():
    options = FinetuneConfig(output_dir="unused", max_seq_length=8, compile=True, bf16=True, learning_rate=1e-3)
    model = torch.nn.Linear(2, 2)
    t = make_tuning(model, options, Distributed(), torch.device("cpu"), 10, 1)
    assert t.net is not model and t.net._orig_mod is model  # torch.compile's wrapper, not yet compiled
    assert t.precision.dtype == torch.bfloat16
    with pytest.raises(BertDetrError, match="--bf16 and --fp16: choose one"):
        FinetuneConfig(output_dir="unused", max_seq_length=8, bf16=True, fp16=True)


def _bert_config(tmp_path):
    with open(VOCAB_ZH, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    path = tmp_path / "bert_config.json"
    # no dropout: the two runs below do the same arithmetic (up to the order of float sums)
    path.write_text(json.dumps(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to_google_dict()))
    return str(path)


def _ner_args(tmp_path, out, *extra):
    return ["bert", "ner", "--data-dir", NER, "--output-dir", str(out), "--vocab-file", VOCAB_ZH,
            "--bert-config-file", _bert_config(tmp_path), "--max-seq-length", "32", "--do-train", "--do-eval",
            "--num-train-epochs", "1", "--learning-rate", "1e-3", "--no-progress", "--device", "cpu", *extra]


@pytest.mark.parametrize("head", [(), ("--crf",)], ids=["softmax", "crf"])
def test_two_processes_train_as_one_with_their_global_batch(tmp_path, head):
    """torchrun with 2 processes of 4 examples each = one process with 2 micro-batches of 4: the
    same examples per step, the same gradients (a mean of two micro-batch means), the same model;
    with a CRF too (its own parameter groups and learning rate)."""
    one = tmp_path / "one"
    assert main(_ner_args(tmp_path, one, "--train-batch-size", "4", "--grad-accum", "2", *head)) == 0
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bertdetr.cli", *_ner_args(tmp_path, two, "--train-batch-size", "4", *head)],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a = BertForTokenClassification.from_pretrained(one / "model").state_dict()
    b = BertForTokenClassification.from_pretrained(two / "model").state_dict()
    for k in a:
        if "pooler" not in k:
            torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
    ma = json.loads((one / "eval_metrics.json").read_text())
    mb = json.loads((two / "eval_metrics.json").read_text())
    assert mb["global_step"] == ma["global_step"] == 50  # int(400 windows / 8 * 1 epoch)
    assert mb["eval_f1"] == pytest.approx(ma["eval_f1"], abs=0.02)
    # everything written once, by the main process: no temporary left, one set of features
    assert not [p for p in os.listdir(two) if p.endswith(".tmp")]
    assert sorted(p for p in os.listdir(two) if p.endswith(".tf_record")) == ["eval.tf_record", "train.tf_record"]


def test_a_run_resumes_with_more_processes_on_the_same_batches(tmp_path):
    """Stopped with one process, resumed with two (the same global batch): the checkpoint's one RNG
    state is no rank's, so the dropout streams start afresh, said once; the batches are the step's,
    so the model is the uninterrupted run's (this config has no dropout)."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_ner_args(tmp_path, full, "--train-batch-size", "4", "--grad-accum", "2")) == 0
    assert main(_ner_args(tmp_path, part, "--train-batch-size", "4", "--grad-accum", "2", "--stop-at-step", "20")) == 0
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bertdetr.cli", *_ner_args(tmp_path, part, "--train-batch-size", "4", "--resume")],
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("at step 20 with 2 processes (the checkpoint's run had 1: the same batches") == 1
    a = BertForTokenClassification.from_pretrained(full / "model").state_dict()
    b = BertForTokenClassification.from_pretrained(part / "model").state_dict()
    for k in a:
        if "pooler" not in k:
            torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("flag", ["--bf16", "--fp16"])
def test_mixed_precision_fine_tuning_runs_and_resumes(tmp_path, flag):
    out = tmp_path / "out"
    args = _ner_args(tmp_path, out, "--train-batch-size", "16", flag, "--save-checkpoints-steps", "10",
                     "--num-workers", "1")
    assert main(args + ["--stop-at-step", "10"]) == 0
    assert main(args + ["--resume"]) == 0
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["global_step"] == 25 and metrics["eval_f1"] > 0
    whole = tmp_path / "whole"
    assert main(_ner_args(tmp_path, whole, "--train-batch-size", "16", flag, "--num-workers", "1")) == 0
    assert json.loads((whole / "eval_metrics.json").read_text())["eval_f1"] == pytest.approx(metrics["eval_f1"])
    shutil.rmtree(whole)


# ---- the step on an accelerator: no reads from the device but at logged steps ----------------------

from bertdetr.bert import optimization as optimization_module  # noqa: E402
from bertdetr.bert.finetuning import finetune as finetune_module  # noqa: E402
from bertdetr.training.checkpoint import list_checkpoints  # noqa: E402
from bertdetr.training.scalars import read_scalars  # noqa: E402


def test_no_host_reads_on_steps_that_do_not_log(tmp_path, monkeypatch):
    """As ``bert pretrain`` (issue 18): a fine-tuning step that does not log reads nothing back from
    the device (no .item(), bool(), .tolist()...), a logging step reads once. Not counted: the host's
    own tensors of the batches (``train_batch_indices``' shuffle, ``take_batch`` cutting a batch to
    its longest row, before it goes to the device)."""
    from tests.device_reads import count_reads, in_stack

    watched = ("finetuning/finetune.py", "bert/optimization.py", "training/precision.py", "bert/model.py",
               "bert/heads.py", "training/run.py", "training/distributed.py")
    host = ("take_batch", "train_batch_indices")
    reads = count_reads(monkeypatch, watched, lambda frame: in_stack(frame, lambda f: f.f_code.co_name in host))
    real_step, marks = finetune_module.finetune_step, []

    def marked_step(*args):
        marks.append(len(reads))
        return real_step(*args)

    monkeypatch.setattr(finetune_module, "finetune_step", marked_step)
    assert main(_ner_args(tmp_path, tmp_path / "out", "--train-batch-size", "50", "--log-every", "3")) == 0
    assert len(marks) == 8  # int(400 windows / 50)
    per_step = [reads[a:b] for a, b in zip(marks, marks[1:])]  # steps 1..7 (step 8 saves at the end)
    assert [len(r) for r in per_step] == [0, 0, 1, 0, 0, 1, 0], per_step
    rate = read_scalars(tmp_path / "out" / "scalars.csv")["sequences_per_s"]  # logged with the one read
    assert [step for step, _ in rate] == [3, 6, 8] and all(v > 0 for _, v in rate)


def _nan_norm_at(monkeypatch, steps):
    """The gradient norm of the given steps (1-based) made NaN, as an overflow would."""
    real, calls = optimization_module.clip_by_global_norm, {"n": 0}

    def nan_norm(params, clip):
        calls["n"] += 1
        norm = real(params, clip)
        return torch.tensor(float("nan")) if calls["n"] in steps else norm

    monkeypatch.setattr(optimization_module, "clip_by_global_norm", nan_norm)  # (clip_and_update's)
    return calls


def test_non_finite_steps_are_skipped_on_the_device_until_too_many_in_a_row(tmp_path, monkeypatch, capsys):
    calls = _nan_norm_at(monkeypatch, (3, 4))
    # two in a row allowed: the run goes on to the end, the two steps skipped and counted
    two = tmp_path / "two"
    assert main(_ner_args(tmp_path, two, "--train-batch-size", "50", "--max-non-finite-steps", "3")) == 0
    assert read_scalars(two / "scalars.csv")["non_finite_steps"] == [(8, 2.0)]
    assert json.loads((two / "eval_metrics.json").read_text())["global_step"] == 8
    calls["n"] = 0
    one = tmp_path / "one"
    code = main(_ner_args(tmp_path, one, "--train-batch-size", "50", "--max-non-finite-steps", "2", "--log-every", "2",
                          "--save-checkpoints-steps", "2"))
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss at step 3 (loss" in err and "2 step(s) in a row skipped" in err, err
    assert "the last good checkpoint is" in err and "ckpt-00000002.pt" in err  # found at the logged step 4, before its save)
    assert not (one / "model").exists()
    with pytest.raises(BertDetrError, match="--max_non_finite_steps must be >= 1, got 0"):
        FinetuneConfig(output_dir="unused", max_seq_length=8, max_non_finite_steps=0)


def test_the_first_non_finite_step_stops_the_run_by_default(tmp_path, monkeypatch, capsys):
    _nan_norm_at(monkeypatch, (3,))
    out = tmp_path / "out"
    code = main(_ner_args(tmp_path, out, "--train-batch-size", "50", "--log-every", "5", "--save-checkpoints-steps", "2"))
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss at step 3 " in err and "1 step(s) in a row skipped" in err, err
    # found at the logged step 5; the checkpoint of step 4 holds the skipped step 3 untouched
    assert [s for s, _ in list_checkpoints(out)] == [2, 4]


def test_num_threads_sets_the_cpu_threads_and_is_checked(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        assert main(_ner_args(tmp_path, tmp_path / "out", "--train-batch-size", "200", "--num-threads", "1")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(_ner_args(tmp_path, tmp_path / "bad", "--num-threads", "0")) == 2
    assert "--num_threads must be >= 1, got 0" in capsys.readouterr().err


def test_pad_to_multiple_of_bounds_the_batch_lengths_with_the_same_training(tmp_path, monkeypatch):
    real_step, widths = finetune_module.finetune_step, []

    def watching(t, micro_batches, step):
        widths.append(micro_batches[0]["input_ids"].shape[1])
        return real_step(t, micro_batches, step)

    monkeypatch.setattr(finetune_module, "finetune_step", watching)
    assert main(_ner_args(tmp_path, tmp_path / "cut", "--train-batch-size", "16")) == 0
    cut, widths[:] = list(widths), []
    assert main(_ner_args(tmp_path, tmp_path / "padded", "--train-batch-size", "16", "--pad-to-multiple-of", "12")) == 0
    assert len(set(cut)) > 2 and all(w % 12 == 0 or w == 32 for w in widths)  # (32: --max-seq-length)
    assert set(widths) <= {12, 24, 32} and [min(-(-c // 12) * 12, 32) for c in cut] == widths
    a = read_scalars(tmp_path / "cut" / "scalars.csv")["loss"]
    b = read_scalars(tmp_path / "padded" / "scalars.csv")["loss"]
    assert [s for s, _ in a] == [s for s, _ in b] and [v for _, v in b] == pytest.approx([v for _, v in a], rel=1e-5)
    with pytest.raises(BertDetrError, match="--pad_to_multiple_of must be >= 1, got 0"):
        FinetuneConfig(output_dir="unused", max_seq_length=8, pad_to_multiple_of=0)
    wa = BertForTokenClassification.from_pretrained(tmp_path / "cut" / "model").state_dict()
    wb = BertForTokenClassification.from_pretrained(tmp_path / "padded" / "model").state_dict()
    for k in wa:
        if "pooler" not in k:  # (not in a token classifier's files: drawn afresh on loading)
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6, msg=k)


def test_eval_every_logs_the_dev_metrics_and_leaves_the_training_as_it_was(tmp_path, capsys):
    assert main(_ner_args(tmp_path, tmp_path / "plain", "--train-batch-size", "50")) == 0
    assert main(_ner_args(tmp_path, tmp_path / "evaluated", "--train-batch-size", "50", "--eval-every", "3")) == 0
    rows = read_scalars(tmp_path / "evaluated" / "scalars.csv")
    assert [step for step, _ in rows["eval_f1"]] == [3, 6]  # (step 8, the last: eval_metrics.json, as before)
    assert {"eval_precision", "eval_recall", "eval_accuracy", "eval_loss"} <= set(rows)
    assert all(0 <= v <= 1 for _, v in rows["eval_f1"] + rows["eval_accuracy"])
    assert read_scalars(tmp_path / "evaluated" / "scalars.csv")["loss"] == read_scalars(
        tmp_path / "plain" / "scalars.csv")["loss"]  # (with dropout on: test_classifier's eval_every test)
    a = BertForTokenClassification.from_pretrained(tmp_path / "plain" / "model").state_dict()
    b = BertForTokenClassification.from_pretrained(tmp_path / "evaluated" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "pooler" not in k)
    final = json.loads((tmp_path / "evaluated" / "eval_metrics.json").read_text())
    assert final["eval_f1"] == json.loads((tmp_path / "plain" / "eval_metrics.json").read_text())["eval_f1"]
    capsys.readouterr()
    args = [a for a in _ner_args(tmp_path, tmp_path / "bad", "--eval-every", "3") if a != "--do-eval"]
    assert main(args) == 2 and "--eval-every evaluates on the dev set while training" in capsys.readouterr().err
    with pytest.raises(BertDetrError, match="bert classify, ner and multiple-choice, with --do-eval"):  # (squad: no do_eval)
        FinetuneConfig(output_dir="unused", max_seq_length=8, eval_every=3)
