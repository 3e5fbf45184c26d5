"""stoker_examples.make_items: a one-shot step that writes JSONL items (a subprocess, as the worker runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from stoker_examples import make_items
from stoker_payload import exit_codes
from stoker_payload.exit_codes import PayloadError
from stoker_payload.server import read_jsonl

from ..helpers import PYTHON, REPO_ROOT, events, of_type, payload_env


def run_make_items(args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "stoker_examples.make_items", *args],
        cwd=REPO_ROOT,
        env=payload_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


class MakeItemsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-make-items-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_writes_n_items_and_reports_the_artifact(self):
        out = os.path.join(self.tmp, "sub", "items.jsonl")
        proc = run_make_items(["--n", "25", "--seed", "4", "--output", out])
        self.assertEqual(proc.returncode, exit_codes.SUCCESS, proc.stderr)
        rows = [json.loads(line) for line in Path(out).read_text(encoding="utf-8").splitlines()]
        self.assertEqual([r["id"] for r in rows], [f"item-{i:06d}" for i in range(1, 26)])
        self.assertTrue(all(set(r) == {"id", "text"} and r["text"] for r in rows))
        evts = events(proc.stdout)
        self.assertEqual(of_type(evts, "artifact"), [{"type": "artifact", "name": "items", "path": out}])
        (result,) = of_type(evts, "result")
        self.assertEqual(result["items"], 25)
        self.assertEqual(os.listdir(os.path.dirname(out)), ["items.jsonl"], "no temporary file is left")

    def test_the_default_output_is_under_STOKER_OUTPUT_DIR(self):
        proc = run_make_items(["--n", "3"], STOKER_OUTPUT_DIR=self.tmp)
        self.assertEqual(proc.returncode, exit_codes.SUCCESS, proc.stderr)
        path = os.path.join(self.tmp, "items.jsonl")
        self.assertEqual(of_type(events(proc.stdout), "artifact")[0]["path"], path)
        self.assertEqual(len(list(read_jsonl(path))), 3)

    def test_a_bad_line_is_inserted_at_line_K(self):
        out = os.path.join(self.tmp, "bad.jsonl")
        proc = run_make_items(["--n", "5", "--bad-line", "3", "--output", out])
        self.assertEqual(proc.returncode, exit_codes.SUCCESS, proc.stderr)
        lines = Path(out).read_text().splitlines()
        self.assertEqual(len(lines), 6)
        with self.assertRaises(PayloadError) as caught:
            list(read_jsonl(out))
        self.assertEqual(caught.exception.code_name, "BAD_DATA")
        self.assertTrue(caught.exception.message.startswith("input line 3: "))
        self.assertEqual(of_type(events(proc.stdout), "result")[0]["items"], 5)

    def test_a_bad_line_out_of_range_is_BAD_CONFIG(self):
        proc = run_make_items(["--n", "2", "--bad-line", "4", "--output", os.path.join(self.tmp, "x.jsonl")])
        self.assertEqual(proc.returncode, exit_codes.BAD_CONFIG)
        self.assertIn("bad_line", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.jsonl")))

    def test_the_seed_fixes_the_texts(self):
        self.assertEqual(make_items.make_items(20, 1), make_items.make_items(20, 1))
        self.assertNotEqual(make_items.make_items(20, 1), make_items.make_items(20, 2))
        self.assertEqual(make_items.make_items(0, 1), [])


if __name__ == "__main__":
    unittest.main()
