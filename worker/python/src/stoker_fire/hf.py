"""The `hf` model backend of the FIRE payloads: LLaVA-NeXT through transformers, LoRA through
peft, training through the HF Trainer, batched greedy generation for self-play.

    from stoker_fire import hf
    model, processor = hf.load_model("tiny-random", seed=1)            # or a local model dir
    template = hf.chat_template_of(processor)                           # the processor's chat template
    texts = hf.generate(model, processor, [template.prompt(messages)], [image], 64)
    result = hf.train(cfg, records, image_root, out_dir, resume_from, reporter)   # stoker_fire.train's job

Imports: transformers, peft and torch are imported inside the functions, so importing this
module is cheap; without transformers or peft every entry point raises
PayloadError('MISSING_DEPENDENCY') with the pip command (exit 68 through run_main).

Models:
    a directory (or hub id already in the local cache) in the transformers LLaVA-NeXT format
    (LlavaNextForConditionalGeneration + its processor, e.g. llava-hf/llama3-llava-next-8b-hf).
    Checkpoints in the original LLaVA layout (Lin-Chen/open-llava-next-llama3-8b) must be
    converted to that format first; a path that does not load is UNKNOWN_MODEL.
    `tiny-random`: a randomly initialised LlavaNextConfig built in code (CLIP vision tower of
    2 layers on 32x32 tiles, 2-layer Llama of width 64, AnyRes grid up to 64x64) with a
    byte-level tokenizer also built in code (7 special tokens + 256 bytes) and LLaVA-NeXT-8B's
    chat template, so tests and the GPU check need no download and take the recipe's path. The weights are a function of `seed`: a LoRA checkpoint of
    a tiny-random run resumes onto the same base weights when the seed is the same.

Prompts: the model's own chat template (its processor's chat_template; Llama-3's for
LLaVA-NeXT-8B), rendered with jinja2 as transformers renders it (stoker_fire.chat_template), for
training and generation alike; a model without one is UNKNOWN_MODEL. The loss is on the
assistant turns only, with the template's end of turn (hf_data has the details).

Training (train()): LoRA r/alpha/dropout on the language model's attention projections named
by lora_target_modules (the vision tower's q/k/v are not touched), the multimodal projector
trained in full (peft modules_to_save), bf16 autocast on CUDA with base weights in bf16 and
trainable weights in fp32, optional gradient checkpointing, a DeepSpeed JSON passed to the
Trainer, whose TrainingArguments are built before the model so that ZeRO-3 loads it sharded.
Before the model loads (hf_preflight): a missing Python module is MISSING_DEPENDENCY naming it;
DeepSpeed asked for and not installed is MISSING_DEPENDENCY too, unless deepspeed_fallback is
ddp (then trained without it, one warn log event); flash_attention_2 without flash_attn (or
without CUDA) falls back to sdpa, with one warn log event. The Trainer
writes OUTPUT/checkpoint-N (adapter, projector, optimizer, scheduler, RNG, trainer_state.json);
RESUME_FROM names such a directory and the step continues from N. Events (rank 0): progress
per optimizer step, metrics {step, loss, lr, gradNorm, epoch} per logging step, checkpoint
{path, step} after each save; SIGTERM saves a checkpoint at the end of the current step and
raises Preempted.

Modules (this one gathers their names: `from stoker_fire import hf` is the backend):
    hf_model     require(), the tiny random LLaVA-NeXT, load_model(), device_and_dtype()
    hf_preflight preflight(): modules, attention fallback, DeepSpeed, before the model loads
    hf_data      chat_template_of(), encode_conversation(), collate()
    hf_generate  generate(), stop_token_ids(), Generator, make_generator()
    hf_train     train(): LoRA, TrainingArguments, the Trainer and its StokerCallback
"""

from __future__ import annotations

from .hf_data import IGNORE_INDEX, chat_template_of, collate, encode_conversation, load_image
from .hf_generate import Generator, generate, make_generator, stop_token_ids
from .hf_model import (
    INSTALL_HINT,
    SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    TINY_RANDOM,
    TinySpec,
    build_tiny_processor,
    build_tiny_tokenizer,
    device_and_dtype,
    load_model,
    require,
    tiny_config,
)
from .hf_train import train

__all__ = [
    "TINY_RANDOM",
    "INSTALL_HINT",
    "SPECIAL_TOKENS",
    "IGNORE_INDEX",
    "TinySpec",
    "require",
    "build_tiny_tokenizer",
    "build_tiny_processor",
    "tiny_config",
    "device_and_dtype",
    "load_model",
    "TINY_CHAT_TEMPLATE",
    "chat_template_of",
    "load_image",
    "encode_conversation",
    "collate",
    "generate",
    "stop_token_ids",
    "Generator",
    "make_generator",
    "train",
]
