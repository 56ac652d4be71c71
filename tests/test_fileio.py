import os
from pathlib import Path
import stat

import pytest

from bertdetr.errors import BertDetrError
from bertdetr.fileio import TextCheck, atomic_output, check_not_an_input


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_output_respects_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_output(tmp_path / "out.bin") as f:
            f.write(b"x")
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode)


def test_an_output_that_is_an_input_however_spelled_is_refused(tmp_path):
    (tmp_path / "in.txt").write_text("text")
    os.link(tmp_path / "in.txt", tmp_path / "hard.txt")
    for spelling in (tmp_path / "in.txt", f"{tmp_path}/./in.txt", tmp_path / "hard.txt"):
        with pytest.raises(BertDetrError, match="is an input file"):
            check_not_an_input(spelling, [str(tmp_path / "in.txt")])
    check_not_an_input(tmp_path / "new.txt", [str(tmp_path / "in.txt")])  # not there yet: no input
    check_not_an_input(tmp_path / "hard.txt", [str(tmp_path / "missing.txt")])  # the reader reports it


def _check(data: bytes) -> TextCheck:
    check = TextCheck("in.txt")
    for n, line in enumerate(data.splitlines(keepends=True), 1):
        check.decode(line, n)
    check.finish()
    return check


def test_text_check_refuses_binary_and_counts_stray_bytes(capsys):
    with pytest.raises(BertDetrError, match="NUL byte on line 2"):
        _check(b"hello\nwor\0ld\n")
    with pytest.raises(BertDetrError, match="not UTF-8 text"):
        _check(bytes(range(128, 256)) * 64)
    check = _check(b"plain text line\n" * 400 + b"one stray \xff byte\n")
    assert check.invalid == 1
    assert "dropped 1 byte(s) that are not UTF-8 (first on line 401)" in capsys.readouterr().err


def _enospc():
    import errno

    return OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_a_clear_error_and_the_earlier_file_stays(tmp_path, monkeypatch):
    from bertdetr import fileio

    (tmp_path / "out.bin").write_bytes(b"earlier")
    with pytest.raises(fileio.DiskFullError, match=r"no space left to write .*out\.bin \(No space left on device\)"):
        with atomic_output(tmp_path / "out.bin") as f:
            f.write(b"half")
            raise _enospc()
    # torch.save reports a short write as a RuntimeError from its zip writer: a full disk is
    # recognised by the space left while the temporary file still holds what was written
    monkeypatch.setattr(fileio, "_free_bytes", lambda folder: 0)
    with pytest.raises(fileio.DiskFullError, match="the disk is full"):
        with atomic_output(tmp_path / "out.bin") as f:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(fileio, "_free_bytes", lambda folder: 10 ** 12)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # not a full disk: the error as it was
        with atomic_output(tmp_path / "out.bin") as f:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert os.listdir(tmp_path) == ["out.bin"] and (tmp_path / "out.bin").read_bytes() == b"earlier"


def test_the_command_line_turns_any_full_disk_into_an_error(tmp_path, monkeypatch, capsys):
    from bertdetr.bert import cli as bert_cli
    from bertdetr.cli import main

    def full(args):
        raise _enospc()

    monkeypatch.setattr(bert_cli, "_run_make_data", full)
    assert main(["bert", "make-data", "--input-file", "a.txt", "--output-file", str(tmp_path / "o"),
                 "--vocab-file", "v.txt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: no space left on the device (No space left on device)")


def test_scalars_cut_back_to_the_last_whole_step_on_a_full_disk(tmp_path):
    from bertdetr.fileio import DiskFullError
    from bertdetr.training.scalars import ScalarLog, read_scalars

    log = ScalarLog(tmp_path)
    log.log(1, {"loss": 2.0, "lr": 0.1})
    raw = log._file

    class HalfThenFull:  # a write that lands in part, then the disk is full
        def __init__(self):
            self.calls = 0

        def write(self, data):
            self.calls += 1
            if self.calls == 1:
                return raw.write(data[: len(data) // 2])
            raise _enospc()

        def __getattr__(self, name):
            return getattr(raw, name)

    log._file = HalfThenFull()
    with pytest.raises(DiskFullError, match="scalars.csv .*whole up to the step before.*--resume"):
        log.log(2, {"loss": 1.5, "lr": 0.1})
    log._file = raw
    log.close()
    assert read_scalars(tmp_path / "scalars.csv") == {"loss": [(1, 2.0)], "lr": [(1, 0.1)]}


def test_a_failed_command_leaves_no_empty_output_folder(tmp_path, capsys):
    from bertdetr.cli import main

    out = tmp_path / "a" / "b" / "pred"
    assert main(["detr", "predict", "--checkpoint", str(tmp_path / "none"), "--out", str(out),
                 str(tmp_path / "nothing.jpg")]) == 2
    assert "image file(s) not found" in capsys.readouterr().err
    sample = Path(__file__).parent / "data" / "bert" / "sample_text.txt"
    assert main(["bert", "make-data", "--input-file", str(sample), "--output-file", str(tmp_path / "new" / "o.tfrecord"),
                 "--vocab-file", str(tmp_path / "missing.txt"), "--no-progress"]) == 2
    assert "vocab file not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither a/b/pred nor new/
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "x.txt").write_text("mine")
    assert main(["bert", "make-data", "--input-file", str(sample), "--output-file", str(kept / "sub" / "o.tfrecord"),
                 "--vocab-file", str(tmp_path / "missing.txt"), "--no-progress"]) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["x.txt"]  # a folder that was there stays


def test_text_outputs_are_utf8_whatever_the_locale(tmp_path):
    """Under a C locale without UTF-8 (no coercion, no UTF-8 mode) Python's text files are ASCII:
    Chinese text written through ``atomic_output`` is still UTF-8, as every reader here reads it."""
    import os
    import subprocess
    import sys

    code = (
        "import locale, sys\n"
        "from bertdetr.fileio import atomic_output\n"
        "from bertdetr.detr.weights import save_classes\n"
        "print(locale.getpreferredencoding(False))\n"
        "with atomic_output(sys.argv[1] + '/lines.txt', 'w') as f:\n"
        "    f.write('\\u5f20\\u4f1f\\u4f4f\\u5728\\u5317\\u4eac\\n')\n"   # 张伟住在北京: ASCII on the command line
        "save_classes(sys.argv[1], [1, 2], ['\\u5706\\u5f62', 'cat'])\n")    # 圆形
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "utf" not in done.stdout.lower()        # the locale really was not UTF-8
    assert (tmp_path / "lines.txt").read_bytes() == "张伟住在北京\n".encode("utf-8")
    assert '"圆形"' in (tmp_path / "classes.json").read_text(encoding="utf-8")   # readable, not \\u escapes
