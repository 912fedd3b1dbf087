"""Start-up that SIGTERM and Ctrl-C can always stop.

Python runs signal handlers in the main thread, between two bytecodes. Starting or joining Ray
keeps the main thread inside native code for seconds at a time (and Ray swaps in its own SIGTERM
handler meanwhile), and uvicorn's handlers only set a flag that its loop reads once start-up is
done. So while `stoppable()` is active, a thread of its own watches for SIGTERM and SIGINT and
ends the process at once. Ray's processes started by then die with it: Ray ties them to their
parent's life (the kernel's parent-death signal, or Ray's reaper where that is missing).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stoppable() -> Iterator[None]:
    """Until the block ends, SIGTERM or SIGINT ends the process within milliseconds, with exit
    status 128 + the signal's number. Outside the main thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    # Python writes each signal's number to the wakeup fd from its C-level handler, at
    # once, whatever the main thread is doing; it does so only for signals that have a
    # Python handler, hence the placeholder.
    previous = {sig: signal.signal(sig, _noted_by_the_watcher) for sig in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_end,), name="stop-on-signal", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _noted_by_the_watcher:
                signal.signal(sig, handler)
        os.close(write_end)  # the watcher reads end-of-file and returns


def _noted_by_the_watcher(signum: int, frame: FrameType | None) -> None:
    return None


def _watch(read_end: int) -> None:
    try:
        while data := os.read(read_end, 64):
            stop = next((n for n in data if n in STOP_SIGNALS), None)
            if stop is not None:
                _exit_for(signal.Signals(stop))
    finally:
        os.close(read_end)


def _exit_for(sig: signal.Signals) -> None:
    os.write(
        sys.stderr.fileno(), f"sandbox: {sig.name} received while starting; stopped.\n".encode()
    )
    os._exit(128 + sig.value)
