"""What stoker_fire.evaluate writes: its output files (each whole or not at all) with their
artifact events, and one progress counter over every mode.

    outputs = Outputs(out_dir, reporter)
    outputs.write("fixed-student", rows)    # OUTPUT/fixed-student.jsonl, then artifact fixed-student
    progress = Progress(reporter, total)
    progress.to(done)                       # progress {step: done, totalSteps: total}

The files (OUTPUTS) and their rows are listed in stoker_fire.evaluate's docstring (outputs).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from stoker_payload import report
from stoker_payload.jsonl import JsonlWriter

__all__ = ["OUTPUTS", "Outputs", "Progress", "write_jsonl"]

OUTPUTS = {
    "fixed-student": "fixed-student.jsonl",
    "fixed-teacher": "fixed-teacher.jsonl",
    "fixed-teacher-scores": "fixed-teacher-scores.jsonl",
    "free": "free.jsonl",
}


class Progress:
    """One progress counter over every mode: prompts and free dialogues done, of all."""

    def __init__(self, reporter: report.Reporter, total: int):
        self.reporter, self.total, self.done = reporter, total, 0

    def to(self, done: int) -> None:
        self.done = done
        self.reporter.progress(done, self.total or None)


def write_jsonl(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """All of `rows` at `path`, or nothing: written to a temporary file, then renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    writer = JsonlWriter(tmp)
    try:
        writer.write_all(rows)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.abort()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Outputs:
    """The output files of one run: written whole (write_jsonl), then reported as artifacts."""

    def __init__(self, out_dir: str, reporter: report.Reporter):
        self.out_dir, self.reporter = out_dir, reporter
        self.written: dict[str, str] = {}  # name -> path, in the order written

    def write(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        path = os.path.join(self.out_dir, OUTPUTS[name])
        write_jsonl(path, rows)
        self.written[name] = path
        self.reporter.artifact(name, path)
