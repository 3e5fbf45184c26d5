"""stoker_fire.synth's records: the scripted dialogue of an item in FIRE's raw format, the seed
record of an item, and the LLaVA training views of a raw record (docs/fire.md, section 2),
built with stoker_fire.prompts (the pipeline's `stoker data views` builds the same ones in
TypeScript).

    record = dialogue_record(item, seed, "fire_100k")
    student_view(record); teacher_view(record); answers_view(record)
"""

from __future__ import annotations

from typing import Any, Sequence

from . import prompts as P
from .parsing import feedback_text, format_student, format_teacher
from .synth_task import SCALES, Item, grade, perceive, rng_for

__all__ = ["dialogue_record", "seed_record", "student_view", "teacher_view", "answers_view"]


def _thought(item: "Item", value: str) -> str:
    """What the student says it sees: the value and one more fact of the picture; the same
    words in every round, so the form of a response says nothing about whether it is right."""
    return {
        "count": f"I count {value} {item.color} dots.",
        "color": f"The {item.form} looks {value}.",
        "shape": f"The {item.color} shape looks like a {value}.",
        "position": f"The {item.color} dot is at the {value}.",
    }[item.kind]


def _scripted_answers(item: Item, seed: int) -> list[int]:
    """The scripted student's answers (scale indices): its misperception first, then toward
    the truth as the feedback says, ending on it: 2 rounds, or 3 (half way first) when the
    first answer was far off and a coin says so."""
    rng = rng_for(seed, item.number, f"student:{item.draw}")
    t = item.truth
    first = perceive(item, seed)
    if first == t:
        raise ValueError(f"item {item.id}: the scripted student is right at once; use dialogue_item()")
    distance = abs(first - t)
    if distance == 1 or rng.random() < 0.5:
        return [first, t]
    step = rng.randint(1, distance - 1)  # half way: strictly closer, not yet there
    middle = first + step if first < t else first - step
    return [first, middle, t]


def _student_turns(item: Item, answers: Sequence[int]) -> list[str]:
    scale = SCALES[item.kind]
    return [format_student(_thought(item, scale[a]), scale[a]) for a in answers]


def dialogue_record(item: Item, seed: int, split: str) -> dict[str, Any]:
    """The FIRE raw record of the item's scripted dialogue."""
    conversations: list[dict[str, str]] = []
    scores: list[int] = []
    for response in _student_turns(item, _scripted_answers(item, seed)):
        score, feedback = grade(item.kind, item.truth, response)
        conversations.append({"role": "student", "type": "response", "value": response})
        conversations.append({"role": "teacher", "type": "feedback", "value": format_teacher(score, feedback)})
        scores.append(score)
    return {
        "id": item.id,
        "image": item.image,
        "img_path": item.image,
        "question": {"role": "user", "value": item.question},
        "groundtruth": {"role": "user", "value": item.groundtruth},
        "conversations": conversations,
        "score": scores,
        "round": len(scores),
        "source": item.source,
        "split": split,
    }


def seed_record(item: Item, split: str) -> dict[str, Any]:
    return {"id": item.id, "image": item.image, "question": item.question, "groundtruth": item.groundtruth, "source": item.source, "split": split}


# -- training views (docs/fire.md, section 2), built with stoker_fire.prompts ---------------


def _value(part: Any) -> str:
    return part["value"] if isinstance(part, dict) else str(part)


def _turns(record: dict[str, Any]) -> tuple[list[str], list[str]]:
    conv = record["conversations"]
    responses = [c["value"] for c in conv if c["role"] == "student"]
    teacher = [c["value"] for c in conv if c["role"] == "teacher"]
    return responses, teacher


def student_view(record: dict[str, Any]) -> dict[str, Any]:
    """human `<image>\\n{q}` -> gpt first response; per round human feedback (score stripped)
    -> gpt refined response. The last (satisfied) feedback is not shown: nothing answers it."""
    responses, teacher = _turns(record)
    feedbacks = [feedback_text(t) for t in teacher]
    messages = P.student_messages(_value(record["question"]), responses[:-1], feedbacks[: len(responses) - 1])
    messages.append(P.gpt(responses[-1]))
    return {"id": record["id"], "image": record.get("image") or record.get("img_path"), "conversations": messages}


def teacher_view(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per round: question + ground truth, the instruction, one response -> the teacher turn."""
    responses, teacher = _turns(record)
    question, groundtruth = _value(record["question"]), _value(record["groundtruth"])
    return [
        {"id": f"{record['id']}-t{n}", "conversations": [*P.teacher_messages(question, groundtruth, response), P.gpt(turn)]}
        for n, (response, turn) in enumerate(zip(responses, teacher), 1)
    ]


def answers_view(record: dict[str, Any]) -> dict[str, Any]:
    """human `<image>\\n{q}` -> gpt the final (satisfied) response: single turn, no feedback."""
    responses, _ = _turns(record)
    return {
        "id": f"{record['id']}-a",
        "image": record.get("image") or record.get("img_path"),
        "conversations": [P.human(f"{P.IMAGE_TOKEN}\n{_value(record['question'])}"), P.gpt(responses[-1])],
    }
