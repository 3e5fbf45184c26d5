"""The hf backend's checks before the model loads (stoker_fire.hf_preflight), with the module
lookups replaced (importlib.util.find_spec) as the machine has no transformers, flash-attn or
deepspeed: the attention fallback, missing modules, DeepSpeed asked for and missing, and the
order under ZeRO-3 (TrainingArguments before the model, so it loads sharded)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
from unittest import mock

import torch  # noqa: F401 - train() imports it; imported here first, outside the fakes

from stoker_payload import exit_codes, report
from stoker_payload.exit_codes import PayloadError

from stoker_fire import hf_preflight, hf_train, train

from ..helpers import PYTHON, REPO_ROOT, SRC_DIR, events, of_type, payload_env

ZERO3 = str(REPO_ROOT / "training-configs" / "fire" / "zero3.json")


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def without(*absent):
    """find_spec as on a machine where only the modules named in `absent` are not installed."""
    return mock.patch("importlib.util.find_spec", side_effect=lambda name, *_a, **_k: None if name in absent else object())


class Base(unittest.TestCase):
    def setUp(self):
        self.sink = _Sink()
        self.reporter = report.Reporter(self.sink, enabled=True)

    def logs(self):
        return of_type(events(self.sink.text), "log")


class AttentionTest(Base):
    def test_flash_attention_falls_back_to_sdpa_without_flash_attn_saying_so(self):
        with without("flash_attn"):
            self.assertEqual(hf_preflight.attention("flash_attention_2", self.reporter, cuda=True), "sdpa")
        (log,) = self.logs()
        self.assertEqual(log["level"], "warn")
        self.assertIn("flash_attn module is not installed", log["message"])
        self.assertIn("using sdpa", log["message"])

    def test_flash_attention_without_cuda_falls_back_too(self):
        with without():
            self.assertEqual(hf_preflight.attention("flash_attention_2", self.reporter, cuda=False), "sdpa")
        self.assertIn("no CUDA device", self.logs()[0]["message"])

    def test_what_is_there_is_used_as_asked_without_a_word(self):
        with without():
            self.assertEqual(hf_preflight.attention("flash_attention_2", self.reporter, cuda=True), "flash_attention_2")
        with without("flash_attn"):
            for asked in ("sdpa", "eager", None, ""):
                self.assertEqual(hf_preflight.attention(asked, self.reporter, cuda=True), asked or None)
        self.assertEqual(self.logs(), [])


class ModulesTest(Base):
    def cfg(self, *argv):
        return train.parse_args(["--model-name-or-path", "/m", "--data", "x.json", *argv])

    def test_every_missing_module_is_named_in_one_missing_dependency(self):
        with without("accelerate", "PIL"):
            with self.assertRaises(PayloadError) as caught:
                hf_preflight.preflight(self.cfg(), "/out", self.reporter, cuda=True)
        self.assertEqual(caught.exception.code_name, "MISSING_DEPENDENCY")
        self.assertFalse(caught.exception.retryable)
        self.assertIn("accelerate, PIL", caught.exception.message)
        self.assertIn("pip install 'accelerate pillow'", caught.exception.message)

    def test_deepspeed_asked_for_and_not_installed_fails_at_once(self):
        with without("deepspeed"):
            with self.assertRaises(PayloadError) as caught:
                hf_preflight.preflight(self.cfg("--deepspeed", ZERO3), "/out", self.reporter, cuda=True)
            self.assertEqual(caught.exception.code_name, "MISSING_DEPENDENCY")
            self.assertIn("deepspeed", caught.exception.message)
            self.assertIn("deepspeed_fallback: ddp", caught.exception.message)
            # deepspeed_plan alone says which file and stage were asked for
            with self.assertRaises(PayloadError) as alone:
                hf_preflight.deepspeed_plan(self.cfg("--deepspeed", ZERO3), self.reporter)
            self.assertIn(f"deepspeed {ZERO3} (ZeRO stage 3) was asked for", alone.exception.message)

    def test_deepspeed_fallback_ddp_trains_without_it_saying_so(self):
        with without("deepspeed", "flash_attn"):
            plan = hf_preflight.preflight(
                self.cfg("--deepspeed", ZERO3, "--deepspeed-fallback", "ddp", "--attn-implementation", "flash_attention_2"),
                "/out",
                self.reporter,
                cuda=True,
            )
        self.assertEqual(plan, hf_preflight.Plan("sdpa", None, 0, None))
        warnings = [log["message"] for log in self.logs() if log["level"] == "warn"]
        self.assertEqual(len(warnings), 2, warnings)  # one for DeepSpeed, one for the attention
        self.assertIn("WITHOUT DeepSpeed", warnings[0])

    def test_deepspeed_installed_is_used_with_its_stage(self):
        with without():
            plan = hf_preflight.preflight(self.cfg("--deepspeed", ZERO3, "--report-to", "tensorboard"), "/out", self.reporter, cuda=True)
        self.assertEqual(plan, hf_preflight.Plan(None, ZERO3, 3, "/out/tensorboard"))
        self.assertEqual(self.logs(), [])

    def test_a_deepspeed_config_that_is_missing_or_not_json(self):
        tmp = tempfile.mkdtemp(prefix="stoker-preflight-")
        self.addCleanup(shutil.rmtree, tmp, True)
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w", encoding="utf-8") as fh:
            fh.write("[1, 2")
        for path, code in ((os.path.join(tmp, "none.json"), "MISSING_INPUT"), (bad, "BAD_CONFIG")):
            with without(), self.assertRaises(PayloadError) as caught:
                hf_preflight.deepspeed_plan(self.cfg("--deepspeed", path), self.reporter)
            self.assertEqual(caught.exception.code_name, code, path)

    def test_the_option_is_checked(self):
        with mock.patch("sys.stderr"), self.assertRaises(SystemExit) as caught:
            self.cfg("--deepspeed-fallback", "cpu")
        self.assertEqual(caught.exception.code, exit_codes.USAGE)
        problems = train.TrainConfig(data="x.json", deepspeed_fallback="cpu").validate()
        self.assertEqual(problems, ["deepspeed_fallback: one of none, ddp, got cpu"])


class _Stop(Exception):
    """Raised by the fake model loader once it has recorded the call."""


def _fake(name, **attrs):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    return module


class Zero3OrderTest(unittest.TestCase):
    """train() builds the TrainingArguments (which register a ZeRO-3 config with transformers)
    before the model, so from_pretrained loads it sharded. Fake transformers, peft, accelerate
    and deepspeed modules record the calls; the model loader stops the run."""

    def run_train(self, *argv, absent=()):
        calls = []

        def training_arguments(**kwargs):
            calls.append(("TrainingArguments", kwargs.get("deepspeed")))
            return types.SimpleNamespace(**kwargs)

        def processor(name, **_kwargs):
            calls.append(("processor", name))
            return object()

        def model(name, **kwargs):
            calls.append(("model", name, kwargs.get("attn_implementation")))
            raise _Stop()

        transformers = _fake(
            "transformers",
            TrainingArguments=training_arguments,
            AutoProcessor=types.SimpleNamespace(from_pretrained=processor),
            LlavaNextForConditionalGeneration=types.SimpleNamespace(from_pretrained=model),
        )
        modules = {"transformers": transformers, "peft": _fake("peft"), "accelerate": _fake("accelerate")}
        if "deepspeed" not in absent:
            modules["deepspeed"] = _fake("deepspeed")
        tmp = tempfile.mkdtemp(prefix="stoker-zero3-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = train.parse_args(["--model-name-or-path", tmp, "--data", "x.json", "--max-steps", "5", *argv])
        sink = _Sink()
        # Only the fakes come and go: a real module imported meanwhile (torch's parts) stays.
        saved = {name: sys.modules.get(name) for name in modules}
        sys.modules.update(modules)
        try:
            with without(*absent), self.assertRaises(_Stop):
                hf_train.train(cfg, [], None, tmp, None, report.Reporter(sink, enabled=True))
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        return calls, tmp, events(sink.text)

    def test_training_arguments_with_the_zero3_config_come_before_the_model(self):
        calls, tmp, _ = self.run_train("--deepspeed", ZERO3, "--attn-implementation", "sdpa")
        self.assertEqual(calls, [("TrainingArguments", ZERO3), ("processor", tmp), ("model", tmp, "sdpa")])

    def test_the_fallbacks_reach_the_model_and_the_arguments(self):
        calls, tmp, evts = self.run_train(
            "--deepspeed", ZERO3, "--deepspeed-fallback", "ddp", "--attn-implementation", "flash_attention_2", absent=("deepspeed", "flash_attn")
        )
        self.assertEqual(calls, [("TrainingArguments", None), ("processor", tmp), ("model", tmp, "sdpa")])
        self.assertEqual(len([e for e in of_type(evts, "log") if e["level"] == "warn"]), 2)

    def test_a_missing_deepspeed_stops_before_anything_is_built(self):
        with self.assertRaises(PayloadError) as caught:
            self.run_train("--deepspeed", ZERO3, absent=("deepspeed",))
        self.assertEqual(caught.exception.code_name, "MISSING_DEPENDENCY")


class ExitCodeTest(unittest.TestCase):
    """The whole payload, as the worker runs it: transformers, peft and accelerate present (empty
    packages on PYTHONPATH), deepspeed not: exit MISSING_DEPENDENCY (68) naming it, no traceback."""

    def test_train_exits_missing_dependency_naming_deepspeed(self):
        if importlib.util.find_spec("deepspeed") is not None:
            self.skipTest("deepspeed is installed here")
        tmp = tempfile.mkdtemp(prefix="stoker-fire-nods-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for name in ("transformers", "peft", "accelerate"):
            os.makedirs(os.path.join(tmp, "mods", name))
            open(os.path.join(tmp, "mods", name, "__init__.py"), "w").close()
        env = payload_env(PYTHONPATH=os.pathsep.join([os.path.join(tmp, "mods"), str(SRC_DIR)]), STOKER_OUTPUT_DIR=os.path.join(tmp, "out"))
        done = subprocess.run(
            [PYTHON, "-m", "stoker_fire.train", "--backend", "hf", "--synthetic-samples", "2", "--deepspeed", ZERO3],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(done.returncode, exit_codes.MISSING_DEPENDENCY, done.stderr)
        self.assertIn("deepspeed", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        (log,) = of_type(events(done.stdout), "log")
        self.assertIn("MISSING_DEPENDENCY", log["message"])


if __name__ == "__main__":
    unittest.main()
