"""stoker_examples.toy_generate as a pool worker runs it: one process, requests on stdin, marker lines out."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes
from stoker_payload.exit_codes import PayloadError

from stoker_examples import toy_generate

from ..helpers import PYTHON, of_type, payload_env
from ..server_helpers import ServerProcess, server_events, shard, write_jsonl

TIMEOUT = 120  # importing torch can take long on a busy machine


def _items(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}-{i:03d}", "text": f"the {prefix} item number {i} is quick"} for i in range(1, n + 1)]


class ServerRunTest(unittest.TestCase):
    """One server process serves three shards (good, bad, good) and shuts down."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="stoker-toy-generate-")
        p = lambda name: os.path.join(cls.tmp, name)  # noqa: E731
        cls.first_items = _items("a", 10)
        cls.second_items = _items("c", 6) + [{"id": "c-same", "text": cls.first_items[0]["text"]}]
        cls.first = write_jsonl(p("a.jsonl"), cls.first_items)
        cls.bad = write_jsonl(p("b.jsonl"), [{"id": "b-1", "text": "fine"}, {"id": "b-2"}, {"id": "b-3", "text": "fine"}])
        cls.second = write_jsonl(p("c.jsonl"), cls.second_items)
        cls.outputs = {name: p(f"{name}.out.tmp") for name in ("a", "b", "c")}

        server = ServerProcess(
            [PYTHON, "-m", "stoker_examples.toy_generate", "--batch-size", "4", "--seed", "3"],
            payload_env(OMP_NUM_THREADS="1"),
        )
        try:
            server.wait_for(lambda e: e["type"] == "ready", timeout=TIMEOUT, what="ready")
            answers = []
            for name, path in (("a", cls.first), ("b", cls.bad), ("c", cls.second)):
                server.send(shard(f"task-{name}", path, cls.outputs[name]))
                answers.append(server.wait_for(lambda e: e["type"] in ("done", "failed"), timeout=TIMEOUT, what=f"shard {name}"))
            server.send({"type": "shutdown"})
            cls.code = server.wait(timeout=TIMEOUT)
        finally:
            server.kill()
        cls.answers = answers
        cls.stderr = server.stderr
        cls.events = server_events(server.output)
        cls.pid = server.proc.pid

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def read(self, name: str) -> list[dict]:
        return [json.loads(line) for line in Path(self.outputs[name]).read_text(encoding="utf-8").splitlines()]

    def test_it_exits_cleanly_after_shutdown(self):
        self.assertEqual(self.code, exit_codes.SUCCESS, self.stderr)

    def test_the_model_is_loaded_once_before_ready(self):
        kinds = [e["type"] for e in self.events]
        self.assertEqual(kinds.count("ready"), 1)
        loads = [e for e in self.events if "loadSeconds" in e]
        self.assertEqual(len(loads), 1)
        self.assertLess(self.events.index(loads[0]), kinds.index("ready"))
        (params,) = [e for e in self.events if "parameters" in e]
        self.assertGreater(params["parameters"], 0)

    def test_the_answers(self):
        good_a, bad, good_c = self.answers
        self.assertEqual(good_a, {"type": "done", "id": "task-a", "items": 10})
        self.assertEqual((bad["type"], bad["id"], bad["reason"]), ("failed", "task-b", "BAD_DATA"))
        self.assertTrue(bad["message"].startswith("input line 2: text must be a string"), bad["message"])
        self.assertEqual(good_c, {"type": "done", "id": "task-c", "items": 7}, "the server kept serving after BAD_DATA")

    def test_every_input_id_is_in_the_output_once_with_a_score(self):
        for name, items in (("a", self.first_items), ("c", self.second_items)):
            rows = self.read(name)
            self.assertEqual([r["id"] for r in rows], [i["id"] for i in items])
            for row, item in zip(rows, items):
                self.assertEqual(set(row), {"id", "text", "score", "label", "worker"})
                self.assertEqual(row["text"], item["text"])
                self.assertTrue(0 < row["score"] < 1)
                self.assertEqual(row["label"], "positive" if row["score"] >= 0.5 else "negative")
                self.assertEqual(row["worker"], self.pid)
        self.assertFalse(os.path.exists(self.outputs["b"]), "the bad shard left no output")

    def test_the_same_text_gets_the_same_score(self):
        first = self.read("a")[0]
        same = [r for r in self.read("c") if r["id"] == "c-same"][0]
        self.assertEqual(first["score"], same["score"])

    def test_progress_counts_the_items_of_each_shard(self):
        totals = {e["totalSteps"] for e in of_type(self.events, "progress")}
        self.assertEqual(totals, {10, 7})
        finals = [e for e in of_type(self.events, "progress") if e["step"] == e["totalSteps"]]
        self.assertEqual([e["step"] for e in finals], [10, 7])


class InProcessTest(unittest.TestCase):
    def test_tokens_are_stable_and_in_range(self):
        ids = toy_generate.tokenize("The quick  FOX the")
        self.assertEqual(ids, toy_generate.tokenize("the quick fox THE"))
        self.assertEqual(ids[0], ids[3])
        self.assertTrue(all(1 <= i < toy_generate.VOCAB_SIZE for i in ids))
        self.assertEqual(toy_generate.tokenize("   "), [0])

    def test_the_seed_fixes_the_scores(self):
        import torch

        texts = ["a quick fox", "", "slow dog " * 300]
        first = toy_generate.Scorer(torch, 5).scores(texts)
        self.assertEqual(first, toy_generate.Scorer(torch, 5).scores(texts))
        self.assertNotEqual(first, toy_generate.Scorer(torch, 6).scores(texts))
        self.assertEqual(len(first), 3)

    def test_items_need_an_id_and_a_text(self):
        self.assertEqual(toy_generate._check_item(1, {"id": 7, "text": ""}), (7, ""))
        for record in ({"text": "x"}, {"id": "", "text": "x"}, {"id": True, "text": "x"}, {"id": "a", "text": 3}):
            with self.assertRaises(PayloadError) as caught:
                toy_generate._check_item(4, record)
            self.assertEqual(caught.exception.code_name, "BAD_DATA")
            self.assertTrue(caught.exception.message.startswith("input line 4: "))

    def test_options(self):
        cfg = toy_generate.parse_args(["--load-delay", "1.5", "--item-delay", "0.01", "--seed", "9", "--batch-size", "8"])
        self.assertEqual((cfg.load_delay, cfg.item_delay, cfg.seed, cfg.batch_size), (1.5, 0.01, 9, 8))
        with self.assertRaises(PayloadError) as caught:
            toy_generate.parse_args(["--batch-size", "0", "--load-delay", "-1"])
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")
        self.assertIn("batch_size", caught.exception.message)
        self.assertIn("load_delay", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
