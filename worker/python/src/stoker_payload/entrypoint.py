"""The payload's process boundary: run main() and exit with the code that says how it ended.

    from stoker_payload.entrypoint import run_main

    if __name__ == "__main__":
        run_main(lambda: main(parse_args(sys.argv[1:])))

Contract:
    inputs   main(): returns None or an int, or raises.
    outputs  the process's exit code, from the shared table (exit_codes.py):
                 None -> SUCCESS; an int -> that int; SystemExit (argparse) -> its code;
                 PayloadError -> its code, its message on stderr (no traceback);
                 CUDA out of memory -> CUDA_OOM; KeyboardInterrupt -> 128+SIGINT;
                 ModuleNotFoundError -> MISSING_DEPENDENCY; anything else -> FAILURE with
                 the traceback on stderr.
    events   a failure is also one `log` event (level error; warn for PREEMPTED) through
             the reporter, so the worker shows the reason without reading stderr.

Who owns what: exit_codes.py holds the table and the classification and imports nothing
of this package; runtime.py raises its PayloadError; report.py asks runtime whether this
is rank 0. Only this module needs both the table and the reporter, so it sits on top of
them and none of them imports it.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable, Optional, TextIO

from . import report
from .exit_codes import FAILURE, PREEMPTED, SUCCESS, classify_exception

__all__ = ["run_main"]


def _exit_status(err: SystemExit, stderr: TextIO) -> int:
    code = err.code
    if code is None:
        return SUCCESS
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=stderr)
    return FAILURE


def run_main(
    main: Callable[[], Optional[int]],
    *,
    exit: bool = True,
    stderr: Optional[TextIO] = None,
    reporter: Optional[report.Reporter] = None,
) -> int:
    """Call main() and exit with the code that describes how it ended (see the module's
    contract). `reporter` defaults to report.get_reporter(). With exit=False the code is
    returned instead of calling sys.exit (tests)."""
    err_stream = stderr if stderr is not None else sys.stderr
    try:
        result = main()
        code = SUCCESS if result is None else int(result)
    except SystemExit as err:
        code = _exit_status(err, err_stream)
    except BaseException as err:  # noqa: BLE001 - this is the process boundary
        code, message, with_traceback = classify_exception(err)
        if with_traceback:
            traceback.print_exc(file=err_stream)
        print(f"stoker: {message}", file=err_stream)
        try:
            err_stream.flush()
        except (OSError, ValueError):
            pass
        _report_failure(reporter, message, "warn" if code == PREEMPTED else "error")
    if exit:
        sys.exit(code)
    return code


def _report_failure(reporter: Optional[report.Reporter], message: str, level: str) -> None:
    try:
        (reporter if reporter is not None else report.get_reporter()).log(message, level=level)
    except Exception:  # noqa: BLE001 - stdout may be gone; stderr already has the message
        pass
