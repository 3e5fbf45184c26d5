r"""The `external` training backend: run a user's unmodified training script and read its
progress, loss and checkpoints from what the HF Trainer prints (docs/fire.md, section 5).

Usage (from the repository root; PYTHONPATH=worker/python/src). Everything after `--` is the
command, run as is (no shell):

    python3 -m stoker_fire.external -- deepspeed llava/train/train_mem.py --deepspeed scripts/zero3.json \
        --lora_enable True --lora_r 64 --lora_alpha 256 --model_name_or_path Lin-Chen/open-llava-next-llama3-8b \
        --data_path /data/fire/student_view.json --image_folder /data/fire/images \
        --bf16 True --num_train_epochs 1 --learning_rate 2e-4 --save_steps 5000 --logging_steps 1 \
        --output_dir /out/student

    # any script that prints like the HF Trainer (the test fixture does)
    python3 -m stoker_fire.external -- python3 worker/python/tests/fixtures/fake_hf_trainer.py \
        --steps 20 --save-steps 10 --output_dir /tmp/fake-out

Contract:
    inputs     the command after `--` (argv[0] looked up on PATH); env: STOKER_OUTPUT_DIR (the
               output directory when the command has no --output_dir / --output-dir).
    child      started without a shell in its own process group, cwd and environment
               inherited; its stdout and stderr are passed through unchanged (stdout line by
               line, so marker lines never split one of its lines) and both are parsed line
               by line, `\r` and `\n` both ending a line (tqdm redraws with `\r`).
    parsing    tqdm bars `[desc: ] NN%|bar| n/total [elapsed<left, rate]` -> the step and
               total (bars of data loading, maps, downloads, evaluation are ignored; a bar
               with another total replaces the training bar only once that one is done);
               HF Trainer log dicts (Python reprs, read with ast.literal_eval, never eval;
               a dict that does not parse is read key by key for plain numbers);
               `Saving model checkpoint to PATH` (the Trainer's logger, shown with
               --log_level info) and, without that line, new OUTPUT/checkpoint-N directories
               that hold trainer_state.json. A line that matches nothing is only passed on.
    events     progress {step, totalSteps} at most once per step change; metrics {step?, loss,
               lr, gradNorm, epoch} per training log dict, {step?, evalLoss, ...} (camelCase)
               for other dicts, {trainRuntime, trainLoss, ...} for the final one;
               checkpoint {path, step} once per checkpoint directory; on success artifact
               "adapter" (OUTPUT, when it or an OUTPUT/checkpoint-* exists) and result
               {command, steps, totalSteps, firstLoss, lastLoss, lossFell, trainLoss,
               checkpoints, lastCheckpoint, outputDir, seconds}; a failing child gets a
               log event (level error) with its exit code.
    signals    SIGTERM and SIGINT are forwarded to the child's process group; the child is
               also sent SIGTERM if this process dies. What the child saves on SIGTERM is up
               to the script (the HF Trainer saves nothing).
    exit codes the child's code passes through: 0 -> SUCCESS; killed by signal N -> 128+N;
               after a forwarded SIGTERM any non-zero exit -> PREEMPTED; no command -> USAGE;
               a command that cannot be started -> MISSING_INPUT.
"""

from __future__ import annotations

import ast
import codecs
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report
from stoker_payload.exit_codes import PayloadError

__all__ = ["split_segments", "parse_tqdm", "parse_log_dict", "parse_checkpoint", "output_dir_of", "Tracker", "main"]

USAGE_TEXT = "usage: python3 -m stoker_fire.external -- CMD [ARGS...]   (runs CMD, reads HF Trainer logs and tqdm bars)"

# -- pure parsing -----------------------------------------------------------------------

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
_PLAIN_PAIR = re.compile(r"""['"]([A-Za-z_][\w/.-]*)['"]\s*:\s*(?:[\w.]+\()?(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)""")
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
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    return None


def parse_log_dict(segment: str) -> Optional[dict[str, float | int]]:
    """The numeric items of a dict repr on the line ({'loss': 1.2, ...}), or None."""
    start = segment.find("{")
    end = segment.rfind("}")
    if start == -1 or end <= start:
        return None
    body = segment[start : end + 1]
    if len(body) > 20_000:
        return None
    values: dict[str, float | int] = {}
    try:
        parsed = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        for key, value in parsed.items():
            number = _to_number(value)
            if isinstance(key, str) and number is not None:
                values[key] = number
    else:
        # e.g. {'loss': 1.2, 'grad_norm': tensor(0.51, device='cuda:0')}: read the plain numbers
        for key, raw in _PLAIN_PAIR.findall(body):
            try:
                values[key] = float(raw) if any(c in raw for c in ".eEn") else int(raw)
            except ValueError:
                continue
    return values or None


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
            values = parse_log_dict(segment)
            if values:
                self._on_dict(values)

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


# -- plumbing ---------------------------------------------------------------------------


class _LineWriter:
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


def parse_argv(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE_TEXT)
        raise SystemExit(exit_codes.SUCCESS)
    if args and args[0] == "--":
        args = args[1:]
    elif args and args[0].startswith("-"):
        raise PayloadError("USAGE", f"unknown option {args[0]!r} (put the command after `--`)\n{USAGE_TEXT}")
    if not args:
        raise PayloadError("USAGE", f"no command given\n{USAGE_TEXT}")
    return args


def main(argv: Sequence[str]) -> int:
    command = parse_argv(argv)
    reporter = report.Reporter(_LineWriter(lambda: sys.stdout))
    report.set_reporter(reporter)
    output_dir = output_dir_of(command) or os.environ.get("STOKER_OUTPUT_DIR") or None
    tracker = Tracker(reporter, output_dir)
    started = time.monotonic()

    state = {"child": None, "forwarded": None}

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
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_child_setup()
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
            raise PayloadError(
                "MISSING_INPUT", f"cannot start {command[0]!r}: {err.strerror or err} (is it installed and on PATH?)"
            ) from None
        except OSError as err:
            raise PayloadError("MISSING_INPUT", f"cannot start {command[0]!r}: {err}") from None
        state["child"] = child
        if state["forwarded"] is not None:  # a signal that came while it started
            forward(state["forwarded"], None)
        assert child.stdout is not None and child.stderr is not None
        writer = reporter._stream  # the _LineWriter
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

    tracker.scan_output_dir()
    seconds = round(time.monotonic() - started, 3)
    if code == 0:
        out = tracker.output_dir
        out_abs = (out if os.path.isabs(out) else os.path.abspath(out)) if out else None
        if out_abs and os.path.isdir(out_abs):
            reporter.artifact("adapter", out_abs)
        first, last = tracker.first_loss, tracker.last_loss
        reporter.result(
            command=shlex.join(command),
            steps=tracker.step,
            totalSteps=tracker.total,
            firstLoss=first,
            lastLoss=last,
            lossFell=(last < first) if first is not None and last is not None else None,
            trainLoss=tracker.train_loss,
            checkpoints=tracker.checkpoints,
            lastCheckpoint=tracker.checkpoints[-1] if tracker.checkpoints else None,
            outputDir=out_abs,
            seconds=seconds,
        )
        return exit_codes.SUCCESS
    if state["forwarded"] == signal.SIGTERM:
        reporter.log(f"{command[0]} stopped after SIGTERM (exit {code}); exiting PREEMPTED", level="warn")
        return exit_codes.PREEMPTED
    mapped = exit_codes.SIGNAL_BASE - code if code < 0 else code
    why = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit code {code}"
    reporter.log(f"{command[0]} failed ({why}) at step {tracker.step if tracker.step is not None else '?'}; exiting {mapped}", level="error")
    return mapped


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(sys.argv[1:]))
