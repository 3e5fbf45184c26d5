"""Server mode: load a model once, then work shard after shard from requests on stdin.

    from stoker_payload.server import serve

    def load():
        return build_model()                      # once, before `ready`

    def handle(request, ctx):                     # once per shard
        records = list(ctx.read_jsonl())          # [(line number, dict)]; BAD_DATA on a bad line
        with ctx.writer() as out:
            for done, (_line, record) in enumerate(records, 1):
                out.write(score(ctx.state, record))
                ctx.progress(done, len(records))
        return len(records)                       # items (default: lines written)

    if __name__ == "__main__":
        run_main(lambda: serve(handle, load=load))   # stoker_payload.entrypoint

Contract (common/events.ts, the comment above ReadyEvent):
    stdin    one JSON request per line:
                 {"type":"shard","id":ID,"input":PATH,"output":PATH,"attempt":N,"params":{...}}
                 {"type":"shutdown"}            (or EOF): return SUCCESS
             a line that is not JSON, not an object, of an unknown type, or a shard request
             without a non-empty string id/input/output is reported as a `log` warn event
             and skipped; a shard request with a usable id but bad other fields is also
             answered `failed {id, reason: BAD_CONFIG}` so the worker does not wait for it.
             `attempt` (default 1) and `params` (default {}) may be left out.
    stdout   marker lines through report.Reporter:
                 metrics {loadSeconds}          after load() returned
                 ready {}                       once, after load(); nothing is read before
                 progress {step, totalSteps}    from ctx.progress(), at most every
                                                `progress_interval` seconds (first and last always)
                 done {id, items}               the handler returned; `output` is written,
                                                flushed and fsynced
                 failed {id, reason, message}   reason: a name of common/exit-codes.json:
                                                PayloadError -> its name (BAD_DATA: not retried);
                                                CUDA out of memory -> CUDA_OOM;
                                                ModuleNotFoundError -> MISSING_DEPENDENCY;
                                                any other exception -> FAILURE with
                                                "<ExceptionType>: message" (traceback on stderr)
                 metrics {shardSeconds, itemsPerSec}   after each done
             Everything else a handler prints is log. One shard at a time, in request order.
    output   a failed shard's `output` file is removed (the worker renames `output` only
             after `done`). A handler that neither opened ctx.writer() nor wrote `output`
             itself gets an empty file when it reports 0 items, and `failed` otherwise.
    errors   a failing shard never stops the server, except: MemoryError or FatalError
             (the process is in a bad state) -> `failed`, then serve() returns FAILURE
             (FatalError: its own code); KeyboardInterrupt / SystemExit -> `failed`, then
             re-raised. An exception from load() propagates (no `ready`): run_main()
             turns it into the exit code (UNKNOWN_MODEL, MISSING_DEPENDENCY, ...).
    signals  SIGTERM (signals.install()): the current shard is finished and answered, then
             serve() returns SUCCESS; while idle it returns within `poll_interval`. A long
             handler may check ctx.stop_requested() and raise exit_codes.Preempted() to hand
             the shard back (PREEMPTED is retried). A second SIGTERM kills the process.

Nothing here imports torch (only a CUDA OOM makes it look at an already imported torch).
The request lines are read and checked in server_requests; read_jsonl and JsonlWriter live in
jsonl (both are importable from here too).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Mapping, Optional, TextIO

from . import signals
from .exit_codes import FAILURE, SUCCESS, PayloadError, classify_exception, name_of
from .jsonl import JsonlWriter, read_jsonl
from .report import Reporter, get_reporter
from .server_requests import RequestError, RequestLines, ShardRequest, parse_request

__all__ = [
    "ShardRequest",
    "ShardContext",
    "JsonlWriter",
    "FatalError",
    "RequestError",
    "parse_request",
    "read_jsonl",
    "serve",
]


class FatalError(PayloadError):
    """The shard failed and this process must not serve another one (a lost CUDA context,
    a corrupted model): serve() answers `failed {reason: code_name}` and returns the code."""

    def __init__(self, code_name: str = "FAILURE", message: str = "the payload is in a bad state"):
        super().__init__(code_name, message)

    def __reduce__(self):
        return (FatalError, (self.code_name, self.message))


class ShardContext:
    """What a handler gets besides the request: input, output, progress, the loaded state."""

    def __init__(self, request: ShardRequest, state: Any, reporter: Reporter, progress_interval: float):
        self.request = request
        self.state = state  # what load() returned
        self.reporter = reporter
        self._writer: Optional[JsonlWriter] = None
        self._interval = progress_interval
        self._last_progress: Optional[float] = None
        self._last_step: Optional[int] = None

    # the request's fields, for convenience
    @property
    def id(self) -> str:
        return self.request.id

    @property
    def input(self) -> str:
        return self.request.input

    @property
    def output(self) -> str:
        return self.request.output

    @property
    def attempt(self) -> int:
        return self.request.attempt

    @property
    def params(self) -> Mapping[str, Any]:
        return self.request.params

    def read_jsonl(self, path: Optional[str] = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) for each line of the input (or `path`); see read_jsonl()."""
        return read_jsonl(self.request.input if path is None else path)

    def writer(self) -> JsonlWriter:
        """The JSONL writer on `output`, opened on the first call (the same one afterwards)."""
        if self._writer is None:
            self._writer = JsonlWriter(self.request.output)
        return self._writer

    @property
    def items_written(self) -> int:
        return self._writer.items if self._writer is not None else 0

    def progress(self, done: int, total: Optional[int] = None, *, force: bool = False) -> None:
        """Report `done` of `total` items; throttled, but the first and the last always go out."""
        now = time.monotonic()
        final = total is not None and done >= total
        due = self._last_progress is None or now - self._last_progress >= self._interval
        if not (force or final or due) or done == self._last_step:
            return
        self.reporter.progress(done, total if total else None)
        self._last_progress, self._last_step = now, done

    def log(self, message: str, level: str = "info") -> None:
        self.reporter.log(message, level)

    def metrics(self, **values: Any) -> None:
        self.reporter.metrics(**values)

    def stop_requested(self) -> bool:
        return signals.stop_requested()

    def _finish_output(self, items: int) -> None:
        if self._writer is not None:
            self._writer.close()
        elif not os.path.exists(self.request.output):
            if items != 0:
                raise RuntimeError(f"the handler reported {items} items but wrote no output file {self.request.output}")
            JsonlWriter(self.request.output).close()

    def _discard_output(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        try:
            os.unlink(self.request.output)
        except OSError:
            pass


def serve(
    handler: Callable[[ShardRequest, ShardContext], Optional[int]],
    *,
    load: Optional[Callable[[], Any]] = None,
    stdin: Optional[TextIO] = None,
    reporter: Optional[Reporter] = None,
    stderr: Optional[TextIO] = None,
    handle_signals: bool = True,
    progress_interval: float = 0.2,
    poll_interval: float = 0.2,
) -> int:
    """Run the server loop until shutdown/EOF/SIGTERM; returns the exit code (see the header).

    handler(request, ctx) does one shard and returns its item count (None: the lines
    written through ctx.writer()). load() runs once before `ready`; its value is ctx.state.
    """
    rep = reporter if reporter is not None else get_reporter()
    err = stderr if stderr is not None else sys.stderr
    installed = False
    if handle_signals and threading.current_thread() is threading.main_thread():
        signals.install()
        installed = True
    try:
        began = time.perf_counter()
        state = load() if load is not None else None
        rep.metrics(loadSeconds=round(time.perf_counter() - began, 6))
        if signals.stop_requested():
            rep.log("stop requested while loading; exiting before ready", "warn")
            return SUCCESS
        rep.emit({"type": "ready"})
        lines = RequestLines(stdin if stdin is not None else sys.stdin, poll_interval)
        while True:
            if signals.stop_requested():
                rep.log("stop requested; exiting between shards", "info")
                return SUCCESS
            line = lines.next()
            if line is RequestLines.TIMEOUT:
                continue
            if line is None:
                return SUCCESS
            try:
                request = parse_request(line)
            except RequestError as bad:
                rep.log(f"ignored request line: {bad}: {_clip(line)}", "warn")
                if bad.id is not None:
                    rep.emit({"type": "failed", "id": bad.id, "reason": "BAD_CONFIG", "message": str(bad)})
                continue
            if request is None:
                continue
            if isinstance(request, dict):  # shutdown
                return SUCCESS
            code = _run_shard(handler, request, state, rep, err, progress_interval)
            if code is not None:
                return code
    finally:
        if installed:
            signals.uninstall()


def _run_shard(
    handler: Callable[[ShardRequest, ShardContext], Optional[int]],
    request: ShardRequest,
    state: Any,
    rep: Reporter,
    err: TextIO,
    progress_interval: float,
) -> Optional[int]:
    """Run one shard and answer done/failed; an exit code when the server must stop."""
    ctx = ShardContext(request, state, rep, progress_interval)
    began = time.perf_counter()
    try:
        items = handler(request, ctx)
        if items is None:
            items = ctx.items_written
        if isinstance(items, bool) or not isinstance(items, int) or items < 0:
            raise TypeError(f"the handler must return an item count (int >= 0) or None, got {items!r}")
        ctx._finish_output(items)
    except PayloadError as failure:
        ctx._discard_output()
        rep.emit({"type": "failed", "id": request.id, "reason": failure.code_name, "message": failure.message})
        if isinstance(failure, FatalError):
            _say(err, f"stoker: shard {request.id}: {failure}; the server stops")
            return failure.code
        return None
    except MemoryError as failure:
        ctx._discard_output()
        traceback.print_exc(file=err)
        rep.emit({"type": "failed", "id": request.id, "reason": "FAILURE", "message": f"MemoryError: {failure}"})
        _say(err, f"stoker: shard {request.id}: out of memory; the server stops")
        return FAILURE
    except Exception as failure:  # noqa: BLE001 - a bug in one shard must not kill the server
        ctx._discard_output()
        code, message, with_traceback = classify_exception(failure)
        reason = name_of(code) or "FAILURE"
        if with_traceback:
            traceback.print_exc(file=err)
        _say(err, f"stoker: shard {request.id} failed: {message}")
        if reason == "CUDA_OOM":
            _free_cuda_cache()
        if message.startswith(reason + ": "):
            message = message[len(reason) + 2 :]
        rep.emit({"type": "failed", "id": request.id, "reason": reason, "message": message})
        return None
    except BaseException as failure:  # KeyboardInterrupt, SystemExit: answer, then go
        ctx._discard_output()
        rep.emit({"type": "failed", "id": request.id, "reason": "FAILURE", "message": f"{type(failure).__name__}: {failure}"})
        raise
    seconds = time.perf_counter() - began
    rep.emit({"type": "done", "id": request.id, "items": items})
    rep.metrics(shardSeconds=round(seconds, 6), itemsPerSec=items / seconds if seconds > 0 else None)
    return None


def _free_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _say(stream: TextIO, text: str) -> None:
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        pass

