"""stoker_fire.evaluate's records: FIRE-Bench raw records read and checked into Dialogues (the
seed, and the reference rounds the fixed modes need).

    dialogues = read_dialogues("bench.jsonl", rounds=True, scores=True, split="fire_test", limit=100)
    check_images(dialogues, "/data/fire/images")

A file is JSONL (one record per line) or a .json list. Every problem is collected and reported
at once as BAD_DATA, naming its line (at most MAX_LISTED listed); a file that is not there is
MISSING_INPUT. The rules a record must follow are those of stoker_fire.evaluate's docstring
(inputs).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from stoker_payload.exit_codes import PayloadError
from stoker_payload.jsonl import read_jsonl

from . import llava_data
from .parsing import MAX_SCORE, MIN_SCORE, parse_teacher
from .selfplay_rules import Seed, seed_from_record

__all__ = ["Dialogue", "dialogue_from_record", "read_dialogues", "check_images"]

MAX_LISTED = 20


@dataclass(frozen=True)
class Dialogue:
    """One FIRE-Bench record: the seed, and the reference rounds (empty for free-only runs)."""

    seed: Seed
    responses: tuple[str, ...] = ()
    teacher_turns: tuple[str, ...] = ()
    scores: tuple[Optional[int], ...] = ()  # None: not given and not parseable (teacher test refuses it)


def _score(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and MIN_SCORE <= value <= MAX_SCORE


Rounds = tuple[tuple[str, ...], tuple[str, ...], tuple[Optional[int], ...]]


def _rounds(record: Mapping[str, Any], where: str, need_scores: bool) -> tuple[list[str], Optional[Rounds]]:
    """(problems, None) or ([], (responses, teacher turns, scores)) of a record's reference rounds."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return [f"{where}: conversations must be a non-empty list of student/teacher turns"], None
    problems = []
    if len(turns) % 2:
        problems.append(f"{where}: conversations has {len(turns)} turns; student and teacher turns must alternate, ending with a teacher turn")
    values = []
    misplaced = False  # one role problem per record: the first turn out of place says it
    for i, turn in enumerate(turns):
        role = "student" if i % 2 == 0 else "teacher"
        if not isinstance(turn, Mapping):
            problems.append(f"{where}: conversations[{i}] must be an object, got {type(turn).__name__}")
            continue
        if turn.get("role") != role and not misplaced:
            misplaced = True
            problems.append(f"{where}: conversations[{i}].role must be {role!r} (turns alternate, student first), got {turn.get('role')!r}")
        if not isinstance(turn.get("value"), str) or not turn["value"].strip():
            problems.append(f"{where}: conversations[{i}].value must be a non-empty string, got {turn.get('value')!r}")
        values.append(turn.get("value"))
    if problems:
        return problems, None
    responses = tuple(v.strip() for v in values[0::2])
    teacher_turns = tuple(v.strip() for v in values[1::2])
    given = record.get("score")
    if given is not None:
        if not isinstance(given, list) or len(given) != len(teacher_turns) or not all(_score(s) for s in given):
            return [f"{where}: score must be a list of {len(teacher_turns)} integers in {MIN_SCORE}..{MAX_SCORE} (one per round), got {given!r}"], None
        scores: tuple[Optional[int], ...] = tuple(given)
    else:
        scores = tuple(parse_teacher(t)[0] for t in teacher_turns)
        if need_scores:
            missing = [i + 1 for i, s in enumerate(scores) if s is None]
            if missing:
                return [f"{where}: no score list, and the teacher turns of rounds {missing} have no parseable `Score:`"], None
    return [], (responses, teacher_turns, scores)


def dialogue_from_record(record: Mapping[str, Any], where: str, default_id: str, *, rounds: bool, scores: bool) -> Dialogue:
    """A Dialogue from one raw record; ValueError listing its problems (one per line)."""
    if "id" not in record:
        record = {**record, "id": default_id}
    problems = []
    try:
        seed: Optional[Seed] = seed_from_record(record, where)
    except ValueError as err:
        seed = None
        problems.append(str(err))
    reference: Optional[Rounds] = None
    if rounds:
        more, reference = _rounds(record, where, scores)
        problems.extend(more)
    if problems or seed is None:
        raise ValueError("\n".join(problems))
    return Dialogue(seed, *reference) if reference is not None else Dialogue(seed)


def _records(path: str) -> list[tuple[str, int, Any]]:
    """(where, position, record) of every record of a .jsonl file or a .json list."""
    if not os.path.isfile(path):
        raise PayloadError("MISSING_INPUT", f"data file does not exist: {path}")
    if not path.endswith(".json"):
        return [(f"line {number}", number, record) for number, record in read_jsonl(path)]
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (ValueError, UnicodeDecodeError) as err:
        raise PayloadError("BAD_DATA", f"{path}: not JSON ({err})") from None
    if not isinstance(data, list):
        raise PayloadError("BAD_DATA", f"{path}: must be a JSON list of records (or use .jsonl), got {type(data).__name__}")
    return [(f"record {i}", i, record) for i, record in enumerate(data, 1)]


def read_dialogues(
    path: str, *, rounds: bool = True, scores: bool = True, split: Optional[str] = None, limit: Optional[int] = None
) -> list[Dialogue]:
    """The checked records of `path` (those of `split`, the first `limit`), in file order.
    rounds: the reference conversations are needed (fixed modes); scores: a score per round
    too (teacher test). BAD_DATA lists every problem with its line."""
    dialogues: list[Dialogue] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    taken = 0
    for where, position, record in _records(path):
        if limit is not None and taken >= limit:
            break
        if not isinstance(record, dict):
            problems.append(f"{where}: must be an object, got {type(record).__name__}")
            continue
        if split is not None and record.get("split") != split:
            continue
        taken += 1
        try:
            dialogue = dialogue_from_record(record, where, f"line-{position}", rounds=rounds, scores=scores)
        except ValueError as err:
            problems.extend(str(err).split("\n"))
            continue
        if dialogue.seed.id in seen:
            problems.append(f"{where}: id {dialogue.seed.id!r} repeats {seen[dialogue.seed.id]} (ids name the output lines)")
            continue
        seen[dialogue.seed.id] = where
        dialogues.append(dialogue)
    _fail(problems, f"problems in the records of {path}")
    if not dialogues:
        which = f" of split {split!r}" if split is not None else ""
        raise PayloadError("BAD_DATA", f"{path}: no records{which} to evaluate")
    return dialogues


def check_images(dialogues: Sequence[Dialogue], image_root: Optional[str]) -> None:
    missing = [
        f"record {d.seed.id!r}: image file not found: {llava_data.image_path(d.seed.image, image_root)}"
        for d in dialogues
        if d.seed.image is not None and not os.path.isfile(llava_data.image_path(d.seed.image, image_root))
    ]
    _fail(missing, "missing images")


def _fail(problems: list[str], what: str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise PayloadError("BAD_DATA", f"{len(problems)} {what}:\n  " + "\n  ".join(problems[:MAX_LISTED]) + more)

