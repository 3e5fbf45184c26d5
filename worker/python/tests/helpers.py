"""Shared test helpers: paths, subprocess payload runs, and an event validator that mirrors
common/events.ts (the TypeScript side checks the same shapes with zod)."""

from __future__ import annotations

import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

PY_DIR = Path(__file__).resolve().parent.parent  # worker/python
SRC_DIR = PY_DIR / "src"  # the packages; what the worker puts first on a payload's PYTHONPATH
REPO_ROOT = PY_DIR.parent.parent
VECTORS_FILE = REPO_ROOT / "test" / "fixtures" / "protocol-vectors.json"
EXIT_CODES_FILE = REPO_ROOT / "common" / "exit-codes.json"
MARKER = "::stoker::"

# The interpreter running the tests is the one with torch (scripts/test-python.mjs picks it).
PYTHON = sys.executable
# The smoke payload, started the way training-configs/smoke-cpu.yaml starts it.
SMOKE_TRAIN = (PYTHON, "-m", "stoker_examples.smoke_train")

_WORKER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "RESUME_FROM", "STOKER_OUTPUT_DIR")


def payload_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything a worker would set, with PYTHONPATH
    = the packages (as the worker sets it), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _WORKER_ENV and k != "STOKER_EXIT_CODES_FILE"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(SRC_DIR)
    env.update(extra)
    return env


def events(stdout: str) -> list[dict[str, Any]]:
    """Every marker line's JSON, in order; asserts each is a valid event."""
    out = []
    for line in stdout.splitlines():
        at = line.find(MARKER)
        if at == -1:
            continue
        event = json.loads(line[at + len(MARKER) :])
        problem = event_problem(event)
        assert problem is None, f"invalid event {line!r}: {problem}"
        out.append(event)
    return out


def of_type(evts: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in evts if e["type"] == kind]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def event_problem(e: Any) -> Optional[str]:
    """None when `e` satisfies common/events.ts's PayloadEvent, else why not."""
    if not isinstance(e, dict):
        return "not an object"
    kind = e.get("type")
    step_ok = lambda: _is_int(e.get("step")) and e["step"] >= 0  # noqa: E731
    if kind == "progress":
        if not step_ok():
            return "step"
        if "totalSteps" in e and not (_is_int(e["totalSteps"]) and e["totalSteps"] > 0):
            return "totalSteps"
        if "epoch" in e and not (_is_finite(e["epoch"]) and e["epoch"] >= 0):
            return "epoch"
        return None
    if kind == "metrics":
        if "step" in e and not step_ok():
            return "step"
        bad = [k for k, v in e.items() if k not in ("type", "step") and not (v is None or _is_finite(v))]
        return f"metric values {bad}" if bad else None
    if kind == "checkpoint":
        if not (isinstance(e.get("path"), str) and e["path"]):
            return "path"
        return None if step_ok() else "step"
    if kind == "artifact":
        if not (isinstance(e.get("name"), str) and re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", e["name"])):
            return "name"
        return None if isinstance(e.get("path"), str) and e["path"] else "path"
    if kind == "result":
        return None
    if kind == "log":
        if e.get("level", "info") not in ("debug", "info", "warn", "error"):
            return "level"
        return None if isinstance(e.get("message"), str) else "message"
    return f"unknown type {kind!r}"


def run_smoke(
    args: Sequence[str], *, env: Optional[dict[str, str]] = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SMOKE_TRAIN, *args],
        cwd=REPO_ROOT,
        env=env if env is not None else payload_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveProcess:
    """A payload started in the background whose stdout lines can be awaited."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stdout: list[str] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._pump_out, daemon=True)
        self._err = threading.Thread(target=self._pump_err, daemon=True)
        self._out.start()
        self._err.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for_event(self, predicate, *, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"payload exited before {what}; stderr:\n{self.stderr}")
            at = line.find(MARKER)
            if at != -1:
                event = json.loads(line[at + len(MARKER) :])
                if predicate(event):
                    return event

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self._out.join(timeout=5)
        self._err.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def output(self) -> str:
        return "".join(self.stdout)
