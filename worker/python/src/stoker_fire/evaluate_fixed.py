"""stoker_fire.evaluate's fixed dialogues: the prompts of the student test and of the teacher test
built from the reference dialogues (teacher forcing), generated in batches, written as the
input files of `stoker metrics text` and `stoker metrics scores`.

    items = student_items(dialogues)        # history up to feedback n -> response n+1
    items = teacher_items(dialogues)        # question, ground truth, response n -> teacher turn n
    summary = run_student_test(model, items, batch_size, progress, should_stop, outputs, reporter)

A stop request between two batches raises StopRequested (nothing of the running test is written).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from stoker_payload import report

from . import prompts as P
from .evaluate_data import Dialogue
from .evaluate_outputs import Outputs, Progress
from .parsing import feedback_text, parse_teacher
from .selfplay_rules import Prompt, StopRequested

__all__ = ["Item", "student_items", "teacher_items", "generate_items", "run_student_test", "run_teacher_test"]

Generate = Callable[[Sequence[Prompt]], Sequence[str]]


@dataclass(frozen=True)
class Item:
    """One fixed-dialogue prompt and what the reference dialogue has in its place."""

    id: str  # "<dialogue id>#<n>"
    prompt: Prompt
    reference: str
    score: Optional[int] = None  # teacher test: the reference score


def student_items(dialogues: Sequence[Dialogue]) -> list[Item]:
    """Student test: history up to feedback n (n = 1..T-1) -> response n+1."""
    items = []
    for d in dialogues:
        s = d.seed
        feedbacks = [feedback_text(t) for t in d.teacher_turns]
        for n in range(1, len(d.responses)):
            messages = P.student_messages(s.question, d.responses[:n], feedbacks[:n], with_image=s.image is not None)
            items.append(Item(f"{s.id}#{n}", Prompt(s.id, "student", s.image, tuple(messages)), d.responses[n]))
    return items


def teacher_items(dialogues: Sequence[Dialogue], *, with_image: bool = False) -> list[Item]:
    """Teacher test: question, ground truth and response n (n = 1..T) -> teacher turn n."""
    items = []
    for d in dialogues:
        s = d.seed
        image = s.image if with_image else None
        for n, (response, turn, score) in enumerate(zip(d.responses, d.teacher_turns, d.scores), 1):
            messages = P.teacher_messages(s.question, s.groundtruth, response, with_image=image is not None)
            items.append(Item(f"{s.id}#{n}", Prompt(s.id, "teacher", image, tuple(messages)), turn, score))
    return items


def generate_items(
    generate: Generate,
    items: Sequence[Item],
    batch_size: int,
    progress: Progress,
    should_stop: Callable[[], bool],
    what: str,
) -> list[str]:
    """Every item's generated text (stripped), in item order; batches of similar length."""
    order = sorted(range(len(items)), key=lambda i: (items[i].prompt.image is None, sum(len(m["value"]) for m in items[i].prompt.messages)))
    out: list[str] = [""] * len(items)
    base = progress.done
    for start in range(0, len(order), batch_size):
        if should_stop():
            raise StopRequested(f"stop requested during {what}, after {start} of {len(order)} prompts")
        chunk = order[start : start + batch_size]
        texts = list(generate([items[i].prompt for i in chunk]))
        if len(texts) != len(chunk) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{what}: the model returned {len(texts)} texts (strings expected) for {len(chunk)} prompts")
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
        progress.to(base + start + len(chunk))
    return out


def run_student_test(
    model: Generate, items: Sequence[Item], batch_size: int, progress: Progress, should_stop: Callable[[], bool], outputs: Outputs, reporter: report.Reporter
) -> dict[str, Any]:
    """The student test: OUTPUT/fixed-student.jsonl, its metrics event; the summary for the result."""
    t0 = time.perf_counter()
    texts = generate_items(model, items, batch_size, progress, should_stop, "the student test")
    outputs.write("fixed-student", [{"id": it.id, "prediction": p, "references": [it.reference]} for it, p in zip(items, texts)])
    seconds = time.perf_counter() - t0
    reporter.metrics(fixedStudentPrompts=len(items), fixedStudentSeconds=seconds)
    return {"prompts": len(items), "seconds": seconds}


def run_teacher_test(
    model: Generate, by: str, items: Sequence[Item], batch_size: int, progress: Progress, should_stop: Callable[[], bool], outputs: Outputs, reporter: report.Reporter
) -> dict[str, Any]:
    """The teacher test (written by `by`: teacher or model): OUTPUT/fixed-teacher.jsonl and
    OUTPUT/fixed-teacher-scores.jsonl, its metrics event; the summary for the result."""
    t0 = time.perf_counter()
    texts = generate_items(model, items, batch_size, progress, should_stop, "the teacher test")
    predicted = [parse_teacher(t)[0] for t in texts]
    outputs.write("fixed-teacher", [{"id": it.id, "prediction": p, "references": [it.reference]} for it, p in zip(items, texts)])
    outputs.write("fixed-teacher-scores", [{"id": it.id, "prediction": p, "reference": it.score} for it, p in zip(items, texts)])
    seconds = time.perf_counter() - t0
    unparseable = sum(s is None for s in predicted)
    reporter.metrics(fixedTeacherPrompts=len(items), fixedTeacherUnparseable=unparseable, fixedTeacherSeconds=seconds)
    return {"prompts": len(items), "by": by, "unparseable": unparseable, "seconds": seconds}
