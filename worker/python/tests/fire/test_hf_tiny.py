"""The hf backend for real on a tiny random LLaVA-NeXT, on the CPU. Skipped (with the reason)
where transformers/peft are not installed, as on the default development machine; the GPU
check (bench/gpu-check.sh) runs the same code paths on CUDA."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import tempfile
import unittest

from stoker_payload.report import Reporter

from stoker_fire import llava_data, train
from stoker_fire.prompts import student_messages
from stoker_fire.selfplay_rules import Prompt

from ..helpers import events, of_type

HAVE_HF = all(importlib.util.find_spec(name) is not None for name in ("transformers", "peft", "PIL"))
REASON = "transformers and peft are not installed (pip install 'transformers>=4.57' peft accelerate pillow)"


@unittest.skipUnless(HAVE_HF, REASON)
class TinyModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import torch

        from stoker_fire import hf

        torch.set_num_threads(2)
        cls.hf = hf
        cls.tmp = tempfile.mkdtemp(prefix="stoker-fire-tiny-")
        cls.records = llava_data.synthetic_conversations(8, seed=0, image_dir=cls.tmp)
        cls.model, cls.processor = hf.load_model("tiny-random", seed=1)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_tokenizer_is_byte_level_with_the_image_token(self):
        tok = self.processor.tokenizer
        self.assertEqual([tok.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "</s>", "<image>")], [0, 1, 2, 3])
        text = "héllo, wörld <image>!"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        self.assertIn(3, ids)
        self.assertEqual(tok.decode(ids), text)

    def test_encoded_conversations_train_with_a_finite_loss(self):
        import torch

        hf = self.hf
        items = [hf.encode_conversation(self.processor, r, self.tmp, 3072) for r in self.records[:4]]
        for item in items:
            self.assertEqual(len(item["input_ids"]), len(item["labels"]))
            self.assertGreater(sum(label != -100 for label in item["labels"]), 0)
        batch = hf.collate(items, self.processor.tokenizer.pad_token_id, torch.float32)
        loss = self.model(**batch).loss
        self.assertTrue(torch.isfinite(loss))

    def test_batched_generation_equals_one_at_a_time(self):
        gen = self.hf.Generator(self.model, self.processor, image_root=self.tmp, max_new_tokens=6, batch_size=8)
        prompts = [
            Prompt(r["id"], "student", r["image"], tuple(student_messages("What color is it?" + "?" * i, [], [])))
            for i, r in enumerate(self.records[:4])
        ]
        batched = gen(prompts)
        gen.batch_size = 1
        self.assertEqual(batched, [gen([p])[0] for p in prompts])

    def test_train_writes_a_checkpoint_and_resumes_from_it(self):
        out = os.path.join(self.tmp, "run")
        argv = ["--max-steps", "2", "--save-steps", "2", "--lora-r", "4", "--lora-alpha", "8", "--per-device-train-batch-size", "2", "--logging-steps", "1"]
        cfg = train.parse_args(argv)
        stream = io.StringIO()
        reporter = Reporter(stream, enabled=True)
        first = self.hf.train(cfg, self.records, self.tmp, out, None, reporter)
        self.assertEqual((first["steps"], first["startStep"]), (2, 0))
        ckpt = os.path.join(out, "checkpoint-2")
        self.assertEqual([(e["path"], e["step"]) for e in of_type(events(stream.getvalue()), "checkpoint")], [(ckpt, 2)])
        again = self.hf.train(train.parse_args(argv[:1] + ["3"] + argv[2:]), self.records, self.tmp, out, ckpt, reporter)
        self.assertEqual((again["steps"], again["startStep"]), (3, 2))


if __name__ == "__main__":
    unittest.main()
