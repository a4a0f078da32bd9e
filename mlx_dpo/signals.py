"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, exit cleanly.

A second Ctrl-C aborts at once (the last checkpoint on disk stays valid,
since every file is written atomically).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator, Optional


class StopFlag:
    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __call__(self) -> Optional[int]:
        return self.signum


@contextlib.contextmanager
def graceful_stop(notify: Callable[[str], None]) -> Iterator[StopFlag]:
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals reach only the main thread; a caller elsewhere stops us some other way
        return

    def handle(signum, _frame):
        if flag.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum
        notify("stopping after this step and saving a checkpoint (Ctrl-C again to abort at once)")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
