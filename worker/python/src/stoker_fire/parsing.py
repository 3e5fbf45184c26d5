"""FIRE's text formats in one place: the teacher's `Score: N.\nFeedback: ...` and the
student's `Thought: ...\nAnswer: ...` (docs/fire.md, section 1).

    parse_teacher("Score: 7.\nFeedback: Look at the sign.")   -> (7, "Look at the sign.")
    parse_teacher("I think it is fine")                       -> (None, "")
    score_or_zero(None)                                       -> 0
    parse_student("Thought: a red bus\nAnswer: red")          -> ("a red bus", "red")
    format_teacher(7, "Look at the sign.")                    -> "Score: 7.\nFeedback: Look at the sign."
    format_student("a red bus", "red")                        -> "Thought: a red bus\nAnswer: red"

Teacher rule (the reference code's, made exact here; test/fixtures/fire-parsing-vectors.json
pins it for the TypeScript side too):
    1. leading and trailing whitespace of the whole text is ignored;
    2. the first line must contain `Score:` (case-sensitive), else the score is None;
    3. the score is the first integer on that line (an optional minus sign belongs to it:
       `Score: 7.` -> 7, `Score: 10/10` -> 10, `Score: 7.5` -> 7, `Round 2 Score: 9` -> 2);
    4. a score outside 0..10 (`Score: -3`, `Score: 11`) or no integer at all is None;
    5. the feedback is the text after the first `Feedback:` anywhere in the text, stripped;
       "" when there is none (the score still counts).
None means "unparseable": where a number is needed (self-play stopping, score lists) it
counts as 0, which is also the teacher-format-failure score; the FIRE-Bench teacher MAE
counts it as an error of 10 (a later issue's metrics).

Student rule: the thought is the text between `Thought:` and `Answer:`, the answer the
text after the first `Answer:`, each stripped; a part without its marker is None (a text
with only `Answer:` has thought None).
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = [
    "SCORE_MARKER",
    "FEEDBACK_MARKER",
    "THOUGHT_MARKER",
    "ANSWER_MARKER",
    "MIN_SCORE",
    "MAX_SCORE",
    "parse_teacher",
    "score_or_zero",
    "feedback_text",
    "parse_student",
    "format_teacher",
    "format_student",
]

SCORE_MARKER = "Score:"
FEEDBACK_MARKER = "Feedback:"
THOUGHT_MARKER = "Thought:"
ANSWER_MARKER = "Answer:"
MIN_SCORE, MAX_SCORE = 0, 10

_INTEGER = re.compile(r"-?\d+")


def parse_teacher(text: str) -> tuple[Optional[int], str]:
    """(score or None, feedback) of a teacher turn, by the rule in the module docstring."""
    if not isinstance(text, str):
        raise TypeError(f"a teacher turn must be a str, got {type(text).__name__}")
    body = text.strip()
    first_line = body.split("\n", 1)[0]
    score: Optional[int] = None
    if SCORE_MARKER in first_line:
        match = _INTEGER.search(first_line)
        if match is not None:
            value = int(match.group(0))
            score = value if MIN_SCORE <= value <= MAX_SCORE else None
    at = body.find(FEEDBACK_MARKER)
    feedback = body[at + len(FEEDBACK_MARKER) :].strip() if at != -1 else ""
    return score, feedback


def score_or_zero(score: Optional[int]) -> int:
    """An unparseable score (None) counts as 0 wherever a number is needed."""
    return 0 if score is None else score


def feedback_text(teacher_turn: str) -> str:
    """What the student sees of a teacher turn: the feedback only, the score stripped."""
    return parse_teacher(teacher_turn)[1]


def parse_student(text: str) -> tuple[Optional[str], Optional[str]]:
    """(thought, answer) of a student turn; a part without its marker is None."""
    if not isinstance(text, str):
        raise TypeError(f"a student turn must be a str, got {type(text).__name__}")
    answer_at = text.find(ANSWER_MARKER)
    answer = text[answer_at + len(ANSWER_MARKER) :].strip() if answer_at != -1 else None
    head = text if answer_at == -1 else text[:answer_at]
    thought_at = head.find(THOUGHT_MARKER)
    thought = head[thought_at + len(THOUGHT_MARKER) :].strip() if thought_at != -1 else None
    return thought, answer


def format_teacher(score: int, feedback: str) -> str:
    """The canonical teacher turn (as in the FIRE data: `Score: 3.\nFeedback: ...`)."""
    if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
        raise ValueError(f"score must be an int in {MIN_SCORE}..{MAX_SCORE}, got {score!r}")
    return f"{SCORE_MARKER} {score}.\n{FEEDBACK_MARKER} {feedback.strip()}"


def format_student(thought: str, answer: str) -> str:
    """The canonical student turn: `Thought: ...\nAnswer: ...`."""
    return f"{THOUGHT_MARKER} {thought.strip()}\n{ANSWER_MARKER} {answer.strip()}"
