"""stoker_fire.selfplay_rules with scripted fake models: every stopping rule, what each side sees,
batching (one call per half-turn for the whole group) and the record format."""

from __future__ import annotations

import unittest
from typing import Optional, Sequence, Union

from stoker_fire import prompts as P
from stoker_fire.parsing import parse_teacher
from stoker_fire.selfplay_rules import Prompt, Rules, Seed, StopRequested, run_dialogues, seed_from_record

Turn = Union[int, str]  # a score, or a raw teacher text


def seed(sid: str, question: Optional[str] = None, image: Optional[str] = "img.jpg") -> Seed:
    return Seed(sid, image, question or f"What is in picture {sid}?", f"Truth {sid}.", "gqa")


class FakeStudent:
    """Answers `Thought: <id> try N\\nAnswer: answer N`, N = the student's turn number."""

    def __init__(self) -> None:
        self.calls: list[list[Prompt]] = []

    def __call__(self, prompts: Sequence[Prompt]) -> list[str]:
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            n = sum(m["from"] == "gpt" for m in p.messages) + 1
            out.append(f"Thought: {p.id} try {n}\nAnswer: answer {n}\n\n")
        return out


class FakeTeacher:
    """Plays a script per dialogue id: an int is `Score: N.\\nFeedback: fix <id> round R`,
    a string is returned as it is."""

    def __init__(self, script: dict[str, list[Turn]]) -> None:
        self.script = script
        self.turns = {sid: 0 for sid in script}
        self.calls: list[list[Prompt]] = []

    def __call__(self, prompts: Sequence[Prompt]) -> list[str]:
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            turn = self.script[p.id][self.turns[p.id]]
            self.turns[p.id] += 1
            out.append(turn if isinstance(turn, str) else f"Score: {turn}.\nFeedback: fix {p.id} round {self.turns[p.id]}")
        return out


def play(script: dict[str, list[Turn]], *, seeds: Optional[list[Seed]] = None, batch_size: int = 32, rules: Rules = Rules(), **kw):
    student, teacher = FakeStudent(), FakeTeacher(script)
    records, stats = run_dialogues(seeds or [seed(s) for s in script], student, teacher, batch_size=batch_size, rules=rules, **kw)
    return records, stats, student, teacher


class StoppingRulesTest(unittest.TestCase):
    def outcome(self, scores: list[Turn], rules: Rules = Rules()) -> tuple[str, Optional[list[int]]]:
        records, stats, _, teacher = play({"d": scores}, rules=rules)
        self.assertEqual(teacher.turns["d"], len(scores), "the teacher was asked exactly as often as scripted")
        if records:
            return "kept", records[0]["score"]
        (reason,) = [r for r, n in stats.dropped.items() if n]
        return reason, None

    def test_table(self):
        cases = [
            ("improves to satisfied in round 2: kept", [4, 9], Rules(), ("kept", [4, 9])),
            ("improves to satisfied in round 3: kept", [3, 5, 8], Rules(), ("kept", [3, 5, 8])),
            ("satisfied at once: nothing to learn, dropped", [9], Rules(), ("first_answer_satisfied", None)),
            ("satisfied at once is kept with min_rounds 1", [10], Rules(min_rounds=1), ("kept", [10])),
            ("unparseable teacher turn: format failure", ["I like it."], Rules(), ("format_failure", None)),
            ("score 0 in round 2: format failure", [4, 0], Rules(), ("format_failure", None)),
            ("same score again: no improvement", [4, 4], Rules(), ("no_improvement", None)),
            ("lower score: no improvement", [6, 3], Rules(), ("no_improvement", None)),
            ("no improvement in round 3", [2, 5, 5], Rules(), ("no_improvement", None)),
            ("still below 8 after 3 rounds: dropped", [3, 5, 7], Rules(), ("unsatisfied", None)),
            ("still below 8 after 3 rounds, keep_unsatisfied", [3, 5, 7], Rules(keep_unsatisfied=True), ("kept", [3, 5, 7])),
            ("max_rounds 2 stops earlier", [3, 5], Rules(max_rounds=2), ("unsatisfied", None)),
            ("threshold is a parameter", [4, 7], Rules(satisfied=7), ("kept", [4, 7])),
            ("a 10/10 score counts as 10", [5, "Score: 10/10.\nFeedback: Great."], Rules(), ("kept", [5, 10])),
        ]
        for name, scores, rules, expected in cases:
            with self.subTest(name):
                self.assertEqual(self.outcome(scores, rules), expected)


class WhatEachSideSeesTest(unittest.TestCase):
    def test_the_teacher_sees_only_the_question_the_truth_its_instruction_and_the_latest_answer(self):
        _, _, student, teacher = play({"d": [3, 5, 9]})
        self.assertEqual(len(teacher.calls), 3)
        for round_no, call in enumerate(teacher.calls, 1):
            (prompt,) = call
            latest = f"Thought: d try {round_no}\nAnswer: answer {round_no}"
            self.assertEqual(prompt.role, "teacher")
            self.assertEqual(list(prompt.messages), P.teacher_messages("What is in picture d?", "Truth d.", latest))
            self.assertIsNone(prompt.image, "the teacher view has no image by default")
            everything = "\n".join(m["value"] for m in prompt.messages)
            for earlier in range(1, round_no):
                self.assertNotIn(f"try {earlier}", everything, "no earlier answer")
            self.assertNotIn("fix d", everything, "no earlier feedback")
            self.assertNotIn("Score:", everything.replace(P.TEACHER_INSTRUCTION, ""), "no earlier score")

    def test_teacher_sees_image_gives_it_the_image(self):
        _, _, _, teacher = play({"d": [3, 9]}, rules=Rules(teacher_sees_image=True))
        prompt = teacher.calls[0][0]
        self.assertEqual(prompt.image, "img.jpg")
        self.assertTrue(prompt.messages[0]["value"].startswith(P.IMAGE_TOKEN + "\n"))

    def test_the_student_sees_its_history_and_the_feedback_without_scores(self):
        _, _, student, _ = play({"d": [3, 5, 9]})
        third = student.calls[2][0]
        self.assertEqual(third.role, "student")
        self.assertEqual(third.image, "img.jpg")
        self.assertEqual(
            list(third.messages),
            [
                {"from": "human", "value": "<image>\nWhat is in picture d?"},
                {"from": "gpt", "value": "Thought: d try 1\nAnswer: answer 1"},
                {"from": "human", "value": "fix d round 1"},
                {"from": "gpt", "value": "Thought: d try 2\nAnswer: answer 2"},
                {"from": "human", "value": "fix d round 2"},
            ],
        )
        self.assertFalse(any("Score" in m["value"] for m in third.messages))
        self.assertFalse(any("Truth" in m["value"] for p in sum(student.calls, []) for m in p.messages), "no ground truth")

    def test_a_seed_without_image_gets_no_image_mark(self):
        _, _, student, _ = play({"d": [3, 9]}, seeds=[seed("d", image=None)])
        first = student.calls[0][0]
        self.assertIsNone(first.image)
        self.assertEqual(first.messages[0]["value"], "What is in picture d?")


class BatchingTest(unittest.TestCase):
    SCRIPT = {"a": [3, 9], "b": [9], "c": [2, 4, 8], "d": ["oops"], "e": [5, 5]}

    def test_one_call_per_half_turn_for_the_whole_group(self):
        _, stats, student, teacher = play(self.SCRIPT, batch_size=32)
        ids = lambda calls: [sorted(p.id for p in call) for call in calls]  # noqa: E731
        self.assertEqual(ids(student.calls), [["a", "b", "c", "d", "e"], ["a", "c", "e"], ["c"]])
        self.assertEqual(ids(teacher.calls), ids(student.calls))
        self.assertEqual((stats.student_calls, stats.teacher_calls), (3, 3))

    def test_batch_size_one_runs_one_dialogue_at_a_time(self):
        _, stats, student, teacher = play(self.SCRIPT, batch_size=1)
        self.assertTrue(all(len(call) == 1 for call in student.calls + teacher.calls))
        self.assertEqual(stats.student_calls, sum(len(s) for s in self.SCRIPT.values()))
        self.assertEqual(stats.teacher_calls, stats.student_calls)

    def test_groups_are_cut_by_question_length_and_records_keep_seed_order(self):
        seeds = [seed("long1", "q" * 50), seed("short1", "q"), seed("long2", "q" * 60), seed("short2", "qq")]
        script = {s.id: [4, 9] for s in seeds}
        records, _, student, _ = play(script, seeds=seeds, batch_size=2)
        self.assertEqual([sorted(p.id for p in call) for call in student.calls], [["short1", "short2"]] * 2 + [["long1", "long2"]] * 2)
        self.assertEqual([r["id"] for r in records], ["long1", "short1", "long2", "short2"])

    def test_group_by_length_off_keeps_the_seed_order(self):
        seeds = [seed("long", "q" * 50), seed("short", "q")]
        _, _, student, _ = play({"long": [4, 9], "short": [4, 9]}, seeds=seeds, batch_size=1, group_by_length=False)
        self.assertEqual([call[0].id for call in student.calls][:1], ["long"])

    def test_stats(self):
        _, stats, _, _ = play(self.SCRIPT)
        self.assertEqual(
            stats.as_dict(),
            {
                "seeds": 5,
                "kept": 2,
                "dropped": {"format_failure": 1, "no_improvement": 1, "first_answer_satisfied": 1, "unsatisfied": 0},
                "student_calls": 3,
                "teacher_calls": 3,
                "rounds": {"2": 1, "3": 1},
            },
        )

    def test_progress_after_each_group_and_stop_between_groups(self):
        seen = []
        play({s: [4, 9] for s in "abcde"}, batch_size=2, on_progress=lambda done, total: seen.append((done, total)))
        self.assertEqual(seen, [(2, 5), (4, 5), (5, 5)])
        asked = []

        def stop() -> bool:
            asked.append(1)
            return len(asked) > 1

        with self.assertRaises(StopRequested):
            play({s: [4, 9] for s in "abcde"}, batch_size=2, should_stop=stop)

    def test_a_model_that_returns_the_wrong_number_of_texts_is_a_bug(self):
        with self.assertRaises(ValueError):
            run_dialogues([seed("a"), seed("b")], lambda ps: ["only one"], FakeTeacher({"a": [9], "b": [9]}))
        with self.assertRaises(TypeError):
            run_dialogues([seed("a")], lambda ps: [None], FakeTeacher({"a": [9]}))

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            play({"a": [9]}, batch_size=0)
        with self.assertRaises(ValueError):
            play({"a": [9]}, rules=Rules(max_rounds=0))


class RecordFormatTest(unittest.TestCase):
    def test_a_kept_dialogue_is_a_fire_raw_record(self):
        records, _, _, _ = play({"d": [3, "Score: 6\nFeedback:  Name the color.  ", 10]})
        self.assertEqual(
            records,
            [
                {
                    "id": "d",
                    "image": "img.jpg",
                    "img_path": "img.jpg",
                    "question": {"role": "user", "value": "What is in picture d?"},
                    "groundtruth": {"role": "user", "value": "Truth d."},
                    "conversations": [
                        {"role": "student", "type": "response", "value": "Thought: d try 1\nAnswer: answer 1"},
                        {"role": "teacher", "type": "feedback", "value": "Score: 3.\nFeedback: fix d round 1"},
                        {"role": "student", "type": "response", "value": "Thought: d try 2\nAnswer: answer 2"},
                        {"role": "teacher", "type": "feedback", "value": "Score: 6.\nFeedback: Name the color."},
                        {"role": "student", "type": "response", "value": "Thought: d try 3\nAnswer: answer 3"},
                        {"role": "teacher", "type": "feedback", "value": "Score: 10.\nFeedback: fix d round 3"},
                    ],
                    "score": [3, 6, 10],
                    "round": 3,
                    "source": "gqa",
                    "split": "fire_1m",
                }
            ],
        )
        teacher_turns = [c["value"] for c in records[0]["conversations"] if c["role"] == "teacher"]
        self.assertEqual([parse_teacher(t)[0] for t in teacher_turns], records[0]["score"])

    def test_source_and_split_defaults(self):
        records, _, _, _ = play({"d": [3, 9]}, seeds=[Seed("d", None, "q?", "gt")], rules=Rules(split="fire_test"))
        self.assertEqual((records[0]["source"], records[0]["split"], records[0]["image"]), ("selfplay", "fire_test", None))


class SeedFromRecordTest(unittest.TestCase):
    def test_accepts_plain_strings_and_fire_role_value_objects(self):
        self.assertEqual(
            seed_from_record({"id": 7, "img_path": "x.jpg", "question": {"role": "user", "value": "q?"}, "groundtruth": "gt", "source": "gqa"}),
            Seed("7", "x.jpg", "q?", "gt", "gqa"),
        )
        self.assertEqual(seed_from_record({"id": "a", "question": "q?", "groundtruth": "gt"}), Seed("a", None, "q?", "gt", None))

    def test_rejects_bad_fields_by_name(self):
        cases = [
            ({"question": "q", "groundtruth": "g"}, "id"),
            ({"id": True, "question": "q", "groundtruth": "g"}, "id"),
            ({"id": "a", "question": "", "groundtruth": "g"}, "question"),
            ({"id": "a", "question": "q"}, "groundtruth"),
            ({"id": "a", "question": "q", "groundtruth": "g", "image": 3}, "image"),
            ({"id": "a", "question": "q", "groundtruth": "g", "source": 1}, "source"),
        ]
        for record, name in cases:
            with self.subTest(name=name, record=record), self.assertRaises(ValueError) as caught:
                seed_from_record(record, "input line 4")
            self.assertTrue(str(caught.exception).startswith(f"input line 4: {name}"), str(caught.exception))


if __name__ == "__main__":
    unittest.main()
