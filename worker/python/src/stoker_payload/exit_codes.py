"""The exit-code table, read from common/exit-codes.json (the one table TypeScript reads too).

Contract:
    inputs   common/exit-codes.json next to the repository root, or the file named by
             STOKER_EXIT_CODES_FILE; read once, at import time. The numbers live only
             in that file: this module exposes them as constants, never restates them.
    outputs  SUCCESS, FAILURE, USAGE, BAD_CONFIG, BAD_DATA, MISSING_INPUT, UNKNOWN_MODEL,
             MISSING_DEPENDENCY, TEMPORARY, CUDA_OOM, PREEMPTED (ints);
             PayloadError / Preempted (exceptions that carry a table name);
             classify_exception(err), the code an exception out of main() ends in.
             (run_main, which applies it at the process boundary, is in entrypoint.py.)
    imports  nothing of stoker_payload's: runtime, report and entrypoint import this module.

Classification mirrors common/exit-codes.ts classifyExit(): a code in the table uses
the table's `retryable`; 128+N (killed by signal N) is retryable; other codes inside
`nonRetryableRange` are not; anything else is.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

__all__ = [
    "ExitCode",
    "TABLE",
    "TABLE_PATH",
    "NAMES",
    "SUCCESS",
    "FAILURE",
    "USAGE",
    "BAD_CONFIG",
    "BAD_DATA",
    "MISSING_INPUT",
    "UNKNOWN_MODEL",
    "MISSING_DEPENDENCY",
    "TEMPORARY",
    "CUDA_OOM",
    "PREEMPTED",
    "ENVIRONMENT",
    "SIGNAL_BASE",
    "exit_code",
    "name_of",
    "is_retryable",
    "load_table",
    "PayloadError",
    "Preempted",
    "classify_exception",
]


class ExitCode(NamedTuple):
    name: str
    code: int
    retryable: bool
    description: str


def _default_table_path() -> Path:
    # <root>/worker/python/src/stoker_payload/exit_codes.py: the root is parents[4].
    return Path(__file__).resolve().parents[4] / "common" / "exit-codes.json"


def load_table(path: "os.PathLike[str] | str") -> dict[str, Any]:
    """Read and check an exit-code file; raises RuntimeError with the path on any problem."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"stoker: cannot read the exit-code table {path}: {err}") from err
    codes = raw.get("codes") if isinstance(raw, dict) else None
    if not isinstance(codes, dict) or not codes:
        raise RuntimeError(f"stoker: exit-code table {path} has no 'codes' object")
    entries: dict[str, ExitCode] = {}
    for name, entry in codes.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("code"), int)
            or isinstance(entry.get("code"), bool)
            or not isinstance(entry.get("retryable"), bool)
        ):
            raise RuntimeError(f"stoker: exit-code table {path}: codes.{name} needs an int code and a bool retryable")
        entries[name] = ExitCode(name, entry["code"], entry["retryable"], str(entry.get("description", "")))
    lo_hi = raw.get("nonRetryableRange", [64, 79])
    signal_base = raw.get("signalBase", 128)
    return {"codes": entries, "nonRetryableRange": (int(lo_hi[0]), int(lo_hi[1])), "signalBase": int(signal_base)}


TABLE_PATH: Path = Path(os.environ.get("STOKER_EXIT_CODES_FILE") or _default_table_path())
TABLE: dict[str, Any] = load_table(TABLE_PATH)
_CODES: Mapping[str, ExitCode] = TABLE["codes"]
_BY_CODE: Mapping[int, ExitCode] = {entry.code: entry for entry in _CODES.values()}
NAMES: tuple[str, ...] = tuple(_CODES)
SIGNAL_BASE: int = TABLE["signalBase"]


def exit_code(name: str) -> int:
    """The number for a table name; KeyError names the table file when it is missing."""
    try:
        return _CODES[name].code
    except KeyError:
        raise KeyError(f"exit code {name!r} is not in {TABLE_PATH} (known: {', '.join(NAMES)})") from None


def name_of(code: int) -> Optional[str]:
    entry = _BY_CODE.get(code)
    return entry.name if entry else None


def is_retryable(code: int) -> bool:
    """Whether another attempt can help, by the same rules as common/exit-codes.ts."""
    entry = _BY_CODE.get(code)
    if entry is not None:
        return entry.retryable
    if SIGNAL_BASE < code < SIGNAL_BASE + 65:
        return True
    lo, hi = TABLE["nonRetryableRange"]
    return not (lo <= code <= hi)


# The names are code; the numbers are data, read from the table above.
SUCCESS = exit_code("SUCCESS")
FAILURE = exit_code("FAILURE")
USAGE = exit_code("USAGE")
BAD_CONFIG = exit_code("BAD_CONFIG")
BAD_DATA = exit_code("BAD_DATA")
MISSING_INPUT = exit_code("MISSING_INPUT")
UNKNOWN_MODEL = exit_code("UNKNOWN_MODEL")
MISSING_DEPENDENCY = exit_code("MISSING_DEPENDENCY")
TEMPORARY = exit_code("TEMPORARY")
CUDA_OOM = exit_code("CUDA_OOM")
PREEMPTED = exit_code("PREEMPTED")
ENVIRONMENT = exit_code("ENVIRONMENT")


class PayloadError(Exception):
    """An error whose exit code is chosen by the payload: PayloadError('BAD_CONFIG', 'steps must be > 0').

    `retryable` comes from the table, so `PayloadError('TEMPORARY', ...)` asks for another
    attempt and `PayloadError('BAD_DATA', ...)` does not. entrypoint.run_main() prints the message
    (not a traceback) on stderr and exits with `code`.
    """

    def __init__(self, code_name: str, message: str):
        self.code = exit_code(code_name)  # raises KeyError for a name not in the table
        self.code_name = code_name
        self.message = message
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return is_retryable(self.code)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"

    def __reduce__(self):  # keep pickling (multiprocessing) working with the two-argument init
        return (PayloadError, (self.code_name, self.message))


class Preempted(PayloadError):
    """Raised after the payload wrote a checkpoint because it was asked to stop (SIGTERM)."""

    def __init__(self, message: str = "stopped on request after writing a checkpoint"):
        super().__init__("PREEMPTED", message)

    def __reduce__(self):
        return (Preempted, (self.message,))


def _is_cuda_oom(err: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to classify an error
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    if isinstance(oom_type, type) and isinstance(err, oom_type):
        return True
    return isinstance(err, RuntimeError) and "CUDA out of memory" in str(err)


def classify_exception(err: BaseException) -> tuple[int, str, bool]:
    """(exit code, one-line message, whether a traceback helps) for an exception out of main()."""
    if isinstance(err, PayloadError):
        return err.code, str(err), False
    if _is_cuda_oom(err):
        first = str(err).strip().splitlines()[0] if str(err).strip() else "CUDA out of memory"
        return CUDA_OOM, f"CUDA_OOM: {first} (the same shape fails again: lower the batch size)", False
    if isinstance(err, KeyboardInterrupt):
        # Interrupted by SIGINT: report it the way a shell does, 128+2, which the table
        # classifies as killed-by-signal (retryable). A cooperative stop raises Preempted.
        return SIGNAL_BASE + int(signal.SIGINT), "interrupted (SIGINT)", False
    if isinstance(err, ModuleNotFoundError):
        return MISSING_DEPENDENCY, f"MISSING_DEPENDENCY: {err} (install it in the payload's environment)", True
    return FAILURE, f"{type(err).__name__}: {err}", True
