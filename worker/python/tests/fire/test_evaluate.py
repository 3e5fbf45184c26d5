"""stoker_fire.evaluate with a scripted fake backend (this module is the backend: stoker_fire.backends.KNOWN
is patched to name it): the fixed-dialogue files line up with the references, free dialogues
follow the self-play rules and keep every dialogue, bad options/data/models fail with the
table's codes, and a stop between batches exits PREEMPTED without partial files."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import tempfile
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence
from unittest import mock

from stoker_payload import entrypoint, exit_codes, report
from stoker_payload.report import Reporter

from stoker_fire import backends, evaluate
from stoker_fire import prompts as P
from stoker_fire.parsing import format_student, format_teacher, parse_student, parse_teacher

from ..helpers import PY_DIR, PYTHON, SRC_DIR, LiveProcess, events, of_type, payload_env

FAKE = "fake"

# -- the fake backend (stoker_fire.backends protocol: require, make_generator) ---------------------

LOADED: list["ScriptedModel"] = []


def require() -> None:
    pass


def make_generator(name_or_path, *, seed, adapter, image_root, max_new_tokens, batch_size, bf16=None):
    model = ScriptedModel(name_or_path, adapter=adapter, seed=seed, image_root=image_root, batch_size=batch_size)
    LOADED.append(model)
    return model


_SCRIPT = re.compile(r"\[script: ([^\]]*)\]")
_INTEGER = re.compile(r"\d+")


class ScriptedModel:
    """Plays whichever role a prompt asks for (so one model can be the student and the teacher).

    Student: the question carries `[script: a | b | ...]`; the k-th answer is the k-th item
    (the last one repeats). Without a script it answers `I do not know`.
    Teacher: compares the answer with the ground truth: equal -> 10; `mute` -> an unparseable
    turn; an answer with an integer k -> k; anything else -> 2. The feedback names the model.
    FAKE_EVAL_DELAY (seconds) slows every call down (for the SIGTERM test)."""

    def __init__(self, name: str, *, adapter, seed, image_root, batch_size):
        self.name, self.adapter, self.seed = name, adapter, seed
        self.image_root, self.batch_size = image_root, batch_size
        self.calls: list[list[Any]] = []
        self.delay = float(os.environ.get("FAKE_EVAL_DELAY", "0"))

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        if self.delay:
            time.sleep(self.delay)
        return [self.student(p) if p.role == "student" else self.teacher(p) for p in prompts]

    def student(self, prompt) -> str:
        turn = sum(m["from"] == "gpt" for m in prompt.messages) + 1
        match = _SCRIPT.search(prompt.messages[0]["value"])
        script = [a.strip() for a in match.group(1).split("|")] if match else ["I do not know"]
        return f"Thought: turn {turn}\nAnswer: {script[min(turn, len(script)) - 1]}\n\n"

    def teacher(self, prompt) -> str:
        truth = prompt.messages[0]["value"].split("Groundtruth:", 1)[1].strip()
        answer = parse_student(prompt.messages[-1]["value"])[1] or ""
        norm = lambda s: s.strip().rstrip(".").lower()  # noqa: E731
        if norm(answer) == norm(truth):
            return f"Score: 10.\nFeedback: Correct ({self.name})."
        if answer == "mute":
            return "I cannot grade this."
        number = _INTEGER.search(answer)
        score = int(number.group(0)) if number else 2
        return f"Score: {score}.\nFeedback: Not yet ({self.name}): look again at the picture."


# -- fixtures -------------------------------------------------------------------------------


def raw_record(rid: Optional[str], question: str, truth: str, rounds: Sequence[tuple[str, int]], *, image: Optional[str] = "a.png", **extra) -> dict:
    """A FIRE raw record: rounds are (student answer, teacher score); values end in blank lines
    as GPT-4V's do."""
    conversations = []
    for i, (answer, score) in enumerate(rounds, 1):
        conversations.append({"role": "student", "type": "response", "value": format_student(f"round {i}", answer) + "\n\n"})
        conversations.append({"role": "teacher", "type": "feedback", "value": format_teacher(score, f"hint {i} for {rid}") + "\n", "human_rating": 5})
    record = {
        "image": image,
        "img_path": image,
        "question": {"role": "user", "value": question},
        "groundtruth": {"role": "user", "value": truth},
        "conversations": conversations,
        "score": [s for _, s in rounds],
        "round": len(rounds),
        "source": "gqa",
        "split": "fire_test",
    }
    if rid is not None:
        record["id"] = rid
    record.update(extra)
    return record


def write_jsonl(path: str, rows: Sequence[Any]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@dataclass
class Run:
    code: int
    events: list[dict]
    stderr: str
    out: str

    def file(self, name: str) -> list[dict]:
        return read_jsonl(os.path.join(self.out, name))

    def metric(self, name: str) -> Any:
        (value,) = [e[name] for e in of_type(self.events, "metrics") if name in e]
        return value

    @property
    def result(self) -> dict:
        (result,) = of_type(self.events, "result")
        return result


class EvaluateCase(unittest.TestCase):
    def setUp(self):
        LOADED.clear()
        patcher = mock.patch.dict(backends.KNOWN, {FAKE: __name__})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-evaluate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.images = os.path.join(self.tmp, "images")
        os.makedirs(self.images)
        for name in ("a.png", "b.png"):
            open(os.path.join(self.images, name), "wb").close()
        self.out = os.path.join(self.tmp, "out")

    def data(self, rows: Sequence[Any], name: str = "bench.jsonl") -> str:
        return write_jsonl(os.path.join(self.tmp, name), rows)

    def evaluate(self, data: str, *argv: str, should_stop: Optional[Callable[[], bool]] = None) -> Run:
        stream, err = io.StringIO(), io.StringIO()
        reporter = Reporter(stream, enabled=True)
        old = report.set_reporter(reporter)
        self.addCleanup(report.set_reporter, old)
        args = ["--data", data, "--image-root", self.images, "--backend", FAKE, "--output-dir", self.out, *argv]
        code = entrypoint.run_main(
            lambda: evaluate.main(evaluate.parse_args(args), should_stop=should_stop or (lambda: False)),
            exit=False,
            stderr=err,
            reporter=reporter,
        )
        return Run(code, events(stream.getvalue()), err.getvalue(), self.out)

    def assertFails(self, run: Run, code_name: str, *fragments: str) -> None:
        self.assertEqual(run.code, exit_codes.exit_code(code_name), run.stderr)
        for fragment in fragments:
            self.assertIn(fragment, run.stderr)


STUDENT = ("--model-name-or-path", "student-model")
TEACHER = ("--teacher-model", "teacher-model")


class FixedDialoguesTest(EvaluateCase):
    def bench(self) -> str:
        return self.data(
            [
                raw_record("A", "Which color? [script: red | 5 | blue]", "Blue.", [("red", 3), ("green", 6), ("blue", 10)]),
                raw_record("B", "Is it wicker? [script: yes]", "Yes.", [("yes", 9)]),
                raw_record(None, "How many?", "Two.", [("mute", 2), ("two", 10)], image=None),
            ]
        )

    def test_student_test_predicts_each_response_after_feedback_with_its_reference(self):
        run = self.evaluate(self.bench(), *STUDENT, "--mode", "fixed-student", "--batch-size", "2")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        rows = run.file("fixed-student.jsonl")
        self.assertEqual([r["id"] for r in rows], ["A#1", "A#2", "line-3#1"], "rounds 2..T of each dialogue, in record order")
        self.assertEqual(
            [r["references"] for r in rows],
            [[format_student("round 2", "green")], [format_student("round 3", "blue")], [format_student("round 2", "two")]],
        )
        self.assertEqual([r["prediction"] for r in rows], ["Thought: turn 2\nAnswer: 5", "Thought: turn 3\nAnswer: blue", "Thought: turn 2\nAnswer: I do not know"])
        (model,) = LOADED
        prompts = {p.id + str(len(p.messages)): p for call in model.calls for p in call}
        self.assertEqual(
            list(prompts["A5"].messages),
            P.student_messages(
                "Which color? [script: red | 5 | blue]",
                [format_student("round 1", "red"), format_student("round 2", "green")],
                ["hint 1 for A", "hint 2 for A"],
            ),
            "the reference history, stripped, with the feedback text only (no score)",
        )
        self.assertEqual((prompts["A5"].image, prompts["line-33"].image), ("a.png", None))
        self.assertEqual(prompts["line-33"].messages[0]["value"], "How many?", "no <image> mark without an image")
        self.assertTrue(all(len(call) <= 2 for call in model.calls))
        self.assertEqual(run.metric("fixedStudentPrompts"), 3)
        self.assertEqual(of_type(run.events, "artifact"), [{"type": "artifact", "name": "fixed-student", "path": os.path.join(self.out, "fixed-student.jsonl")}])
        self.assertEqual(run.result["modes"], ["fixed-student"])
        self.assertFalse(os.path.exists(os.path.join(self.out, "free.jsonl")))

    def test_teacher_test_writes_texts_and_scores_against_the_references(self):
        run = self.evaluate(self.bench(), *TEACHER)
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual(run.result["modes"], ["fixed-teacher"], "only the teacher test applies without a model under test")
        texts, scores = run.file("fixed-teacher.jsonl"), run.file("fixed-teacher-scores.jsonl")
        ids = ["A#1", "A#2", "A#3", "B#1", "line-3#1", "line-3#2"]
        self.assertEqual([r["id"] for r in texts], ids)
        self.assertEqual([r["id"] for r in scores], ids)
        self.assertEqual(texts[0]["references"], [format_teacher(3, "hint 1 for A")])
        self.assertEqual(texts[0]["prediction"], "Score: 2.\nFeedback: Not yet (teacher-model): look again at the picture.")
        self.assertEqual([r["reference"] for r in scores], [3, 6, 10, 9, 2, 10])
        self.assertEqual([parse_teacher(r["prediction"])[0] for r in scores], [2, 2, 10, 10, None, 10], "`mute` gets an unparseable turn")
        self.assertEqual([r["prediction"] for r in scores], [r["prediction"] for r in texts], "the teacher's text, parsed by `stoker metrics scores`")
        self.assertEqual(run.metric("fixedTeacherUnparseable"), 1)
        (teacher,) = LOADED
        first = [p for call in teacher.calls for p in call if p.id == "A"][0]
        self.assertIsNone(first.image, "the teacher sees no image by default")
        self.assertIn(
            list(first.messages),
            [P.teacher_messages("Which color? [script: red | 5 | blue]", "Blue.", format_student(f"round {n}", a)) for n, a in ((1, "red"), (2, "green"), (3, "blue"))],
        )
        self.assertEqual({e["name"] for e in of_type(run.events, "artifact")}, {"fixed-teacher", "fixed-teacher-scores"})

    def test_the_model_under_test_can_take_the_teacher_test(self):
        run = self.evaluate(self.bench(), *STUDENT, "--mode", "fixed-teacher", "--teacher-test-by", "model")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual([m.name for m in LOADED], ["student-model"])
        self.assertIn("(student-model)", run.file("fixed-teacher.jsonl")[0]["prediction"])
        self.assertEqual(run.result["fixedTeacher"]["by"], "model")

    def test_teacher_sees_image_gives_the_teacher_test_the_image(self):
        run = self.evaluate(self.bench(), *TEACHER, "--teacher-sees-image")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        prompts = [p for call in LOADED[0].calls for p in call]
        with_image = [p for p in prompts if p.id == "A"]
        self.assertEqual({p.image for p in with_image}, {"a.png"})
        self.assertTrue(all(p.messages[0]["value"].startswith(P.IMAGE_TOKEN + "\nQuestion:") for p in with_image))
        self.assertEqual({p.image for p in prompts if p.id == "line-3"}, {None}, "a record without an image gives none")


class FreeDialoguesTest(EvaluateCase):
    SEEDS = [
        # id, script, expected scores
        ("first", "blue", [10]),
        ("second", "guess 3 | blue", [3, 10]),
        ("flat", "guess 4 | guess 4 | blue", [4, 4]),
        ("climb", "1 | 2 | 3 | 4 | 5 | blue", [1, 2, 3, 4, 5]),
        ("mute", "mute | blue", [0]),
        ("down", "guess 6 | guess 5 | blue", [6, 5]),
    ]

    def seeds(self) -> str:
        return self.data(
            [{"id": sid, "image": "b.png", "question": f"What color is it? [script: {script}]", "groundtruth": "Blue", "source": "vqa"} for sid, script, _ in self.SEEDS]
        )

    def test_every_dialogue_is_kept_and_ends_by_the_self_play_rules(self):
        run = self.evaluate(self.seeds(), *STUDENT, *TEACHER, "--mode", "free", "--batch-size", "4")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        records = run.file("free.jsonl")
        self.assertEqual([r["id"] for r in records], [s[0] for s in self.SEEDS], "every dialogue, in input order")
        self.assertEqual([r["score"] for r in records], [s[2] for s in self.SEEDS])
        for record in records:
            self.assertEqual(record["round"], len(record["score"]))
            self.assertEqual((record["split"], record["source"], record["image"]), ("fire_test", "vqa", "b.png"))
            turns = record["conversations"]
            self.assertEqual([t["role"] for t in turns], ["student", "teacher"] * record["round"])
            self.assertEqual([parse_teacher(t["value"])[0] or 0 for t in turns[1::2]], record["score"])
        self.assertEqual(
            {k: run.metric(k) for k in ("freeDialogues", "freeSatisfied", "freeSatisfiedAtTurn1", "freeNoImprovement", "freeFormatFailure", "freeMaxTurns", "freeTurns")},
            {"freeDialogues": 6, "freeSatisfied": 2, "freeSatisfiedAtTurn1": 1, "freeNoImprovement": 2, "freeFormatFailure": 1, "freeMaxTurns": 1, "freeTurns": 13},
        )
        free = run.result["free"]
        self.assertEqual((free["dialogues"], free["kept"], free["maxTurns"], free["tau"]), (6, 6, 5, 8))
        student, teacher = LOADED
        self.assertEqual((student.name, teacher.name), ("student-model", "teacher-model"))
        self.assertTrue(all(p.role == "student" for call in student.calls for p in call))
        self.assertTrue(all(p.role == "teacher" for call in teacher.calls for p in call))
        self.assertTrue(all(len(call) <= 4 for call in student.calls + teacher.calls))
        progress = of_type(run.events, "progress")
        self.assertEqual([(e["step"], e["totalSteps"]) for e in progress], [(0, 6), (4, 6), (6, 6)])

    def test_turn_cap_and_threshold_are_options(self):
        run = self.evaluate(self.seeds(), *STUDENT, *TEACHER, "--max-turns", "2", "--tau", "3", "--mode", "free")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual([r["score"] for r in run.file("free.jsonl")], [[10], [3], [4], [1, 2], [0], [6]])


class AllModesTest(EvaluateCase):
    def test_both_models_run_every_mode_under_one_progress_count(self):
        data = self.data(
            [
                raw_record("A", "Which color? [script: red | blue]", "Blue.", [("red", 3), ("blue", 10)]),
                raw_record("B", "Is it wicker? [script: yes]", "Yes.", [("no", 2), ("maybe", 5), ("yes", 9)], image="b.png"),
            ]
        )
        run = self.evaluate(data, *STUDENT, *TEACHER, "--batch-size", "2")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual(run.result["modes"], ["fixed-student", "fixed-teacher", "free"])
        names = ["fixed-student", "fixed-teacher", "fixed-teacher-scores", "free"]
        self.assertEqual([e["name"] for e in of_type(run.events, "artifact")], names)
        self.assertEqual(sorted(os.listdir(self.out)), sorted([*(f"{n}.jsonl" for n in names), "evaluation.json"]), "no temporary files left")
        self.assertEqual(set(run.result["outputs"]), set(names))
        with open(os.path.join(self.out, "evaluation.json"), encoding="utf-8") as fh:
            ran = json.load(fh)
        self.assertEqual((ran["engine"], ran["records"], ran["modes"]), (run.result["engine"], 2, ["fixed-student", "fixed-teacher", "free"]))
        steps = [e["step"] for e in of_type(run.events, "progress")]
        total = 3 + 5 + 2  # student prompts + teacher prompts + dialogues
        self.assertEqual(steps, sorted(steps))
        self.assertEqual((steps[0], steps[-1]), (0, total))
        self.assertEqual({e["totalSteps"] for e in of_type(run.events, "progress")}, {total})
        self.assertEqual([r["score"] for r in run.file("free.jsonl")], [[2, 10], [10]])
        for key in ("records", "seconds", "loadSeconds"):
            self.assertIn(key, run.result)
        self.assertEqual(run.result["records"], 2)

    def test_the_same_model_for_both_roles_loads_once(self):
        data = self.data([raw_record("A", "Q? [script: blue]", "Blue.", [("red", 3), ("blue", 10)])])
        run = self.evaluate(data, "--model-name-or-path", "same", "--teacher-model", "same", "--teacher-seed", "1")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual(len(LOADED), 1)

    def test_a_yaml_config_of_the_same_names(self):
        data = self.data([raw_record("A", "Q? [script: blue]", "Blue.", [("red", 3), ("blue", 10)])])
        config = os.path.join(self.tmp, "eval.yaml")
        Path(config).write_text("model_name_or_path: student-model\nteacher-model: teacher-model\nmode: free\nmax_turns: 3\n")
        run = self.evaluate(data, "--config", config)
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual((run.result["modes"], run.result["free"]["maxTurns"]), (["free"], 3))


class BadInputTest(EvaluateCase):
    def test_invalid_options_are_bad_config(self):
        data = self.data([raw_record("A", "Q?", "A.", [("a", 9)])])
        cases = [
            ("no model at all", [], "nothing to evaluate"),
            ("free without a teacher", [*STUDENT, "--mode", "free"], "mode: free needs --teacher-model"),
            ("the teacher test by the teacher without one", [*STUDENT, "--mode", "fixed-teacher"], "fixed-teacher needs --teacher-model"),
            ("an unknown mode", [*STUDENT, "--mode", "fixed-student,judge"], "unknown mode 'judge'"),
            ("an unknown teacher backend", [*STUDENT, *TEACHER, "--teacher-backend", "nope"], "unknown backend 'nope'"),
            ("tau out of range", [*STUDENT, "--tau", "11"], "tau: must be in 1..10"),
            ("zero turns", [*STUDENT, "--max-turns", "0"], "max_turns"),
            ("an adapter without its model", [*STUDENT, "--teacher-adapter", "/x"], "teacher_adapter: given without teacher_model"),
            ("a zero limit", [*STUDENT, "--limit", "0"], "limit"),
        ]
        for name, argv, fragment in cases:
            with self.subTest(name):
                self.assertFails(self.evaluate(data, *argv), "BAD_CONFIG", fragment)
        self.assertEqual(LOADED, [])

    def test_malformed_records_are_bad_data_naming_each_line(self):
        good = raw_record("A", "Q?", "A.", [("a", 3), ("b", 9)])
        swapped = raw_record("S", "Q?", "A.", [("a", 3)])
        swapped["conversations"].reverse()
        rows = [
            good,
            {k: v for k, v in raw_record("G", "Q?", "A.", [("a", 9)]).items() if k != "groundtruth"},
            raw_record("C", "Q?", "A.", [("a", 3)], score=[3, 4]),
            swapped,
            {**raw_record("O", "Q?", "A.", [("a", 3)]), "conversations": raw_record("O", "Q?", "A.", [("a", 3)])["conversations"][:1]},
            raw_record("A", "Q?", "A.", [("a", 9)]),
            raw_record("I", "Q?", "A.", [("a", 9)], image=""),
        ]
        run = self.evaluate(self.data(rows), *STUDENT, *TEACHER)
        self.assertFails(
            run,
            "BAD_DATA",
            "6 problems in the records of",
            "line 2: groundtruth must be a non-empty string",
            "line 3: score must be a list of 1 integers",
            "line 4: conversations[0].role must be 'student'",
            "line 5: conversations has 1 turns",
            "line 6: id 'A' repeats line 1",
            "line 7: image must be a non-empty string",
        )
        self.assertNotIn("line 1:", run.stderr)
        self.assertEqual(LOADED, [], "no model loads for bad data")
        self.assertFalse(os.path.exists(self.out))

    def test_a_line_that_is_not_json_is_bad_data(self):
        run = self.evaluate(self.data([raw_record("A", "Q?", "A.", [("a", 9)]), "{not json"]), *STUDENT)
        self.assertFails(run, "BAD_DATA", "input line 2: not JSON")

    def test_the_teacher_test_needs_a_score_per_round(self):
        record = raw_record("A", "Q?", "A.", [("a", 3), ("b", 9)])
        del record["score"]
        record["conversations"][3]["value"] = "Great job!"
        data = self.data([record])
        self.assertFails(self.evaluate(data, *TEACHER), "BAD_DATA", "line 1: no score list, and the teacher turns of rounds [2]")
        self.assertEqual(self.evaluate(data, *STUDENT).code, exit_codes.SUCCESS, "the student test needs no scores")

    def test_free_dialogues_need_only_seeds(self):
        data = self.data([{"question": "Q? [script: blue]", "groundtruth": "blue", "image": "a.png"}])
        run = self.evaluate(data, *STUDENT, *TEACHER, "--mode", "free")
        self.assertEqual(run.code, exit_codes.SUCCESS, run.stderr)
        self.assertEqual(run.file("free.jsonl")[0]["id"], "line-1")
        self.assertFails(self.evaluate(data, *STUDENT, *TEACHER), "BAD_DATA", "line 1: conversations must be a non-empty list")

    def test_missing_images_are_listed(self):
        rows = [raw_record(f"m{i}", "Q?", "A.", [("a", 9)], image=f"gone{i}.png") for i in range(3)]
        run = self.evaluate(self.data(rows), *STUDENT, *TEACHER)
        self.assertFails(run, "BAD_DATA", "3 missing images", "record 'm0': image file not found", "gone2.png")
        self.assertEqual(LOADED, [])

    def test_missing_data_and_empty_selections(self):
        self.assertFails(self.evaluate(os.path.join(self.tmp, "none.jsonl"), *STUDENT), "MISSING_INPUT", "data file does not exist")
        data = self.data([raw_record("A", "Q?", "A.", [("a", 9)], split="fire_100k")])
        self.assertFails(self.evaluate(data, *STUDENT, "--split", "fire_test"), "BAD_DATA", "no records of split 'fire_test'")

    def test_split_and_limit_choose_the_records(self):
        rows = [raw_record(f"r{i}", "Q?", "A.", [("a", 3), ("b", 9)], split="fire_test" if i % 2 else "fire_1m") for i in range(6)]
        run = self.evaluate(self.data(rows), *STUDENT, "--split", "fire_test", "--limit", "2")
        self.assertEqual([r["id"] for r in run.file("fixed-student.jsonl")], ["r1#1", "r3#1"])

    def test_a_json_list_is_read_too(self):
        path = os.path.join(self.tmp, "bench.json")
        Path(path).write_text(json.dumps([raw_record(None, "Q?", "A.", [("a", 3), ("b", 9)]), {"question": "Q?"}]))
        run = self.evaluate(path, *STUDENT)
        self.assertFails(run, "BAD_DATA", "record 2: groundtruth must be")  # the id defaults to line-2
        Path(path).write_text(json.dumps([raw_record(None, "Q?", "A.", [("a", 3), ("b", 9)])]))
        self.assertEqual(self.evaluate(path, *STUDENT).file("fixed-student.jsonl")[0]["id"], "line-1#1")

    def test_model_paths_that_do_not_exist(self):
        data = self.data([raw_record("A", "Q?", "A.", [("a", 3), ("b", 9)])])
        missing = os.path.join(self.tmp, "no-such-model")
        self.assertFails(self.evaluate(data, *STUDENT, "--teacher-model", missing), "UNKNOWN_MODEL", "teacher model path does not exist")
        self.assertFails(self.evaluate(data, *STUDENT, "--adapter", missing), "MISSING_INPUT", "model adapter does not exist")
        self.assertEqual(LOADED, [], "checked before any model loads")


class PreemptionTest(EvaluateCase):
    def bench(self) -> str:
        return self.data([raw_record(f"d{i}", "Q? [script: a | blue]", "Blue.", [("a", 3), ("blue", 10)]) for i in range(4)])

    def stop_after(self, calls: int) -> Callable[[], bool]:
        return lambda: sum(len(m.calls) for m in LOADED) >= calls

    def test_a_stop_during_a_mode_leaves_no_partial_file(self):
        run = self.evaluate(self.bench(), *STUDENT, *TEACHER, "--batch-size", "1", should_stop=self.stop_after(2))
        self.assertFails(run, "PREEMPTED", "during the student test, after 2 of 4 prompts", "a retry starts over")
        self.assertEqual(os.listdir(self.out), [])
        self.assertEqual(of_type(run.events, "result"), [])
        (log,) = of_type(run.events, "log")
        self.assertEqual(log["level"], "warn")

    def test_a_stop_in_the_free_dialogues_keeps_the_finished_files(self):
        # 2 calls for 4 student prompts, 4 for 8 teacher prompts, then 4 (two rounds) per pair of free dialogues
        run = self.evaluate(self.bench(), *STUDENT, *TEACHER, "--batch-size", "2", should_stop=self.stop_after(2 + 4 + 4))
        self.assertFails(run, "PREEMPTED", "after 2 of 4 dialogues", "finished files: fixed-student.jsonl, fixed-teacher.jsonl, fixed-teacher-scores.jsonl")
        self.assertEqual(sorted(os.listdir(self.out)), ["fixed-student.jsonl", "fixed-teacher-scores.jsonl", "fixed-teacher.jsonl"])

    def test_sigterm_exits_preempted_at_a_batch_boundary(self):
        data = self.bench()
        code = (
            "import sys; from stoker_fire import backends, evaluate; from stoker_payload import entrypoint; "
            f"backends.KNOWN[{FAKE!r}] = {__name__!r}; "
            "entrypoint.run_main(lambda: evaluate.main(evaluate.parse_args(sys.argv[1:])))"
        )
        argv = [PYTHON, "-c", code, "--data", data, "--image-root", self.images, "--backend", FAKE, *STUDENT, *TEACHER, "--batch-size", "1"]
        env = payload_env(FAKE_EVAL_DELAY="0.2", PYTHONPATH=os.pathsep.join([str(SRC_DIR), str(PY_DIR)]), STOKER_OUTPUT_DIR=self.out)
        proc = LiveProcess(argv, env)
        self.addCleanup(proc.kill)
        proc.wait_for_event(lambda e: e["type"] == "progress" and e["step"] >= 1, timeout=60, what="the first batch")
        proc.signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=60), exit_codes.PREEMPTED, proc.stderr)
        self.assertIn("a retry starts over", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.out, "free.jsonl")))
        self.assertEqual(of_type(events(proc.output), "result"), [])


class TinyBackendTest(unittest.TestCase):
    def test_every_mode_end_to_end_with_two_tiny_models(self):
        tmp = tempfile.mkdtemp(prefix="stoker-fire-evaluate-tiny-")
        self.addCleanup(shutil.rmtree, tmp, True)
        images = os.path.join(tmp, "images")
        os.makedirs(images)
        from PIL import Image

        Image.new("RGB", (32, 32), (200, 30, 30)).save(os.path.join(images, "a.png"))
        data = write_jsonl(
            os.path.join(tmp, "bench.jsonl"),
            [raw_record(f"t{i}", "What color is the square?", "Red.", [("blue", 3), ("red", 9)]) for i in range(2)],
        )
        tiny = getattr(backends.load("tiny"), "TINY_RANDOM", "tiny-random")
        out = os.path.join(tmp, "out")
        stream, err = io.StringIO(), io.StringIO()
        reporter = Reporter(stream, enabled=True)
        old = report.set_reporter(reporter)
        self.addCleanup(report.set_reporter, old)
        args = ["--data", data, "--image-root", images, "--backend", "tiny", "--model-name-or-path", tiny, "--teacher-model", tiny]
        args += ["--max-new-tokens", "8", "--max-turns", "2", "--batch-size", "2", "--output-dir", out]
        code = entrypoint.run_main(lambda: evaluate.main(evaluate.parse_args(args), should_stop=lambda: False), exit=False, stderr=err, reporter=reporter)
        self.assertEqual(code, exit_codes.SUCCESS, err.getvalue())
        self.assertEqual(len(read_jsonl(os.path.join(out, "fixed-student.jsonl"))), 2)
        self.assertEqual(len(read_jsonl(os.path.join(out, "fixed-teacher-scores.jsonl"))), 4)
        free = read_jsonl(os.path.join(out, "free.jsonl"))
        self.assertEqual([r["id"] for r in free], ["t0", "t1"])
        self.assertTrue(all(1 <= r["round"] <= 2 and len(r["score"]) == r["round"] for r in free))


if __name__ == "__main__":
    unittest.main()
