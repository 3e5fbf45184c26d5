"""stoker_fire.llava_data: reading and checking LLaVA conversation files; the synthetic set."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest

from stoker_payload.exit_codes import PayloadError

from stoker_fire import llava_data


def convo(rid, image="a.png"):
    record = {"id": rid, "conversations": [{"from": "human", "value": "<image>\nq?"}, {"from": "gpt", "value": "a"}]}
    if image:
        record["image"] = image
    return record


class ReadTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-data-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def error(self, path) -> PayloadError:
        with self.assertRaises(PayloadError) as caught:
            llava_data.read_conversations(path)
        return caught.exception

    def test_a_json_list_and_jsonl_read_the_same(self):
        records = [convo("a"), convo(2, image=None)]
        as_json = self.write("d.json", json.dumps(records))
        as_jsonl = self.write("d.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
        self.assertEqual(llava_data.read_conversations(as_json), records)
        self.assertEqual(llava_data.read_conversations(as_jsonl), records)

    def test_every_problem_is_listed_with_its_path(self):
        bad = [
            convo("ok"),
            {"id": "", "conversations": []},
            {"id": "x", "conversations": [{"from": "system", "value": "s"}, {"from": "gpt", "value": 3}]},
            {"id": "y", "conversations": [{"from": "human", "value": "only a question"}]},
            {"id": "z", "image": "", "conversations": [{"from": "gpt", "value": "a"}]},
        ]
        err = self.error(self.write("bad.json", json.dumps(bad)))
        self.assertEqual(err.code_name, "BAD_DATA")
        for fragment in (
            "[1].id: must be a non-empty string",
            "[1].conversations: must be a non-empty list",
            "[2].conversations[0].from: must be 'human' or 'gpt', got 'system'",
            "[2].conversations[1].value: must be a string",
            "[3].conversations: has no gpt turn",
            "[4].image: must be a non-empty string",
            "[4].conversations[0].from: the first turn must be human",
        ):
            self.assertIn(fragment, err.message)
        self.assertIn("8 problem(s)", err.message)

    def test_file_level_problems(self):
        self.assertEqual(self.error(os.path.join(self.tmp, "none.json")).code_name, "MISSING_INPUT")
        self.assertIn("not JSON", self.error(self.write("x.json", "{")).message)
        self.assertIn("must be a JSON list", self.error(self.write("o.json", "{}")).message)
        self.assertIn("line 2: not JSON", self.error(self.write("l.jsonl", json.dumps(convo("a")) + "\nnope\n")).message)
        self.assertIn("no records", self.error(self.write("e.json", "[]")).message)

    def test_missing_images_are_reported_not_dropped(self):
        open(os.path.join(self.tmp, "a.png"), "wb").close()
        records = [convo("a"), convo("b", "missing.png"), convo("c", image=None)]
        llava_data.check_images(records[:1] + records[2:], self.tmp)
        with self.assertRaises(PayloadError) as caught:
            llava_data.check_images(records, self.tmp, "d.json")
        self.assertEqual(caught.exception.code_name, "BAD_DATA")
        self.assertIn("[1] (id 'b'): image file not found: " + os.path.join(self.tmp, "missing.png"), caught.exception.message)


class SyntheticTest(unittest.TestCase):
    def test_deterministic_checked_and_with_images(self):
        tmp = tempfile.mkdtemp(prefix="stoker-fire-syn-")
        self.addCleanup(shutil.rmtree, tmp, True)
        first = llava_data.synthetic_conversations(12, seed=3, image_dir=tmp)
        self.assertEqual(first, llava_data.synthetic_conversations(12, seed=3, image_dir=tmp))
        self.assertNotEqual(first, llava_data.synthetic_conversations(12, seed=4, image_dir=tmp))
        for i, record in enumerate(first):
            self.assertEqual(llava_data.check_record(record, f"[{i}]"), [])
        llava_data.check_images(first, tmp)
        seeds = llava_data.synthetic_seeds(5, seed=3, image_dir=tmp)
        self.assertEqual({tuple(sorted(s)) for s in seeds}, {("groundtruth", "id", "image", "question", "source")})
        self.assertEqual(len({s["id"] for s in seeds}), 5)
        llava_data.check_images(seeds, tmp)


if __name__ == "__main__":
    unittest.main()
