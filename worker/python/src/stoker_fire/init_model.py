r"""A new model built locally from a config, written as a model directory that the other FIRE
payloads take as --model-name-or-path (no download): the `model` stage of
training-configs/fire-gpu-mini.

    # the hf engine: the tiny random LLaVA-NeXT (stoker_fire.hf_model.tiny_config) and its processor
    python3 -m stoker_fire.init_model --backend hf --device cuda --seed 1 --out /tmp/model
    # the tiny engine: a tiny model whose vocabulary holds every word of the data
    python3 -m stoker_fire.init_model --backend tiny --data answers.jsonl,teacher.jsonl --out /tmp/model
    # auto: hf on cuda, tiny on cpu (stoker_fire.backends.select)
    python3 -m stoker_fire.init_model --backend auto --device cpu --data views/student.jsonl --out /tmp/model

Contract:
    inputs     --backend hf|tiny|auto, --device cpu|cuda (auto needs it), --seed (the weights
               are a function of it), --data (tiny: LLaVA conversation files, comma-separated,
               whose words make the vocabulary; hf: ignored, its tokenizer is byte level),
               --tiny-* (tiny: the sizes; stoker_fire.train's defaults).
    outputs    OUT/ (--out, else $STOKER_OUTPUT_DIR): hf: config.json, the weights
               (safetensors), generation_config.json and the processor's files
               (save_pretrained), checked by loading them back and generating a few tokens
               from one image; tiny: config.json, vocab.json, model.pt (stoker_fire.tiny.save).
               Written into OUT.tmp, then renamed.
    events     log "engine: ..." (the engine after auto); metrics {parameters}; artifact
               "model"; result {engine, device, modelPath, parameters, vocabSize, seconds}.
    exit codes BAD_CONFIG (options, backend/device), MISSING_INPUT (a --data file),
               BAD_DATA (malformed data), MISSING_DEPENDENCY (hf without transformers/peft;
               --device cuda without CUDA), UNKNOWN_MODEL (the hf model does not load back).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError

from . import backends, llava_data, tiny
from .prompts import student_messages
from .selfplay_rules import Prompt

__all__ = ["InitConfig", "parse_args", "main"]


@dataclass
class InitConfig:
    backend: str = field(default="auto", metadata={"help": "hf, tiny, or auto (from --device: cuda -> hf, cpu -> tiny)"})
    device: Optional[str] = field(default=None, metadata={"help": "cpu or cuda (auto needs it)"})
    out: Optional[str] = field(default=None, metadata={"help": "the model directory to write; default $STOKER_OUTPUT_DIR", "metavar": "DIR"})
    seed: int = field(default=1, metadata={"help": "seed of the weights"})
    data: Optional[str] = field(default=None, metadata={"help": "tiny: conversation files whose words make the vocabulary, comma-separated", "metavar": "FILE[,FILE...]"})
    tiny_d_model: int = field(default=96, metadata={"help": "tiny: width"})
    tiny_layers: int = field(default=2, metadata={"help": "tiny: transformer layers"})
    tiny_heads: int = field(default=4, metadata={"help": "tiny: attention heads"})
    tiny_image_size: int = field(default=32, metadata={"help": "tiny: image side in pixels"})
    tiny_max_positions: int = field(default=512, metadata={"help": "tiny: positions (tokens)"})

    def validate(self) -> list[str]:
        problems = []
        why = backends.problem(self.backend, self.device)
        if why:
            problems.append(f"backend: {why}")
        elif backends.resolve(self.backend, self.device) == "tiny":
            spec = tiny.TinyConfig(1, self.tiny_d_model, self.tiny_layers, self.tiny_heads, self.tiny_image_size, self.tiny_max_positions)
            problems.extend(f"tiny_*: {p}" for p in spec.problems())
        return problems


def parse_args(argv: Optional[Sequence[str]] = None) -> InitConfig:
    return parse_config(InitConfig, argv, prog="python -m stoker_fire.init_model", description="Write a new FIRE model directory, built from a config.")


def _tiny(cfg: InitConfig, tmp: str) -> dict[str, Any]:
    from dataclasses import asdict

    records: list[dict] = []
    for path in [p for p in (cfg.data or "").split(",") if p]:
        records.extend(llava_data.read_conversations(path))
    tok = tiny.Tokenizer(tiny.base_vocabulary()).extended(tiny.record_texts(records))
    sizes = tiny.TinyConfig(len(tok), cfg.tiny_d_model, cfg.tiny_layers, cfg.tiny_heads, cfg.tiny_image_size, cfg.tiny_max_positions)
    model = tiny.new_model(tiny.TinyConfig(**{**asdict(sizes), "vocab_size": len(tok)}), cfg.seed)
    tiny.save(model, tok, tmp)
    return {"parameters": tiny.count_parameters(model), "vocabSize": len(tok)}


def _hf(hf: Any, cfg: InitConfig, tmp: str) -> dict[str, Any]:
    model, processor = hf.load_model(hf.TINY_RANDOM, seed=cfg.seed)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    # Load it back as every later stage will (the self-play callable), and generate from one
    # image: a directory that does not round-trip fails here, not three stages later.
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="stoker-init-model-") as images:
        Image.new("RGB", (32, 32), (200, 30, 30)).save(os.path.join(images, "red.png"))
        try:
            gen = hf.make_generator(tmp, seed=0, adapter=None, image_root=images, max_new_tokens=4, batch_size=1)
            gen([Prompt("check", "student", "red.png", tuple(student_messages("What colour is the shape?", [], [])))])
        except PayloadError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to load back is the model's
            raise PayloadError("UNKNOWN_MODEL", f"the model written to {tmp} does not load back and generate: {type(err).__name__}: {err}") from None
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocabSize": len(processor.tokenizer)}


def main(cfg: InitConfig) -> int:
    reporter = report.get_reporter()
    engine = backends.select(cfg.backend, cfg.device, reporter)
    module = backends.load(engine)  # MISSING_DEPENDENCY before anything is written
    out = os.path.abspath(cfg.out) if cfg.out else runtime.output_dir(None, create=False)
    tmp = out.rstrip(os.sep) + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    began = time.perf_counter()
    fields = _hf(module, cfg, tmp) if engine == "hf" else _tiny(cfg, tmp)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    reporter.metrics(parameters=fields["parameters"])
    reporter.artifact("model", out)
    reporter.result(engine=engine, device=cfg.device, modelPath=out, seconds=round(time.perf_counter() - began, 3), **fields)
    return exit_codes.SUCCESS


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
