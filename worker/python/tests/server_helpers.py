"""Helpers for tests of server-mode payloads (stoker_payload.server, stoker_fire.selfplay,
stoker_examples.toy_generate): event checks with the server-mode events, request lines, JSONL
input files, and a server payload in a subprocess whose marker lines can be awaited."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any, Callable, Optional, Sequence

from stoker_payload import exit_codes

from .helpers import MARKER, REPO_ROOT, event_problem


def server_event_problem(e: Any) -> Optional[str]:
    """None when `e` is a valid event, server-mode ones included (common/events.ts)."""
    if not isinstance(e, dict):
        return "not an object"
    kind = e.get("type")
    if kind == "ready":
        return None
    if kind == "done":
        if not (isinstance(e.get("id"), str) and e["id"]):
            return "id"
        items = e.get("items")
        return None if isinstance(items, int) and not isinstance(items, bool) and items >= 0 else "items"
    if kind == "failed":
        if not (isinstance(e.get("id"), str) and e["id"]):
            return "id"
        if e.get("reason") not in exit_codes.NAMES:
            return f"reason {e.get('reason')!r} is not in the exit-code table"
        return None if isinstance(e.get("message"), str) else "message"
    return event_problem(e)


def server_events(stdout: str) -> list[dict[str, Any]]:
    """Every marker line's JSON, in order; asserts each is a valid event."""
    out = []
    for line in stdout.splitlines():
        at = line.find(MARKER)
        if at == -1:
            continue
        event = json.loads(line[at + len(MARKER) :])
        problem = server_event_problem(event)
        assert problem is None, f"invalid event {line!r}: {problem}"
        out.append(event)
    return out


def shard(shard_id: str, input_path: str, output_path: str, attempt: int = 1, **params: Any) -> dict[str, Any]:
    return {"type": "shard", "id": shard_id, "input": input_path, "output": output_path, "attempt": attempt, "params": params}


def write_jsonl(path: str, records: Sequence[Any]) -> str:
    """Records (dicts, or raw strings written as they are) one per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


class ServerProcess:
    """A server payload in a subprocess: requests go to its stdin, marker lines are awaited."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
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
            if MARKER in line:
                self.events.put(server_events(line)[0])
        self.events.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def send(self, request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((request if isinstance(request, str) else json.dumps(request)) + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; stderr so far:\n{self.stderr}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                self.proc.wait(timeout=10)
                self._err.join(timeout=5)
                raise AssertionError(f"payload exited ({self.proc.returncode}) before {what}; stderr:\n{self.stderr}")
            if predicate(event):
                return event

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self._out.join(timeout=5)
        self._err.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def output(self) -> str:
        return "".join(self.stdout)
