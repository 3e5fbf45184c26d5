"""Training views built with stoker_fire.prompts and stoker_fire.parsing match test/fixtures/fire-views-vectors.json,
the vectors the TypeScript views (fire/data/views.ts, `stoker data views`) are
checked against too (test/unit/fire-data-views.test.ts): both languages build the same views.

The views (fire/data/views.ts has the full contract):
    student  student_messages(q, responses[:-1], feedback_text(teacher[:-1])) + [gpt(last response)]
    teacher  per round r: teacher_messages(q, groundtruth, response r) + [gpt(teacher turn r)],
             id "{id}#t{r}", no image
    answers  [human("<image>\\n" + q), gpt(last response)] when the last score is >= 8
A record without "id" gets "sha1:" + 16 hex digits of SHA-1 over the compact JSON of
[image, question, groundtruth].
"""

from __future__ import annotations

import hashlib
import json
import unittest
from typing import Any, Optional

from stoker_fire.parsing import feedback_text, parse_teacher, score_or_zero
from stoker_fire.prompts import IMAGE_TOKEN, TEACHER_INSTRUCTION, gpt, human, student_messages, teacher_messages

from ..helpers import REPO_ROOT

VECTORS = REPO_ROOT / "test" / "fixtures" / "fire-views-vectors.json"
SATISFIED = 8


def _text(value: Any) -> str:
    return value["value"] if isinstance(value, dict) else value


def dialogue_id(record: dict[str, Any]) -> str:
    if record.get("id") is not None:
        return str(record["id"])
    image = record.get("image") or record.get("img_path")
    payload = json.dumps([image, _text(record["question"]), _text(record["groundtruth"])], ensure_ascii=False, separators=(",", ":"))
    return "sha1:" + hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def build_views(record: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], Optional[dict[str, Any]]]:
    rid = dialogue_id(record)
    question, groundtruth = _text(record["question"]), _text(record["groundtruth"])
    turns = record["conversations"]
    responses = [t["value"] for t in turns[0::2]]
    teacher_turns = [t["value"] for t in turns[1::2]]
    image = record.get("image") or record.get("img_path")
    feedbacks = [feedback_text(t) for t in teacher_turns[:-1]]
    student = {
        "id": rid,
        "image": image,
        "conversations": student_messages(question, responses[:-1], feedbacks) + [gpt(responses[-1])],
    }
    teacher = [
        {"id": f"{rid}#t{i + 1}", "conversations": teacher_messages(question, groundtruth, responses[i]) + [gpt(turn)]}
        for i, turn in enumerate(teacher_turns)
    ]
    last = score_or_zero(parse_teacher(teacher_turns[-1])[0])
    answers = (
        {"id": rid, "image": image, "conversations": [human(f"{IMAGE_TOKEN}\n{question}"), gpt(responses[-1])]}
        if last >= SATISFIED
        else None
    )
    return student, teacher, answers


class ViewsVectorsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.vectors = json.loads(VECTORS.read_text(encoding="utf-8"))

    def test_every_vector(self):
        self.assertGreaterEqual(len(self.vectors), 6)
        for vector in self.vectors:
            with self.subTest(vector["name"]):
                self.assertEqual(set(vector), {"name", "record", "student", "teacher", "answers"})
                student, teacher, answers = build_views(vector["record"])
                self.assertEqual(student, vector["student"])
                self.assertEqual(teacher, vector["teacher"])
                self.assertEqual(answers, vector["answers"])
                # Byte for byte, key order included, as the JSONL files are written.
                self.assertEqual(json.dumps(student, ensure_ascii=False), json.dumps(vector["student"], ensure_ascii=False))

    def test_the_vectors_cover_the_tricky_cases(self):
        teacher_texts = [t["value"] for v in self.vectors for t in v["record"]["conversations"][1::2]]
        self.assertTrue(any(t.startswith("Score: 7/10.") for t in teacher_texts), "a score out of ten")
        self.assertTrue(any("Feedback:" not in t for t in teacher_texts), "a turn without Feedback:")
        self.assertTrue(any(len(v["record"]["conversations"]) == 6 for v in self.vectors), "three rounds")
        self.assertTrue(any(v["answers"] is None for v in self.vectors), "an unsatisfied ending")
        self.assertTrue(any("id" not in v["record"] for v in self.vectors), "a derived id")

    def test_the_teacher_instruction_is_the_one_the_views_carry(self):
        for vector in self.vectors:
            for view in vector["teacher"]:
                self.assertEqual(view["conversations"][1], {"from": "human", "value": TEACHER_INSTRUCTION})
                self.assertNotIn("image", view)


if __name__ == "__main__":
    unittest.main()
