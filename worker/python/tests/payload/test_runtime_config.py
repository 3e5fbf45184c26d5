"""Environment helpers (rank, RESUME_FROM, output dir) and flags + --config parsing."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import unittest
from pathlib import Path

from stoker_examples import smoke_train
from stoker_payload import exit_codes, runtime
from stoker_payload.exit_codes import PayloadError


class RuntimeTest(unittest.TestCase):
    def test_rank_and_world_size(self):
        self.assertEqual((runtime.rank({}), runtime.world_size({}), runtime.local_rank({})), (0, 1, 0))
        env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
        self.assertEqual((runtime.rank(env), runtime.world_size(env), runtime.local_rank(env)), (3, 4, 1))
        self.assertTrue(runtime.is_rank0({"RANK": "0"}))
        self.assertFalse(runtime.is_rank0({"RANK": "2"}))

    def test_bad_rank_variables_are_bad_config(self):
        for name, env in [("not a number", {"RANK": "x"}), ("negative", {"RANK": "-1"}), ("zero world", {"WORLD_SIZE": "0"})]:
            with self.subTest(name), self.assertRaises(PayloadError) as ctx:
                runtime.rank(env), runtime.world_size(env)
            self.assertEqual(ctx.exception.code, exit_codes.BAD_CONFIG)

    def test_resume_from(self):
        with tempfile.NamedTemporaryFile(suffix=".pt") as ckpt:
            self.assertIsNone(runtime.resume_from({}))
            self.assertIsNone(runtime.resume_from({"RESUME_FROM": "  "}))
            self.assertEqual(runtime.resume_from({"RESUME_FROM": ckpt.name}), os.path.abspath(ckpt.name))
        with self.assertRaises(PayloadError) as ctx:
            runtime.resume_from({"RESUME_FROM": "/nonexistent/step-000040.pt"})
        self.assertEqual(ctx.exception.code, exit_codes.MISSING_INPUT)
        self.assertIn("/nonexistent/step-000040.pt", ctx.exception.message)
        self.assertEqual(runtime.resume_from({"RESUME_FROM": "/nonexistent/x"}, must_exist=False), "/nonexistent/x")

    def test_output_dir_prefers_the_flag_then_the_environment_then_out(self):
        cwd = Path.cwd()
        self.assertEqual(runtime.output_dir("/flag", {"STOKER_OUTPUT_DIR": "/env"}), "/flag")
        self.assertEqual(runtime.output_dir(None, {"STOKER_OUTPUT_DIR": "/env"}), "/env")
        self.assertEqual(runtime.output_dir("", {"STOKER_OUTPUT_DIR": "/env"}), "/env")
        self.assertEqual(runtime.output_dir(None, {}), str(cwd / "out"))
        with tempfile.TemporaryDirectory() as tmp:
            made = runtime.output_dir(os.path.join(tmp, "a", "b"), {}, create=True)
            self.assertTrue(os.path.isdir(made))


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def config_file(self, text: str) -> str:
        path = os.path.join(self.tmp.name, "cfg.yaml")
        Path(path).write_text(text)
        return path

    def test_defaults(self):
        cfg = smoke_train.parse_args([])
        self.assertEqual((cfg.steps, cfg.batch_size, cfg.threads, cfg.step_delay, cfg.output_dir), (100, 32, 1, 0.0, None))

    def test_flags(self):
        cfg = smoke_train.parse_args(
            ["--steps", "7", "--batch-size", "4", "--lr", "0.1", "--checkpoint-every", "0", "--step-delay", "0.5", "--output-dir", "/o"]
        )
        self.assertEqual((cfg.steps, cfg.batch_size, cfg.lr, cfg.checkpoint_every, cfg.step_delay, cfg.output_dir), (7, 4, 0.1, 0, 0.5, "/o"))

    def test_the_config_file_uses_the_option_names_and_flags_override_it(self):
        path = self.config_file("steps: 5\nbatch_size: 8\nlog-every: 2\nlr: 1\nseed: 3\n")
        cfg = smoke_train.parse_args(["--config", path, "--steps", "9"])
        self.assertEqual((cfg.steps, cfg.batch_size, cfg.log_every, cfg.lr, cfg.seed), (9, 8, 2, 1.0, 3))
        self.assertIsInstance(cfg.lr, float)

    def test_bad_config_files_report_every_problem_as_BAD_CONFIG(self):
        path = self.config_file("steps: ten\nbatch_sise: 8\nschedule: linear\nthreads: true\n")
        with self.assertRaises(PayloadError) as ctx:
            smoke_train.parse_args(["--config", path])
        self.assertEqual(ctx.exception.code, exit_codes.BAD_CONFIG)
        for fragment in ("config.steps", "config.batch_sise: unknown option", "config.schedule", "config.threads"):
            self.assertIn(fragment, ctx.exception.message)

    def test_config_file_shapes(self):
        cases = [
            ("not a mapping", "- steps\n- 5\n", exit_codes.BAD_CONFIG),
            ("not YAML", "steps: [1,\n", exit_codes.BAD_CONFIG),
        ]
        for name, text, code in cases:
            with self.subTest(name), self.assertRaises(PayloadError) as ctx:
                smoke_train.parse_args(["--config", self.config_file(text)])
            self.assertEqual(ctx.exception.code, code)
        self.assertEqual(smoke_train.parse_args(["--config", self.config_file("")]).steps, 100, "an empty file is no options")

    def test_a_missing_config_file_is_MISSING_INPUT(self):
        with self.assertRaises(PayloadError) as ctx:
            smoke_train.parse_args(["--config", "/nonexistent.yaml"])
        self.assertEqual(ctx.exception.code, exit_codes.MISSING_INPUT)

    def test_out_of_range_values_are_BAD_CONFIG(self):
        with self.assertRaises(PayloadError) as ctx:
            smoke_train.parse_args(["--steps", "0", "--lr", "-1", "--step-delay", "-2"])
        self.assertEqual(ctx.exception.code, exit_codes.BAD_CONFIG)
        for fragment in ("steps: must be >= 1", "lr: must be > 0", "step_delay: must be >= 0"):
            self.assertIn(fragment, ctx.exception.message)

    def test_a_malformed_command_line_is_argparse_usage(self):
        for argv in (["--steps", "many"], ["--no-such-flag"], ["--schedule", "linear"]):
            with self.subTest(argv), contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit) as ctx:
                smoke_train.parse_args(argv)
            self.assertEqual(ctx.exception.code, exit_codes.USAGE)


if __name__ == "__main__":
    unittest.main()
