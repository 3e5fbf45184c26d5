"""Cooperative preemption: SIGTERM asks the payload to checkpoint and stop.

Contract:
    install()          first SIGTERM sets a flag; the training loop sees stop_requested(),
                       writes a checkpoint, reports it, and raises exit_codes.Preempted
                       (exit PREEMPTED). A second SIGTERM restores the default action and
                       re-sends the signal: the process dies "killed by SIGTERM" (143),
                       which is also retryable (two-stage shutdown, like graphile-worker).
    stop_requested()   whether a stop was asked for (by a signal or request_stop()).
    sleep(seconds)     a sleep that returns early (False) when a stop is requested.

The handler does only async-signal-safe work: it sets an Event and writes one line with
os.write(2, ...). It never takes the Reporter's lock or stdout's buffer lock, which the
interrupted code may hold. Python runs handlers on the main thread, so install() must be
called from the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Iterable, Optional, Union

__all__ = ["install", "uninstall", "stop_requested", "stop_signal", "request_stop", "reset", "sleep"]

_Handler = Union[Callable[[int, object], object], int, None]

_stop = threading.Event()
_received: Optional[int] = None
_previous: dict[int, _Handler] = {}
_force_on_second = True
_announce = True


def _handler(signum: int, _frame: object) -> None:
    global _received
    if _received is not None and _force_on_second:
        _say(f"stoker: second {signal.Signals(signum).name}, stopping now\n")
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received = signum
    _stop.set()
    _say(f"stoker: {signal.Signals(signum).name} received, will checkpoint and stop\n")


def _say(text: str) -> None:
    if not _announce:
        return
    try:
        os.write(2, text.encode())
    except OSError:
        pass


def install(
    signals: Iterable[int] = (signal.SIGTERM,), *, force_on_second: bool = True, announce: bool = True
) -> None:
    """Handle `signals` cooperatively (default SIGTERM only: Ctrl-C still interrupts).

    force_on_second: a second signal kills the process with the default action.
    announce: write one line to stderr when a signal arrives.
    """
    global _force_on_second, _announce
    _force_on_second = force_on_second
    _announce = announce
    for signum in signals:
        previous = signal.signal(signum, _handler)
        _previous.setdefault(signum, previous)


def uninstall() -> None:
    """Put back the handlers install() replaced."""
    for signum, previous in list(_previous.items()):
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        del _previous[signum]


def stop_requested() -> bool:
    return _stop.is_set()


def stop_signal() -> Optional[int]:
    """The signal that asked for the stop, or None (not asked, or request_stop())."""
    return _received


def request_stop() -> None:
    """Ask for a stop from code (a watchdog thread, a test)."""
    _stop.set()


def reset() -> None:
    global _received
    _received = None
    _stop.clear()


def sleep(seconds: float) -> bool:
    """Sleep up to `seconds`; True if it slept the whole time, False if a stop cut it short."""
    if seconds <= 0:
        return not _stop.is_set()
    return not _stop.wait(seconds)
