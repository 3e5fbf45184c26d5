"""stoker_examples.smoke_train end to end, as the worker runs it: a subprocess, flags, env, marker lines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes

from ..helpers import SMOKE_TRAIN, LiveProcess, events, free_port, of_type, payload_env, run_smoke

STEPS = 60


def _load(path: str):
    import torch

    return torch.load(path, map_location="cpu")


class FreshRunTest(unittest.TestCase):
    """One 60-step run, shared by the tests below (a few seconds on one CPU thread)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="stoker-smoke-")
        cls.out = os.path.join(cls.tmp, "fresh")
        cls.proc = run_smoke(["--steps", str(STEPS), "--checkpoint-every", "20", "--log-every", "10"], env=payload_env(STOKER_OUTPUT_DIR=cls.out))
        cls.events = events(cls.proc.stdout) if cls.proc.returncode == 0 else []

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.proc.returncode, exit_codes.SUCCESS, self.proc.stderr)

    def test_the_loss_falls(self):
        (result,) = of_type(self.events, "result")
        self.assertTrue(result["lossFell"])
        self.assertLess(result["finalLoss"], 0.5 * result["initialLoss"], "not just noise: the loss at least halves")
        self.assertEqual((result["steps"], result["startStep"], result["resumedFrom"], result["worldSize"]), (STEPS, 0, None, 1))
        logged = [e["loss"] for e in of_type(self.events, "metrics") if "loss" in e]
        self.assertEqual(len(logged), STEPS // 10)
        self.assertLess(logged[-1], logged[0])

    def test_progress_counts_every_step_in_order(self):
        progress = of_type(self.events, "progress")
        self.assertEqual([e["step"] for e in progress], list(range(0, STEPS + 1)))
        self.assertTrue(all(e["totalSteps"] == STEPS for e in progress))
        epochs = [e["epoch"] for e in progress]
        self.assertEqual(epochs, sorted(epochs))

    def test_metrics_carry_loss_lr_and_throughput(self):
        logged = [e for e in of_type(self.events, "metrics") if "loss" in e]
        self.assertEqual([e["step"] for e in logged], [10, 20, 30, 40, 50, 60])
        for e in logged:
            self.assertEqual(set(e), {"type", "step", "loss", "lr", "samplesPerSec"})
            self.assertGreater(e["lr"], 0)
        lrs = [e["lr"] for e in logged]
        self.assertEqual(lrs, sorted(lrs, reverse=True), "cosine schedule decays")

    def test_checkpoints_are_written_then_reported(self):
        checkpoints = of_type(self.events, "checkpoint")
        self.assertEqual([e["step"] for e in checkpoints], [20, 40, 60])
        for e in checkpoints:
            self.assertEqual(e["path"], os.path.join(self.out, "checkpoints", f"step-{e['step']:06d}.pt"))
            state = _load(e["path"])
            self.assertEqual(state["step"], e["step"])
            for key in ("model", "optimizer", "scheduler", "rng", "initial_loss", "config"):
                self.assertIn(key, state)
        leftovers = [n for n in os.listdir(os.path.join(self.out, "checkpoints")) if not n.startswith("step-")]
        self.assertEqual(leftovers, [], "no temporary files are left behind")

    def test_final_outputs_are_artifacts(self):
        artifacts = {e["name"]: e["path"] for e in of_type(self.events, "artifact")}
        self.assertEqual(artifacts, {"checkpoint": os.path.join(self.out, "final.pt"), "metrics": os.path.join(self.out, "metrics.json")})
        final = _load(artifacts["checkpoint"])
        self.assertEqual(final["step"], STEPS)
        summary = json.loads(Path(artifacts["metrics"]).read_text())
        (result,) = of_type(self.events, "result")
        self.assertEqual((summary["initialLoss"], summary["finalLoss"]), (result["initialLoss"], result["finalLoss"]))
        self.assertEqual([h["step"] for h in summary["history"]], [10, 20, 30, 40, 50, 60])

    def test_the_result_comes_after_the_artifacts(self):
        kinds = [e["type"] for e in self.events]
        self.assertEqual(kinds[-1], "result")
        self.assertLess(kinds.index("artifact"), kinds.index("result"))

    def test_resume_continues_at_the_saved_step_and_matches_the_uninterrupted_run(self):
        resumed_out = os.path.join(self.tmp, "resumed")
        ckpt = os.path.join(self.out, "checkpoints", "step-000040.pt")
        proc = run_smoke(["--steps", str(STEPS), "--checkpoint-every", "20"], env=payload_env(STOKER_OUTPUT_DIR=resumed_out, RESUME_FROM=ckpt))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        evts = events(proc.stdout)
        self.assertEqual([e["step"] for e in of_type(evts, "progress")], list(range(40, STEPS + 1)))
        self.assertEqual([e["step"] for e in of_type(evts, "checkpoint")], [60])
        (result,) = of_type(evts, "result")
        (fresh,) = of_type(self.events, "result")
        self.assertEqual((result["startStep"], result["resumedFrom"], result["steps"]), (40, ckpt, STEPS))
        self.assertEqual(result["initialLoss"], fresh["initialLoss"], "the initial loss comes from the checkpoint")
        self.assertTrue(result["lossFell"])
        # Same batches, restored optimizer and schedule: the same model as the uninterrupted run.
        self.assertAlmostEqual(result["finalLoss"], fresh["finalLoss"], places=6)


class FailureTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-smoke-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_a_missing_RESUME_FROM_is_MISSING_INPUT(self):
        missing = os.path.join(self.tmp, "checkpoints", "step-000040.pt")
        proc = run_smoke(["--steps", "5"], env=payload_env(STOKER_OUTPUT_DIR=self.tmp, RESUME_FROM=missing))
        self.assertEqual(proc.returncode, exit_codes.MISSING_INPUT)
        self.assertIn(f"RESUME_FROM checkpoint does not exist: {missing}", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        (log,) = of_type(events(proc.stdout), "log")
        self.assertEqual(log["level"], "error")

    def test_an_unreadable_checkpoint_is_BAD_DATA(self):
        garbage = os.path.join(self.tmp, "step-000001.pt")
        Path(garbage).write_bytes(b"not a checkpoint")
        proc = run_smoke(["--steps", "5"], env=payload_env(STOKER_OUTPUT_DIR=self.tmp, RESUME_FROM=garbage))
        self.assertEqual(proc.returncode, exit_codes.BAD_DATA, proc.stderr)
        self.assertIn("cannot read checkpoint", proc.stderr)

    def test_an_unknown_config_key_is_BAD_CONFIG(self):
        cfg = os.path.join(self.tmp, "smoke.yaml")
        Path(cfg).write_text("steps: 5\nlearning_rate: 0.1\n")
        proc = run_smoke(["--config", cfg], env=payload_env(STOKER_OUTPUT_DIR=self.tmp))
        self.assertEqual(proc.returncode, exit_codes.BAD_CONFIG)
        self.assertIn("config.learning_rate: unknown option", proc.stderr)

    def test_a_bad_flag_is_USAGE(self):
        proc = run_smoke(["--steps", "five"], env=payload_env(STOKER_OUTPUT_DIR=self.tmp))
        self.assertEqual(proc.returncode, exit_codes.USAGE)


class PreemptionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-smoke-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_sigterm_checkpoints_exits_PREEMPTED_and_the_next_attempt_resumes(self):
        out = os.path.join(self.tmp, "out")
        live = LiveProcess(
            [*SMOKE_TRAIN, "--steps", "100000", "--step-delay", "0.02", "--checkpoint-every", "0"],
            payload_env(STOKER_OUTPUT_DIR=out),
        )
        try:
            live.wait_for_event(lambda e: e["type"] == "progress" and e["step"] >= 3, timeout=60, what="step 3")
            live.signal(signal.SIGTERM)
            code = live.wait(timeout=60)
        finally:
            live.kill()
        self.assertEqual(code, exit_codes.PREEMPTED, live.stderr)
        evts = events(live.output)
        last_step = of_type(evts, "progress")[-1]["step"]
        (ckpt,) = of_type(evts, "checkpoint")
        self.assertEqual(ckpt["step"], last_step, "the checkpoint holds the last finished step")
        self.assertTrue(os.path.isfile(ckpt["path"]))
        self.assertEqual(of_type(evts, "result"), [], "a preempted run has no result")
        self.assertIn("PREEMPTED", live.stderr)

        resumed = run_smoke(
            ["--steps", str(last_step + 5), "--checkpoint-every", "0"],
            env=payload_env(STOKER_OUTPUT_DIR=out, RESUME_FROM=ckpt["path"]),
        )
        self.assertEqual(resumed.returncode, 0, resumed.stderr)
        (result,) = of_type(events(resumed.stdout), "result")
        self.assertEqual((result["startStep"], result["steps"]), (last_step, last_step + 5))


class DistributedTest(unittest.TestCase):
    def test_two_ranks_train_together_and_only_rank_zero_reports(self):
        tmp = tempfile.mkdtemp(prefix="stoker-smoke-dist-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port = str(free_port())
        procs = []
        try:
            for rank in (0, 1):
                env = payload_env(
                    RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port, STOKER_OUTPUT_DIR=tmp
                )
                procs.append(
                    subprocess.Popen(
                        [*SMOKE_TRAIN, "--steps", "30", "--checkpoint-every", "10", "--dist-timeout", "60"],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            outputs = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for rank, (p, (_, err)) in enumerate(zip(procs, outputs)):
            self.assertEqual(p.returncode, 0, f"rank {rank}: {err}")
        rank0, rank1 = outputs[0][0], outputs[1][0]
        self.assertNotIn("::stoker::", rank1, "rank 1 prints no markers")
        evts = events(rank0)
        (result,) = of_type(evts, "result")
        self.assertEqual(result["worldSize"], 2)
        self.assertTrue(result["lossFell"])
        self.assertEqual([e["step"] for e in of_type(evts, "checkpoint")], [10, 20, 30])
        self.assertEqual(sorted(os.listdir(os.path.join(tmp, "checkpoints"))), ["step-000010.pt", "step-000020.pt", "step-000030.pt"])


if __name__ == "__main__":
    unittest.main()
