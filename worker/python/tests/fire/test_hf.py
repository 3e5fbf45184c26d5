"""The hf backend without transformers: both FIRE payloads exit MISSING_DEPENDENCY (68) with
the pip command; the backend registry; prompts come from the processor's chat template (pure
code, no transformers; test_chat_template.py renders them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from stoker_payload import exit_codes
from stoker_payload.exit_codes import PayloadError

from stoker_fire import backends, hf

from ..helpers import PYTHON, SRC_DIR, REPO_ROOT, events, of_type, payload_env

TIMEOUT = 60


class WithoutTransformers(unittest.TestCase):
    """A directory put first on PYTHONPATH whose `transformers` fails to import as a missing
    one does, so the test means the same where transformers is installed."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="stoker-fire-hf-")
        os.makedirs(os.path.join(cls.tmp, "transformers"))
        with open(os.path.join(cls.tmp, "transformers", "__init__.py"), "w", encoding="utf-8") as fh:
            fh.write("raise ModuleNotFoundError(\"No module named 'transformers'\", name='transformers')\n")
        cls.env = payload_env(PYTHONPATH=os.pathsep.join([cls.tmp, str(SRC_DIR)]), STOKER_OUTPUT_DIR=os.path.join(cls.tmp, "out"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_module(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PYTHON, "-m", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
        )

    def assert_missing_dependency(self, done: subprocess.CompletedProcess) -> None:
        self.assertEqual(done.returncode, exit_codes.MISSING_DEPENDENCY, done.stderr)
        self.assertEqual(exit_codes.MISSING_DEPENDENCY, 68)
        self.assertIn("the hf backend needs transformers and peft: pip install", done.stderr)
        self.assertRegex(done.stderr, r"\(missing: [a-z, ]*transformers")
        self.assertNotIn("Traceback", done.stderr, "a clear message, not a stack trace")
        (log,) = of_type(events(done.stdout), "log")
        self.assertEqual(log["level"], "error")
        self.assertIn("MISSING_DEPENDENCY", log["message"])

    def test_train_exits_missing_dependency_before_touching_data(self):
        done = self.run_module("stoker_fire.train", "--backend", "hf", "--model-name-or-path", "/models/none", "--data", "/data/none.json")
        self.assert_missing_dependency(done)

    def test_train_on_tiny_random_too(self):
        self.assert_missing_dependency(self.run_module("stoker_fire.train", "--backend", "hf", "--max-steps", "5"))

    def test_the_selfplay_server_exits_missing_dependency_before_ready(self):
        done = self.run_module("stoker_fire.selfplay", "--backend", "hf")
        self.assert_missing_dependency(done)
        self.assertEqual(of_type(events(done.stdout), "ready"), [])

    def test_an_unknown_backend_is_bad_config(self):
        for backend, words in (("jax", "unknown backend 'jax'"),):
            for module in ("stoker_fire.train", "stoker_fire.selfplay"):
                with self.subTest(backend=backend, module=module):
                    done = self.run_module(module, "--backend", backend)
                    self.assertEqual(done.returncode, exit_codes.BAD_CONFIG, done.stderr)
                    self.assertIn(words, done.stderr)


class InProcessTest(unittest.TestCase):
    def test_importing_the_backend_does_not_import_transformers(self):
        code = "import sys, stoker_fire.hf, stoker_fire.train, stoker_fire.selfplay; print('transformers' in sys.modules, 'torch' in sys.modules)"
        done = subprocess.run([PYTHON, "-c", code], cwd=REPO_ROOT, env=payload_env(), capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(done.stdout.split(), ["False", "False"], done.stderr)

    def test_the_registry(self):
        self.assertIsNone(backends.problem("hf"))
        self.assertIsNone(backends.problem("tiny"))
        self.assertIn("unknown backend 'jax'", backends.problem("jax") or "")
        with self.assertRaises(PayloadError) as caught:
            backends.load("nope")
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")

    def test_the_backend_renders_prompts_with_the_processors_chat_template(self):
        # No USER:/ASSISTANT: template is left: a processor without a chat template is refused
        # (test_chat_template.py has the rendering, the mask and the errors in full).
        class NoTemplate:
            chat_template = None
            tokenizer = object()

        with self.assertRaises(PayloadError) as caught:
            hf.chat_template_of(NoTemplate(), "/models/x")
        self.assertEqual(caught.exception.code_name, "UNKNOWN_MODEL")
        self.assertFalse(hasattr(hf, "render_prompt"))
        self.assertEqual(hf.TINY_CHAT_TEMPLATE, "llama3-llava-next")

if __name__ == "__main__":
    unittest.main()
