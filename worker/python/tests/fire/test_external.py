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

    def test_log_dicts_of_the_current_format_numbers_as_strings(self):
        # newer ProgressCallback.on_log: every float as f"{v:.4g}"
        line = "{'loss': '0.6931', 'grad_norm': '1.23', 'learning_rate': '2e-05', 'epoch': '0.5'}"
        self.assertEqual(external.parse_log_dict(line), {"loss": 0.6931, "grad_norm": 1.23, "learning_rate": 2e-05, "epoch": 0.5})
        final = "{'train_runtime': '12.34', 'train_samples_per_second': '5.623', 'train_steps_per_second': '0.703', 'train_loss': '0.9812', 'epoch': '1'}"
        self.assertEqual(
            external.parse_log_dict(final),
            {"train_runtime": 12.34, "train_samples_per_second": 5.623, "train_steps_per_second": 0.703, "train_loss": 0.9812, "epoch": 1},
        )
        self.assertEqual(external.parse_log_dict("{'loss': '1.235e+04', 'num_input_tokens_seen': 8192}"), {"loss": 12350.0, "num_input_tokens_seen": 8192})
        # the fallback reader (a dict that does not parse) takes quoted numbers too
        odd = "{'loss': '2.5', 'grad_norm': tensor(0.75, device='cuda:0'), 'epoch': '0.5'}"
        self.assertEqual(external.parse_log_dict(odd), {"loss": 2.5, "grad_norm": 0.75, "epoch": 0.5})

    def test_text_fields_stay_out_of_the_metrics(self):
        line = (
            "{'loss': '0.5', 'note': '[String too long to display, length: 9000 > 5000. Consider increasing `max_str_len` if needed.]', "
            "'phase': 'train', 'tags': ['a', 'b'], 'flag': True, 'version': '4.57.1'}"
        )
        self.assertEqual(external.parse_log_dict(line), {"loss": 0.5})
        self.assertIsNone(external.parse_log_dict("{'model': 'llava', 'dtype': 'bf16'}"))

    def test_failure_lines(self):
        oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB"
        self.assertEqual(external.parse_failure(oom)[0], "CUDA_OOM")
        self.assertEqual(external.parse_failure("[rank3]: torch.cuda.OutOfMemoryError: CUDA out of memory.")[0], "CUDA_OOM")
        self.assertEqual(external.parse_failure("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB")[0], "CUDA_OOM")
        name, why = external.parse_failure("[rank0]: ModuleNotFoundError: No module named 'flash_attn'")
        self.assertEqual(name, "MISSING_DEPENDENCY")
        self.assertIn("'flash_attn'", why)
        self.assertIn("'deepspeed.ops'", external.parse_failure('ModuleNotFoundError: No module named "deepspeed.ops"')[1])
        for line in ("loss went out of memory? no", "No module named 'x' (optional, skipped)", "{'loss': 1.0}", "OutOfMemoryErrors are rare"):
            self.assertIsNone(external.parse_failure(line), line)

    def test_resume_flag_and_options(self):
        self.assertEqual(external.with_resume(["t.py", "--x", "1"], "--resume_from_checkpoint", "/o/checkpoint-5"), ["t.py", "--x", "1", "--resume_from_checkpoint", "/o/checkpoint-5"])
        self.assertEqual(external.with_resume(["t.py", "--resume_from_checkpoint", "/old"], "--resume_from_checkpoint", "/new"), ["t.py", "--resume_from_checkpoint", "/new"])
        self.assertEqual(external.with_resume(["t.py", "--resume=/old", "--y"], "--resume", "/new"), ["t.py", "--resume=/new", "--y"])
        self.assertEqual(external.with_resume(["t.py"], None, "/c"), ["t.py"])
        self.assertEqual(external.with_resume(["t.py"], "--resume_from_checkpoint", None), ["t.py"])
        self.assertEqual(external.parse_argv(["--", "t.py"]), external.Options(["t.py"], "--resume_from_checkpoint"))
        self.assertEqual(external.parse_argv(["--resume-flag", "none", "--", "t.py"]).resume_flag, None)
        self.assertEqual(external.parse_argv(["--resume-flag=--resume", "--", "t.py", "-v"]), external.Options(["t.py", "-v"], "--resume"))
        for bad in (["--resume-flag", "resume", "--", "t.py"], ["--nope", "--", "t.py"], ["--resume-flag", "none"]):
            with self.assertRaises(external.PayloadError) as caught:
                external.parse_argv(bad)
            self.assertEqual(caught.exception.code_name, "USAGE", bad)

    def test_a_trainer_dict_without_numbers_warns_once(self):
        sink = _Sink()
        tracker = external.Tracker(report.Reporter(sink, enabled=True), None)
        for line in ("{'model': 'llava'}", "{'loss': 'n/a', 'epoch': 'first'}", "{'loss': 'n/a', 'epoch': 'second'}", "{'loss': '0.5'}"):
            tracker.feed(line)
        evts = events("".join(sink.lines))
        warnings = [e for e in of_type(evts, "log") if e["level"] == "warn"]
        self.assertEqual(len(warnings), 1, evts)
        self.assertIn("'epoch': 'first'", warnings[0]["message"])
        self.assertEqual([e["loss"] for e in of_type(evts, "metrics")], [0.5])

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
        for fmt in ("legacy", "current"):
            with self.subTest(log_format=fmt):
                shutil.rmtree(self.out, ignore_errors=True)
                self.check_a_whole_run(fmt)

    def check_a_whole_run(self, fmt):
        done = run_external(
            ["--", PYTHON, FIXTURE, "--steps", "12", "--save-steps", "5", "--sleep", "0.03", "--log-format", fmt, "--output_dir", self.out]
        )
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        self.assertIn("{'loss': '" if fmt == "current" else "{'loss': 0.", done.stdout)  # the format asked for
        evts = events(done.stdout)
        self.assertEqual([e for e in of_type(evts, "log") if e["level"] == "warn"], [])
        progress = of_type(evts, "progress")
        steps = [e["step"] for e in progress]
        self.assertEqual(steps, sorted(set(steps)))  # one event per step change
        self.assertEqual(steps[-1], 12)
        self.assertTrue(all(e["totalSteps"] == 12 for e in progress))
        metrics = [e for e in of_type(evts, "metrics") if "loss" in e]
        self.assertEqual(len(metrics), 12)
        self.assertTrue(all(set(("loss", "lr", "gradNorm", "epoch")) <= set(e) for e in metrics))
        self.assertTrue(all(isinstance(e[k], (int, float)) for e in metrics for k in ("loss", "lr", "gradNorm", "epoch")))
        self.assertAlmostEqual(metrics[-1]["epoch"], 1.0)
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

    def test_resume_from_is_passed_as_the_scripts_flag(self):
        first = run_external(["--", PYTHON, FIXTURE, "--steps", "6", "--save-steps", "3", "--output_dir", self.out])
        self.assertEqual(first.returncode, exit_codes.SUCCESS, first.stderr)
        checkpoint = os.path.join(self.out, "checkpoint-3")
        done = run_external(["--", PYTHON, FIXTURE, "--steps", "8", "--save-steps", "4", "--output_dir", self.out], RESUME_FROM=checkpoint)
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        self.assertIn("Continuing training from global step 3", done.stderr)
        evts = events(done.stdout)
        # the bar jumps from 0 to 4 (as the Trainer's does on resume), and steps 4..8 log a loss
        self.assertEqual([e["step"] for e in of_type(evts, "progress") if 0 < e["step"] < 4], [])
        self.assertEqual(of_type(evts, "progress")[-1]["step"], 8)
        self.assertEqual(len([e for e in of_type(evts, "metrics") if "loss" in e]), 5)
        (result,) = of_type(evts, "result")
        self.assertTrue(result["command"].endswith(f"--resume_from_checkpoint {checkpoint}"), result["command"])
        self.assertIn(f"resuming from {checkpoint} (--resume_from_checkpoint)", [e["message"] for e in of_type(evts, "log")])
        # --resume-flag none: the script is not told, and starts over
        again = run_external(["--resume-flag", "none", "--", PYTHON, FIXTURE, "--steps", "2", "--save-steps", "9", "--output_dir", self.out], RESUME_FROM=checkpoint)
        self.assertEqual(again.returncode, exit_codes.SUCCESS, again.stderr)
        self.assertNotIn("Continuing training", again.stderr)
        self.assertNotIn("--resume_from_checkpoint", of_type(events(again.stdout), "result")[0]["command"])

    def test_a_resume_from_that_does_not_exist_is_missing_input(self):
        done = run_external(["--", PYTHON, FIXTURE, "--steps", "2", "--output_dir", self.out], RESUME_FROM=os.path.join(self.tmp, "gone"))
        self.assertEqual(done.returncode, exit_codes.MISSING_INPUT, done.stderr)
        self.assertIn("RESUME_FROM", done.stderr)

    def test_cuda_oom_of_the_script_is_cuda_oom_not_a_retried_failure(self):
        done = run_external(["--", PYTHON, FIXTURE, "--steps", "10", "--oom-at", "3", "--log-format", "current", "--output_dir", self.out])
        self.assertEqual(done.returncode, exit_codes.CUDA_OOM, done.stderr)
        self.assertFalse(exit_codes.is_retryable(done.returncode))
        self.assertIn("torch.OutOfMemoryError: CUDA out of memory", done.stderr)  # passed through
        (log,) = of_type(events(done.stdout), "log")
        self.assertEqual(log["level"], "error")
        self.assertIn("CUDA_OOM", log["message"])
        self.assertIn("at step 2", log["message"])
        self.assertIn("lower the batch size", log["message"])

    def test_a_missing_module_is_missing_dependency_naming_it(self):
        done = run_external(["--", PYTHON, FIXTURE, "--missing-module", "flash_attn", "--output_dir", self.out])
        self.assertEqual(done.returncode, exit_codes.MISSING_DEPENDENCY, done.stderr)
        self.assertFalse(exit_codes.is_retryable(done.returncode))
        (log,) = of_type(events(done.stdout), "log")
        self.assertIn("MISSING_DEPENDENCY", log["message"])
        self.assertIn("'flash_attn'", log["message"])

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
