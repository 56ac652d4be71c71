"""Writing outputs safely: a temp name in the same folder, renamed into place on success.

A run that is interrupted or fails leaves no partial file under the final name (and an older file
under that name stays as it was).
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from typing import IO, Iterable, Iterator

from bertdetr.errors import BertDetrError


def check_writable(path: str | os.PathLike) -> None:
    """Raises ``BertDetrError`` unless a file can be created at ``path`` (checked before any work).

    Creates missing parent folders; probes by creating and removing a temp file beside ``path``.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BertDetrError(f"output path is a directory: {path}")
    try:
        os.makedirs(parent, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise BertDetrError(f"cannot write output {path}: {e.strerror or e}") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a temp file beside ``path``; on normal exit fsyncs and renames it to ``path``.

    On an exception (including KeyboardInterrupt) the temp file is removed and ``path`` untouched.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def expand_inputs(patterns: Iterable[str]) -> list[str]:
    """Expands comma-separated paths and globs (as Google's ``--input_file``); errors name the
    first pattern that matches no file."""
    files: list[str] = []
    for pattern in patterns:
        for part in pattern.split(","):
            part = part.strip()
            if not part:
                continue
            matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
            matches = [m for m in matches if os.path.isfile(m)]
            if not matches:
                raise BertDetrError(f"input path matches no file: {part}")
            files.extend(matches)
    if not files:
        raise BertDetrError("no input files given")
    return files
