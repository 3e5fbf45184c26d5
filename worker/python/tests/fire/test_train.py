"""stoker_fire.train's options: FIRE's recipe as the defaults, a YAML file of the same names, every
invalid option reported at once (BAD_CONFIG)."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

from stoker_payload.exit_codes import PayloadError

from stoker_fire import train


class OptionsTest(unittest.TestCase):
    def test_the_defaults_are_the_fire_recipe(self):
        cfg = train.parse_args(["--data", "x.json", "--model-name-or-path", "/m"])
        self.assertEqual((cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules), (64, 256, 0.05, "q_proj,k_proj,v_proj"))
        self.assertTrue(cfg.train_projector)
        self.assertEqual((cfg.learning_rate, cfg.lr_scheduler_type, cfg.warmup_ratio, cfg.weight_decay, cfg.num_train_epochs), (2e-4, "cosine", 0.03, 0.0, 1.0))
        self.assertEqual((cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, cfg.max_length), (8, 1, 3072))
        self.assertEqual((cfg.save_steps, cfg.backend, cfg.bf16, cfg.tf32), (5000, "hf", None, True))

    def test_a_yaml_file_with_flags_over_it(self):
        tmp = tempfile.mkdtemp(prefix="stoker-fire-train-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "teacher.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("model_name_or_path: /models/llava\ndata: /data/teacher.json\nsave-steps: 1000\nlora_r: 32\nbf16: true\n")
        cfg = train.parse_args(["--config", path, "--lora-r", "16"])
        self.assertEqual((cfg.model_name_or_path, cfg.data, cfg.save_steps, cfg.lora_r, cfg.bf16), ("/models/llava", "/data/teacher.json", 1000, 16, True))

    def test_tiny_random_needs_no_data(self):
        self.assertIsNone(train.parse_args([]).data)

    def test_every_problem_at_once(self):
        with self.assertRaises(PayloadError) as caught:
            train.parse_args(
                ["--model-name-or-path", "/m", "--lora-r", "0", "--lora-dropout", "1", "--learning-rate", "0", "--warmup-ratio", "2", "--max-steps", "0", "--lora-target-modules", ","]
            )
        self.assertEqual(caught.exception.code_name, "BAD_CONFIG")
        for name in ("lora_r", "lora_dropout", "learning_rate", "warmup_ratio", "max_steps", "lora_target_modules", "data: required unless"):
            self.assertIn(name, caught.exception.message)


class RecipeConfigsTest(unittest.TestCase):
    def test_the_fire_recipe_files_are_valid_configs(self):
        root = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "training-configs", "fire")
        for name in ("student", "teacher", "final"):
            with self.subTest(name=name):
                cfg = train.parse_args(["--config", os.path.join(root, f"{name}.yaml"), "--data", "x.json", "--model-name-or-path", "/m"])
                self.assertEqual((cfg.attn_implementation, cfg.deepspeed_fallback), ("flash_attention_2", "none"))
                # Relative: the run works in a directory holding the pipeline's files (spec.files).
                self.assertEqual(cfg.deepspeed, "zero3.json")
                self.assertTrue(os.path.isfile(os.path.join(root, cfg.deepspeed)))


class ReportToTest(unittest.TestCase):
    """report_to: tensorboard (the hf backend's Trainer writes the event files)."""

    def test_tensorboard_is_for_the_hf_backend(self):
        self.assertEqual(train.parse_args(["--report-to", "tensorboard"]).report_to, "tensorboard")
        with self.assertRaises(PayloadError) as caught:
            train.parse_args(["--backend", "tiny", "--model-name-or-path", "tiny-new", "--report-to", "tensorboard"])
        self.assertIn("report_to: tensorboard is written by the hf backend", caught.exception.message)

    def test_the_event_files_go_under_the_output_and_need_tensorboard(self):
        from unittest import mock

        from stoker_fire import hf_train

        cfg = train.parse_args(["--report-to", "tensorboard"])
        self.assertIsNone(hf_train.tensorboard_dir(train.parse_args([]), "/out"))
        with mock.patch("importlib.util.find_spec", return_value=object()):
            self.assertEqual(hf_train.tensorboard_dir(cfg, "/out"), "/out/tensorboard")
        with mock.patch("importlib.util.find_spec", return_value=None):
            with self.assertRaises(PayloadError) as caught:
                hf_train.tensorboard_dir(cfg, "/out")
        self.assertEqual(caught.exception.code_name, "MISSING_DEPENDENCY")
        self.assertIn("tensorboard", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
