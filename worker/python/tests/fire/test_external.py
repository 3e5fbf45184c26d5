"""stoker_fire.external: a user's unmodified HF Trainer script (tests/fixtures/fake_hf_trainer.py)
run as a child; progress, loss and checkpoints read from its tqdm bars and log lines."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from stoker_payload import exit_codes, report

from stoker_fire import external

from ..helpers import PY_DIR, PYTHON, REPO_ROOT, LiveProcess, events, of_type, payload_env

FIXTURE = str(PY_DIR / "tests" / "fixtures" / "fake_hf_trainer.py")
TIMEOUT = 60


def run_external(args, **env):
    return subprocess.run(
        [PYTHON, "-m", "stoker_fire.external", *args],
        cwd=REPO_ROOT,
        env=payload_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


class _Sink:
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


class ParseTest(unittest.TestCase):
    def test_tqdm_bars(self):
        self.assertEqual(external.parse_tqdm("  5%|▌         | 50/1000 [00:10<03:10,  5.00it/s]"), (50, 1000, ""))
        self.assertEqual(external.parse_tqdm(" 40%|████      | 4/10 [00:40<01:00, 10.00s/it]"), (4, 10, ""))
        self.assertEqual(external.parse_tqdm("Training:  5%|▌         | 50/1000 [00:10<03:10,  5.00it/s]"), (50, 1000, "Training"))
        self.assertEqual(external.parse_tqdm("  0%|          | 0/7 [00:00<?, ?it/s]"), (0, 7, ""))
        self.assertEqual(external.parse_tqdm("100%|██████████| 12.0k/12.0k [01:00<00:00, 200it/s]"), (12000, 12000, ""))
        # bars that are not the training loop, and things that are not bars
        self.assertIsNone(external.parse_tqdm("Map: 100%|██████████| 1000/1000 [00:01<00:00, 900.00 examples/s]"))
        self.assertIsNone(external.parse_tqdm("Loading checkpoint shards: 100%|██████████| 4/4 [00:05<00:00,  1.2s/it]"))
        self.assertIsNone(external.parse_tqdm("50it [00:10,  5.00it/s]"))
        self.assertIsNone(external.parse_tqdm("loss 5%| nothing here"))

    def test_log_dicts(self):
        line = "{'loss': 1.2345, 'grad_norm': 0.51, 'learning_rate': 0.0002, 'epoch': 0.01}"
        self.assertEqual(external.parse_log_dict(line), {"loss": 1.2345, "grad_norm": 0.51, "learning_rate": 0.0002, "epoch": 0.01})
        final = "{'train_runtime': 123.4, 'train_samples_per_second': 5.6, 'train_steps_per_second': 0.7, 'train_loss': 0.98, 'epoch': 1.0}"
        self.assertEqual(external.parse_log_dict(final)["train_loss"], 0.98)
        # a tensor repr (some transformers versions): the plain numbers are still read
        odd = "[rank0]: {'loss': 2.5, 'grad_norm': tensor(0.75, device='cuda:0'), 'learning_rate': 1e-05, 'epoch': 0.5}"
        self.assertEqual(external.parse_log_dict(odd), {"loss": 2.5, "grad_norm": 0.75, "learning_rate": 1e-05, "epoch": 0.5})
        self.assertEqual(external.parse_log_dict("{'loss': nan, 'epoch': 0.1}")["loss"] != 0, True)

    def test_checkpoint_lines_and_output_dir(self):
        self.assertEqual(external.parse_checkpoint("Saving model checkpoint to /out/checkpoint-500"), "/out/checkpoint-500")
        self.assertEqual(
            external.parse_checkpoint("100%|██| 6/6 [00:01<00:00]Saving model checkpoint to out/checkpoint-6\n".strip()), "out/checkpoint-6"
        )
        self.assertEqual(external.output_dir_of(["x.py", "--output_dir", "/out/a"]), "/out/a")
        self.assertEqual(external.output_dir_of(["x.py", "--output-dir=/out/b"]), "/out/b")
        self.assertIsNone(external.output_dir_of(["x.py", "--output_dir"]))
        self.assertEqual(external.split_segments("a\rb\r\nc\n\r"), ["a", "b", "c"])

    def test_garbage_never_crashes(self):
        sink = _Sink()
        tracker = external.Tracker(report.Reporter(sink, enabled=True), None)
        garbage = [
            "{", "}", "{'loss': }", "{" * 5000 + "}" * 5000, "{'loss': 'high'}", "{'loss': [1, 2]}", "{1: 2}",
            "Saving model checkpoint to ", "Saving model checkpoint to /x/no-step", "999%|| 5/0 [", "  5%|| 99999999999999999999/3 [",
            "\x00\x1b[31m{'loss': 1e999}\x1b[0m", "{'loss': -inf, 'epoch': 0.1}", "%|", "|/|[", "{'type': 3, 'loss': 1.0}",
        ]
        for line in garbage:
            for segment in external.split_segments(line) or [line]:
                tracker.feed(segment)
        for line in sink.lines:  # whatever came out is a valid event
            events(line)


class RunTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-external-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.out = os.path.join(self.tmp, "student")

    def test_progress_metrics_checkpoints_and_result(self):
        done = run_external(
            ["--", PYTHON, FIXTURE, "--steps", "12", "--save-steps", "5", "--sleep", "0.03", "--output_dir", self.out]
        )
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        evts = events(done.stdout)
        progress = of_type(evts, "progress")
        steps = [e["step"] for e in progress]
        self.assertEqual(steps, sorted(set(steps)))  # one event per step change
        self.assertEqual(steps[-1], 12)
        self.assertTrue(all(e["totalSteps"] == 12 for e in progress))
        metrics = [e for e in of_type(evts, "metrics") if "loss" in e]
        self.assertEqual(len(metrics), 12)
        self.assertTrue(all(set(("loss", "lr", "gradNorm", "epoch")) <= set(e) for e in metrics))
        with_step = [e["step"] for e in metrics if "step" in e]
        self.assertEqual(with_step, sorted(with_step))
        self.assertGreaterEqual(len(with_step), 11)
        final = [e for e in of_type(evts, "metrics") if "trainLoss" in e]
        self.assertEqual(len(final), 1)
        checkpoints = of_type(evts, "checkpoint")
        self.assertEqual(
            [(e["path"], e["step"]) for e in checkpoints],
            [(os.path.join(self.out, "checkpoint-5"), 5), (os.path.join(self.out, "checkpoint-10"), 10)],
        )
        self.assertEqual(of_type(evts, "artifact"), [{"type": "artifact", "name": "adapter", "path": self.out}])
        (result,) = of_type(evts, "result")
        self.assertEqual((result["steps"], result["totalSteps"]), (12, 12))
        self.assertTrue(result["lossFell"])
        self.assertLess(result["lastLoss"], result["firstLoss"])
        self.assertAlmostEqual(result["trainLoss"], final[0]["trainLoss"])
        self.assertEqual(result["lastCheckpoint"], os.path.join(self.out, "checkpoint-10"))
        self.assertEqual(len(result["checkpoints"]), 2)
        self.assertIn("fake_hf_trainer.py", result["command"])
        # the child's own output is passed through unchanged
        self.assertIn("{'loss': ", done.stdout)
        self.assertIn("Saving model checkpoint to", done.stderr)
        self.assertIn("| 12/12 [", done.stderr)  # (text mode turns tqdm's \r into \n here)

    def test_checkpoints_from_the_output_dir_without_logger_lines(self):
        # --log_level warning: the Trainer's logger says nothing; the directories tell
        done = run_external(["--", PYTHON, FIXTURE, "--steps", "6", "--save-steps", "3", "--log_level", "warning", f"--output-dir={self.out}"])
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        self.assertNotIn("Saving model checkpoint", done.stderr)
        evts = events(done.stdout)
        self.assertEqual(
            [(e["path"], e["step"]) for e in of_type(evts, "checkpoint")],
            [(os.path.join(self.out, "checkpoint-3"), 3), (os.path.join(self.out, "checkpoint-6"), 6)],
        )
        (result,) = of_type(evts, "result")
        self.assertEqual((result["outputDir"], result["lastCheckpoint"]), (self.out, os.path.join(self.out, "checkpoint-6")))

    def test_stoker_output_dir_without_an_output_dir_flag(self):
        os.makedirs(self.out)
        done = run_external(["--", PYTHON, "-c", "print('done')"], STOKER_OUTPUT_DIR=self.out)
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        evts = events(done.stdout)
        self.assertEqual(of_type(evts, "artifact")[0]["path"], self.out)
        (result,) = of_type(evts, "result")
        self.assertEqual((result["outputDir"], result["steps"], result["lossFell"], result["checkpoints"]), (self.out, None, None, []))
        self.assertIn("done\n", done.stdout)

    def test_a_failing_child_exit_code_passes_through(self):
        done = run_external(["--", PYTHON, FIXTURE, "--steps", "10", "--fail-at", "4", "--output_dir", self.out])
        self.assertEqual(done.returncode, 1)
        evts = events(done.stdout)
        self.assertEqual(of_type(evts, "result"), [])
        (log,) = of_type(evts, "log")
        self.assertEqual(log["level"], "error")
        self.assertIn("exit code 1", log["message"])
        self.assertIn("simulated failure at step 4", done.stderr)

    def test_a_child_killed_by_a_signal_is_128_plus_n(self):
        done = run_external(["--", PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
        self.assertEqual(done.returncode, 128 + signal.SIGKILL)

    def test_sigterm_is_forwarded_and_the_exit_is_preempted(self):
        live = LiveProcess(
            [PYTHON, "-m", "stoker_fire.external", "--", PYTHON, FIXTURE, "--steps", "1000", "--sleep", "0.05", "--output_dir", self.out],
            payload_env(),
        )
        try:
            live.wait_for_event(lambda e: e["type"] == "progress" and e["step"] >= 2, timeout=TIMEOUT, what="step 2")
            live.signal(signal.SIGTERM)
            code = live.wait(timeout=TIMEOUT)
        finally:
            live.kill()
        self.assertEqual(code, exit_codes.PREEMPTED, live.stderr)
        evts = events(live.output)
        self.assertEqual(of_type(evts, "result"), [])
        self.assertEqual(of_type(evts, "log")[-1]["level"], "warn")

    def test_a_missing_command_is_missing_input(self):
        done = run_external(["--", os.path.join(self.tmp, "no-such-launcher"), "train.py"])
        self.assertEqual(done.returncode, exit_codes.MISSING_INPUT)
        self.assertIn("cannot start", done.stderr)
        self.assertIn("no-such-launcher", done.stderr)

    def test_no_command_is_usage(self):
        self.assertEqual(run_external([]).returncode, exit_codes.USAGE)
        self.assertEqual(run_external(["--"]).returncode, exit_codes.USAGE)


if __name__ == "__main__":
    unittest.main()
