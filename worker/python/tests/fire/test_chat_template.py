"""Chat templates (stoker_fire.chat_template, jinja2) against test/fixtures/fire-chat-template-vectors.json,
the vectors the TypeScript renderer is checked against too (test/unit/fire-chat-template.test.ts);
the training mask of hf_data.encode_conversation on those vectors; where transformers is
installed, the same vectors through a LlavaNextProcessor's own apply_chat_template.

The mask tests run without transformers: the processor is the smallest object with what
encode_conversation reads (chat_template, tokenizer, __call__ with images), around a real
byte-level tokenizer (UTF-8 bytes; the template's special tokens as single ids), so decoding
the labelled ids must give back exactly the assistant targets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from stoker_payload.exit_codes import PayloadError

from stoker_fire import hf_data
from stoker_fire.chat_template import ChatTemplate, ChatTemplateError, builtin, builtin_templates, chat_messages, special_tokens
from stoker_fire.prompts import IMAGE_TOKEN, gpt, human

from ..helpers import PYTHON, REPO_ROOT, payload_env

VECTORS = REPO_ROOT / "test" / "fixtures" / "fire-chat-template-vectors.json"
HAVE_HF = all(importlib.util.find_spec(name) is not None for name in ("transformers", "PIL"))
HAVE_TORCH = all(importlib.util.find_spec(name) is not None for name in ("torch", "PIL"))


def load_fixture() -> dict:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


class VectorsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fixture = load_fixture()

    def template(self, name: str) -> ChatTemplate:
        return ChatTemplate(self.fixture["templates"][name], self.fixture["specialTokens"], name=name)

    def test_the_shipped_template_is_the_one_the_vectors_render(self):
        self.assertEqual(builtin("llama3-llava-next"), self.fixture["templates"]["llama3-llava-next"])
        self.assertIn("llava-hf/llama3-llava-next-8b-hf", builtin_templates()["llama3-llava-next"]["source"])

    def test_every_vector(self):
        self.assertGreaterEqual(len(self.fixture["vectors"]), 12)
        for v in self.fixture["vectors"]:
            with self.subTest(v["name"]):
                self.assertEqual(chat_messages(v["conversation"]), v["messages"])
                tpl = self.template(v["template"])
                if "error" in v:
                    with self.assertRaises(ChatTemplateError) as caught:
                        tpl.render(v["messages"])
                    self.assertIn(v["error"], str(caught.exception))
                    continue
                self.assertEqual(tpl.render(v["messages"], add_generation_prompt=v["addGenerationPrompt"]), v["text"])
                if v["addGenerationPrompt"] and v["conversation"][-1]["from"] == "human":
                    self.assertEqual(tpl.prompt(v["conversation"]), v["text"])
                if "segmentsError" in v:
                    with self.assertRaises(ChatTemplateError) as caught:
                        tpl.segments(v["conversation"])
                    self.assertIn(v["segmentsError"], str(caught.exception))
                elif "segments" in v:
                    segments = tpl.segments(v["conversation"])
                    self.assertEqual([list(s) for s in segments], v["segments"])
                    self.assertEqual("".join(text for text, _ in segments), v["text"])

    def test_the_end_of_an_assistant_turn(self):
        for name, end in self.fixture["endOfTurn"].items():
            self.assertEqual(self.template(name).end_of_turn(), end)

    def test_the_generation_prompt_of_a_student_is_the_text_before_its_training_target(self):
        # What self-play prompts with is exactly what training conditioned the target on.
        tpl = ChatTemplate(builtin("llama3-llava-next"))
        conversation = [human(f"{IMAGE_TOKEN}\nWhat color?"), gpt("Thought: red\nAnswer: red"), human("Look again."), gpt("blue")]
        segments = tpl.segments(conversation)
        before_last_target = "".join(text for text, _ in segments[:-1])
        self.assertEqual(tpl.prompt(conversation[:3]), before_last_target)
        self.assertEqual(segments[-1], ("\nblue<|eot_id|>", True))

    def test_bad_input_is_named(self):
        with self.assertRaisesRegex(ValueError, r"conversation\[1\]\.from: must be 'human' or 'gpt', got 'system'"):
            chat_messages([human("q"), {"from": "system", "value": "x"}])
        with self.assertRaisesRegex(ValueError, "more than one <image> mark"):
            chat_messages([human("<image>\n<image> twice")])
        with self.assertRaisesRegex(ValueError, "a generation prompt must end with a human message"):
            ChatTemplate(builtin("llama3-llava-next")).prompt([human("q"), gpt("a")])
        with self.assertRaisesRegex(ChatTemplateError, "model x does not compile"):
            ChatTemplate("{% for m in messages %}", name="model x")
        with self.assertRaisesRegex(ValueError, "unknown chat template 'vicuna'; known: llama3-llava-next"):
            builtin("vicuna")

    def test_the_template_sees_the_bos_token_and_the_tokenizer_decides(self):
        tpl = ChatTemplate("{{ bos_token }}{{ messages[0]['content'][0]['text'] }}", {"bos_token": "<s>"})
        text = tpl.render(chat_messages([human("hi")]))
        self.assertEqual(text, "<s>hi")
        self.assertTrue(tpl.starts_with_bos(text))
        self.assertFalse(ChatTemplate(builtin("llama3-llava-next"), {"bos_token": "<s>"}).starts_with_bos(ChatTemplate(builtin("llama3-llava-next")).prompt([human("q")])))


class ByteTokenizer:
    """A real byte-level tokenizer: the special tokens first (one id each), then one id per UTF-8
    byte. What encode_conversation needs of a transformers tokenizer, and nothing else."""

    def __init__(self, specials: list[str], bos: str = "<s>", eos: str = "</s>"):
        self.specials = list(dict.fromkeys([bos, eos, IMAGE_TOKEN, *specials]))
        self.bos_token, self.eos_token = bos, eos
        self.bos_token_id, self.eos_token_id = self.specials.index(bos), self.specials.index(eos)

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = []
        while text:
            special = next((s for s in self.specials if text.startswith(s)), None)
            if special:
                ids.append(self.specials.index(special))
                text = text[len(special) :]
            else:
                ids.extend(len(self.specials) + b for b in text[0].encode("utf-8"))
                text = text[1:]
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + self._encode(text)}

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.specials.index(token)

    def decode(self, ids: list[int]) -> str:
        out, pending = [], bytearray()
        for i in ids:
            if i >= len(self.specials):
                pending.append(i - len(self.specials))
                continue
            out.append(pending.decode("utf-8") + self.specials[i])
            pending = bytearray()
        return "".join(out) + pending.decode("utf-8")


class ByteProcessor:
    """chat_template + tokenizer + processor(text=[...], images=[...]): the image mark stays one
    id (a real processor expands it into the image's tokens; the mask logic is the same)."""

    def __init__(self, chat_template: str, tokenizer: ByteTokenizer):
        self.chat_template, self.tokenizer = chat_template, tokenizer

    def __call__(self, text, images, return_tensors, add_special_tokens):
        import torch

        ids = self.tokenizer(text[0], add_special_tokens=add_special_tokens)["input_ids"]
        width, height = images[0].size
        return {"input_ids": torch.tensor([ids]), "pixel_values": torch.zeros((1, 1, 3, 4, 4)), "image_sizes": torch.tensor([[height, width]])}


@unittest.skipUnless(HAVE_TORCH, "torch and Pillow are not installed")
class TrainingMaskTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from PIL import Image

        cls.fixture = load_fixture()
        cls.tmp = tempfile.mkdtemp(prefix="stoker-chat-template-")
        Image.new("RGB", (40, 30), (200, 30, 30)).save(os.path.join(cls.tmp, "red.png"))
        cls.tokenizer = ByteTokenizer(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def processor(self, name: str) -> ByteProcessor:
        return ByteProcessor(self.fixture["templates"][name], self.tokenizer)

    def encode(self, v: dict) -> dict:
        has_image = any(IMAGE_TOKEN in m["value"] for m in v["conversation"])
        record = {"id": v["name"], "conversations": v["conversation"], **({"image": "red.png"} if has_image else {})}
        processor = self.processor(v["template"])
        return hf_data.encode_conversation(processor, record, self.tmp, 100_000, hf_data.chat_template_of(processor))

    def test_the_labels_are_the_assistant_turns_of_every_vector(self):
        vectors = [v for v in self.fixture["vectors"] if "segments" in v]
        self.assertGreaterEqual(len(vectors), 7)
        for v in vectors:
            with self.subTest(v["name"]):
                item = self.encode(v)
                ids, labels = item["input_ids"], item["labels"]
                self.assertEqual(len(ids), len(labels))
                bos = [self.tokenizer.bos_token_id] if not v["text"].startswith("<s>") else []
                self.assertEqual(ids[: len(bos)], bos, "the tokenizer's bos once, unless the template wrote it")
                self.assertEqual(self.tokenizer.decode(ids[len(bos) :]), v["text"])
                targets = "".join(text for text, target in v["segments"] if target)
                self.assertEqual(self.tokenizer.decode([i for i, label in zip(ids, labels) if label != hf_data.IGNORE_INDEX]), targets)
                # Masked and unmasked alternate exactly at the segment borders.
                spans, at = [], 0
                for text, target in v["segments"]:
                    n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                    spans.append(labels[len(bos) + at : len(bos) + at + n])
                    self.assertEqual(all(label != hf_data.IGNORE_INDEX for label in spans[-1]), target)
                    at += n
                self.assertEqual(item["pixel_values"] is not None, IMAGE_TOKEN in v["text"])

    def test_a_template_that_ends_turns_with_nothing_gets_the_eos_token(self):
        source = "{% for m in messages %}{{ m['role'] + ': ' + m['content'][-1]['text'] + ' ' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
        processor = ByteProcessor(source, self.tokenizer)
        item = hf_data.encode_conversation(processor, {"id": 1, "conversations": [human("q"), gpt("a")]}, None, 1000)
        learned = [i for i, label in zip(item["input_ids"], item["labels"]) if label != hf_data.IGNORE_INDEX]
        self.assertEqual(self.tokenizer.decode(learned), "a </s>")

    def test_a_record_the_template_cannot_mark_is_bad_data_with_its_id(self):
        (v,) = [v for v in self.fixture["vectors"] if "segmentsError" in v]
        with self.assertRaises(PayloadError) as caught:
            self.encode(v)
        self.assertEqual(caught.exception.code_name, "BAD_DATA")
        self.assertIn(f"record {v['name']!r}", str(caught.exception))
        self.assertIn("prefix", str(caught.exception))

    def test_a_model_without_a_template_is_unknown_and_told_how_to_add_one(self):
        with self.assertRaises(PayloadError) as caught:
            hf_data.chat_template_of(ByteProcessor("", self.tokenizer), "/models/converted")
        self.assertEqual(caught.exception.code_name, "UNKNOWN_MODEL")
        self.assertIn("/models/converted has no chat template", str(caught.exception))
        self.assertIn("python3 -m stoker_fire.chat_template --write llama3-llava-next DIR", str(caught.exception))
        with self.assertRaises(PayloadError) as caught:
            hf_data.chat_template_of(ByteProcessor("{% if %}", self.tokenizer), "/models/broken")
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")
        self.assertIn("the chat template of /models/broken does not compile", str(caught.exception))

    def test_special_tokens_are_what_the_tokenizer_has(self):
        self.assertEqual(special_tokens(self.tokenizer), {"bos_token": "<s>", "eos_token": "</s>"})


@unittest.skipUnless(HAVE_HF, "transformers is not installed (pip install 'transformers>=4.57' peft accelerate pillow)")
class TransformersTest(unittest.TestCase):
    """Byte for byte what transformers' own apply_chat_template renders."""

    @classmethod
    def setUpClass(cls):
        from stoker_fire import hf

        cls.fixture = load_fixture()
        cls.processor = hf.build_tiny_processor()

    def test_the_tiny_model_has_the_recipe_template(self):
        self.assertEqual(self.processor.chat_template, builtin("llama3-llava-next"))
        tokenizer = self.processor.tokenizer
        for token in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
            self.assertEqual(len(tokenizer(token, add_special_tokens=False)["input_ids"]), 1, token)

    def test_every_vector_renders_as_apply_chat_template_renders_it(self):
        # The tiny tokenizer's special tokens are the fixture's, which the processor passes on.
        self.assertEqual(special_tokens(self.processor.tokenizer), self.fixture["specialTokens"])
        for v in self.fixture["vectors"]:
            if "text" not in v:
                continue
            with self.subTest(v["name"]):
                template = self.fixture["templates"][v["template"]]
                theirs = self.processor.apply_chat_template(
                    v["messages"], chat_template=template, add_generation_prompt=v["addGenerationPrompt"], tokenize=False
                )
                self.assertEqual(theirs, v["text"])

    def test_a_downloaded_llava_next_8b_has_the_template_stoker_ships(self):
        directory = os.environ.get("STOKER_TEST_LLAVA_NEXT_DIR")
        if not directory:
            self.skipTest("STOKER_TEST_LLAVA_NEXT_DIR (a llava-hf/llama3-llava-next-8b-hf directory) is not set")
        from transformers import AutoProcessor

        self.assertEqual(AutoProcessor.from_pretrained(directory).chat_template, builtin("llama3-llava-next"))


class CommandTest(unittest.TestCase):
    def run_module(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "stoker_fire.chat_template", *args], env=payload_env(), capture_output=True, text=True, timeout=60)

    def test_write_puts_the_template_beside_a_model(self):
        with tempfile.TemporaryDirectory() as tmp:
            done = self.run_module("--write", "llama3-llava-next", tmp)
            self.assertEqual(done.returncode, 0, done.stderr)
            path = os.path.join(tmp, "chat_template.json")
            self.assertEqual(done.stdout.strip(), path)
            with open(path, encoding="utf-8") as fh:
                self.assertEqual(json.load(fh), {"chat_template": builtin("llama3-llava-next")})
            done = self.run_module("--write", "llama3-llava-next", os.path.join(tmp, "nope"))
            self.assertEqual(done.returncode, 2)
            self.assertIn("model directory does not exist", done.stderr)

    def test_list_names_each_template_with_its_source(self):
        done = self.run_module("--list")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("llama3-llava-next: the chat_template of the processor of llava-hf/llama3-llava-next-8b-hf", done.stdout)


if __name__ == "__main__":
    unittest.main()
