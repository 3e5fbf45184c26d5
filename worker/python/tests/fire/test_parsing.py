"""stoker_fire.parsing: the teacher rule against the shared vectors (TypeScript checks the same file),
the student rule, and the canonical formats."""

from __future__ import annotations

import json
import unittest

from stoker_fire.parsing import (
    feedback_text,
    format_student,
    format_teacher,
    parse_student,
    parse_teacher,
    score_or_zero,
)

from ..helpers import REPO_ROOT

VECTORS = REPO_ROOT / "test" / "fixtures" / "fire-parsing-vectors.json"


class TeacherVectorsTest(unittest.TestCase):
    def test_every_vector(self):
        vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
        self.assertGreaterEqual(len(vectors), 20)
        for vector in vectors:
            with self.subTest(vector["name"]):
                self.assertEqual(set(vector), {"name", "text", "score", "feedback"})
                self.assertEqual(parse_teacher(vector["text"]), (vector["score"], vector["feedback"]))

    def test_the_vectors_cover_the_edge_cases_named_in_the_rule(self):
        texts = [v["text"] for v in json.loads(VECTORS.read_text(encoding="utf-8"))]
        for fragment in ("Score: 7.", "Score: 10/10", "Score: -3", "Here is my grade.\nScore:", "   Score:    8"):
            self.assertTrue(any(fragment in t for t in texts), fragment)
        self.assertTrue(any("Feedback:" not in t and "Score:" in t for t in texts), "a turn without Feedback:")
        self.assertTrue(any("Score:" not in t for t in texts), "a turn without Score:")


class TeacherRuleTest(unittest.TestCase):
    def test_unparseable_counts_as_zero_where_a_number_is_needed(self):
        self.assertEqual(score_or_zero(parse_teacher("no score here")[0]), 0)
        self.assertEqual(score_or_zero(parse_teacher("Score: 6.")[0]), 6)

    def test_the_student_sees_the_feedback_without_the_score(self):
        self.assertEqual(feedback_text("Score: 3.\nFeedback: Look at the roof."), "Look at the roof.")

    def test_a_teacher_turn_must_be_text(self):
        with self.assertRaises(TypeError):
            parse_teacher(None)  # type: ignore[arg-type]

    def test_format_teacher_round_trips_and_matches_the_fire_data(self):
        text = format_teacher(3, "  Look closely at the texture.  ")
        self.assertEqual(text, "Score: 3.\nFeedback: Look closely at the texture.")
        for score in range(0, 11):
            self.assertEqual(parse_teacher(format_teacher(score, "fine"))[0], score)

    def test_format_teacher_refuses_scores_outside_the_scale(self):
        for bad in (-1, 11, 7.5, True, "7"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                format_teacher(bad, "x")  # type: ignore[arg-type]


class StudentRuleTest(unittest.TestCase):
    CASES = [
        ("canonical", "Thought: The bus has a red roof.\nAnswer: Red.\n\n", ("The bus has a red roof.", "Red.")),
        ("multi-line thought", "Thought: one\ntwo\nAnswer: three", ("one\ntwo", "three")),
        ("answer only", "Answer: 42", (None, "42")),
        ("thought only", "Thought: thinking", ("thinking", None)),
        ("neither marker", "It is red.", (None, None)),
        ("empty answer", "Thought: hm\nAnswer:", ("hm", "")),
        ("text before the thought", "Sure. Thought: a\nAnswer: b", ("a", "b")),
        ("an Answer: inside the answer", "Thought: a\nAnswer: b Answer: c", ("a", "b Answer: c")),
    ]

    def test_cases(self):
        for name, text, expected in self.CASES:
            with self.subTest(name):
                self.assertEqual(parse_student(text), expected)

    def test_format_student_round_trips(self):
        text = format_student(" a red roof ", "red ")
        self.assertEqual(text, "Thought: a red roof\nAnswer: red")
        self.assertEqual(parse_student(text), ("a red roof", "red"))


if __name__ == "__main__":
    unittest.main()
