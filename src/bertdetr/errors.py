"""The one exception type the command line turns into a clear message instead of a traceback, and
warnings that point at the user's line."""

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class BertDetrError(Exception):
    """Bad input or a failed precondition, with a message meant for the user.

    Library code raises (subclasses of) this for anything the user can fix: a missing file, an
    invalid option, a corrupt record. ``bertdetr.cli.main`` prints ``error: <message>`` and exits
    with status 2; every other exception is a bug and keeps its traceback.
    """


class Preempted(BertDetrError):
    """A run stopped by a signal (SIGTERM, SIGINT) after saving a checkpoint at its step; the command
    line exits with ``exit_code``, the shell's 128 + the signal number (143, 130)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def require(condition: bool, message: str) -> None:
    """The configs' one validation step: raises ``BertDetrError(message)`` unless ``condition``."""
    if not condition:
        raise BertDetrError(message)


def require_at_least(config: object, names: tuple[str, ...], minimum: float, where: str = "") -> None:
    """Each field of ``names`` of ``config`` must be >= ``minimum`` (None fields are skipped);
    errors name the field as ``<where>.<name>``."""
    for name in names:
        value = getattr(config, name)
        require(value is None or value >= minimum, f"{where}{name} must be >= {minimum}, got {value}")


def require_field_types(config: object, where: str = "") -> None:
    """Every field of the dataclass ``config`` holds a value of its annotated type: ``int`` (not a
    bool, not 2.5), ``float`` (an int too), ``bool``, ``str``, ``list[...]`` of those, ``X | None``;
    fields of other types (a nested config checks its own) are passed over. Raises
    ``BertDetrError`` naming the field as ``<where><name>`` and the value (a config file's
    ``"lr": [1e-4]`` is an error here, not a ``TypeError`` inside a comparison later)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints.get(f.name)
        value = getattr(config, f.name)
        if hint is not None and _checkable(hint) and not _has_type(value, hint):
            raise BertDetrError(f"{where}{f.name} must be {_describe(hint)}, got {value!r}")


def _union_args(hint) -> tuple | None:
    import types
    import typing

    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return None


def _checkable(hint) -> bool:
    import typing

    members = _union_args(hint)
    if members is not None:
        return all(_checkable(m) for m in members)
    if typing.get_origin(hint) in (list, tuple):
        return all(_checkable(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return hint in (int, float, bool, str, type(None))


def _has_type(value, hint) -> bool:
    import typing

    members = _union_args(hint)
    if members is not None:
        return any(_has_type(value, m) for m in members)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    import typing

    members = _union_args(hint)
    if members is not None:
        return " or ".join(_describe(m) for m in members)
    if typing.get_origin(hint) in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))



def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside this package (the user's
    ``from_pretrained`` call, however deep inside the library the warning is made), as Python
    3.12's ``skip_file_prefixes`` does; a warning from a command has no such frame and names
    the outermost one."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the frame that called this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
