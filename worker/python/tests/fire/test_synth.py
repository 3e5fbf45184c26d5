"""stoker_fire.synth: FIRE raw records that pass the format checks and FIRE's keep rule, seeds, the
scripted teacher, the training views, determinism and the command line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes

from stoker_fire import prompts, synth
from stoker_fire.parsing import parse_student, parse_teacher

from ..helpers import PY_DIR, PYTHON, payload_env


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def digest(directory):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            h.update(name.encode())
            h.update(Path(root, name).read_bytes())
    return h.hexdigest()


def raw_record_problems(record):
    """What is wrong with a FIRE raw record (docs/fire.md, section 1), as a list."""
    problems = []
    for key in ("id", "image", "img_path", "question", "groundtruth", "conversations", "score", "round", "source", "split"):
        if key not in record:
            problems.append(f"no {key}")
    for key in ("question", "groundtruth"):
        if record.get(key, {}).get("role") != "user" or not isinstance(record.get(key, {}).get("value"), str):
            problems.append(f"{key} is not {{role: user, value}}")
    conv = record.get("conversations", [])
    for i, turn in enumerate(conv):
        want = ("student", "response") if i % 2 == 0 else ("teacher", "feedback")
        if (turn.get("role"), turn.get("type")) != want:
            problems.append(f"turn {i} is {turn.get('role')}/{turn.get('type')}, expected {want}")
        if i % 2 == 0:
            thought, answer = parse_student(turn["value"])
            if not thought or not answer or not turn["value"].startswith("Thought: "):
                problems.append(f"turn {i} is not `Thought: ...\\nAnswer: ...`")
        elif not turn["value"].startswith("Score: ") or "\nFeedback: " not in turn["value"]:
            problems.append(f"turn {i} is not `Score: N.\\nFeedback: ...`")
    if len(conv) != 2 * record.get("round", -1):
        problems.append("round does not match the conversation")
    scores = [parse_teacher(t["value"])[0] for t in conv[1::2]]
    if scores != record.get("score"):
        problems.append(f"score {record.get('score')} is not the teacher turns' {scores}")
    if not all(isinstance(s, int) and 0 <= s <= 10 for s in record.get("score", [])):
        problems.append("scores must be ints 0..10")
    return problems


def keep_rule_problems(record):
    scores = record["score"]
    problems = []
    if not 2 <= len(scores) <= 3:
        problems.append(f"{len(scores)} rounds")
    if any(b <= a for a, b in zip(scores, scores[1:])):
        problems.append(f"scores {scores} are not strictly increasing")
    if scores[-1] < 8:
        problems.append(f"last score {scores[-1]} < 8")
    return problems


class SynthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="stoker-fire-synth-")
        cls.out = os.path.join(cls.tmp, "a")
        cls.summary = synth.write_set(synth.SynthConfig(n=80, out=cls.out, seed=3))
        cls.records = read_jsonl(os.path.join(cls.out, "dialogues.jsonl"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_dialogues_are_fire_raw_records_that_pass_the_keep_rule(self):
        self.assertEqual(len(self.records), 80)
        for record in self.records:
            with self.subTest(id=record["id"]):
                self.assertEqual(raw_record_problems(record), [])
                self.assertEqual(keep_rule_problems(record), [])
                self.assertEqual(record["split"], "fire_100k")
                self.assertTrue(os.path.isfile(os.path.join(self.out, "images", record["image"])))
        self.assertEqual(self.summary["types"], {"count": 20, "color": 20, "shape": 20, "position": 20})
        self.assertEqual(sum(self.summary["rounds"].values()), 80)
        self.assertGreater(self.summary["rounds"].get("3", 0), 0, "some dialogues take three rounds")

    def test_the_teacher_never_states_the_ground_truth_and_the_student_ends_on_it(self):
        for record in self.records:
            truth = record["groundtruth"]["value"]
            kind = record["source"].split("-", 1)[1]
            for turn in record["conversations"][1::2]:
                feedback = parse_teacher(turn["value"])[1]
                # "further left" is a direction (the answer may be left or far left), not the answer
                words = feedback.lower().replace("further left", "").replace("further right", "")
                words = words.replace(",", " ").replace(".", " ").replace(";", " ").split()
                self.assertNotIn(truth, " ".join(words) if " " in truth else words, (record["id"], feedback))
            self.assertEqual(parse_student(record["conversations"][-2]["value"])[1], truth)
            self.assertNotEqual(parse_student(record["conversations"][0]["value"])[1], truth)
            self.assertIn(truth, synth.SCALES[kind])

    def test_ids_are_unique_prefix_numbers_and_start_id_keeps_sets_apart(self):
        ids = [r["id"] for r in self.records]
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual((ids[0], ids[-1]), ("synth-000000", "synth-000079"))
        other = synth.write_set(synth.SynthConfig(n=5, out=os.path.join(self.tmp, "b"), seed=3, start_id=1000, kind="seeds"))
        self.assertEqual((other["firstId"], other["lastId"]), ("synth-001000", "synth-001004"))

    def test_the_same_flags_give_the_same_bytes_and_a_longer_set_extends_a_shorter_one(self):
        again = os.path.join(self.tmp, "again")
        synth.write_set(synth.SynthConfig(n=80, out=again, seed=3))
        self.assertEqual(digest(again), digest(self.out))
        short = os.path.join(self.tmp, "short")
        synth.write_set(synth.SynthConfig(n=10, out=short, seed=3))
        self.assertEqual(read_jsonl(os.path.join(short, "dialogues.jsonl")), self.records[:10])
        other_seed = os.path.join(self.tmp, "seed4")
        synth.write_set(synth.SynthConfig(n=10, out=other_seed, seed=4))
        self.assertNotEqual(read_jsonl(os.path.join(other_seed, "dialogues.jsonl")), self.records[:10])

    def test_seeds_are_questions_with_ground_truths_and_no_dialogue(self):
        out = os.path.join(self.tmp, "seeds")
        summary = synth.write_set(synth.SynthConfig(n=8, out=out, seed=3, kind="seeds", split="fire_test", start_id=500))
        seeds = read_jsonl(summary["file"])
        self.assertEqual(summary["file"], os.path.join(out, "seeds.jsonl"))
        self.assertEqual(set(seeds[0]), {"id", "image", "question", "groundtruth", "source", "split"})
        self.assertEqual({s["split"] for s in seeds}, {"fire_test"})
        self.assertTrue(all(os.path.isfile(os.path.join(summary["imageRoot"], s["image"])) for s in seeds))

    def test_the_scripted_teacher_scores_closer_answers_higher(self):
        for kind, scale in synth.SCALES.items():
            truth = len(scale) // 2
            scores = []
            for distance in range(len(scale) - truth):
                score, feedback = synth.grade(kind, truth, f"Thought: I see it.\nAnswer: {scale[truth + distance]}")
                scores.append(score)
                self.assertNotIn(scale[truth], feedback.lower().split() if distance else [])
            self.assertEqual(scores[0], 10)
            self.assertTrue(all(b < a for a, b in zip(scores, scores[1:])), (kind, scores))
        self.assertEqual(synth.grade("count", 2, "I think three"), (synth.UNGRADABLE_SCORE, synth.UNGRADABLE_FEEDBACK))
        self.assertEqual(synth.grade("position", 0, "Thought: x\nAnswer: The far left.")[0], 10)
        self.assertIn("more dots", synth.grade("count", 4, "Thought: x\nAnswer: 3")[1])
        self.assertIn("warmer", synth.grade("color", 0, "Thought: x\nAnswer: yellow")[1])

    def test_the_views_follow_fire_md(self):
        record = next(r for r in self.records if r["round"] == 3)
        responses = [t["value"] for t in record["conversations"][0::2]]
        feedbacks = [parse_teacher(t["value"])[1] for t in record["conversations"][1::2]]
        student = synth.student_view(record)
        self.assertEqual(student["image"], record["image"])
        self.assertEqual(
            student["conversations"],
            [
                {"from": "human", "value": f"<image>\n{record['question']['value']}"},
                {"from": "gpt", "value": responses[0]},
                {"from": "human", "value": feedbacks[0]},
                {"from": "gpt", "value": responses[1]},
                {"from": "human", "value": feedbacks[1]},
                {"from": "gpt", "value": responses[2]},
            ],
        )
        teacher = synth.teacher_view(record)
        self.assertEqual(len(teacher), 3)
        self.assertEqual(teacher[1]["conversations"][:3], prompts.teacher_messages(record["question"]["value"], record["groundtruth"]["value"], responses[1]))
        self.assertEqual(teacher[1]["conversations"][3], {"from": "gpt", "value": record["conversations"][3]["value"]})
        self.assertNotIn("image", teacher[0])
        answers = synth.answers_view(record)
        self.assertEqual([t["value"] for t in answers["conversations"]], [f"<image>\n{record['question']['value']}", responses[-1]])


class CommandTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-synth-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_synth(self, *args):
        return subprocess.run([PYTHON, "-m", "stoker_fire.synth", *args], cwd=PY_DIR, env=payload_env(), capture_output=True, text=True, timeout=60)

    def test_the_command_writes_the_set_and_prints_one_summary_line(self):
        done = self.run_synth("--n", "6", "--out", self.tmp, "--kind", "seeds", "--seed", "2", "--start-id", "40", "--image-size", "24")
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        lines = done.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1)
        summary = json.loads(lines[0])
        self.assertEqual((summary["kind"], summary["n"], summary["split"], summary["firstId"]), ("seeds", 6, "fire_1m", "synth-000040"))
        self.assertEqual(len(read_jsonl(os.path.join(self.tmp, "seeds.jsonl"))), 6)
        from PIL import Image

        with Image.open(os.path.join(self.tmp, "images", "synth-000040.png")) as img:
            self.assertEqual(img.size, (24, 24))

    def test_bad_options_are_bad_config(self):
        done = self.run_synth("--n", "0", "--out", "")
        self.assertEqual(done.returncode, exit_codes.BAD_CONFIG, done.stderr)
        self.assertIn("n: must be >= 1", done.stderr)
        self.assertIn("out: required", done.stderr)


if __name__ == "__main__":
    unittest.main()
