r"""FIRE training entrypoint: LoRA fine-tuning of a LLaVA-NeXT student, teacher or final model
(docs/fire.md, section 5), in the shape of TRL's sft.py.

Backends: `--backend hf` (transformers + peft + the HF Trainer; stoker_fire/hf.py) and `--backend
tiny` (a small vision-language model in plain PyTorch, for CPUs; stoker_fire/tiny.py); `--backend auto
--device cuda|cpu` picks hf on cuda and tiny on cpu (stoker_fire/backends.py: select()); any other name
is BAD_CONFIG. `--save-merged` (hf) writes OUTPUT/final as a whole model directory (the adapter
merged in; the adapter itself in OUTPUT/adapter), so a later stage can train or generate from it
as from a tiny model directory (training-configs/fire-gpu-mini).

Usage (from the repository root; PYTHONPATH=worker/python/src):

    # the FIRE recipe's settings (they are the defaults) on a student view, 8 GPUs
    torchrun --nproc-per-node 8 -m stoker_fire.train --backend hf \
        --model-name-or-path /models/llama3-llava-next-8b-hf \
        --data /data/fire/student_view.json --image-root /data/fire/images \
        --deepspeed training-configs/zero3.json --gradient-checkpointing \
        --save-steps 5000 --output-dir /out/student

    # options from a file of the same names (lora_r: 64, learning_rate: 2.0e-4, ...)
    python3 -m stoker_fire.train --config training-configs/fire-student.yaml

    # no download: a tiny random LLaVA-NeXT on a synthetic colored-shapes set
    python3 -m stoker_fire.train --model-name-or-path tiny-random --max-steps 50 --save-steps 25 \
        --lora-r 16 --lora-alpha 32 --learning-rate 2e-3 --logging-steps 1 --output-dir /tmp/fire-tiny

    # continue from a checkpoint: the step goes on from 50
    RESUME_FROM=/tmp/fire-tiny/checkpoint-50 python3 -m stoker_fire.train --model-name-or-path tiny-random \
        --max-steps 60 --save-steps 25 --lora-r 16 --lora-alpha 32 --learning-rate 2e-3 --output-dir /tmp/fire-tiny

    # the tiny backend on a CPU: a new model (vocabulary from the data) on a student view of
    # stoker_fire.synth dialogues; the trained model is OUTPUT/final (pass it as the model to
    # stoker_fire.selfplay / stoker_fire.evaluate --backend tiny, or as --model-name-or-path to train on)
    python3 -m stoker_fire.train --backend tiny --model-name-or-path tiny-new --data student.jsonl \
        --image-root /tmp/mini/train/images --max-steps 300 --per-device-train-batch-size 32 \
        --learning-rate 3e-3 --warmup-ratio 0.05 --save-steps 100 --logging-steps 10 --threads 1 \
        --output-dir /tmp/mini/student

Contract:
    inputs     flags or --config FILE.yaml (keys: the TrainConfig fields below);
               --data: LLaVA conversation JSON (.json list or .jsonl; stoker_fire/llava_data.py; several files comma-separated),
               images under --image-root; without --data, `tiny-random` trains on
               --synthetic-samples generated conversations (images written to
               OUTPUT/synthetic-images). env: STOKER_OUTPUT_DIR (unless --output-dir),
               RESUME_FROM (a checkpoint-N directory written by this script), RANK /
               WORLD_SIZE / LOCAL_RANK (torchrun).
    outputs    OUTPUT/checkpoint-N/  every --save-steps steps and on SIGTERM (LoRA adapter,
                   trained projector, optimizer, scheduler, RNG, trainer_state.json)
               OUTPUT/final/         adapter + projector + processor of the last step
               OUTPUT/metrics.json   {history: [{step, loss, lr, gradNorm, epoch}], train: {...}}
    events     (rank 0) progress {step, totalSteps, epoch} per optimizer step; metrics
               {trainableParameters, parameters} once, {step, loss, lr, gradNorm, epoch} per
               --logging-steps; checkpoint {path, step} after each save; artifact "adapter"
               (final/) and "metrics"; result {backend, model, steps, startStep, resumedFrom,
               firstLoss, lastLoss, lossFell, meanLoss, samples, trainableParameters,
               parameters, seconds, lastCheckpoint, adapter, bf16, device; hf also
               attnImplementation, deepspeed, zeroStage: what the run used}.
    exit codes (common/exit-codes.json) SUCCESS; PREEMPTED after SIGTERM (checkpoint written
               first); BAD_CONFIG for unknown/invalid options or backend; BAD_DATA for
               malformed data, missing images or an unreadable checkpoint; MISSING_INPUT for
               a --data, --config, --deepspeed or RESUME_FROM path that does not exist;
               UNKNOWN_MODEL for a model that does not load; MISSING_DEPENDENCY (hf), before
               the model loads, naming every Python module missing (transformers, peft,
               accelerate, deepspeed when --deepspeed is set and --deepspeed-fallback is none,
               tensorboard with --report-to tensorboard); CUDA_OOM; USAGE for a bad command
               line. flash_attention_2 without flash-attn or CUDA falls back to sdpa (a warn
               log event); --deepspeed-fallback ddp trains without an uninstalled deepspeed
               (a warn log event).
    tiny       OUTPUT/checkpoint-N and OUTPUT/final hold the whole model (config.json,
               vocab.json, model.pt; checkpoints also optimizer.pt, rng_state.pt,
               trainer_state.json); the artifact is "model" (final/) and the result has
               adapter null, modelPath (final/) and vocabSize. --model-name-or-path is
               tiny-new / tiny-random (a new model; its vocabulary is built from the data) or
               a directory written by the tiny backend; --tiny-* set a new model's sizes;
               the LoRA, DeepSpeed, bf16/tf32 and attention options are ignored.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime, signals
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError

# tiny: its TinyConfig checks the tiny_* options (importing it does not import torch)
from . import backends, llava_data, tiny

TINY_RANDOM = "tiny-random"  # the same name as hf.TINY_RANDOM, without importing the backend
_SYNTHETIC_OK = {"tiny": (TINY_RANDOM, "tiny-new")}  # new models that may train on synthetic data
SCHEDULES = ("cosine", "linear", "constant", "constant_with_warmup")
DEEPSPEED_FALLBACKS = ("none", "ddp")  # hf_preflight's, without importing the backend


@dataclass
class TrainConfig:
    backend: str = field(default="hf", metadata={"help": "model backend: hf, tiny, or auto (from --device: cuda -> hf, cpu -> tiny)"})
    device: Optional[str] = field(default=None, metadata={"help": "cpu or cuda (default: the backend's choice; hf takes CUDA when there is one)"})
    model_name_or_path: str = field(
        default=TINY_RANDOM, metadata={"help": "LLaVA-NeXT model directory (transformers format), or tiny-random; tiny backend: tiny-new or a directory it wrote", "metavar": "PATH"}
    )
    data: Optional[str] = field(default=None, metadata={"help": "LLaVA conversation JSON/JSONL; several: comma-separated, used in that order", "metavar": "FILE[,FILE...]"})
    image_root: Optional[str] = field(default=None, metadata={"help": "directory the records' image paths are relative to", "metavar": "DIR"})
    synthetic_samples: int = field(default=256, metadata={"help": "tiny-random without --data: synthetic conversations"})
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "where outputs go; default $STOKER_OUTPUT_DIR, else ./out", "metavar": "DIR"}
    )
    # LoRA (FIRE: r 64, alpha 256, dropout 0.05 on q/k/v; the projector trained too)
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj", metadata={"help": "comma-separated projections of the language model"}
    )
    train_projector: bool = field(default=True, metadata={"help": "train the multimodal projector in full"})
    # optimizer and schedule (FIRE: 2e-4, cosine, warmup 0.03, no weight decay, 1 epoch)
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW)"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule", "choices": SCHEDULES})
    warmup_ratio: float = field(default=0.03, metadata={"help": "fraction of the steps spent warming up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs (ignored when --max-steps > 0)"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps in the whole run; -1: from the epochs"})
    # batch (FIRE: 8 per GPU, accumulation 1, max length 3072)
    per_device_train_batch_size: int = field(default=8, metadata={"help": "samples per step per GPU"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_length: int = field(default=3072, metadata={"help": "tokens per sample (image tokens included)"})
    # checkpoints and logs (FIRE: every 5000 steps for the student, 1000 for the teacher)
    save_steps: int = field(default=5000, metadata={"help": "write a checkpoint every N steps"})
    save_total_limit: Optional[int] = field(default=None, metadata={"help": "keep only the newest N checkpoints"})
    logging_steps: int = field(default=10, metadata={"help": "report loss/lr every N steps"})
    # system (FIRE: DeepSpeed ZeRO-3, bf16, tf32, gradient checkpointing)
    bf16: Optional[bool] = field(default=None, metadata={"help": "bf16 on CUDA (default: on when CUDA is there)"})
    tf32: bool = field(default=True, metadata={"help": "allow TF32 matmuls on CUDA"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations to save memory"})
    deepspeed: Optional[str] = field(default=None, metadata={"help": "DeepSpeed JSON (ZeRO-3: the model loads sharded)", "metavar": "FILE"})
    deepspeed_fallback: str = field(
        default="none",
        metadata={"help": "deepspeed asked for but not installed: none = MISSING_DEPENDENCY at once; ddp = train without it (every rank holds the whole model)", "choices": DEEPSPEED_FALLBACKS},
    )
    attn_implementation: Optional[str] = field(
        default=None, metadata={"help": "sdpa, flash_attention_2 (sdpa when flash-attn or CUDA is missing), eager (default: the model's)"}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "data loading processes"})
    report_to: str = field(
        default="none", metadata={"help": "also log to TensorBoard (hf backend): event files in OUTPUT/tensorboard, an artifact of the stage", "choices": ("none", "tensorboard")}
    )
    save_merged: bool = field(
        default=False, metadata={"help": "hf: OUTPUT/final holds the whole model with the adapter merged in (a model directory, like tiny's), the adapter goes to OUTPUT/adapter"}
    )
    seed: int = field(default=42, metadata={"help": "seed of the data order, LoRA init and tiny-random weights"})
    threads: Optional[int] = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)"})
    # the tiny backend's new model (tiny-new / tiny-random); a model directory keeps its own sizes
    tiny_d_model: int = field(default=96, metadata={"help": "tiny backend: width of a new model"})
    tiny_layers: int = field(default=2, metadata={"help": "tiny backend: transformer layers of a new model"})
    tiny_heads: int = field(default=4, metadata={"help": "tiny backend: attention heads of a new model"})
    tiny_image_size: int = field(default=32, metadata={"help": "tiny backend: image side in pixels a new model sees"})
    tiny_max_positions: int = field(default=512, metadata={"help": "tiny backend: positions (tokens) of a new model"})

    def validate(self) -> list[str]:
        problems = []
        why = backends.problem(self.backend, self.device)
        if why:
            problems.append(f"backend: {why}")
        engine = self.engine()
        for name in ("lora_r", "lora_alpha", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "save_steps", "logging_steps", "synthetic_samples"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            problems.append(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not [t for t in self.lora_target_modules.split(",") if t.strip()]:
            problems.append("lora_target_modules: name at least one module")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append(f"max_steps: must be > 0, or -1 for epochs, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            problems.append(f"num_train_epochs: must be > 0, got {self.num_train_epochs}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            problems.append(f"save_total_limit: must be >= 1, got {self.save_total_limit}")
        if self.dataloader_num_workers < 0:
            problems.append(f"dataloader_num_workers: must be >= 0, got {self.dataloader_num_workers}")
        if self.data is None and self.model_name_or_path not in _SYNTHETIC_OK.get(engine, (TINY_RANDOM,)):
            problems.append(f"data: required unless model_name_or_path is {TINY_RANDOM} (which can train on synthetic data)")
        if self.report_to not in ("none", "tensorboard"):
            problems.append(f"report_to: none or tensorboard, got {self.report_to}")
        elif self.report_to == "tensorboard" and engine != "hf":
            problems.append(f"report_to: tensorboard is written by the hf backend (the HF Trainer's own writer); backend is {engine}")
        if self.deepspeed_fallback not in DEEPSPEED_FALLBACKS:
            problems.append(f"deepspeed_fallback: one of {', '.join(DEEPSPEED_FALLBACKS)}, got {self.deepspeed_fallback}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads: must be >= 1, got {self.threads}")
        if self.save_merged and self.deepspeed and engine == "hf":
            problems.append("save_merged: not with deepspeed (a ZeRO-3 model is sharded across the ranks; merge the adapter afterwards)")
        if engine == "tiny":
            spec = tiny.TinyConfig(1, self.tiny_d_model, self.tiny_layers, self.tiny_heads, self.tiny_image_size, self.tiny_max_positions)
            problems.extend(f"tiny_*: {p}" for p in spec.problems())
        return problems

    def engine(self) -> str:
        """The backend that runs: auto resolved from the device (the name itself when unresolvable)."""
        return self.backend if backends.problem(self.backend, self.device) else backends.resolve(self.backend, self.device)


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    return parse_config(
        TrainConfig,
        argv,
        prog="python -m stoker_fire.train",
        description="LoRA fine-tuning of a LLaVA-NeXT model for FIRE, reporting to stoker.",
    )


def main(cfg: TrainConfig) -> int:
    signals.install()  # first: a SIGTERM during the slow imports still ends in a checkpoint or a clean stop
    resume_from = runtime.resume_from()  # MISSING_INPUT before paying for the imports
    out_dir = runtime.output_dir(cfg.output_dir, create=True)
    reporter = report.get_reporter()
    cfg.backend = backends.select(cfg.backend, cfg.device, reporter)  # auto -> hf / tiny, from the device
    backend = backends.load(cfg.backend)  # BAD_CONFIG / MISSING_DEPENDENCY, before reading data
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    records, image_root = _records(cfg, out_dir)
    result = backend.train(cfg, records, image_root, out_dir, resume_from, reporter)
    if runtime.is_rank0():
        reporter.result(**result, engine=cfg.backend)
    return exit_codes.SUCCESS


def _records(cfg: TrainConfig, out_dir: str) -> tuple[list[dict], Optional[str]]:
    if cfg.data is not None:
        # Several files, comma-separated, train as one set in the order given (e.g. the
        # answers view plus the student view of seed and self-play dialogues).
        records = []
        for path in [p for p in cfg.data.split(",") if p]:
            part = llava_data.read_conversations(path)
            llava_data.check_images(part, cfg.image_root, path)
            records.extend(part)
        return records, cfg.image_root
    image_dir = os.path.join(out_dir, "synthetic-images")
    # The same seed gives the same set, so a resumed run continues on the same data.
    return llava_data.synthetic_conversations(cfg.synthetic_samples, cfg.seed, image_dir), image_dir


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
