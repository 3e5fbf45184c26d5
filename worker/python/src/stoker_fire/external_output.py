r"""stoker_fire.external's reading of the child's output: pure parsers of one line (a tqdm bar, an
HF Trainer log dict, a `Saving model checkpoint to` line, --output_dir of the command) and the
Tracker that turns lines into stoker events (stoker_fire.external's docstring has the rules:
parsing, events).

    tracker = Tracker(reporter, output_dir="/out/student")
    for segment in split_segments(text):     # `\r` and `\n` both end a line
        tracker.feed(segment)                # progress / metrics / checkpoint events
    tracker.scan_output_dir()                # OUTPUT/checkpoint-N directories with trainer_state.json
"""

from __future__ import annotations

import ast
import os
import re
import sys
import threading
from typing import Any, Optional, Sequence

from stoker_payload import report

__all__ = [
    "split_segments",
    "parse_tqdm",
    "parse_log_dict",
    "read_log_dict",
    "looks_like_trainer_log",
    "parse_failure",
    "parse_checkpoint",
    "output_dir_of",
    "Tracker",
]

_TQDM = re.compile(
    r"(?:(?P<desc>[^\r\n|]*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+(?:\.\d+)?[kMG]?)/(?P<total>\d+(?:\.\d+)?[kMG]?)\s*\["
)
# Descriptions of bars that are not the training loop (datasets, hub, evaluation).
_NOT_TRAINING = re.compile(
    r"map|load|download|fetch|generat|extract|filter|token|process|shard|resolv|eval|predict|infer|valid|test|upload|convert|read|writ|sav",
    re.IGNORECASE,
)
_CHECKPOINT_LINE = re.compile(r"Saving model checkpoint to\s+(?P<path>\S.*?)\s*$")
_CHECKPOINT_STEP = re.compile(r"checkpoint-(\d+)/*$")
# A 'key': value pair of a dict repr whose value is a plain number, a number in quotes (newer
# Trainers print floats as '0.6931'), or a tensor(...) around one.
_PLAIN_PAIR = re.compile(
    r"""['"]([A-Za-z_][\w/.-]*)['"]\s*:\s*(?:[\w.]+\()?['"]?(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)['"]?\s*[,)}]"""
)
_ANY_KEY = re.compile(r"""['"]([A-Za-z_][\w/.-]*)['"]\s*:""")
# A number written as text: '0.6931', '2e-05', '-1.5', 'nan', 'inf' ({v:.4g} of a float).
_NUMBER_TEXT = re.compile(r"\s*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|infinity)\s*", re.IGNORECASE)
# Keys only the HF Trainer's log dicts have: a dict with one of these is a Trainer log line.
_TRAINER_KEYS = re.compile(r"^(?:loss|grad_norm|learning_rate|epoch|train_\w+|eval_\w+|test_\w+)$")
# Why a script failed, from its stderr: CUDA out of memory, a Python module not installed.
_CUDA_OOM = re.compile(r"CUDA out of memory|\bOutOfMemoryError\b")
_NO_MODULE = re.compile(r"\bModuleNotFoundError: No module named ['\"]([\w.]+)['\"]")
_SUFFIX = {"": 1, "k": 1_000, "M": 1_000_000, "G": 1_000_000_000}


def split_segments(text: str) -> list[str]:
    """The `\r`/`\n`-separated pieces of `text` (empty ones dropped)."""
    return [piece for piece in re.split(r"[\r\n]", text) if piece.strip()]


def _count(text: str) -> int:
    suffix = text[-1] if text[-1] in "kMG" else ""
    return int(float(text[: len(text) - len(suffix)]) * _SUFFIX[suffix])


def parse_tqdm(segment: str) -> Optional[tuple[int, int, str]]:
    """(n, total, description) for a tqdm bar, or None (not a bar, or a bar of something else)."""
    match = None
    for match in _TQDM.finditer(segment):
        pass  # the last bar on the line is the newest
    if match is None:
        return None
    desc = (match.group("desc") or "").strip()
    if desc and _NOT_TRAINING.search(desc):
        return None
    try:
        n, total = _count(match.group("n")), _count(match.group("total"))
    except (ValueError, IndexError):
        return None
    if total < 1 or n < 0:
        return None
    return n, total, desc


def _to_number(value: Any) -> Optional[float | int]:
    """A number, or a number written as text (newer Trainers print f"{v:.4g}"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and len(value) < 64 and _NUMBER_TEXT.fullmatch(value):
        text = value.strip()
        try:
            return float(text) if any(c in text for c in ".eEnN") else int(text)
        except ValueError:
            return None
    return None


def read_log_dict(segment: str) -> tuple[Optional[dict[str, float | int]], list[str]]:
    """(the numeric items of the dict repr on the line, or None; every key it has).

    Both Trainer formats: numbers ({'loss': 0.6931, ...}, transformers up to 4.x) and numbers
    as strings ({'loss': '0.6931', ...}, newer ProgressCallback.on_log); other values (text,
    lists) are left out."""
    start = segment.find("{")
    end = segment.rfind("}")
    if start == -1 or end <= start:
        return None, []
    body = segment[start : end + 1]
    if len(body) > 20_000:
        return None, []
    values: dict[str, float | int] = {}
    try:
        parsed = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        keys = [k for k in parsed if isinstance(k, str)]
        for key, value in parsed.items():
            number = _to_number(value)
            if isinstance(key, str) and number is not None:
                values[key] = number
    else:
        # e.g. {'loss': 1.2, 'grad_norm': tensor(0.51, device='cuda:0')}: read the plain numbers
        keys = _ANY_KEY.findall(body)
        for key, raw in _PLAIN_PAIR.findall(body):
            number = _to_number(raw)
            if number is not None:
                values[key] = number
    return values or None, keys


def parse_log_dict(segment: str) -> Optional[dict[str, float | int]]:
    """The numeric items of a dict repr on the line ({'loss': 1.2, ...} or {'loss': '1.2', ...}), or None."""
    return read_log_dict(segment)[0]


def looks_like_trainer_log(keys: Sequence[str]) -> bool:
    """Whether a dict with these keys is an HF Trainer log dict (loss, learning_rate, eval_*...)."""
    return any(_TRAINER_KEYS.match(k) for k in keys)


def parse_failure(segment: str) -> Optional[tuple[str, str]]:
    """(exit-code name, why) when the line says why the script failed, else None:
    CUDA_OOM for a CUDA out-of-memory error, MISSING_DEPENDENCY naming a module not installed."""
    if _CUDA_OOM.search(segment):
        return "CUDA_OOM", "the script ran out of GPU memory (the same shape fails again: lower the batch size or the sequence length)"
    missing = _NO_MODULE.search(segment)
    if missing:
        name = missing.group(1)
        return "MISSING_DEPENDENCY", f"the script needs the Python module {name!r}, which is not installed (install it in the payload's image)"
    return None


def parse_checkpoint(segment: str) -> Optional[str]:
    """The path of a `Saving model checkpoint to PATH` line, or None."""
    match = _CHECKPOINT_LINE.search(segment)
    return match.group("path") if match else None


def output_dir_of(command: Sequence[str]) -> Optional[str]:
    """The value of --output_dir / --output-dir in the command (the last one wins), or None."""
    found = None
    for i, arg in enumerate(command):
        for flag in ("--output_dir", "--output-dir"):
            if arg == flag and i + 1 < len(command):
                found = command[i + 1]
            elif arg.startswith(flag + "="):
                found = arg[len(flag) + 1 :]
    return found or None


_NAMES = {"loss": "loss", "learning_rate": "lr", "grad_norm": "gradNorm", "epoch": "epoch"}


def _camel(key: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", key) if p]
    if not parts:
        return "value"
    name = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return name if re.match(r"[A-Za-z_]", name) and name != "type" else "m_" + name


# -- state ------------------------------------------------------------------------------


class Tracker:
    """Turns segments of the child's output into events; thread-safe (both streams feed it)."""

    def __init__(self, reporter: report.Reporter, output_dir: Optional[str] = None, cwd: Optional[str] = None):
        self.reporter = reporter
        self.output_dir = output_dir
        self.cwd = cwd or os.getcwd()
        self.step: Optional[int] = None
        self.total: Optional[int] = None
        self._bar_done = False
        self._reported_step: Optional[int] = None
        self.first_loss: Optional[float] = None
        self.last_loss: Optional[float] = None
        self.train_loss: Optional[float] = None
        self.checkpoints: list[str] = []
        # The first line that says why the script failed: (exit-code name, why, the line).
        self.failure: Optional[tuple[str, str, str]] = None
        self._format_warned = False
        self._lock = threading.Lock()

    def feed(self, segment: str) -> None:
        try:
            with self._lock:
                self._feed(segment)
        except Exception as err:  # noqa: BLE001 - a line must never stop the run
            try:
                sys.stderr.write(f"stoker: stoker_fire.external could not read a line ({type(err).__name__}: {err})\n")
            except (OSError, ValueError):
                pass

    def _feed(self, segment: str) -> None:
        # One segment can hold several things: a logger line written right after a bar
        # (tqdm ends its redraws without a newline), or a bar and a dict on one stream.
        bar = parse_tqdm(segment)
        if bar is not None:
            self._on_bar(*bar)
        path = parse_checkpoint(segment)
        if path is not None:
            self._on_checkpoint(path)
        elif "{" in segment:
            values, keys = read_log_dict(segment)
            if values:
                self._on_dict(values)
            elif looks_like_trainer_log(keys):
                self._warn_format(segment)
        if self.failure is None:
            failure = parse_failure(segment)
            if failure is not None:
                self.failure = (*failure, segment.strip()[:300])

    def _warn_format(self, segment: str) -> None:
        """Once per run: a Trainer log dict with no number this parser can read (a format it
        does not know), so its metrics would be lost without a word."""
        if self._format_warned:
            return
        self._format_warned = True
        self.reporter.log(
            f"stoker_fire.external: a Trainer log line has no value it reads as a number; its metrics are not recorded: {segment.strip()[:200]}",
            level="warn",
        )

    def _on_bar(self, n: int, total: int, _desc: str) -> None:
        if self.total is not None and total != self.total and not self._bar_done:
            return  # another bar (evaluation) while training runs
        self.total = total
        self._bar_done = n >= total
        self.step = n
        if n != self._reported_step:
            self._reported_step = n
            self.reporter.progress(n, total)

    def _on_dict(self, values: dict[str, float | int]) -> None:
        if "train_runtime" in values or "train_loss" in values:
            if "train_loss" in values:
                self.train_loss = float(values["train_loss"])
            self.reporter.metrics(self.step, **{_camel(k): v for k, v in values.items() if k != "total_flos"})
            return
        if "loss" in values:
            loss = float(values["loss"])
            if self.first_loss is None:
                self.first_loss = loss
            self.last_loss = loss
            named = {_NAMES[k]: values[k] for k in _NAMES if k in values}
            extra = {_camel(k): v for k, v in values.items() if k not in _NAMES and _camel(k) not in _NAMES.values()}
            self.reporter.metrics(self.step, **named, **extra)
            return
        if any(k.startswith("eval_") or k.startswith("test_") for k in values):
            self.reporter.metrics(self.step, **{_camel(k): v for k, v in values.items()})

    def _on_checkpoint(self, path: str) -> None:
        full = path if os.path.isabs(path) else os.path.normpath(os.path.join(self.cwd, path))
        if full in self.checkpoints:
            return
        match = _CHECKPOINT_STEP.search(full)
        step = int(match.group(1)) if match else self.step
        if step is None:
            return
        self.checkpoints.append(full)
        self.reporter.checkpoint(full, step)

    def scan_output_dir(self) -> None:
        """Report OUTPUT/checkpoint-N directories that are complete (hold trainer_state.json)."""
        root = self.output_dir
        if not root:
            return
        root = root if os.path.isabs(root) else os.path.join(self.cwd, root)
        try:
            names = os.listdir(root)
        except OSError:
            return
        found = []
        for name in names:
            match = re.fullmatch(r"checkpoint-(\d+)", name)
            if match and os.path.isfile(os.path.join(root, name, "trainer_state.json")):
                found.append((int(match.group(1)), os.path.normpath(os.path.join(root, name))))
        with self._lock:
            for _step, path in sorted(found):
                self._on_checkpoint(path)

