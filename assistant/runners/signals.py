"""SIGTERM and SIGINT become an orderly shutdown request, not an exception mid-write.

Python's default SIGINT raises ``KeyboardInterrupt`` wherever the main thread happens to
be, which could be halfway through writing a diary record; SIGTERM's default kills the
process without running any cleanup. Both are turned into a callback that the runner
answers at a safe point (the live loop checks a flag every block; text mode wakes its
input queue). A second signal of either kind gets the default behaviour, so an impatient
Ctrl-C still works.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)

EXIT_CODES = {"SIGTERM": 0, "SIGINT": 130}
"""A service manager's stop is a clean exit; Ctrl-C keeps the shell's usual 130."""


@contextmanager
def graceful_shutdown(on_request: Callable[[str], None]) -> Iterator[None]:
    """While active, the first SIGTERM/SIGINT calls ``on_request(signal name)``.

    Outside the main thread (where signals cannot be caught) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        log.debug("not the main thread: signals keep their default handling")
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        log.warning("%s received: shutting down", name)
        for sig in HANDLED:  # a second signal: the default (KeyboardInterrupt / terminate)
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        on_request(name)

    for sig in HANDLED:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
