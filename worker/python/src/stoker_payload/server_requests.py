"""Server mode's requests: one JSON request per line on stdin, read and checked
(stoker_payload.server's docstring has the contract: stdin).

    lines = RequestLines(sys.stdin, poll=0.2)
    line = lines.next()              # a line, None at EOF, or RequestLines.TIMEOUT
    request = parse_request(line)    # ShardRequest, {"type": "shutdown"}, None; RequestError
"""

from __future__ import annotations

import json
import os
import select
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .jsonl import json_problem

__all__ = ["MAX_REQUEST_BYTES", "ShardRequest", "RequestError", "parse_request", "RequestLines"]

MAX_REQUEST_BYTES = 1024 * 1024  # a request line longer than this is dropped as malformed


class RequestError(ValueError):
    """A request line that cannot be served; `id` is the shard id when one could be read."""

    def __init__(self, message: str, id: Optional[str] = None):
        super().__init__(message)
        self.id = id


@dataclass(frozen=True)
class ShardRequest:
    id: str
    input: str
    output: str
    attempt: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)


def parse_request(line: str) -> Optional[dict[str, Any] | ShardRequest]:
    """A request line -> ShardRequest, {"type": "shutdown"}, or None (a blank line).

    Raises RequestError for anything else (not JSON, not an object, unknown type, bad fields).
    """
    text = line.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise RequestError(f"not JSON: {json_problem(err)}") from None
    if not isinstance(data, dict):
        raise RequestError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "shutdown":
        return {"type": "shutdown"}
    if kind != "shard":
        raise RequestError(f"unknown request type {kind!r} (known: shard, shutdown)")
    raw_id = data.get("id")
    shard_id = raw_id if isinstance(raw_id, str) and raw_id else None
    problems = [] if shard_id else [f"id must be a non-empty string, got {raw_id!r}"]
    for name in ("input", "output"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"{name} must be a non-empty path, got {value!r}")
    attempt = data.get("attempt", 1)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        problems.append(f"attempt must be an integer >= 1, got {attempt!r}")
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        problems.append(f"params must be an object, got {type(params).__name__}")
    if problems:
        raise RequestError("bad shard request: " + "; ".join(problems), shard_id)
    assert shard_id is not None
    return ShardRequest(shard_id, data["input"], data["output"], attempt, params)


class RequestLines:
    """Request lines from stdin. A real file descriptor is read with select(), so a SIGTERM
    while idle is noticed within `poll` seconds; anything else (a StringIO) by readline()."""

    TIMEOUT = object()

    def __init__(self, stdin: Any, poll: float):
        self._poll = poll
        self._stream = stdin
        self._fd: Optional[int] = None
        self._buf = b""
        self._eof = False
        if stdin is sys.stdin or stdin is getattr(sys, "__stdin__", None):
            try:
                self._fd = stdin.fileno()
            except (AttributeError, OSError, ValueError):
                self._fd = None

    def next(self) -> Any:
        """A line (str, without newline), None at EOF, or TIMEOUT."""
        if self._fd is None:
            line = self._stream.readline()
            if line == "":
                return None
            return line.rstrip("\r\n")
        while True:
            at = self._buf.find(b"\n")
            if at != -1:
                line, self._buf = self._buf[:at], self._buf[at + 1 :]
                return line.decode("utf-8", errors="replace").rstrip("\r")
            if self._eof:
                if self._buf:
                    line, self._buf = self._buf, b""
                    return line.decode("utf-8", errors="replace").rstrip("\r")
                return None
            ready, _, _ = select.select([self._fd], [], [], self._poll)
            if not ready:
                return self.TIMEOUT
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self._eof = True
            else:
                self._buf += chunk
                if len(self._buf) > MAX_REQUEST_BYTES and b"\n" not in self._buf:
                    self._buf = b""
                    return "<a request line longer than %d bytes>" % MAX_REQUEST_BYTES
