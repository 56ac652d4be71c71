"""Writing outputs safely: a temp name in the same folder, renamed into place on success.

A run that is interrupted or fails leaves no partial file under the final name (and an older file
under that name stays as it was).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import sys
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
    missing = []
    folder = parent
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    _CREATED_FOLDERS.extend(reversed(missing))  # outermost first
    try:
        os.makedirs(parent, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise BertDetrError(f"cannot write output {path}: {e.strerror or e}") from None


def check_not_an_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Raises ``BertDetrError`` when ``output`` is one of ``inputs`` (checked before any work).

    Writing the output replaces its file when the run ends: were it an input, the user's data would
    be gone. The same file however it is spelled (``./a.txt``, a symbolic or hard link) counts, so
    the files themselves are compared, not their names; an output not there yet is no input.
    """
    output = os.fspath(output)
    if not os.path.exists(output):
        return
    for path in inputs:
        try:
            same = os.path.samefile(output, path)
        except OSError:  # an input that is not there is its reader's error to report
            continue
        if same:
            where = "" if os.fspath(path) == output else f" (the input {os.fspath(path)})"
            raise BertDetrError(f"the output {output} is an input file{where}: writing it would replace the "
                                "input; give another output path")


_CREATED_FOLDERS: list[str] = []
"""Folders ``check_writable`` created in this process (outermost first), for
``remove_created_empty_folders``."""


def remove_created_empty_folders() -> None:
    """Removes the folders ``check_writable`` created that are still empty, innermost first: a
    command that fails leaves no empty output folder behind (the command line calls this on an
    error)."""
    for folder in reversed(_CREATED_FOLDERS):
        try:
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        except OSError:
            pass
    _CREATED_FOLDERS.clear()


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process's umask.

    ``tempfile.mkstemp`` creates its file 0600 whatever the umask; renamed into place as it is, an
    output would be unreadable to the rest of a group or to other container users.
    """
    try:  # Linux: read the umask without changing it (os.umask would race other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""No space left, over quota, file too large: what a full disk or quota looks like to a writer."""


class DiskFullError(BertDetrError):
    """An output could not be written for want of space; nothing was written under its name."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def disk_full_error(path: str | os.PathLike | None, error: BaseException) -> DiskFullError:
    """The message for a write that ran out of space (``error``: what the writer raised): one to
    ``path`` through ``atomic_output``, or (``path`` None) one the command line caught."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else "the disk is full"
    what = (f"to write {os.fspath(path)} ({reason}): nothing was written under that name and files "
            "written before are as they were" if path else
            f"on the device ({reason}{', ' + error.filename if getattr(error, 'filename', None) else ''}): "
            "outputs are written under a temporary name first, so the finished ones are whole")
    return DiskFullError(f"no space left {what}. Free some space (or point the output elsewhere) and run the "
                         "command again: a training run continues from its last checkpoint with --resume")


def _free_bytes(folder: str) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a temp file beside ``path``; on normal exit fsyncs and renames it to ``path``.

    On an exception (including KeyboardInterrupt) the temp file is removed and ``path`` untouched.
    Running out of space is a ``DiskFullError`` naming ``path``: an ``OSError`` ENOSPC, or any error
    raised while the disk is found full (``torch.save`` reports a short write as a ``RuntimeError``
    from its zip writer). The file gets the mode a plain ``open()`` would give it (0666 less the umask).
    Text modes write UTF-8 whatever the locale (every reader here reads UTF-8; a Chinese Windows
    locale would write GBK, a C locale fail on the first character outside ASCII).
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(path, e) from None
        raise
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = is_disk_full(e) or (isinstance(e, Exception) and not isinstance(e, BertDetrError)
                                   and (_free_bytes(parent) or 0) < 64 * 1024)  # read before the temp goes
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if full:
            raise disk_full_error(path, e) from None
        raise


def write_json(path: str | os.PathLike, obj, end: str = "", **dump_options) -> None:
    """Writes ``obj`` as JSON (then ``end``), atomically, refusing NaN and infinities (JSON has none:
    Python's ``NaN`` would make the file unreadable to other programs): a ``BertDetrError`` naming
    the value instead, and nothing under ``path``."""
    import json

    try:
        text = json.dumps(obj, allow_nan=False, **dump_options)
    except ValueError:
        raise BertDetrError(f"not written: {path} would hold a value that is not a finite number "
                            f"({_first_non_finite(obj) or 'somewhere'})") from None
    with atomic_output(path, "w") as f:
        f.write(text + end)


def _first_non_finite(obj, where: str = "") -> str | None:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where or 'the value'} = {obj}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{where}[{key!r}]")
        if found:
            return found
    return None


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


class TextCheck:
    """Decodes the lines of a text input as UTF-8 and refuses input that is not text.

    ``decode(raw, line_number)`` is ``raw.decode("utf-8", "ignore")`` (Google's
    ``convert_to_unicode`` rule: stray invalid bytes are dropped), except that a NUL byte (binary
    data, or UTF-16 text) raises at once; ``finish()`` raises when more than ``max_invalid_share``
    of the bytes were not UTF-8 and otherwise reports a few dropped bytes with their count on
    stderr. The caller writes nothing under a final name before ``finish()``. ``strict``: the
    first byte that is not UTF-8 raises at once, for readers whose lines have a layout that a
    dropped byte breaks (a token-and-tag line losing its token, character offsets shifted) and
    would otherwise be reported as that layout's error instead of the encoding.
    """

    def __init__(self, path: str, max_invalid_share: float = 0.01, strict: bool = False):
        self.path = path
        self.max_invalid_share = max_invalid_share
        self.strict = strict
        self.bytes = 0
        self.invalid = 0
        self.first_bad_line = 0

    def decode(self, raw: bytes, line_number: int) -> str:
        self.bytes += len(raw)
        if b"\0" in raw:
            raise BertDetrError(f"{self.path} is not text: NUL byte on line {line_number} (a binary file, "
                                "or UTF-16 text: convert it to UTF-8)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "ignore")
            self.invalid += len(raw) - len(text.encode("utf-8"))
            self.first_bad_line = self.first_bad_line or line_number
            if self.strict or (self.bytes >= 4096 and self.invalid > self.max_invalid_share * self.bytes):
                self._refuse()
            return text

    def finish(self) -> None:
        if self.invalid > self.max_invalid_share * max(self.bytes, 1):
            self._refuse()
        if self.invalid:
            print(f"{self.path}: dropped {self.invalid} byte(s) that are not UTF-8 (first on line "
                  f"{self.first_bad_line})", file=sys.stderr)

    def _refuse(self) -> None:
        raise BertDetrError(f"{self.path} is not UTF-8 text: {self.invalid} of its first {self.bytes} bytes are "
                            f"not UTF-8 (first on line {self.first_bad_line}); text in another encoding (GBK, "
                            f"say) converts with: iconv -f GBK -t UTF-8 IN > OUT")


def read_json_lines(input_file: str, strict: bool = False) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a JSON-lines file (CLUE's files; CLUE's
    ``_read_json`` parses every line and so stops at a trailing blank one). Read as ``TextCheck``
    reads text (a GBK file: an error saying how to convert it; ``strict``: any byte that is not
    UTF-8); not JSON, or not an object: an error naming the file and line."""
    if not os.path.isfile(input_file):
        raise BertDetrError(f"file not found: {input_file}")
    check = TextCheck(input_file, strict=strict)
    rows = []
    with open(input_file, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = check.decode(raw, n).strip()
            if n == 1:
                line = line.removeprefix("\ufeff")  # Notepad's UTF-8 byte order mark
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise BertDetrError(f"{input_file}:{n}: not a JSON object ({e}); the file needs one a line") from None
            if not isinstance(obj, dict):
                raise BertDetrError(f"{input_file}:{n}: a JSON {type(obj).__name__}, not an object")
            rows.append((n, obj))
    check.finish()
    return rows
