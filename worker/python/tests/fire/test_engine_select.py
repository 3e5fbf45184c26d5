"""`--backend auto --device cpu|cuda` (stoker_fire.backends.select) and stoker_fire.init_model, for
real on the CPU: auto is resolved from the device alone, the bad pairs are BAD_CONFIG naming
the option, --device cpu hides the GPUs, every payload takes the two flags, and init_model
writes a tiny model directory that stoker_fire.train trains from."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest
from unittest import mock

from stoker_payload import exit_codes
from stoker_payload.exit_codes import PayloadError
from stoker_payload.report import Reporter

from stoker_fire import backends, evaluate, init_model, selfplay, tiny, train

from ..helpers import PYTHON, events, of_type, payload_env


class ResolveTests(unittest.TestCase):
    def test_auto_follows_the_device_only(self):
        self.assertEqual(backends.resolve("auto", "cuda"), "hf")
        self.assertEqual(backends.resolve("auto", "cpu"), "tiny")
        self.assertEqual(backends.resolve("hf", "cpu"), "hf")
        self.assertEqual(backends.resolve("tiny", "cpu"), "tiny")
        self.assertEqual(backends.resolve("hf", None), "hf")

    def test_bad_pairs_say_what_to_give(self):
        self.assertIn("--device cpu (tiny) or --device cuda (hf)", backends.problem("auto", None) or "")
        self.assertIn("CPU only", backends.problem("tiny", "cuda") or "")
        self.assertIn("unknown device 'tpu'", backends.problem("hf", "tpu") or "")
        self.assertIn("unknown backend 'vllm'", backends.problem("vllm", "cuda") or "")
        with self.assertRaises(PayloadError) as caught:
            backends.resolve("auto", None)
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")

    def test_select_cpu_hides_the_gpus_and_logs_the_engine(self):
        import io

        stream = io.StringIO()
        with mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": "0"}):
            engine = backends.select("auto", "cpu", Reporter(stream, enabled=True))
            self.assertEqual(os.environ["CUDA_VISIBLE_DEVICES"], "")
        self.assertEqual(engine, "tiny")
        logs = of_type(events(stream.getvalue()), "log")
        self.assertEqual([e["message"] for e in logs], ["engine: tiny (auto, device cpu)"])

    def test_select_cuda_without_cuda_is_missing_dependency(self):
        import torch

        if torch.cuda.is_available():
            self.skipTest("this machine has CUDA")
        with self.assertRaises(PayloadError) as caught:
            backends.select("auto", "cuda")
        self.assertEqual(caught.exception.code_name, "MISSING_DEPENDENCY")
        self.assertIn("--device cuda", caught.exception.message)

    def test_every_payload_takes_backend_auto_and_device(self):
        cfg = train.parse_args(["--backend", "auto", "--device", "cpu", "--data", "x.jsonl"])
        self.assertEqual(cfg.engine(), "tiny")
        self.assertEqual(selfplay.parse_args(["--backend", "auto", "--device", "cpu"]).device, "cpu")
        self.assertEqual(evaluate.parse_args(["--backend", "auto", "--device", "cpu", "--data", "x", "--model-name-or-path", "m"]).device, "cpu")
        for parse, argv in (
            (train.parse_args, ["--backend", "auto", "--data", "x.jsonl"]),
            (selfplay.parse_args, ["--backend", "tiny", "--device", "cuda"]),
            (evaluate.parse_args, ["--backend", "auto", "--data", "x", "--model-name-or-path", "m"]),
            (init_model.parse_args, ["--backend", "auto"]),
        ):
            with self.assertRaises(PayloadError) as caught:
                parse(argv)
            self.assertEqual(caught.exception.code_name, "BAD_CONFIG", argv)
            self.assertIn("backend:", caught.exception.message)

    def test_save_merged_with_deepspeed_is_refused(self):
        with self.assertRaises(PayloadError) as caught:
            train.parse_args(["--backend", "hf", "--save-merged", "--deepspeed", "z.json"])
        self.assertIn("save_merged: not with deepspeed", caught.exception.message)


class InitModelTests(unittest.TestCase):
    def test_tiny_model_from_the_data_then_trained_from(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "answers.jsonl")
            with open(data, "w", encoding="utf-8") as fh:
                for i, word in enumerate(["zebra", "quokka"]):
                    fh.write(json.dumps({"id": str(i), "conversations": [{"from": "human", "value": "What animal?"}, {"from": "gpt", "value": f"A {word}."}]}) + "\n")
            out = os.path.join(tmp, "model")
            done = subprocess.run(
                [PYTHON, "-m", "stoker_fire.init_model", "--backend", "auto", "--device", "cpu", "--data", data, "--out", out, "--tiny-d-model", "32"],
                env=payload_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            self.assertEqual(done.returncode, 0, done.stderr)
            evts = events(done.stdout)
            self.assertIn("engine: tiny (auto, device cpu)", [e["message"] for e in of_type(evts, "log")])
            result = of_type(evts, "result")[0]
            self.assertEqual((result["engine"], result["device"], result["modelPath"]), ("tiny", "cpu", out))
            self.assertTrue(tiny.is_model_dir(out))
            self.assertFalse(os.path.exists(out + ".tmp"))
            model, tok = tiny.load(out)
            self.assertEqual(model.cfg.d_model, 32)
            self.assertTrue({"zebra", "quokka"} <= {p.strip() for p in tok.vocab}, "the data's words are in the vocabulary")
            trained = subprocess.run(
                [PYTHON, "-m", "stoker_fire.train", "--backend", "auto", "--device", "cpu", "--model-name-or-path", out, "--data", data,
                 "--max-steps", "2", "--per-device-train-batch-size", "2", "--save-steps", "2", "--output-dir", os.path.join(tmp, "base")],
                env=payload_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            self.assertEqual(trained.returncode, 0, trained.stderr)
            result = of_type(events(trained.stdout), "result")[0]
            self.assertEqual((result["engine"], result["steps"]), ("tiny", 2))

    def test_hf_without_transformers_is_missing_dependency_before_writing(self):
        try:
            import transformers  # noqa: F401

            self.skipTest("transformers is installed here")
        except ImportError:
            pass
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "model")
            done = subprocess.run(
                [PYTHON, "-m", "stoker_fire.init_model", "--backend", "hf", "--device", "cpu", "--out", out],
                env=payload_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            self.assertEqual(done.returncode, exit_codes.MISSING_DEPENDENCY, done.stderr)
            self.assertFalse(os.path.exists(out))
