"""stoker_fire.selfplay's shard handler under serve(), in-process, with fake models in place of the
hf backend: seeds in, FIRE raw records out, BAD_DATA for bad seeds or missing images,
a stop between groups hands the shard back (PREEMPTED)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes, signals
from stoker_payload.exit_codes import PayloadError
from stoker_payload.report import Reporter
from stoker_payload.server import serve

from stoker_fire import selfplay
from stoker_fire.parsing import parse_teacher

from ..server_helpers import server_events, shard, write_jsonl


class FakeModel:
    """A self-play callable like hf.Generator: the student says `try N`, the teacher gives
    3 * N (so 3, 6, 9: kept after three rounds), or nonsense for seeds whose id has 'mute'."""

    def __init__(self, role: str, stop_on_call: int = 0):
        self.role = role
        self.image_root = None
        self.roots_seen: list = []
        self.calls = 0
        self.stop_on_call = stop_on_call

    def __call__(self, prompts):
        self.calls += 1
        self.roots_seen.append(self.image_root)
        if self.calls == self.stop_on_call:
            signals.request_stop()
        if self.role == "student":
            return [f"Thought: t\nAnswer: try {sum(m['from'] == 'gpt' for m in p.messages) + 1}" for p in prompts]
        out = []
        for p in prompts:
            n = int(p.messages[-1]["value"].rsplit(" ", 1)[1])
            out.append("nonsense" if "mute" in p.id else f"Score: {3 * n}.\nFeedback: more detail, round {n}")
        return out


class HandlerTest(unittest.TestCase):
    def setUp(self):
        signals.reset()
        self.addCleanup(signals.reset)
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-selfplay-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.images = os.path.join(self.tmp, "images")
        os.makedirs(self.images)
        for name in ("a.png", "b.png"):
            open(os.path.join(self.images, name), "wb").close()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def serve(self, requests, argv=(), student=None, teacher=None):
        cfg = selfplay.parse_args(["--image-root", self.images, *argv])
        self.student = student or FakeModel("student")
        self.teacher = teacher or FakeModel("teacher")
        stdin = io.StringIO("".join(json.dumps(r) + "\n" for r in requests))
        stream, err = io.StringIO(), io.StringIO()
        code = serve(
            selfplay.make_handler(cfg),
            load=lambda: selfplay.Models(self.student, self.teacher),
            stdin=stdin,
            reporter=Reporter(stream, enabled=True),
            stderr=err,
            handle_signals=False,
        )
        return code, server_events(stream.getvalue()), err.getvalue()

    def seeds(self, name, ids, image="a.png"):
        return write_jsonl(
            self.path(name),
            [{"id": i, "image": image, "question": {"role": "user", "value": f"What is {i}?"}, "groundtruth": f"It is {i}.", "source": "gqa"} for i in ids],
        )

    def test_a_shard_of_seeds_becomes_raw_records_of_kept_dialogues(self):
        seeds = self.seeds("s.jsonl", ["one", "mute-two", "three"])
        code, evts, _ = self.serve([shard("s1", seeds, self.path("out/s1.jsonl"))], argv=["--batch-size", "2"])
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertIn({"type": "done", "id": "s1", "items": 2}, evts)
        records = [json.loads(line) for line in Path(self.path("out/s1.jsonl")).read_text().splitlines()]
        self.assertEqual([r["id"] for r in records], ["one", "three"])
        for record in records:
            self.assertEqual(record["score"], [3, 6, 9])
            self.assertEqual(record["round"], 3)
            self.assertEqual((record["split"], record["source"], record["image"]), ("fire_1m", "gqa", "a.png"))
            teacher_turns = [c["value"] for c in record["conversations"] if c["role"] == "teacher"]
            self.assertEqual([parse_teacher(t)[0] for t in teacher_turns], record["score"])
        (stats,) = [e for e in evts if "seeds" in e]
        self.assertEqual(
            {k: stats[k] for k in ("seeds", "kept", "droppedFormatFailure", "droppedNoImprovement", "droppedFirstAnswerSatisfied", "droppedUnsatisfied")},
            {"seeds": 3, "kept": 2, "droppedFormatFailure": 1, "droppedNoImprovement": 0, "droppedFirstAnswerSatisfied": 0, "droppedUnsatisfied": 0},
        )
        # batch 2, grouped by question length: {one, three} (3 rounds), then {mute-two} (1 round)
        self.assertEqual((stats["studentCalls"], stats["teacherCalls"]), (4, 4))
        progress = [e for e in evts if e["type"] == "progress"]
        self.assertEqual((progress[0]["step"], progress[-1]["step"], progress[-1]["totalSteps"]), (0, 3, 3))

    def test_bad_seeds_and_missing_images_fail_the_shard_and_the_server_goes_on(self):
        bad = write_jsonl(self.path("bad.jsonl"), [{"id": "a", "question": "q"}, {"id": "b", "question": "q", "groundtruth": "g"}, {"question": "q", "groundtruth": "g"}])
        lost = self.seeds("lost.jsonl", ["x", "y"], image="gone.png")
        good = self.seeds("good.jsonl", ["z"])
        code, evts, _ = self.serve(
            [shard("bad", bad, self.path("bad.out")), shard("lost", lost, self.path("lost.out")), shard("good", good, self.path("good.out"))]
        )
        self.assertEqual(code, exit_codes.SUCCESS)
        answers = [e for e in evts if e["type"] in ("done", "failed")]
        self.assertEqual([(a["id"], a["type"], a.get("reason")) for a in answers], [("bad", "failed", "BAD_DATA"), ("lost", "failed", "BAD_DATA"), ("good", "done", None)])
        self.assertIn("input line 1: groundtruth", answers[0]["message"])
        self.assertIn("input line 3: id", answers[0]["message"])
        self.assertIn("seed 'x': image file not found", answers[1]["message"])
        self.assertIn("2 missing images", answers[1]["message"])
        self.assertFalse(os.path.exists(self.path("bad.out")))
        self.assertEqual(self.student.calls, 3, "the models ran only for the good shard")

    def test_params_image_root_overrides_the_flag_for_one_shard(self):
        other = os.path.join(self.tmp, "other")
        os.makedirs(other)
        open(os.path.join(other, "c.png"), "wb").close()
        seeds = self.seeds("c.jsonl", ["c"], image="c.png")
        _, evts, _ = self.serve([shard("c", seeds, self.path("c.out"), image_root=other), shard("a", self.seeds("a.jsonl", ["a"]), self.path("a.out"))])
        self.assertEqual([e["type"] for e in evts if e["type"] in ("done", "failed")], ["done", "done"])
        self.assertEqual(self.student.roots_seen, [other] * 3 + [self.images] * 3)

    def test_a_stop_between_groups_hands_the_shard_back(self):
        seeds = self.seeds("s.jsonl", ["a1", "a2", "a3"])
        code, evts, _ = self.serve(
            [shard("s", seeds, self.path("s.out")), shard("never", seeds, self.path("never.out"))],
            argv=["--batch-size", "1"],
            student=FakeModel("student", stop_on_call=1),
        )
        self.assertEqual(code, exit_codes.SUCCESS)
        answers = [e for e in evts if e["type"] in ("done", "failed")]
        self.assertEqual([(a["id"], a["reason"]) for a in answers], [("s", "PREEMPTED")])
        self.assertIn("stop requested after 1 of 3 dialogues", answers[0]["message"])
        self.assertFalse(os.path.exists(self.path("s.out")))


class OptionsTest(unittest.TestCase):
    def test_defaults_are_fires(self):
        cfg = selfplay.parse_args([])
        self.assertEqual((cfg.batch_size, cfg.max_new_tokens, cfg.max_rounds, cfg.satisfied), (32, 256, 3, 8))
        self.assertEqual(cfg.rules().split, "fire_1m")

    def test_invalid_options_are_reported_together(self):
        with self.assertRaises(PayloadError) as caught:
            selfplay.parse_args(["--batch-size", "0", "--max-rounds", "0", "--satisfied", "11", "--backend", "x"])
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")
        for name in ("batch_size", "max_rounds", "satisfied", "backend"):
            self.assertIn(name, caught.exception.message)


if __name__ == "__main__":
    unittest.main()
