"""``bertdetr bert make-data`` (``bertdetr.bert.pretraining.make_data``): the command line, shards, workers,
output planning, and bad input caught before any work with nothing written."""

import os
import pathlib
import random

import pytest

from bertdetr.bert.pretraining import make_data
from bertdetr.bert.pretraining.make_data import make_pretraining_data, plan_outputs, shard_seed
from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
from bertdetr.cli import main
from bertdetr.errors import BertDetrError

from tests.bert.pretraining.test_create_pretraining_data import SAMPLE, VOCAB, _decoded, _flags, _golden, _random_corpus


def test_cli_with_googles_flags_and_round_robin(tmp_path, capsys):
    """Google's underscore flags as they are; comma-separated outputs get records round-robin."""
    outs = [tmp_path / f"part{i}.tfrecord" for i in range(3)]
    argv = ["bert", "make-data", f"--input_file={SAMPLE}", f"--vocab_file={VOCAB}",
            "--output_file=" + ",".join(map(str, outs)), "--no-progress", *_flags("wwm")]
    assert main(argv) == 0
    assert "58 instances in 3 file(s)" in capsys.readouterr().out
    golden = _golden("wwm")
    for i, out in enumerate(outs):
        assert _decoded(out) == golden[i::3]


def _shards(tmp_path, n=3):
    rng = random.Random(5)
    paths = []
    for i in range(n):
        p = tmp_path / "in" / f"part{i}.txt"
        p.parent.mkdir(exist_ok=True)
        _random_corpus(rng, p, num_docs=3)
        paths.append(str(p))
    return paths


def test_each_shard_equals_a_run_on_that_file_alone(tmp_path):
    paths = _shards(tmp_path)
    config = PretrainingDataConfig(dupe_factor=2, max_seq_length=32, random_seed=99)
    summary = make_pretraining_data([str(tmp_path / "in" / "part*.txt")],
                                    str(tmp_path / "out" / "{index:03d}-{name}.tfrecord"), VOCAB, config)
    assert summary.outputs == [str(tmp_path / "out" / f"{i:03d}-part{i}.tfrecord") for i in range(3)]
    for i, path in enumerate(paths):
        alone = tmp_path / f"alone{i}.tfrecord"
        seeded = PretrainingDataConfig(dupe_factor=2, max_seq_length=32, random_seed=shard_seed(99, i))
        make_pretraining_data([path], str(alone), VOCAB, seeded)
        assert alone.read_bytes() == pathlib.Path(summary.outputs[i]).read_bytes()
    assert shard_seed(99, 0) == 99


def test_workers_and_shard_selection_give_the_same_files(tmp_path):
    paths = _shards(tmp_path, n=3)
    config = PretrainingDataConfig(dupe_factor=1, max_seq_length=32)
    make_pretraining_data(paths, str(tmp_path / "one" / "{index}.tfrecord"), VOCAB, config)
    two = make_pretraining_data(paths, str(tmp_path / "two") + "/", VOCAB, config, workers=2, progress=True)
    assert [os.path.basename(p) for p in two.outputs] == [f"{i:05d}-part{i}.tfrecord" for i in range(3)]
    picked = make_pretraining_data(paths, str(tmp_path / "sel" / "{index}.tfrecord"), VOCAB, config,
                                   shard_index=1, num_shards=2)
    assert picked.inputs == [paths[1]]
    assert sorted(os.listdir(tmp_path / "sel")) == ["1.tfrecord"]
    for i in range(3):
        one = (tmp_path / "one" / f"{i}.tfrecord").read_bytes()
        assert one == pathlib.Path(two.outputs[i]).read_bytes()
    assert (tmp_path / "sel" / "1.tfrecord").read_bytes() == (tmp_path / "one" / "1.tfrecord").read_bytes()


def test_error_in_a_worker_reaches_the_caller(tmp_path):
    paths = _shards(tmp_path, n=2)
    bad = tmp_path / "in" / "part2.txt"
    bad.write_text("\x01\x02\n")  # not blank, but no tokens
    with pytest.raises(BertDetrError, match="part2.txt: no text to make pretraining data from"):
        make_pretraining_data([*paths, str(bad)], str(tmp_path / "out" / "{index}.tfrecord"), VOCAB,
                              PretrainingDataConfig(dupe_factor=1), workers=2)
    assert not (tmp_path / "out" / "2.tfrecord").exists()


def test_output_planning():
    assert plan_outputs(["a.txt"], "x.tfrecord,y.tfrecord") == [["x.tfrecord", "y.tfrecord"]]
    assert plan_outputs(["d/a.txt", "e/b.txt"], "o/{name}-{index}of{num_inputs}.tfrecord") == [
        ["o/a-0of2.tfrecord"], ["o/b-1of2.tfrecord"]]
    with pytest.raises(BertDetrError, match="need an output template"):
        plan_outputs(["a.txt", "b.txt"], "x.tfrecord")
    with pytest.raises(BertDetrError, match="planned twice"):
        plan_outputs(["d/a.txt", "e/a.txt"], "o/{name}.tfrecord")
    with pytest.raises(BertDetrError, match="bad output template"):
        plan_outputs(["a.txt", "b.txt"], "o/{shard}.tfrecord")


def test_missing_input_is_named_before_any_work(tmp_path, capsys):
    out = tmp_path / "out.tfrecord"
    argv = ["bert", "make-data", "--input-file", f"{SAMPLE},{tmp_path / 'missing.txt'}",
            "--output-file", str(tmp_path / "{index}.tfrecord"), "--vocab-file", VOCAB]
    assert main(argv) == 2
    assert f"matches no file: {tmp_path / 'missing.txt'}" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n\r\n"])
def test_empty_or_blank_input_is_an_error_and_writes_nothing(tmp_path, capsys, content):
    (tmp_path / "in.txt").write_bytes(content)
    argv = ["bert", "make-data", "--input-file", str(tmp_path / "in.txt"),
            "--output-file", str(tmp_path / "o.tfrecord"), "--vocab-file", VOCAB]
    assert main(argv) == 2
    assert "has no text" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_unwritable_output_fails_before_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []
    monkeypatch.setattr(make_data, "read_documents", lambda *a, **k: calls.append(a))
    with pytest.raises(BertDetrError, match="cannot write output"):
        make_pretraining_data([SAMPLE], str(blocker / "o.tfrecord"), VOCAB, PretrainingDataConfig())
    assert calls == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch, exc):
    final = tmp_path / "o.tfrecord"
    final.write_bytes(b"older complete file")
    original = make_data.write_instance_to_example_files

    def interrupted(records, outputs):
        class Boom:
            def __len__(self):
                return len(records)

            def __getitem__(self, item):
                raise exc("interrupted mid-write")

        original(Boom(), outputs)

    monkeypatch.setattr(make_data, "write_instance_to_example_files", interrupted)
    with pytest.raises(exc):
        make_pretraining_data([SAMPLE], f"{tmp_path / 'a.tfrecord'},{final}", VOCAB,
                              PretrainingDataConfig(dupe_factor=1))
    assert sorted(os.listdir(tmp_path)) == ["o.tfrecord"]
    assert final.read_bytes() == b"older complete file"


def test_cli_keyboard_interrupt_exit_code(tmp_path, monkeypatch, capsys):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(make_data, "write_instance_to_example_files", stop)
    argv = ["bert", "make-data", "--input-file", SAMPLE, "--output-file", str(tmp_path / "o.tfrecord"),
            "--vocab-file", VOCAB, "--dupe-factor", "1", "--no-progress"]
    assert main(argv) == 130
    assert os.listdir(tmp_path) == []


def test_cli_boolean_flags(tmp_path, capsys):
    base = ["bert", "make-data", "--input-file", SAMPLE, "--vocab-file", VOCAB, "--dupe-factor", "1",
            "--max-seq-length", "32", "--no-progress"]
    for extra in (["--do_lower_case=False"], ["--nodo_lower_case"], ["--do-lower-case", "false"]):
        assert main([*base, "--output-file", str(tmp_path / "c.tfrecord"), *extra]) == 0
        cased = _decoded(tmp_path / "c.tfrecord")
        assert main([*base, "--output-file", str(tmp_path / "u.tfrecord"), "--do-lower-case"]) == 0
        assert cased != _decoded(tmp_path / "u.tfrecord")
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main([*base, "--output-file", str(tmp_path / "w.tfrecord"), "--do_whole_word_mask=maybe"])
    assert exit_info.value.code == 2
    out = capsys.readouterr().out
    assert "1 input file(s): 3 documents" in out


def test_a_stopped_make_data_ends_its_workers(tmp_path):
    """SIGTERM to the command (a scheduler's stop) ends its worker processes with it: nothing is
    written after it exits 143 saying so (its workers used to go on writing files)."""
    import signal
    import subprocess
    import sys
    import time

    books = pathlib.Path(make_data.__file__).parents[2] / "data" / "pd_books.txt"
    (tmp_path / "in").mkdir()
    for i in range(4):
        (tmp_path / "in" / f"part{i}.txt").write_text(books.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bertdetr.cli", "bert", "make-data", "--input-file",
                             str(tmp_path / "in" / "*.txt"), "--output-file", str(out / "{index}.tfrecord"),
                             "--vocab-file", VOCAB, "--dupe-factor", "50", "--workers", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # until a worker is writing (its temporary file)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped by SIGTERM: the output files finished so far are whole" in err, err
    after = sorted(os.listdir(out))
    time.sleep(2)
    assert sorted(os.listdir(out)) == after  # no worker left writing
