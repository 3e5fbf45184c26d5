"""Report to the stoker worker with marker lines on stdout (common/events.ts).

    ::stoker:: {"type":"progress","step":10,"totalSteps":200}

Contract:
    events   progress {step, totalSteps?, epoch?}   metrics {step?, <name>: number|null}
             checkpoint {path, step}                artifact {name, path}
             result {...}                           log {level, message}
    output   one compact JSON object per line, "type" first, ASCII only (non-ASCII is
             escaped, so a payload whose stdout encoding is ascii still works), flushed
             after every line, written under a lock (lines from threads never interleave).
    gating   only rank 0 (RANK unset or 0) writes; other ranks validate and drop.
    numbers  must be finite: a NaN/inf metric is written as null (the key stays, so a
             diverged loss is visible); anywhere else a non-finite number is a ValueError
             (progress, checkpoint) or null (result). A call that would produce a line
             common/events.ts rejects raises ValueError/TypeError instead of writing it.

Paths are written as given; pass absolute paths (the worker does not share the
payload's working directory). test/fixtures/protocol-vectors.json pins the exact lines.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
from typing import Any, Mapping, Optional, TextIO

from .runtime import is_rank0

__all__ = [
    "MARKER",
    "MAX_MARKER_BYTES",
    "LOG_LEVELS",
    "Reporter",
    "get_reporter",
    "set_reporter",
    "progress",
    "metrics",
    "checkpoint",
    "artifact",
    "result",
    "log",
]

MARKER = "::stoker::"
MAX_MARKER_BYTES = 64 * 1024  # common/events.ts rejects longer marker bodies
LOG_LEVELS = ("debug", "info", "warn", "error")
_ARTIFACT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _step(value: Any, field: str = "step") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # Accept integral numbers from numpy/torch, but not 1.5 or "3".
        if hasattr(value, "__index__") and not isinstance(value, bool):
            value = value.__index__()
        else:
            raise TypeError(f"{field} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value}")
    return value


def _number(value: Any, field: str) -> Optional[float | int]:
    """A metric value: int or finite float; NaN/inf and None become None."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"metric {field} must be a number, got {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, float):
        try:
            value = float(value)  # numpy scalars, 0-d tensors
        except (TypeError, ValueError):
            raise TypeError(f"metric {field} must be a number, got {value!r}") from None
    return value if math.isfinite(value) else None


def _path(value: Any, field: str = "path") -> str:
    text = os.fspath(value) if not isinstance(value, str) else value
    if not isinstance(text, str) or text == "":
        raise ValueError(f"{field} must be a non-empty path")
    return text


def _jsonable(value: Any) -> Any:
    """Plain JSON for result(): non-finite floats -> None, paths -> str, scalars unwrapped."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    raise TypeError(f"result value of type {type(value).__name__} is not JSON")


class Reporter:
    """Writes marker lines. `stream` defaults to sys.stdout as it is at each write;
    `enabled` defaults to is_rank0() read once, here."""

    def __init__(self, stream: Optional[TextIO] = None, *, enabled: Optional[bool] = None):
        self._stream = stream
        self.enabled = is_rank0() if enabled is None else bool(enabled)
        self._lock = threading.Lock()

    # -- events ---------------------------------------------------------------
    def progress(self, step: int, total_steps: Optional[int] = None, epoch: Optional[float] = None) -> Optional[str]:
        event: dict[str, Any] = {"type": "progress", "step": _step(step)}
        if total_steps is not None:
            total = _step(total_steps, "total_steps")
            if total < 1:
                raise ValueError(f"total_steps must be >= 1, got {total}")
            event["totalSteps"] = total
        if epoch is not None:
            value = _number(epoch, "epoch")
            if value is None or value < 0:
                raise ValueError(f"epoch must be a finite number >= 0, got {epoch!r}")
            event["epoch"] = value
        return self.emit(event)

    def metrics(self, step: Optional[int] = None, **values: Any) -> Optional[str]:
        event: dict[str, Any] = {"type": "metrics"}
        if step is not None:
            event["step"] = _step(step)
        for name, value in values.items():
            if name == "type":
                raise ValueError("a metric cannot be named 'type'")
            event[name] = _number(value, name)
        return self.emit(event)

    def checkpoint(self, path: "os.PathLike[str] | str", step: int) -> Optional[str]:
        return self.emit({"type": "checkpoint", "path": _path(path), "step": _step(step)})

    def artifact(self, name: str, path: "os.PathLike[str] | str") -> Optional[str]:
        if not isinstance(name, str) or not _ARTIFACT_NAME.match(name):
            raise ValueError(f"artifact name must match {_ARTIFACT_NAME.pattern}, got {name!r}")
        return self.emit({"type": "artifact", "name": name, "path": _path(path)})

    def result(self, **data: Any) -> Optional[str]:
        if "type" in data:
            raise ValueError("a result field cannot be named 'type'")
        event: dict[str, Any] = {"type": "result"}
        event.update(_jsonable(data))
        return self.emit(event)

    def log(self, message: str, level: str = "info") -> Optional[str]:
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        return self.emit({"type": "log", "level": level, "message": str(message)})

    # -- plumbing -------------------------------------------------------------
    @staticmethod
    def format(event: Mapping[str, Any]) -> str:
        """The marker line (without newline) for an already-shaped event."""
        if not isinstance(event.get("type"), str):
            raise ValueError("an event needs a string 'type'")
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        if len(body) > MAX_MARKER_BYTES:
            raise ValueError(
                f"{event['type']} event is {len(body)} bytes, over {MAX_MARKER_BYTES}: "
                "write large data to a file and report it as an artifact"
            )
        return f"{MARKER} {body}"

    def emit(self, event: Mapping[str, Any]) -> Optional[str]:
        """Format and (on rank 0) write one event; returns the line, or None when gated off."""
        line = self.format(event)  # validate on every rank, so bugs show everywhere
        if not self.enabled:
            return None
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
        return line


_default: Optional[Reporter] = None
_default_lock = threading.Lock()


def get_reporter() -> Reporter:
    """The process-wide Reporter, created on first use (reads RANK then)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Reporter()
        return _default


def set_reporter(reporter: Optional[Reporter]) -> Optional[Reporter]:
    """Replace the process-wide Reporter (None: create afresh on next use); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, reporter
        return old


def progress(step: int, total_steps: Optional[int] = None, epoch: Optional[float] = None) -> Optional[str]:
    return get_reporter().progress(step, total_steps, epoch)


def metrics(step: Optional[int] = None, **values: Any) -> Optional[str]:
    return get_reporter().metrics(step, **values)


def checkpoint(path: "os.PathLike[str] | str", step: int) -> Optional[str]:
    return get_reporter().checkpoint(path, step)


def artifact(name: str, path: "os.PathLike[str] | str") -> Optional[str]:
    return get_reporter().artifact(name, path)


def result(**data: Any) -> Optional[str]:
    return get_reporter().result(**data)


def log(message: str, level: str = "info") -> Optional[str]:
    return get_reporter().log(message, level)
