r"""stoker_fire.external's child process: started without a shell in its own process group (and
sent SIGTERM if this process dies), its stdout passed on line by line and its stderr byte by
byte, both read by the Tracker, SIGTERM and SIGINT forwarded to its group
(stoker_fire.external's docstring has the contract: child, signals).

    code, forwarded = run_child(command, LineWriter(lambda: sys.stdout), tracker)

code is Popen's (-N: killed by signal N); forwarded is the signal passed on, or None. A command
that cannot be started is PayloadError('MISSING_INPUT').
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from stoker_payload import report
from stoker_payload.exit_codes import PayloadError

from .external_output import Tracker, split_segments

__all__ = ["LineWriter", "run_child"]


class LineWriter:
    """stdout shared by the reporter and the child's stdout; whole lines under one lock,
    and a marker line always starts on a fresh line."""

    def __init__(self, stream_getter: Callable[[], Any]):
        self._get = stream_getter
        self._lock = threading.Lock()
        self._at_line_start = True

    def write(self, text: str) -> int:
        with self._lock:
            stream = self._get()
            if text.startswith(report.MARKER) and not self._at_line_start:
                stream.write("\n")
            stream.write(text)
            stream.flush()
            self._at_line_start = text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        pass


def _pump(fd: int, sink: Callable[[str], None], tracker: Tracker, whole_lines: bool) -> None:
    """Read the child's stream: pass it on (whole lines when asked) and feed the tracker."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""  # text not yet ended by \r or \n
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        text = decoder.decode(chunk, final=not chunk)
        pending += text
        cut = max(pending.rfind("\n"), pending.rfind("\r"))
        if cut >= 0:
            done, pending = pending[: cut + 1], pending[cut + 1 :]
            if whole_lines:
                sink(done)
            for segment in split_segments(done):
                tracker.feed(segment)
        if not chunk:
            if pending:
                if whole_lines:
                    sink(pending + "\n")
                tracker.feed(pending)
            break
        if len(pending) > 1_000_000:  # a line without end: pass it on, do not parse it
            if whole_lines:
                sink(pending)
            pending = ""


def _raw_pump(fd: int, out_fd: int, tracker: Tracker) -> None:
    """stderr: bytes passed on as they come (tqdm's `\r` redraws intact), parsed by segment."""
    read_fd, write_fd = os.pipe()
    tee = threading.Thread(target=_pump, args=(read_fd, lambda _t: None, tracker, False), daemon=True)
    tee.start()
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            try:
                os.write(out_fd, chunk)
            except OSError:
                pass
            view = memoryview(chunk)
            while view:
                view = view[os.write(write_fd, view) :]
    finally:
        os.close(write_fd)
        tee.join()
        os.close(read_fd)


def _child_setup() -> Callable[[], None]:
    """A preexec_fn: the child gets its own process group and SIGTERM when this process dies
    (prctl is looked up here, in the parent: nothing is imported after fork)."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except Exception:  # noqa: BLE001 - best effort
            prctl = None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return setup


def run_child(command: Sequence[str], writer: LineWriter, tracker: Tracker) -> tuple[int, Optional[int]]:
    """Run `command` to its end: (its exit code as Popen gives it, the signal forwarded or None)."""
    state: dict[str, Any] = {"child": None, "forwarded": None}

    def forward(signum: int, _frame: object) -> None:
        state["forwarded"] = signum
        child = state["child"]
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        child = _start(command)
        state["child"] = child
        if state["forwarded"] is not None:  # a signal that came while it started
            forward(state["forwarded"], None)
        assert child.stdout is not None and child.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(child.stdout.fileno(), writer.write, tracker, True), daemon=True),
            threading.Thread(target=_raw_pump, args=(child.stderr.fileno(), sys.stderr.fileno(), tracker), daemon=True),
        ]
        sys.stderr.flush()
        for pump in pumps:
            pump.start()
        while True:
            try:
                code = child.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                tracker.scan_output_dir()
        for pump in pumps:
            pump.join(timeout=30)
        child.stdout.close()
        child.stderr.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code, state["forwarded"]


def _start(command: Sequence[str]) -> subprocess.Popen:
    """The child, its stdout and stderr piped; MISSING_INPUT when it cannot be started."""
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_child_setup()
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
        raise PayloadError(
            "MISSING_INPUT", f"cannot start {command[0]!r}: {err.strerror or err} (is it installed and on PATH?)"
        ) from None
    except OSError as err:
        raise PayloadError("MISSING_INPUT", f"cannot start {command[0]!r}: {err}") from None
