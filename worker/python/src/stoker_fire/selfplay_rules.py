"""FIRE self-play as pure code: the dialogue rules, independent of any model (docs/fire.md,
section 3).

    from stoker_fire.selfplay_rules import Seed, Rules, run_dialogues

    seeds = [Seed(id="gqa-1", image="gqa_1.jpg", question="Is it wicker?", groundtruth="Yes.", source="gqa")]
    records, stats = run_dialogues(seeds, student, teacher, batch_size=32)

`student(prompts)` and `teacher(prompts)` take a list of Prompt (id, role, image, messages:
LLaVA messages ending with a human turn, from stoker_fire.prompts) and return one generated text
per prompt, in order. A model backend supplies them (stoker_fire.hf; a test supplies scripted fakes).

Rules, per dialogue:
    1. the student answers the question (round 1);
    2. the teacher sees only the question, the ground truth, its instruction and the LATEST
       answer (no history), and returns `Score: N.\nFeedback: ...` (stoker_fire.parsing);
    3. after the teacher's turn of round r, in this order:
         score None or 0              -> stop, drop  (format_failure: the teacher broke format)
         r > 1 and score <= previous  -> stop, drop  (no_improvement)
         score >= rules.satisfied (8) -> stop, keep; but drop (first_answer_satisfied) when
                                         r < rules.min_rounds: no feedback to learn from
         r == rules.max_rounds (3)    -> stop, drop  (unsatisfied); keep with keep_unsatisfied
         otherwise                    -> the student gets the feedback text (score stripped)
                                         together with its own earlier turns, and refines.
So kept dialogues have strictly increasing scores and (by default) end satisfied after 2 or
3 rounds, as FIRE-1M's do. min_rounds and keep_unsatisfied are our reconstruction from the
published data (FIRE-1M: 2-3 rounds; its sample dialogues all end at >= 8); the stopping
rules themselves are FIRE's. With rules.keep_all (FIRE-Bench free dialogues: stoker_fire.evaluate)
the rules still end each dialogue, but every dialogue is kept whatever its outcome (then
stats.kept == stats.seeds and no drop is counted).

Batching: seeds are sorted by question length (group_by_length) and cut into groups of
batch_size dialogues; within a group all active dialogues advance one half-turn per call:
one student call, then one teacher call, per round, with every dialogue still going. So a
group costs at most 2 * max_rounds calls, and batch_size=1 runs one dialogue at a time.
Records come back in seed order whatever the grouping.

Record (one FIRE raw record per kept dialogue, docs/fire.md, section 1):
    {"id", "image", "img_path", "question": {"role": "user", "value"},
     "groundtruth": {"role": "user", "value"},
     "conversations": [{"role": "student", "type": "response", "value"},
                       {"role": "teacher", "type": "feedback", "value"}, ...],
     "score": [ints], "round": n, "source", "split"}
Student turns are the generated text as it came (stripped); teacher turns are rewritten
canonically (parsing.format_teacher), so parsing a record's teacher turns gives back its
score list exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from . import prompts as P
from .parsing import MAX_SCORE, format_teacher, parse_teacher, score_or_zero

__all__ = [
    "Seed",
    "Prompt",
    "Rules",
    "Stats",
    "DROP_REASONS",
    "Generate",
    "seed_from_record",
    "run_dialogues",
]

DROP_REASONS = ("format_failure", "no_improvement", "first_answer_satisfied", "unsatisfied")


@dataclass(frozen=True)
class Seed:
    """One (image, question, ground truth) triple to start a dialogue from."""

    id: str
    image: Optional[str]
    question: str
    groundtruth: str
    source: Optional[str] = None


@dataclass(frozen=True)
class Prompt:
    """What one model call is asked for one dialogue: continue `messages` with a gpt turn."""

    id: str
    role: str  # "student" | "teacher"
    image: Optional[str]
    messages: tuple[Mapping[str, str], ...]


Generate = Callable[[Sequence[Prompt]], Sequence[str]]


@dataclass(frozen=True)
class Rules:
    max_rounds: int = 3
    satisfied: int = 8  # a score >= this ends the dialogue, kept
    min_rounds: int = 2  # a dialogue satisfied earlier is dropped (first_answer_satisfied)
    keep_unsatisfied: bool = False  # keep dialogues that end at max_rounds below `satisfied`
    keep_all: bool = False  # keep every dialogue, whatever its outcome (evaluation); overrides the two above
    teacher_sees_image: bool = False
    split: str = "fire_1m"
    default_source: str = "selfplay"

    def problems(self) -> list[str]:
        out = []
        if self.max_rounds < 1:
            out.append(f"max_rounds: must be >= 1, got {self.max_rounds}")
        if not 1 <= self.satisfied <= MAX_SCORE:
            out.append(f"satisfied: must be in 1..{MAX_SCORE}, got {self.satisfied}")
        if not 1 <= self.min_rounds <= max(self.max_rounds, 1):
            out.append(f"min_rounds: must be in 1..max_rounds ({self.max_rounds}), got {self.min_rounds}")
        return out


@dataclass
class Stats:
    seeds: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in DROP_REASONS})
    student_calls: int = 0
    teacher_calls: int = 0
    rounds: dict[int, int] = field(default_factory=dict)  # kept dialogues by number of rounds

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["rounds"] = {str(k): v for k, v in sorted(self.rounds.items())}
        return data


@dataclass
class _Dialogue:
    index: int  # position in the seed list
    seed: Seed
    responses: list[str] = field(default_factory=list)
    teacher_turns: list[str] = field(default_factory=list)  # canonical "Score: N.\nFeedback: ..."
    feedbacks: list[str] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)
    outcome: Optional[str] = None  # "kept" or a drop reason


def seed_from_record(record: Mapping[str, Any], where: str = "seed") -> Seed:
    """A Seed from a JSON object: {"id", "image" (or "img_path"), "question", "groundtruth",
    "source"?}; question/groundtruth may be strings or FIRE's {"role", "value"} objects.
    Raises ValueError naming the field (the caller turns it into BAD_DATA)."""

    def text(name: str) -> str:
        value = record.get(name)
        if isinstance(value, Mapping):
            value = value.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {name} must be a non-empty string (or {{role, value}}), got {value!r}")
        return value

    seed_id = record.get("id")
    if isinstance(seed_id, bool) or not isinstance(seed_id, (str, int)) or seed_id == "":
        raise ValueError(f"{where}: id must be a non-empty string or an integer, got {seed_id!r}")
    image = record.get("image", record.get("img_path"))
    if image is not None and (not isinstance(image, str) or not image):
        raise ValueError(f"{where}: image must be a non-empty string or absent, got {image!r}")
    source = record.get("source")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"{where}: source must be a string, got {source!r}")
    return Seed(str(seed_id), image, text("question"), text("groundtruth"), source)


def _student_prompt(d: _Dialogue) -> Prompt:
    messages = P.student_messages(d.seed.question, d.responses, d.feedbacks, with_image=d.seed.image is not None)
    return Prompt(d.seed.id, "student", d.seed.image, tuple(messages))


def _teacher_prompt(d: _Dialogue, rules: Rules) -> Prompt:
    with_image = rules.teacher_sees_image and d.seed.image is not None
    messages = P.teacher_messages(d.seed.question, d.seed.groundtruth, d.responses[-1], with_image=with_image)
    return Prompt(d.seed.id, "teacher", d.seed.image if with_image else None, tuple(messages))


def _call(fn: Generate, role: str, prompts: list[Prompt]) -> list[str]:
    texts = list(fn(prompts))
    if len(texts) != len(prompts):
        raise ValueError(f"the {role} returned {len(texts)} texts for {len(prompts)} prompts")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"the {role} must return strings, got {type(text).__name__}")
    return texts


def _judge(d: _Dialogue, round_no: int, rules: Rules) -> Optional[str]:
    """The dialogue's outcome after the teacher's turn of `round_no`, or None to go on."""
    score = d.scores[-1]
    if score == 0:
        return "format_failure"
    if round_no > 1 and score <= d.scores[-2]:
        return "no_improvement"
    if score >= rules.satisfied:
        return "kept" if round_no >= rules.min_rounds else "first_answer_satisfied"
    if round_no >= rules.max_rounds:
        return "kept" if rules.keep_unsatisfied else "unsatisfied"
    return None


def _record(d: _Dialogue, rules: Rules) -> dict[str, Any]:
    conversations = []
    for response, teacher_turn in zip(d.responses, d.teacher_turns):
        conversations.append({"role": "student", "type": "response", "value": response})
        conversations.append({"role": "teacher", "type": "feedback", "value": teacher_turn})
    return {
        "id": d.seed.id,
        "image": d.seed.image,
        "img_path": d.seed.image,
        "question": {"role": "user", "value": d.seed.question},
        "groundtruth": {"role": "user", "value": d.seed.groundtruth},
        "conversations": conversations,
        "score": list(d.scores),
        "round": len(d.scores),
        "source": d.seed.source or rules.default_source,
        "split": rules.split,
    }


def _run_group(group: list[_Dialogue], student: Generate, teacher: Generate, rules: Rules, stats: Stats) -> None:
    active = list(group)
    for round_no in range(1, rules.max_rounds + 1):
        if not active:
            return
        answers = _call(student, "student", [_student_prompt(d) for d in active])
        stats.student_calls += 1
        for d, text in zip(active, answers):
            d.responses.append(text.strip())
        judged = _call(teacher, "teacher", [_teacher_prompt(d, rules) for d in active])
        stats.teacher_calls += 1
        going = []
        for d, text in zip(active, judged):
            parsed, feedback = parse_teacher(text)
            score = score_or_zero(parsed)
            d.scores.append(score)
            d.feedbacks.append(feedback)
            d.teacher_turns.append(format_teacher(score, feedback))
            d.outcome = _judge(d, round_no, rules)
            if d.outcome is None:
                going.append(d)
        active = going


def run_dialogues(
    seeds: Iterable[Seed],
    student: Generate,
    teacher: Generate,
    *,
    batch_size: int = 32,
    rules: Rules = Rules(),
    group_by_length: bool = True,
    on_progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> tuple[list[dict[str, Any]], Stats]:
    """Run every seed's dialogue; (kept records in seed order, stats).

    on_progress(dialogues finished, total) is called after each group; should_stop() is
    asked before each group, and a True answer raises StopRequested (nothing is returned:
    the caller hands the whole shard back).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    problems = rules.problems()
    if problems:
        raise ValueError("invalid self-play rules: " + "; ".join(problems))
    dialogues = [_Dialogue(i, seed) for i, seed in enumerate(seeds)]
    stats = Stats(seeds=len(dialogues))
    order = sorted(dialogues, key=lambda d: len(d.seed.question)) if group_by_length else dialogues
    done = 0
    for start in range(0, len(order), batch_size):
        if should_stop is not None and should_stop():
            raise StopRequested(f"stop requested after {done} of {len(order)} dialogues")
        group = order[start : start + batch_size]
        _run_group(group, student, teacher, rules, stats)
        done += len(group)
        if on_progress is not None:
            on_progress(done, len(order))
    records = []
    for d in dialogues:
        if d.outcome == "kept" or rules.keep_all:
            stats.kept += 1
            stats.rounds[len(d.scores)] = stats.rounds.get(len(d.scores), 0) + 1
            records.append(_record(d, rules))
        else:
            assert d.outcome in DROP_REASONS, d.outcome
            stats.dropped[d.outcome] += 1
    return records, stats


class StopRequested(Exception):
    """run_dialogues() was asked to stop between groups."""


__all__.append("StopRequested")
