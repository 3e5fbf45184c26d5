"""JSONL files as payloads read and write them: one JSON object per line, UTF-8.

    for number, record in read_jsonl("in.jsonl"):    # numbered from 1; blank lines skipped
        ...
    with JsonlWriter("out.jsonl") as out:             # flushed and fsynced on close
        out.write({"id": 1})

Errors: a missing input is PayloadError('MISSING_INPUT'); a line that is not UTF-8, not JSON or
not an object is PayloadError('BAD_DATA', 'input line N: ...'); writing a non-finite float is
a ValueError (JSON has none).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Iterator, Mapping, Optional

from .exit_codes import PayloadError

__all__ = ["read_jsonl", "JsonlWriter", "json_problem"]


def read_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file, numbered from 1.

    A line that is not UTF-8, not JSON, or not a JSON object raises
    PayloadError('BAD_DATA', 'input line N: ...'); a missing file is MISSING_INPUT.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise PayloadError("MISSING_INPUT", f"input file does not exist: {path}") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PayloadError("BAD_DATA", f"input line {number}: not UTF-8: {err}") from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as err:
                raise PayloadError("BAD_DATA", f"input line {number}: not JSON: {json_problem(err)}") from None
            if not isinstance(record, dict):
                raise PayloadError("BAD_DATA", f"input line {number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


class JsonlWriter:
    """Writes one JSON object per line to `path` (created with its directory, truncated).

    close() flushes and fsyncs; it is idempotent. As a context manager it closes on exit.
    Non-finite floats are a ValueError (JSON has none).
    """

    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._fh: Optional[io.TextIOWrapper] = open(path, "w", encoding="utf-8", newline="\n")
        self.items = 0

    @property
    def closed(self) -> bool:
        return self._fh is None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"write to closed output {self.path}")
        self._fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")
        self.items += 1

    def write_all(self, records) -> int:
        for record in records:
            self.write(record)
        return self.items

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fh.close()

    def abort(self) -> None:
        """Close without caring about errors (the file is about to be removed)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()



def json_problem(err: ValueError) -> str:
    """json's message without its line number (it counts lines inside the one line)."""
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at column {err.pos + 1}"
    return str(err)
