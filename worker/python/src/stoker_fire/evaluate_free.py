"""stoker_fire.evaluate's free dialogues: the model under test plays the student against the
teacher model by the self-play rules (stoker_fire.selfplay_rules), every dialogue kept,
written as the input of `stoker metrics dialogues`.

    summary = run_free(rules, batch_size, dialogues, models, progress, should_stop, outputs, reporter)
    end_reason(record["score"], rules)      # satisfied | format_failure | no_improvement | max_turns
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from stoker_payload import report

from .evaluate_data import Dialogue
from .evaluate_outputs import Outputs, Progress
from .selfplay_rules import Rules, run_dialogues

__all__ = ["end_reason", "run_free"]


def end_reason(scores: Sequence[int], rules: Rules) -> str:
    """How a free dialogue ended, by the rules of selfplay_rules._judge: satisfied,
    format_failure (score 0), no_improvement, or max_turns."""
    last = scores[-1]
    if last == 0:
        return "format_failure"
    if len(scores) > 1 and last <= scores[-2]:
        return "no_improvement"
    if last >= rules.satisfied:
        return "satisfied"
    return "max_turns"


def run_free(
    rules: Rules,
    batch_size: int,
    dialogues: Sequence[Dialogue],
    models: Mapping[str, Any],
    progress: Progress,
    should_stop: Callable[[], bool],
    outputs: Outputs,
    reporter: report.Reporter,
) -> dict[str, Any]:
    """The free dialogues of models["model"] against models["teacher"]: OUTPUT/free.jsonl, the
    metrics event; the summary for the result. StopRequested between two batches."""
    t0 = time.perf_counter()
    base = progress.done
    records, stats = run_dialogues(
        [d.seed for d in dialogues],
        models["model"],
        models["teacher"],
        batch_size=batch_size,
        rules=rules,
        on_progress=lambda finished, _total: progress.to(base + finished),
        should_stop=should_stop,
    )
    assert len(records) == len(dialogues), "keep_all keeps every dialogue"
    outputs.write("free", records)
    seconds = time.perf_counter() - t0
    ended = {reason: 0 for reason in ("satisfied", "no_improvement", "format_failure", "max_turns")}
    for record in records:
        ended[end_reason(record["score"], rules)] += 1
    at_turn_1 = sum(r["score"][0] >= rules.satisfied for r in records)
    turns = sum(r["round"] for r in records)
    reporter.metrics(
        freeDialogues=len(records),
        freeTurns=turns,
        freeSatisfied=ended["satisfied"],
        freeSatisfiedAtTurn1=at_turn_1,
        freeNoImprovement=ended["no_improvement"],
        freeFormatFailure=ended["format_failure"],
        freeMaxTurns=ended["max_turns"],
        freeStudentCalls=stats.student_calls,
        freeTeacherCalls=stats.teacher_calls,
        freeSeconds=seconds,
    )
    return {
        "dialogues": len(records),
        "kept": stats.kept,
        "turns": turns,
        "ended": ended,
        "satisfiedAtTurn1": at_turn_1,
        "maxTurns": rules.max_rounds,
        "tau": rules.satisfied,
        "seconds": seconds,
    }
