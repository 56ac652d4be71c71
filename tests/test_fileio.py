import os
import stat

import pytest

from bertdetr.errors import BertDetrError
from bertdetr.fileio import TextCheck, atomic_output


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
