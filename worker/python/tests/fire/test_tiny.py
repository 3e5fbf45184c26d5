"""The tiny backend (stoker_fire/tiny.py) for real, on the CPU: its reversible tokenizer, the one
rendering both training and generation use, training with the core protocol's events,
checkpoints that resume exactly, SIGTERM -> checkpoint -> PREEMPTED, batched greedy generation
equal to one prompt at a time, and stoker_fire.train / stoker_fire.selfplay with --backend tiny."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from stoker_payload import exit_codes, signals
from stoker_payload.exit_codes import PayloadError, Preempted
from stoker_payload.report import Reporter

from stoker_fire import backends, prompts, synth, tiny, train
from stoker_fire.parsing import parse_student
from stoker_fire.selfplay_rules import Prompt

from ..helpers import PY_DIR, PYTHON, events, of_type, payload_env
from ..server_helpers import server_events

_FIXTURE: dict = {}


def setUpModule():
    import torch

    torch.set_num_threads(1)


def tearDownModule():
    if "tmp" in _FIXTURE:
        shutil.rmtree(_FIXTURE["tmp"], ignore_errors=True)


def fixture() -> dict:
    """24 synthetic dialogues, their student view, and a model trained on it for 80 steps
    (made once for the whole module)."""
    if not _FIXTURE:
        tmp = tempfile.mkdtemp(prefix="stoker-fire-tiny-")
        summary = synth.write_set(synth.SynthConfig(n=24, out=os.path.join(tmp, "data"), seed=5))
        dialogues = [json.loads(line) for line in Path(summary["file"]).read_text().splitlines()]
        _FIXTURE.update(tmp=tmp, images=summary["imageRoot"], dialogues=dialogues, records=[synth.student_view(r) for r in dialogues])
        out = os.path.join(tmp, "trained")
        result, _ = run_train(["--max-steps", "80", "--learning-rate", "5e-3"], _FIXTURE["records"], out)
        _FIXTURE.update(model_dir=os.path.join(out, "final"), result=result)
    return _FIXTURE


def config(argv=()):
    return train.parse_args(["--backend", "tiny", "--model-name-or-path", "tiny-new", "--data", "unused.json", "--per-device-train-batch-size", "8", "--logging-steps", "5", "--save-steps", "100", "--seed", "3", *argv])


def run_train(argv, records, out_dir, resume_from=None):
    """tiny.train in-process; (result, events)."""
    stream = io.StringIO()
    result = tiny.train(config(argv), records, fixture_images(), out_dir, resume_from, Reporter(stream, enabled=True))
    return result, events(stream.getvalue())


def fixture_images():
    return _FIXTURE["images"]


def state_dict(directory):
    import torch

    return torch.load(os.path.join(directory, "model.pt"))


class TokenizerTest(unittest.TestCase):
    def test_pieces_join_back_to_the_text(self):
        for text in ["Thought: I count 3 red dots.\nAnswer: 3", "  two  spaces\tand a tab\n\n", "héllo, wörld <image>!", "", "Score: 10.\nFeedback: x;y", prompts.TEACHER_INSTRUCTION + "\nok"]:
            with self.subTest(text=text):
                self.assertEqual("".join(tiny.pieces(text)), text)
        self.assertEqual(tiny.pieces("Answer: far left"), ["Answer", ":", " far", " left"])
        self.assertEqual(tiny.pieces(f"a\n{prompts.TEACHER_INSTRUCTION}"), ["a", "\n", prompts.TEACHER_INSTRUCTION])

    def test_every_text_of_a_synthetic_set_round_trips_through_its_vocabulary(self):
        dialogues = fixture()["dialogues"]
        views = [synth.student_view(r) for r in dialogues] + [t for r in dialogues for t in synth.teacher_view(r)] + [synth.answers_view(r) for r in dialogues]
        tok = tiny.Tokenizer(tiny.base_vocabulary()).extended(tiny.record_texts(views))
        for text in tiny.record_texts(views):
            ids = tok.encode(text)
            self.assertNotIn(tok.unk, ids, text)
            self.assertEqual(tok.decode(i for i in ids if i != tok.image), text.replace(prompts.IMAGE_TOKEN, ""))
        self.assertEqual(tok.encode(prompts.TEACHER_INSTRUCTION), [tok.index[prompts.TEACHER_INSTRUCTION]])

    def test_an_unknown_word_is_unk_and_decodes_to_nothing(self):
        tok = tiny.Tokenizer(tiny.base_vocabulary())
        ids = tok.encode("Answer: zebra")
        self.assertEqual(ids[-1], tok.unk)
        self.assertEqual(tok.decode(ids), "Answer:")
        self.assertEqual(tok.unknown("Answer: zebra"), [" zebra"])

    def test_a_vocabulary_starts_with_the_special_tokens(self):
        with self.assertRaises(ValueError):
            tiny.Tokenizer(["a", "b"])
        with self.assertRaises(ValueError):
            tiny.Tokenizer([*tiny.SPECIALS, "x", "x"])


class RenderTest(unittest.TestCase):
    def setUp(self):
        self.tok = tiny.Tokenizer(tiny.base_vocabulary()).extended(["What color? red blue Look again"])
        self.messages = [prompts.human("<image>\nWhat color?"), prompts.gpt("Answer: red"), prompts.human("Look again."), prompts.gpt("Answer: blue")]

    def test_the_targets_are_the_gpt_turns_and_their_end_of_turn(self):
        ids, target = tiny.render(self.tok, self.messages, generation=False)
        self.assertEqual(ids.count(self.tok.image), tiny.IMAGE_TOKENS)
        learned = [self.tok.vocab[i] for i, t in zip(ids, target) if t]
        self.assertEqual(learned, ["Answer", ":", " red", tiny.EOT, "Answer", ":", " blue", tiny.EOT])

    def test_a_generation_prompt_is_the_training_text_up_to_the_answer(self):
        train_ids, _ = tiny.render(self.tok, self.messages, generation=False)
        prompt_ids, target = tiny.render(self.tok, self.messages[:-1], generation=True)
        self.assertEqual(prompt_ids, train_ids[: len(prompt_ids)])
        self.assertEqual(prompt_ids[-1], self.tok.gpt)
        self.assertFalse(any(target))
        with self.assertRaises(ValueError):
            tiny.render(self.tok, self.messages, generation=True)

    def test_the_image_mark(self):
        plain = [prompts.human("What color?"), prompts.gpt("red")]
        self.assertEqual(tiny.with_image_mark(plain, True, "r")[0]["value"], "<image>\nWhat color?")
        self.assertEqual(tiny.with_image_mark(plain, False, "r"), plain)
        with self.assertRaises(ValueError):
            tiny.with_image_mark(self.messages, False, "r")
        with self.assertRaises(ValueError):
            tiny.with_image_mark([prompts.human("<image><image>")], True, "r")


class TrainTest(unittest.TestCase):
    def setUp(self):
        self.fx = fixture()
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-tiny-train-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_the_loss_falls_and_the_events_are_the_protocols(self):
        result = self.fx["result"]
        self.assertEqual((result["backend"], result["steps"], result["startStep"], result["samples"]), ("tiny", 80, 0, 24))
        self.assertTrue(result["lossFell"], result)
        self.assertLess(result["lastLoss"], result["firstLoss"] * 0.7)
        self.assertIsNone(result["adapter"])
        self.assertEqual(result["modelPath"], self.fx["model_dir"])
        model, tok = tiny.load(self.fx["model_dir"])
        self.assertEqual(len(tok), result["vocabSize"])
        self.assertEqual(tiny.count_parameters(model), result["parameters"])

        out = os.path.join(self.tmp, "run")
        result, evts = run_train(["--max-steps", "6", "--save-steps", "4", "--logging-steps", "2"], self.fx["records"][:10], out)
        progress = of_type(evts, "progress")
        self.assertEqual([e["step"] for e in progress], [1, 2, 3, 4, 5, 6])
        self.assertEqual({e["totalSteps"] for e in progress}, {6})
        self.assertEqual([e["step"] for e in of_type(evts, "metrics") if "loss" in e], [2, 4, 6])
        self.assertEqual([(e["step"], os.path.basename(e["path"])) for e in of_type(evts, "checkpoint")], [(4, "checkpoint-4"), (6, "checkpoint-6")])
        self.assertEqual({e["name"] for e in of_type(evts, "artifact")}, {"model", "metrics"})
        self.assertEqual(len(json.loads(Path(out, "metrics.json").read_text())["history"]), 3)

    def test_a_resumed_run_continues_the_step_and_ends_where_an_unbroken_run_ends(self):
        import torch

        records = self.fx["records"][:12]
        whole = os.path.join(self.tmp, "whole")
        run_train(["--max-steps", "6", "--save-steps", "3"], records, whole)
        resumed = os.path.join(self.tmp, "resumed")
        result, evts = run_train(["--max-steps", "6", "--save-steps", "3"], records, resumed, resume_from=os.path.join(whole, "checkpoint-3"))
        self.assertEqual((result["startStep"], result["steps"]), (3, 6))
        self.assertEqual([e["step"] for e in of_type(evts, "progress")], [4, 5, 6])
        a, b = state_dict(os.path.join(whole, "final")), state_dict(os.path.join(resumed, "final"))
        self.assertEqual(set(a), set(b))
        for name in a:
            self.assertTrue(torch.allclose(a[name], b[name], atol=1e-6), name)
        state = json.loads(Path(resumed, "checkpoint-6", "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], 6)

    def test_a_stop_request_writes_a_checkpoint_then_preempts(self):
        signals.reset()
        self.addCleanup(signals.reset)
        signals.request_stop()
        out = os.path.join(self.tmp, "stopped")
        stream = io.StringIO()
        with self.assertRaises(Preempted):
            tiny.train(config(["--max-steps", "10"]), self.fx["records"][:8], self.fx["images"], out, None, Reporter(stream, enabled=True))
        self.assertEqual([e["step"] for e in of_type(events(stream.getvalue()), "checkpoint")], [1])
        self.assertTrue(tiny.is_model_dir(os.path.join(out, "checkpoint-1")))
        self.assertFalse(os.path.exists(os.path.join(out, "final")))

    def test_training_from_a_model_directory_keeps_its_weights_and_grows_its_vocabulary(self):
        import torch

        records = [dict(r, conversations=[*r["conversations"][:-1], prompts.gpt("Thought: zebra.\nAnswer: zebra")]) for r in self.fx["records"][:4]]
        out = os.path.join(self.tmp, "more")
        result, _ = run_train(["--model-name-or-path", self.fx["model_dir"], "--max-steps", "1", "--learning-rate", "1e-9"], records, out)
        before, _ = tiny.load(self.fx["model_dir"])
        after, tok = tiny.load(os.path.join(out, "final"))
        self.assertEqual(result["vocabSize"], len(tok))
        self.assertIn(" zebra", tok.index)
        old = before.tok.weight.shape[0]
        self.assertGreater(after.tok.weight.shape[0], old)
        self.assertTrue(torch.allclose(after.tok.weight[:old], before.tok.weight, atol=1e-4))

    def test_what_cannot_be_trained_or_loaded_is_named(self):
        cases = [
            ("a missing image", lambda: run_train(["--max-steps", "1"], [dict(self.fx["records"][0], image="gone.png")], self.tmp), "BAD_DATA", "gone.png"),
            ("a model path that is not there", lambda: tiny.load("/nonexistent/model"), "UNKNOWN_MODEL", "/nonexistent/model"),
            ("a directory that is not a tiny model", lambda: tiny.load(self.tmp), "UNKNOWN_MODEL", "not a tiny model"),
            ("an adapter", lambda: tiny.make_generator("tiny-new", seed=0, adapter="/x", image_root=None, max_new_tokens=4, batch_size=1), "BAD_CONFIG", "no adapters"),
            ("a checkpoint without state", lambda: run_train(["--max-steps", "2"], self.fx["records"][:2], self.tmp, resume_from=self.fx["model_dir"]), "BAD_DATA", "not a tiny-backend checkpoint"),
            ("a record with two images", lambda: run_train(["--max-steps", "1"], [dict(self.fx["records"][0], conversations=[prompts.human("<image><image>"), prompts.gpt("x")])], self.tmp), "BAD_DATA", "2 <image> marks"),
        ]
        for name, call, code, words in cases:
            with self.subTest(name):
                with self.assertRaises(PayloadError) as caught:
                    call()
                self.assertEqual(caught.exception.code_name, code)
                self.assertIn(words, caught.exception.message)


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        fx = fixture()
        cls.images = fx["images"]
        cls.dialogues = fx["dialogues"]
        cls.gen = tiny.make_generator(fx["model_dir"], seed=0, adapter=None, image_root=cls.images, max_new_tokens=20, batch_size=16)

    def prompts(self):
        out = []
        for r in self.dialogues[:12]:
            view = synth.student_view(r)["conversations"]
            out.append(Prompt(r["id"], "student", r["image"], tuple(view[:1])))
            out.append(Prompt(r["id"] + "-2", "student", r["image"], tuple(view[:3])))
        teacher = synth.teacher_view(self.dialogues[0])[0]["conversations"][:3]
        out.append(Prompt("t", "teacher", None, tuple(teacher)))
        return out

    def test_batched_greedy_decoding_equals_one_prompt_at_a_time(self):
        batch = self.prompts()
        self.gen.batch_size = 16
        together = self.gen(batch)
        self.gen.batch_size = 1
        alone = self.gen(batch)
        self.gen.batch_size = 16
        self.assertEqual(together, alone)
        self.assertEqual(len(together), len(batch))

    def test_a_trained_model_answers_in_the_student_format_and_stops_at_the_end_of_its_turn(self):
        answers = self.gen(self.prompts()[:4:2])
        for text in answers:
            thought, answer = parse_student(text)
            self.assertTrue(thought and answer, text)
            self.assertNotIn("\n", answer, "generation stops at the end of the turn")

    def test_max_new_tokens_is_honoured(self):
        short = tiny.make_generator(_FIXTURE["model_dir"], seed=0, adapter=None, image_root=self.images, max_new_tokens=3, batch_size=8)
        for text in short(self.prompts()):
            self.assertLessEqual(len(short.tok.encode(text)), 3)

    def test_a_new_random_model_needs_no_files(self):
        gen = tiny.make_generator("tiny-random", seed=1, adapter=None, image_root=None, max_new_tokens=5, batch_size=4)
        texts = gen([Prompt("t", "teacher", None, tuple(prompts.teacher_messages("What?", "Red.", "Answer: blue")))])
        self.assertEqual(len(texts), 1)
        self.assertIsInstance(texts[0], str)
        self.assertIn("tiny", backends.KNOWN)


class CommandTest(unittest.TestCase):
    """stoker_fire.train and stoker_fire.selfplay with --backend tiny, as the worker starts them."""

    def setUp(self):
        self.fx = fixture()
        self.tmp = tempfile.mkdtemp(prefix="stoker-fire-tiny-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_module(self, module, *args, stdin=None):
        env = payload_env(OMP_NUM_THREADS="1")
        return subprocess.run([PYTHON, "-m", module, *args], cwd=PY_DIR, env=env, input=stdin, capture_output=True, text=True, timeout=120)

    def test_fire_train_with_the_tiny_backend(self):
        data = os.path.join(self.tmp, "student.jsonl")
        Path(data).write_text("".join(json.dumps(r) + "\n" for r in self.fx["records"][:8]))
        out = os.path.join(self.tmp, "out")
        done = self.run_module("stoker_fire.train", "--backend", "tiny", "--model-name-or-path", "tiny-new", "--data", data, "--image-root", self.fx["images"], "--max-steps", "3", "--per-device-train-batch-size", "4", "--threads", "1", "--output-dir", out)
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        (result,) = of_type(events(done.stdout), "result")
        self.assertEqual((result["backend"], result["steps"]), ("tiny", 3))
        self.assertTrue(tiny.is_model_dir(os.path.join(out, "final")))
        lost = self.run_module("stoker_fire.train", "--backend", "tiny", "--model-name-or-path", "/nonexistent/tiny", "--data", data, "--image-root", self.fx["images"], "--output-dir", out)
        self.assertEqual(lost.returncode, exit_codes.UNKNOWN_MODEL, lost.stderr)

    def test_fire_selfplay_with_the_tiny_backend_serves_a_shard(self):
        seeds = os.path.join(self.tmp, "seeds.jsonl")
        summary = synth.write_set(synth.SynthConfig(n=6, out=self.tmp, seed=5, kind="seeds", start_id=100))
        os.replace(summary["file"], seeds)
        request = json.dumps({"type": "shard", "id": "s1", "input": seeds, "output": os.path.join(self.tmp, "s1.jsonl")}) + "\n"
        model = self.fx["model_dir"]
        done = self.run_module(
            "stoker_fire.selfplay", "--backend", "tiny", "--student-model", model, "--teacher-model", "tiny-new", "--image-root", summary["imageRoot"],
            "--batch-size", "4", "--max-new-tokens", "16", "--threads", "1", stdin=request,
        )  # fmt: skip
        self.assertEqual(done.returncode, exit_codes.SUCCESS, done.stderr)
        evts = server_events(done.stdout)
        self.assertEqual(len(of_type(evts, "ready")), 1)
        (answer,) = [e for e in evts if e["type"] in ("done", "failed")]
        self.assertEqual((answer["type"], answer["id"]), ("done", "s1"), answer)
        (stats,) = [e for e in evts if e["type"] == "metrics" and "seeds" in e]
        self.assertEqual(stats["seeds"], 6)
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "s1.jsonl")))

    def test_adapters_are_bad_config_for_tiny(self):
        done = self.run_module("stoker_fire.selfplay", "--backend", "tiny", "--student-adapter", "/x")
        self.assertEqual(done.returncode, exit_codes.BAD_CONFIG, done.stderr)
        self.assertIn("no adapters", done.stderr)


if __name__ == "__main__":
    unittest.main()
