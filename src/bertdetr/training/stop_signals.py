"""Stop signals (SIGTERM, which schedulers send before a kill, and SIGINT) handled for the length of
a block: a trainer's loop checkpoints then stops (``Run.logging``), make-data ends its worker
processes (``make_data``). Nothing here imports torch: make-data's processes start without it."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def stop_signals_handled(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGTERM (a scheduler's stop) and SIGINT while the block runs, the handlers
    before put back after. Signals reach Python's main thread only: elsewhere, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
