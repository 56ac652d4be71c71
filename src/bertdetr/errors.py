"""The one exception type the command line turns into a clear message instead of a traceback."""


class BertDetrError(Exception):
    """Bad input or a failed precondition, with a message meant for the user.

    Library code raises (subclasses of) this for anything the user can fix: a missing file, an
    invalid option, a corrupt record. ``bertdetr.cli.main`` prints ``error: <message>`` and exits
    with status 2; every other exception is a bug and keeps its traceback.
    """
