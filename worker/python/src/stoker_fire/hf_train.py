"""The hf backend's training: LoRA through peft on LLaVA conversation records, run by the HF
Trainer, reporting to stoker (stoker_fire.hf has the whole backend's description).

    result = train(cfg, records, image_root, out_dir, resume_from, reporter)   # stoker_fire.train's job

train() in five steps:
    1. the checks (hf_preflight.preflight): missing modules (MISSING_DEPENDENCY), the
       attention implementation (flash_attention_2 -> sdpa without flash_attn), DeepSpeed
       (MISSING_DEPENDENCY when asked for and not installed, unless deepspeed_fallback: ddp)
    2. TrainingArguments from cfg (_training_arguments), BEFORE the model: a ZeRO-3 config is
       then known to transformers when the model is built, which loads it sharded
    3. the model: load_model() in bf16 on CUDA (fp32 elsewhere), LoRA on the language
       model's attention projections named by lora_target_modules, the multimodal projector
       trained in full (peft modules_to_save); trainable weights in fp32; the Trainer with
       the records encoded one by one (hf_data.encode_conversation), the collator, the
       StokerCallback
    4. trainer.train(resume_from_checkpoint=RESUME_FROM); a stop on request (SIGTERM, agreed
       by every rank) saves a checkpoint at the end of the step and raises Preempted
    5. OUTPUT/final (adapter + projector; with save_merged, the whole model with the adapter
       merged in, and the adapter in OUTPUT/adapter), OUTPUT/metrics.json (rank 0), the result fields
Events (rank 0): progress per optimizer step, metrics {step, loss, lr, gradNorm, epoch} per
logging step, checkpoint {path, step} after each save, artifact adapter and metrics (and
tensorboard: OUTPUT/tensorboard, when cfg.report_to is tensorboard; tensorboard_dir()).

transformers, peft and torch are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any, Optional

from stoker_payload import report, runtime, signals
from stoker_payload.exit_codes import PayloadError, Preempted

from .backends import loss_fields
from .hf_data import chat_template_of, collate, encode_conversation
from .hf_model import load_model, require
from .hf_preflight import preflight, tensorboard_dir

__all__ = ["train", "tensorboard_dir"]


def _lora_model(model: Any, cfg: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
    # Only the language model's projections: CLIP's attention has q/k/v_proj too.
    pattern = r".*language_model.*\.(" + "|".join(map(re.escape, targets)) + r")"
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=pattern,
        modules_to_save=["multi_modal_projector"] if cfg.train_projector else None,
        bias="none",
    )
    peft_model = get_peft_model(model, lora)
    for param in peft_model.parameters():  # adapters and the projector copy train in fp32
        if param.requires_grad and param.dtype != _torch().float32:
            param.data = param.data.float()
    return peft_model


def _torch() -> Any:
    import torch

    return torch


def _total_steps(cfg: Any, samples: int, world: int) -> int:
    """Optimizer steps of the run, as the Trainer counts them (for the warmup length)."""
    if cfg.max_steps and cfg.max_steps > 0:
        return cfg.max_steps
    batches = math.ceil(samples / (cfg.per_device_train_batch_size * world))
    per_epoch = max(1, batches // cfg.gradient_accumulation_steps)
    return max(1, math.ceil(cfg.num_train_epochs * per_epoch))


def _checkpoint_step(path: str) -> int:
    state_file = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_file):
        raise PayloadError("BAD_DATA", f"RESUME_FROM {path} is not a Trainer checkpoint (no trainer_state.json)")
    try:
        with open(state_file, "r", encoding="utf-8") as fh:
            return int(json.load(fh)["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PayloadError("BAD_DATA", f"unreadable {state_file}: {err}") from None


def train(
    cfg: Any,
    records: list[dict[str, Any]],
    image_root: Optional[str],
    out_dir: str,
    resume_from: Optional[str],
    reporter: report.Reporter,
) -> dict[str, Any]:
    """LoRA-train on LLaVA conversation records; returns the result fields (see stoker_fire.train).

    cfg: stoker_fire.train.TrainConfig (model_name_or_path, lora_*, learning_rate, ...).
    """
    transformers, _ = require()
    import torch

    world = runtime.world_size()
    cuda = torch.cuda.is_available()
    bf16 = cuda and cfg.bf16 is not False
    start_step = _checkpoint_step(resume_from) if resume_from else 0
    plan = preflight(cfg, out_dir, reporter, cuda=cuda)  # MISSING_DEPENDENCY... before the model loads

    # The TrainingArguments first: with a DeepSpeed ZeRO-3 config they register it with
    # transformers (a weak reference, held through `args`), so from_pretrained builds the
    # model inside deepspeed.zero.Init and each rank loads only its shard; built after the
    # model, every rank would load the whole model into host memory first.
    args = _training_arguments(transformers, cfg, out_dir, len(records), world, cuda=cuda, bf16=bf16, deepspeed=plan.deepspeed, tensorboard=plan.tensorboard)
    model, processor, trainable, total = _peft_model(cfg, plan, torch.bfloat16 if bf16 else torch.float32, reporter)

    template = chat_template_of(processor, cfg.model_name_or_path)  # the prompts self-play will use
    pad_id = processor.tokenizer.pad_token_id
    pixel_dtype = torch.bfloat16 if bf16 else torch.float32
    callback = _stoker_callback(transformers, reporter)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=_dataset(processor, records, image_root, cfg.max_length, template),
        data_collator=lambda batch: collate(batch, pad_id, pixel_dtype),
        processing_class=processor,
        callbacks=[callback],
    )
    if resume_from:
        reporter.log(f"resuming from {resume_from} at step {start_step}")
    began = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - began
    step = trainer.state.global_step
    if callback.preempted and step < trainer.state.max_steps:
        raise Preempted(f"stopped on request at step {step} after writing {callback.last_checkpoint}; resume from it")

    final_dir = os.path.join(out_dir, "final")
    adapter_dir = _save(trainer, model, processor, out_dir, final_dir, getattr(cfg, "save_merged", False), pixel_dtype)
    history = callback.history
    losses = [h["loss"] for h in history if h.get("loss") is not None]
    _write_metrics(trainer, out_dir, {"history": history, "train": output.metrics}, adapter_dir, reporter)
    if adapter_dir != final_dir and trainer.is_world_process_zero():
        reporter.artifact("model", final_dir)
    if plan.tensorboard and trainer.is_world_process_zero():
        reporter.artifact("tensorboard", plan.tensorboard)
    return {
        "backend": "hf",
        "model": cfg.model_name_or_path,
        "steps": step,
        "startStep": start_step,
        "resumedFrom": resume_from,
        **loss_fields(losses),  # of this run's logged steps
        "samples": len(records),
        "trainableParameters": trainable,
        "parameters": total,
        "seconds": round(seconds, 3),
        "lastCheckpoint": callback.last_checkpoint,
        "adapter": adapter_dir,
        **({"modelPath": final_dir} if adapter_dir != final_dir else {}),
        "bf16": bf16,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "attnImplementation": plan.attn_implementation,
        "deepspeed": plan.deepspeed,
        "zeroStage": plan.zero_stage,
    }


def _save(trainer: Any, model: Any, processor: Any, out_dir: str, final_dir: str, merged: bool, dtype: Any) -> str:
    """Save the trained model; returns the adapter's directory. Default: the adapter and the
    projector (+ processor) in final/, for self-play and merging; merged: the adapter in
    adapter/ and the whole model with the LoRA merged in, in final/."""
    if not merged:
        trainer.save_model(final_dir)
        return final_dir
    adapter_dir = os.path.join(out_dir, "adapter")
    trainer.save_model(adapter_dir)
    if trainer.is_world_process_zero():
        _save_merged(model, processor, final_dir, dtype)
    return adapter_dir


def _save_merged(model: Any, processor: Any, final_dir: str, dtype: Any) -> None:
    """The LoRA weights merged into the base and the trained projector in place of the base's
    (peft's merge_and_unload), saved with the processor as a LLaVA-NeXT model directory, in
    `dtype`, with the KV cache on again (training turned it off)."""
    merged = model.merge_and_unload()
    merged.to(dtype)
    for config in (merged.config, getattr(merged.config, "text_config", None)):
        if config is not None and hasattr(config, "use_cache"):
            config.use_cache = True
    tmp = final_dir + ".tmp"
    merged.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if os.path.isdir(final_dir):
        import shutil

        shutil.rmtree(final_dir)
    os.replace(tmp, final_dir)


def _peft_model(cfg: Any, plan: Any, dtype: Any, reporter: report.Reporter) -> tuple[Any, Any, int, int]:
    """(the LoRA model, the processor, trainable and all parameters), reported as metrics."""
    model, processor = load_model(cfg.model_name_or_path, seed=cfg.seed, dtype=dtype, attn_implementation=plan.attn_implementation)
    model.config.use_cache = False
    model = _lora_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    reporter.metrics(trainableParameters=trainable, parameters=total)
    return model, processor, trainable, total


def _dataset(processor: Any, records: list[dict[str, Any]], image_root: Optional[str], max_length: int, template: Any) -> Any:
    """A torch Dataset of the records, each encoded (rendered by the model's chat template) when
    the Trainer asks for it."""
    from torch.utils.data import Dataset

    class ConversationDataset(Dataset):
        def __len__(self) -> int:
            return len(records)

        def __getitem__(self, index: int) -> dict[str, Any]:
            return encode_conversation(processor, records[index], image_root, max_length, template)

    return ConversationDataset()


def _training_arguments(transformers: Any, cfg: Any, out_dir: str, samples: int, world: int, *, cuda: bool, bf16: bool, deepspeed: Optional[str], tensorboard: Optional[str] = None) -> Any:
    """transformers.TrainingArguments of cfg (warmup in steps: warmup_ratio of the run's steps)."""
    total_steps = _total_steps(cfg, samples, world)
    warmup_steps = math.ceil(cfg.warmup_ratio * total_steps)
    return transformers.TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=warmup_steps,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else -1,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        bf16=bf16,
        tf32=True if (cuda and cfg.tf32) else None,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        deepspeed=deepspeed,
        report_to=["tensorboard"] if tensorboard else "none",
        **({"logging_dir": tensorboard} if tensorboard else {}),
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        seed=cfg.seed,
        disable_tqdm=True,
        use_cpu=not cuda,
    )


def _write_metrics(trainer: Any, out_dir: str, metrics: dict[str, Any], final_dir: str, reporter: report.Reporter) -> None:
    """OUTPUT/metrics.json and the artifact events, on rank 0 only."""
    metrics_path = os.path.join(out_dir, "metrics.json")
    if trainer.is_world_process_zero():
        tmp = metrics_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=1)
        os.replace(tmp, metrics_path)
        reporter.artifact("adapter", final_dir)
        reporter.artifact("metrics", metrics_path)


def _stop_agreed() -> bool:
    """Whether to stop now. With several ranks all must agree (a MAX all-reduce of the flag),
    or one rank would save collectively while the others step on and hang."""
    wanted = signals.stop_requested()
    torch = _torch()
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return wanted
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    flag = torch.tensor([1 if wanted else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _stoker_callback(transformers: Any, reporter: report.Reporter) -> Any:
    """A TrainerCallback that reports to stoker and turns SIGTERM into checkpoint + stop."""

    class StokerCallback(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []
            self.last_checkpoint: Optional[str] = None
            self.preempted = False

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                reporter.progress(state.global_step, state.max_steps or None, max(0.0, float(state.epoch or 0.0)))
            if _stop_agreed() and state.global_step < state.max_steps:
                self.preempted = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "loss" not in logs:
                return control
            entry = {
                "step": state.global_step,
                "loss": logs.get("loss"),
                "lr": logs.get("learning_rate"),
                "gradNorm": logs.get("grad_norm"),
                "epoch": logs.get("epoch"),
            }
            self.history.append(entry)
            if state.is_world_process_zero:
                reporter.metrics(state.global_step, loss=entry["loss"], lr=entry["lr"], gradNorm=entry["gradNorm"], epoch=entry["epoch"])
            return control

        def on_save(self, args, state, control, **kwargs):
            path = os.path.abspath(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
            self.last_checkpoint = path
            if state.is_world_process_zero:
                reporter.checkpoint(path, state.global_step)
            return control

    return StokerCallback()
