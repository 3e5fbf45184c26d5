"""The exit-code table is read from common/exit-codes.json; entrypoint.run_main maps endings to codes."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes
from stoker_payload.entrypoint import run_main
from stoker_payload.exit_codes import PayloadError, Preempted
from stoker_payload.report import Reporter

from ..helpers import EXIT_CODES_FILE, PY_DIR, PYTHON, payload_env

CONSTANTS = (
    "SUCCESS",
    "FAILURE",
    "USAGE",
    "BAD_CONFIG",
    "BAD_DATA",
    "MISSING_INPUT",
    "UNKNOWN_MODEL",
    "MISSING_DEPENDENCY",
    "TEMPORARY",
    "CUDA_OOM",
    "PREEMPTED",
)


class TableTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.raw = json.loads(EXIT_CODES_FILE.read_text(encoding="utf-8"))

    def test_the_module_reads_the_shared_file(self):
        self.assertEqual(exit_codes.TABLE_PATH.resolve(), EXIT_CODES_FILE.resolve())
        self.assertEqual(set(exit_codes.NAMES), set(self.raw["codes"]))

    def test_every_constant_equals_the_file(self):
        for name in CONSTANTS:
            with self.subTest(name):
                self.assertEqual(getattr(exit_codes, name), self.raw["codes"][name]["code"])
                self.assertEqual(exit_codes.exit_code(name), self.raw["codes"][name]["code"])
                self.assertEqual(exit_codes.name_of(self.raw["codes"][name]["code"]), name)

    def test_retryable_follows_the_table_then_the_signal_and_range_rules(self):
        for name, entry in self.raw["codes"].items():
            with self.subTest(name):
                self.assertEqual(exit_codes.is_retryable(entry["code"]), entry["retryable"])
        lo, hi = self.raw["nonRetryableRange"]
        base = self.raw["signalBase"]
        unlisted_in_range = next(c for c in range(lo, hi + 1) if exit_codes.name_of(c) is None)
        self.assertFalse(exit_codes.is_retryable(unlisted_in_range), "reserved range is non-retryable")
        self.assertTrue(exit_codes.is_retryable(base + 15), "killed by SIGTERM")
        self.assertTrue(exit_codes.is_retryable(base + 9), "killed by SIGKILL / the OOM killer")
        self.assertTrue(exit_codes.is_retryable(3), "an unknown low code")

    def test_an_unknown_name_is_a_key_error_naming_the_file(self):
        with self.assertRaisesRegex(KeyError, "exit-codes.json"):
            exit_codes.exit_code("NOPE")

    def test_STOKER_EXIT_CODES_FILE_overrides_the_table(self):
        shifted = json.loads(json.dumps(self.raw))
        for i, entry in enumerate(shifted["codes"].values()):
            entry["code"] = 200 + i
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "codes.json"
            path.write_text(json.dumps(shifted))
            script = "from stoker_payload import exit_codes as e; print(e.BAD_CONFIG, e.PREEMPTED, e.TABLE_PATH)"
            out = subprocess.run(
                [PYTHON, "-c", script],
                cwd=PY_DIR,
                env=payload_env(STOKER_EXIT_CODES_FILE=str(path)),
                capture_output=True,
                text=True,
                timeout=30,
            )
        self.assertEqual(out.returncode, 0, out.stderr)
        bad_config, preempted, used = out.stdout.split()
        self.assertEqual(int(bad_config), shifted["codes"]["BAD_CONFIG"]["code"])
        self.assertEqual(int(preempted), shifted["codes"]["PREEMPTED"]["code"])
        self.assertEqual(used, str(path))

    def test_a_missing_table_fails_the_import_with_its_path(self):
        out = subprocess.run(
            [PYTHON, "-c", "import stoker_payload"],
            cwd=PY_DIR,
            env=payload_env(STOKER_EXIT_CODES_FILE="/nonexistent/codes.json"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("/nonexistent/codes.json", out.stderr)


class PayloadErrorTest(unittest.TestCase):
    def test_code_and_retryable_come_from_the_table(self):
        cases = [
            ("bad config is final", "BAD_CONFIG", exit_codes.BAD_CONFIG, False),
            ("missing input is final", "MISSING_INPUT", exit_codes.MISSING_INPUT, False),
            ("a temporary failure is retried", "TEMPORARY", exit_codes.TEMPORARY, True),
            ("a preemption is retried", "PREEMPTED", exit_codes.PREEMPTED, True),
        ]
        for name, code_name, code, retryable in cases:
            with self.subTest(name):
                err = PayloadError(code_name, "why")
                self.assertEqual((err.code, err.code_name, err.retryable), (code, code_name, retryable))
                self.assertEqual(str(err), f"{code_name}: why")

    def test_an_unknown_code_name_is_refused(self):
        with self.assertRaises(KeyError):
            PayloadError("NOT_A_CODE", "x")

    def test_errors_survive_pickling(self):
        for err in (PayloadError("BAD_DATA", "row 3"), Preempted("at step 9")):
            with self.subTest(type(err).__name__):
                back = pickle.loads(pickle.dumps(err))
                self.assertIs(type(back), type(err))
                self.assertEqual((back.code, back.message), (err.code, err.message))


def _raise(err: BaseException):
    def main():
        raise err

    return main


class RunMainTest(unittest.TestCase):
    def run_case(self, main):
        stderr, stdout = io.StringIO(), io.StringIO()
        code = run_main(main, exit=False, stderr=stderr, reporter=Reporter(stdout, enabled=True))
        return code, stderr.getvalue(), stdout.getvalue()

    def test_endings_map_to_codes(self):
        cases = [
            ("returning None is success", lambda: None, exit_codes.SUCCESS, None, False),
            ("returning a code exits with it", lambda: 3, 3, None, False),
            ("argparse's SystemExit(2) stays usage", _raise(SystemExit(2)), exit_codes.USAGE, None, False),
            ("SystemExit() is success", _raise(SystemExit()), exit_codes.SUCCESS, None, False),
            ("SystemExit with text prints it and fails", _raise(SystemExit("boom")), exit_codes.FAILURE, "boom", False),
            (
                "a PayloadError exits with its code and message, no traceback",
                _raise(PayloadError("BAD_CONFIG", "steps must be >= 1")),
                exit_codes.BAD_CONFIG,
                "BAD_CONFIG: steps must be >= 1",
                False,
            ),
            ("Preempted exits PREEMPTED", _raise(Preempted()), exit_codes.PREEMPTED, "PREEMPTED", False),
            (
                "a CUDA OOM RuntimeError is CUDA_OOM",
                _raise(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")),
                exit_codes.CUDA_OOM,
                "lower the batch size",
                False,
            ),
            ("Ctrl-C is 128+SIGINT", _raise(KeyboardInterrupt()), exit_codes.SIGNAL_BASE + 2, "interrupted", False),
            (
                "a missing module is MISSING_DEPENDENCY",
                _raise(ModuleNotFoundError("No module named 'flash_attn'", name="flash_attn")),
                exit_codes.MISSING_DEPENDENCY,
                "flash_attn",
                True,
            ),
            ("any other exception is FAILURE with a traceback", _raise(ValueError("bug")), exit_codes.FAILURE, "ValueError: bug", True),
            ("a RuntimeError without the OOM text is FAILURE", _raise(RuntimeError("shape mismatch")), exit_codes.FAILURE, "shape", True),
        ]
        for name, main, code, message, traceback in cases:
            with self.subTest(name):
                got, stderr, _ = self.run_case(main)
                self.assertEqual(got, code)
                if message is not None:
                    self.assertIn(message, stderr)
                self.assertEqual("Traceback" in stderr, traceback, stderr)

    def test_failures_are_also_reported_as_a_log_event(self):
        _, _, stdout = self.run_case(_raise(PayloadError("BAD_DATA", "row 3 is not JSON")))
        self.assertEqual(stdout, '::stoker:: {"type":"log","level":"error","message":"BAD_DATA: row 3 is not JSON"}\n')
        _, _, stdout = self.run_case(_raise(Preempted("at step 9")))
        self.assertIn('"level":"warn"', stdout)

    def test_torch_cuda_OutOfMemoryError_is_CUDA_OOM(self):
        import torch

        oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is None:
            self.skipTest("this torch has no torch.cuda.OutOfMemoryError")
        code, _, _ = self.run_case(_raise(oom_type("out of memory")))
        self.assertEqual(code, exit_codes.CUDA_OOM)

    def test_exit_true_calls_sys_exit(self):
        with self.assertRaises(SystemExit) as ctx:
            run_main(_raise(PayloadError("UNKNOWN_MODEL", "gpt-9")), stderr=io.StringIO(), reporter=Reporter(io.StringIO(), enabled=False))
        self.assertEqual(ctx.exception.code, exit_codes.UNKNOWN_MODEL)


if __name__ == "__main__":
    unittest.main()
