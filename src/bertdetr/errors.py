"""The one exception type the command line turns into a clear message instead of a traceback."""


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
