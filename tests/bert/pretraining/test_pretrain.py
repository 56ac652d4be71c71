import itertools
import json
import os
import subprocess
import sys

import pytest
import torch

from bertdetr.bert import optimization as optimization_module
from bertdetr.bert.pretraining import evaluation as evaluation_module
from bertdetr.bert.pretraining import pretrain as pretrain_module
from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
from bertdetr.bert.pretraining.make_data import make_pretraining_data
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.training.checkpoint import list_checkpoints, load_checkpoint
from bertdetr.cli import main
from bertdetr.errors import BertDetrError
from bertdetr.training.scalars import read_scalars

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bert")
VOCAB = os.path.join(DATA, "vocab-uncased.txt")
TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    make_pretraining_data([os.path.join(DATA, "sample_text.txt")], str(out / "train.tfrecord"), VOCAB,
                          PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=2))
    make_pretraining_data([os.path.join(DATA, "sample_text.txt")], str(out / "eval.tfrecord"), VOCAB,
                          PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1,
                                                random_seed=7))
    return str(out / "train.tfrecord"), str(out / "eval.tfrecord")


def _config(records, out, **kw):
    base = dict(input_files=[records[0]], output_dir=str(out), model=BertConfig(**TINY), vocab_file=VOCAB,
                batch_size=4, num_train_steps=6, num_warmup_steps=2, learning_rate=1e-3, save_every=2,
                log_every=1, progress=False, keep_last=2)
    base.update(kw)
    return PretrainConfig(**base)


def _losses(out):
    return [v for _, v in read_scalars(os.path.join(out, "scalars.csv"))["loss"]]


def test_resume_gives_the_losses_of_an_uninterrupted_run(records, tmp_path):
    full = pretrain(_config(records, tmp_path / "full"))
    assert full["step"] == 6
    stopped = pretrain(_config(records, tmp_path / "split", stop_at_step=3))
    assert stopped["step"] == 3 and "export" not in stopped
    resumed = pretrain(_config(records, tmp_path / "split", resume=True))
    assert resumed["step"] == 6
    assert _losses(tmp_path / "full") == _losses(tmp_path / "split")
    assert len(_losses(tmp_path / "full")) == 6
    # keep_last=2: steps 4 and 6 remain
    assert [s for s, _ in list_checkpoints(tmp_path / "full")] == [4, 6]
    state = load_checkpoint(list_checkpoints(tmp_path / "full")[-1][1])
    assert {"model", "optimizer", "scheduler", "step", "rng"} <= set(state)
    assert os.path.isfile(tmp_path / "full" / "loss_curves.png")
    assert os.path.isfile(tmp_path / "full" / "model" / "vocab.txt")


def test_eval_metrics_are_googles_metric_fn(records, tmp_path):
    summary = pretrain(_config(records, tmp_path, num_train_steps=2, eval_files=[records[1]]))
    metrics = summary["eval"]
    text = (tmp_path / "eval_results.txt").read_text()
    assert "masked_lm_accuracy = " in text and "global_step = 2" in text
    assert json.loads((tmp_path / "eval_metrics.json").read_text())["masked_lm_loss"] == pytest.approx(metrics["masked_lm_loss"])
    # by hand on the same model
    from bertdetr.bert.pretraining.dataset import iter_eval_batches
    from bertdetr.bert.model import BertForPreTraining

    model = BertForPreTraining.from_pretrained(tmp_path / "model").eval()
    correct = nll = weight = 0.0
    for batch in iter_eval_batches([records[1]], 64):
        with torch.no_grad():
            logits = model(**batch)["masked_lm_logits"]
        logp = logits.log_softmax(-1)
        w = batch["masked_lm_weights"]
        correct += ((logp.argmax(-1) == batch["masked_lm_ids"]).float() * w).sum().item()
        nll += (-logp.gather(-1, batch["masked_lm_ids"][..., None])[..., 0] * w).sum().item()
        weight += w.sum().item()
    assert metrics["masked_lm_accuracy"] == pytest.approx(correct / weight, abs=1e-6)
    assert metrics["masked_lm_loss"] == pytest.approx(nll / weight, rel=1e-5)
    assert 0 <= metrics["masked_lm_frequency_baseline"] <= 1


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(records, tmp_path, monkeypatch):
    real = optimization_module.clip_by_global_norm
    calls = {"n": 0}

    def nan_at_step_3(params, clip):
        calls["n"] += 1
        norm = real(params, clip)
        return torch.tensor(float("nan")) if calls["n"] == 3 else norm

    monkeypatch.setattr(optimization_module, "clip_by_global_norm", nan_at_step_3)  # (clip_and_update's)
    with pytest.raises(BertDetrError, match=r"non-finite loss at step 3.*ckpt-00000002\.pt"):
        pretrain(_config(records, tmp_path))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert load_checkpoint(list_checkpoints(tmp_path)[0][1])["step"] == 2


def test_kill_during_checkpoint_write_leaves_previous_loadable(records, tmp_path, monkeypatch):
    pretrain(_config(records, tmp_path, num_train_steps=4, stop_at_step=2))
    real_save = torch.save

    def dying_save(obj, f, *a, **kw):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_config(records, tmp_path, num_train_steps=4, resume=True))
    monkeypatch.setattr(torch, "save", real_save)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert pretrain(_config(records, tmp_path, num_train_steps=4, resume=True))["step"] == 4


def test_bad_inputs_fail_before_training(records, tmp_path, capsys):
    with pytest.raises(BertDetrError, match="max_position_embeddings 32"):
        pretrain(_config(records, tmp_path, model=BertConfig(**{**TINY, "max_position_embeddings": 32})))
    with pytest.raises(BertDetrError, match="vocab_size is 1000"):
        pretrain(_config(records, tmp_path, model=BertConfig(**{**TINY, "vocab_size": 1000})))
    with pytest.raises(BertDetrError, match="outside the model's vocab_size 1000"):
        pretrain(_config(records, tmp_path, vocab_file=None, model=BertConfig(**{**TINY, "vocab_size": 1000})))
    # Values the first-records check does not look at: every batch is checked as the dataset makes it.
    with pytest.raises(BertDetrError, match=r"records of .*train\.tfrecord: segment_ids contains 1, outside "
                                            r"\[0, 1\) \(type_vocab_size 1\)"):
        pretrain(_config(records, tmp_path, model=BertConfig(**{**TINY, "type_vocab_size": 1})))
    with pytest.raises(BertDetrError, match=r"records of .*eval\.tfrecord: segment_ids contains 1"):
        evaluation_module.evaluate(build_bert_for_pretraining(BertConfig(**{**TINY, "type_vocab_size": 1})),
                                 [records[1]], 4, 1)
    assert not list_checkpoints(tmp_path)
    assert main(["bert", "pretrain", "--input-file", str(tmp_path / "none-*.tfrecord"),
                 "--output-dir", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err


@pytest.mark.parametrize("extra, what", [
    ({"label_ids": [1], "is_real_example": [1]}, "sentence classification"),  # bert classify --features-only
    ({"label_ids": [-100] * 8}, "token classification"),  # bert ner --features-only
    ({"unique_ids": [1000000000]}, "reading comprehension"),  # bert squad's eval.tf_record
])
def test_fine_tuning_features_are_not_taken_for_pretraining_data(tmp_path, capsys, extra, what):
    from bertdetr.bert.data.records import serialize_example, write_record

    path = tmp_path / "train.tf_record"
    with open(path, "wb") as f:
        write_record(f, serialize_example({"input_ids": [101, 7, 102] + [0] * 5, "input_mask": [1] * 3 + [0] * 5,
                                           "segment_ids": [0] * 8, **extra}))
    assert main(["bert", "pretrain", "--input-file", str(path), "--output-dir", str(tmp_path / "run"), "--vocab-file",
                 VOCAB, "--model-size", "tiny", "--num-train-steps", "2", "--num-warmup-steps", "0",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train.tf_record: not pretraining data: its records have" in err and what in err
    assert all(name in err for name in extra)
    assert not (tmp_path / "run").exists()


def test_cli_pretrain_fill_mask_embed(records, tmp_path, capsys):
    cfg = tmp_path / "bert_config.json"
    cfg.write_text(json.dumps({**TINY, "hidden_act": "gelu", "type_vocab_size": 2, "initializer_range": 0.02,
                               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}))
    out = tmp_path / "run"
    assert main(["bert", "pretrain", "--input_file", records[0], "--output_dir", str(out), "--bert_config_file",
                 str(cfg), "--vocab_file", VOCAB, "--num_train_steps", "2", "--num_warmup_steps", "1",
                 "--train_batch_size", "4", "--no-progress"]) == 0
    assert "model exported" in capsys.readouterr().out
    assert main(["bert", "fill-mask", "--model", str(out / "model"), "--top-k", "3", "the [MASK] had ceased ."]) == 0
    printed = capsys.readouterr().out
    assert "[MASK] at 2:" in printed
    lines = tmp_path / "lines.txt"
    lines.write_text("hello world\n\nthe rain had ceased\n")
    assert main(["bert", "embed", "--model", str(out / "model"), "--input-file", str(lines),
                 "--output", str(tmp_path / "v.npy"), "--pooling", "pooled"]) == 0
    import numpy as np

    assert np.load(tmp_path / "v.npy").shape == (3, 32)  # one row per line, the blank one included
    assert main(["bert", "fill-mask", "--model", str(out / "model"), "no mask here"]) == 2


def _torchrun(nproc, args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bertdetr.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_two_processes_with_torchrun_then_resume_with_one(records, tmp_path, capsys):
    cfg = tmp_path / "bert_config.json"
    cfg.write_text(json.dumps(TINY))
    args = ["bert", "pretrain", "--input-file", records[0], "--output-dir", str(tmp_path / "run"),
            "--bert-config-file", str(cfg), "--vocab-file", VOCAB, "--num-train-steps", "4",
            "--num-warmup-steps", "1", "--train-batch-size", "2", "--save-checkpoints-steps", "2",
            "--log-every", "1", "--no-progress", "--device", "cpu"]
    r = _torchrun(2, args + ["--stop-at-step", "2", "--profile-steps", "1", "2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert state["world_size"] == 2 and state["step"] == 2 and len(state["rng"]) == 2
    # each rank profiled its own steps
    assert sorted(os.listdir(tmp_path / "run" / "profile")) == [
        f"steps-1-2-rank{r}.{ext}" for r in (0, 1) for ext in ("json.gz", "txt")]
    assert "rank 1 of 2" in (tmp_path / "run" / "profile" / "steps-1-2-rank1.txt").read_text()
    assert main(args + ["--resume"]) == 0  # one process continues the two-process run
    assert ("resuming with 1 process(es) of batch 2 x 1 (the checkpoint's run: 2 of 2 x 1): a global batch of "
            "2 sequences (was 4), the data dealt again from the 8 sequences seen") in capsys.readouterr().out
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])["step"] == 4
    assert len(_losses(tmp_path / "run")) == 4


def test_resume_is_exact_with_dataloader_workers_and_grad_accum(records, tmp_path):
    kw = dict(num_workers=2, grad_accum=2, num_train_steps=4, save_every=2, shuffle_buffer=8)
    pretrain(_config(records, tmp_path / "full", **kw))
    pretrain(_config(records, tmp_path / "split", stop_at_step=2, **kw))
    pretrain(_config(records, tmp_path / "split", resume=True, **kw))
    assert _losses(tmp_path / "full") == _losses(tmp_path / "split")
    assert len(_losses(tmp_path / "full")) == 4


def test_workers_by_default_on_a_gpu_and_pinned_batches(records):
    from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records
    from bertdetr.bert.pretraining.pretrain import batch_loader, default_num_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert default_num_workers(cpu, 16) == 0  # the step uses the cores
    assert default_num_workers(cuda, 16) == 4 and default_num_workers(cuda, 16, ranks_per_machine=8) == 1
    assert default_num_workers(cuda, 2) == 1 and default_num_workers(cuda, 1) == 1
    stream = PretrainingStream([records[0]], 4, 0, inspect_records([records[0]]))
    config = _config(records, "unused", num_workers=2)
    assert batch_loader(stream, config, cuda).pin_memory  # not iterated: no GPU here
    loader = batch_loader(stream, config, cpu)
    assert not loader.pin_memory and loader.num_workers == 2 and loader.persistent_workers


def test_a_resumed_run_keeps_its_readers(records, tmp_path, capsys):
    """The batches depend on the number of readers: a resume keeps the run's, whatever it is told."""
    pretrain(_config(records, tmp_path / "full", num_workers=0))
    pretrain(_config(records, tmp_path / "split", stop_at_step=2))  # default on a CPU: no workers
    assert json.loads((tmp_path / "split" / "train_config.json").read_text())["num_workers"] == 0
    capsys.readouterr()
    pretrain(_config(records, tmp_path / "split", resume=True, num_workers=2))
    assert "num_workers: kept 0 from the checkpoint, not 2" in capsys.readouterr().out
    assert _losses(tmp_path / "full") == _losses(tmp_path / "split")


def test_bf16_autocast_trains(records, tmp_path):
    summary = pretrain(_config(records, tmp_path, bf16=True, num_train_steps=3, eval_files=[records[1]]))
    assert summary["step"] == 3 and all(v == v for v in summary["losses"].values())  # finite, not NaN
    assert 0.0 <= summary["eval"]["masked_lm_accuracy"] <= 1.0


def test_eval_every_logs_a_learning_curve(records, tmp_path):
    pretrain(_config(records, tmp_path, num_train_steps=4, eval_every=2, eval_files=[records[1]], max_eval_steps=1))
    series = read_scalars(tmp_path / "scalars.csv")
    assert [s for s, _ in series["eval_masked_lm_accuracy"]] == [2, 4]
    assert "eval_masked_lm_frequency_baseline" in series
    with pytest.raises(BertDetrError, match="eval_every"):
        _config(records, tmp_path, eval_every=2)  # no eval files


def test_a_bad_eval_record_is_found_before_training(records, tmp_path):
    """Only the first eval record used to be read before training: a corrupt one further on
    failed the run after all its steps."""
    data = bytearray(open(records[1], "rb").read())
    data[-20] ^= 0xFF  # the last record's payload
    bad = tmp_path / "eval.tfrecord"
    bad.write_bytes(bytes(data))
    with pytest.raises(BertDetrError, match="(?i)crc"):
        pretrain(_config(records, tmp_path / "run", eval_files=[str(bad)], max_eval_steps=1000))
    assert not list_checkpoints(tmp_path / "run")


def test_a_full_disk_at_a_checkpoint_is_an_error_and_earlier_ones_resume(records, tmp_path, monkeypatch, capsys):
    """The checkpoint of step 4 meets a full disk: exit 2 naming it, steps 2 kept and loadable,
    nothing half-written left; freed, --resume ends as an uninterrupted run."""
    import errno

    from bertdetr.training import checkpoint as checkpoint_module

    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_full)
    args = ["bert", "pretrain", "--input-file", records[0], "--vocab-file", VOCAB, "--model-size", "tiny",
            "--output-dir", str(tmp_path / "run"), "--num-train-steps", "4", "--num-warmup-steps", "1",
            "--save-every", "2", "--batch-size", "4", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bertdetr: error: no space left to write" in err and "ckpt-00000004.pt" in err and "--resume" in err
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2]
    assert not [n for n in os.listdir(tmp_path / "run") if n.endswith(".tmp")]
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert main(args + ["--resume"]) == 0
    assert main([*args[:9], str(tmp_path / "straight"), *args[10:]]) == 0
    assert read_scalars(tmp_path / "run" / "scalars.csv")["loss"] == read_scalars(tmp_path / "straight" / "scalars.csv")["loss"]


def test_no_host_reads_on_steps_that_do_not_log(records, tmp_path, monkeypatch):
    """Issue 18: a step that does not log reads nothing back from the device (no .item(), bool(),
    .tolist()...), a logging step reads once; non-finite steps are caught on the device all the same.
    Not counted: making the batches, whose values are checked on the host before they go to the device."""
    from tests.device_reads import count_reads, in_stack

    watched = ("pretraining/pretrain.py", "bert/optimization.py", "training/precision.py", "bert/model.py",
               "training/run.py", "training/distributed.py")
    reads = count_reads(monkeypatch, watched, lambda frame: in_stack(
        frame, lambda f: f.f_code.co_filename.endswith("pretraining/dataset.py")))
    real_step = pretrain_module.train_step
    marks = []

    def marked_step(t):
        marks.append(len(reads))
        return real_step(t)

    monkeypatch.setattr(pretrain_module, "train_step", marked_step)
    pretrain(_config(records, tmp_path, num_train_steps=7, log_every=3, save_every=1000, keep_last=0))
    per_step = [reads[a:b] for a, b in zip(marks, marks[1:])]  # steps 1..6 (step 7 saves at the end)
    assert [len(r) for r in per_step] == [0, 0, 1, 0, 0, 1], per_step


def test_non_finite_steps_are_skipped_on_the_device_until_too_many_in_a_row(records, tmp_path, monkeypatch):
    real = optimization_module.clip_by_global_norm
    calls = {"n": 0}

    def nan_at_steps_3_and_4(params, clip):
        calls["n"] += 1
        norm = real(params, clip)
        return torch.tensor(float("nan")) if calls["n"] in (3, 4) else norm

    monkeypatch.setattr(optimization_module, "clip_by_global_norm", nan_at_steps_3_and_4)
    # two in a row allowed: the run goes on, the two steps skipped (weights untouched) and counted
    summary = pretrain(_config(records, tmp_path / "two", num_train_steps=6, max_non_finite_steps=3))
    assert summary["step"] == 6
    rows = read_scalars(tmp_path / "two" / "scalars.csv")
    assert rows["non_finite_steps"][-1] == (6, 2.0)
    calls["n"] = 0
    with pytest.raises(BertDetrError, match=r"non-finite loss at step 3 .*2 step\(s\) in a row skipped"):
        pretrain(_config(records, tmp_path / "one", num_train_steps=6, max_non_finite_steps=2, log_every=2))


def test_fewer_records_than_readers_is_refused_not_an_endless_wait(records, tmp_path):
    """Readers (processes x workers) each take every S-th record when there are fewer files than
    readers: with fewer records than readers one reader had none and waited for ever, its worker
    spinning and deaf to SIGTERM. Refused up front, saying what would do."""
    from bertdetr.bert.data.records import read_records, write_record
    from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records

    few = tmp_path / "three.tfrecord"
    with open(few, "wb") as f:
        for data in itertools.islice(read_records(records[0]), 3):
            write_record(f, data)
    shape = inspect_records([str(few)])
    with pytest.raises(BertDetrError, match=r"3 training record\(s\) in .*three.tfrecord for 4 readers \(1 process\(es\) "
                                            r"x 4 worker\(s\)\).*give --num-workers 3, or more data"):
        PretrainingStream([str(few)], 1, 0, shape, num_workers=4)
    with pytest.raises(BertDetrError, match="for 4 readers .* give fewer processes, or more data"):
        PretrainingStream([str(few)], 1, 0, shape, rank=1, world_size=4)
    batch = next(iter(PretrainingStream([str(few)], 1, 0, shape, num_workers=3, shuffle=False)))
    assert batch["input_ids"].shape[0] == 1


def _record_skips(monkeypatch):
    """The ``skip_batches`` each PretrainingStream is made with, and the batches each one yields."""
    made = []

    class Stream(pretrain_module.PretrainingStream):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append({"skip": self.skip_batches, "read": 0})

        def __iter__(self):
            for batch in super().__iter__():
                made[-1]["read"] += 1
                yield batch

    monkeypatch.setattr(pretrain_module, "PretrainingStream", Stream)
    return made


def test_a_resume_with_another_grad_accum_skips_the_batches_the_run_read(records, tmp_path, monkeypatch):
    """The checkpoint's run read step x its own grad_accum batches: the resume skips those, not
    step x the new grad_accum (which dropped data unseen)."""
    made = _record_skips(monkeypatch)
    pretrain(_config(records, tmp_path, grad_accum=1, stop_at_step=3))
    assert made[-1] == {"skip": 0, "read": 3}
    summary = pretrain(_config(records, tmp_path, grad_accum=2, resume=True, stop_at_step=5))
    assert summary["step"] == 5
    assert made[-1] == {"skip": 3, "read": 4}
    # resumed again: 3 x 1 + 2 x 2 = 7 batches read (the checkpoint records it), not 5 x 2
    summary = pretrain(_config(records, tmp_path, grad_accum=2, resume=True))
    assert summary["step"] == 6
    assert made[-1] == {"skip": 7, "read": 2}


def test_resuming_a_finished_run_does_nothing_and_says_so(records, tmp_path, capsys, monkeypatch):
    pretrain(_config(records, tmp_path, num_train_steps=2))
    checkpoints = list_checkpoints(tmp_path)
    exported = os.path.getmtime(tmp_path / "model" / "config.json")
    capsys.readouterr()
    monkeypatch.setattr(pretrain_module, "export_model", lambda *a: pytest.fail("exported again"))
    summary = pretrain(_config(records, tmp_path, num_train_steps=2, resume=True))
    out = capsys.readouterr().out
    assert "already complete at step 2" in out
    assert summary["step"] == 2 and summary["losses"]["loss"] == _losses(tmp_path)[-1]
    assert list_checkpoints(tmp_path) == checkpoints
    assert os.path.getmtime(tmp_path / "model" / "config.json") == exported


def test_an_init_checkpoint_without_vocab_file_exports_its_vocabulary_and_casing(records, tmp_path):
    from bertdetr.bert.weights import export_model, saved_do_lower_case

    init = tmp_path / "init"
    export_model(build_bert_for_pretraining(BertConfig(**TINY)), init, VOCAB, do_lower_case=False)
    pretrain(_config(records, tmp_path / "run", vocab_file=None, init_checkpoint=str(init), num_train_steps=2))
    model = tmp_path / "run" / "model"
    assert (model / "vocab.txt").read_bytes() == open(VOCAB, "rb").read()
    assert saved_do_lower_case(model) is False


def test_a_model_size_other_than_the_init_checkpoints_is_refused(tmp_path, capsys):
    from bertdetr.bert.weights import export_model

    init = tmp_path / "init"
    export_model(build_bert_for_pretraining(pretrain_module.model_preset("tiny", 100, 64)), init, None, True)
    pretrain_module.check_model_size(str(init), "tiny")
    with pytest.raises(BertDetrError, match="--model-size large"):
        pretrain_module.check_model_size(str(init), "large")
    from bertdetr.cli import main

    # through the command line, with or without --vocab-file: refused before any work
    (tmp_path / "data.tfrecord").write_bytes(b"")
    for vocab in ([], ["--vocab-file", VOCAB]):
        assert main(["bert", "pretrain", "--input-file", str(tmp_path / "data.tfrecord"), "--init-checkpoint",
                     str(init), "--model-size", "large", "--output-dir", str(tmp_path / "out"), *vocab]) == 2
        assert "--model-size large (24 layers of 1024) but the init checkpoint" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of this process alone, for a real DistributedDataParallel on the CPU."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'process_group'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_trains_records_without_the_next_sentence_task(tmp_path, one_process_group, monkeypatch):
    """Masked LM alone leaves the pooler and NSP head without gradients: DDP failed at step 2
    ("Expected to have finished reduction") until they were frozen."""
    from torch.nn.parallel import DistributedDataParallel

    out = tmp_path / "no-nsp.tfrecord"
    make_pretraining_data([os.path.join(DATA, "sample_text.txt")], str(out), VOCAB,
                          PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=2,
                                                next_sentence=False))
    wrapped = []
    monkeypatch.setattr(pretrain_module, "data_parallel",
                        lambda net, env, device, **o: wrapped.append(DistributedDataParallel(net)) or wrapped[-1])
    summary = pretrain(_config([str(out)], tmp_path / "run", num_train_steps=3))
    assert wrapped and summary["step"] == 3 and "next_sentence_loss" not in summary["losses"]
    model = wrapped[0].module
    assert not any(p.requires_grad for p in model.next_sentence.parameters())
    assert all(p.requires_grad for p in model.masked_lm.parameters())
