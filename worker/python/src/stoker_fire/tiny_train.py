"""The tiny backend's training: full-weight AdamW on LLaVA conversation records, on the CPU, in
one process (stoker_fire.tiny has the whole backend's description).

    result = train(cfg, records, image_root, out_dir, resume_from, reporter)   # stoker_fire.train's job

train() in three steps, one function each:
    1. _setup    the model (tiny-new, a model directory, or RESUME_FROM=checkpoint-N with its
                 optimizer and RNG state), the records rendered (tiny_text.encode_records),
                 every image read once, the optimizer
    2. _loop     optimizer steps: warmup + cosine / linear / constant schedule, gradient
                 clipping at 1.0, gradient accumulation, a fixed data order per (seed, epoch),
                 so a run resumed from checkpoint-N ends with the same weights as an
                 uninterrupted one; events progress per step, metrics {step, loss, lr,
                 gradNorm, epoch} per logging step, checkpoint per save; SIGTERM -> a
                 checkpoint at the end of the step, then Preempted
    3. _finish   OUTPUT/final, OUTPUT/metrics.json, the artifact events, the result fields
Files: OUTPUT/checkpoint-N (model, vocabulary, optimizer.pt, rng_state.pt, trainer_state.json)
every save_steps steps and at the end (save_total_limit keeps the newest), OUTPUT/final
(model directory), OUTPUT/metrics.json {history, train}.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import report, runtime, signals
from stoker_payload.exit_codes import PayloadError, Preempted

from . import llava_data
from .backends import loss_fields
from .tiny_model import (
    NAMES,
    Images,
    TinyConfig,
    count_parameters,
    grow_vocabulary,
    is_model_dir,
    load,
    new_model,
    require,
    save,
    write_json,
)
from .tiny_text import Encoded, Tokenizer, base_vocabulary, encode_records, record_texts

__all__ = ["train"]

IGNORE = -100
MAX_GRAD_NORM = 1.0


def _collate(torch: Any, items: Sequence[Encoded], images: Images, pad: int) -> dict[str, Any]:
    width = max(len(it.ids) for it in items) - 1
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    valid = torch.zeros((len(items), width), dtype=torch.bool)
    for row, it in enumerate(items):
        n = len(it.ids) - 1
        ids[row, :n] = torch.tensor(it.ids[:-1])
        target = torch.tensor(it.ids[1:])
        labels[row, :n] = target.masked_fill(~torch.tensor(it.target[1:]), IGNORE)
        valid[row, :n] = True
    rows = [row for row, it in enumerate(items) if it.image]
    positions = torch.arange(width)[None].expand(len(items), width)
    return {
        "ids": ids,
        "positions": positions,
        "valid": valid,
        "labels": labels,
        "images": images.batch([items[r].image for r in rows]) if rows else None,
        "image_rows": torch.tensor(rows, dtype=torch.long),
    }


def _lr_factor(schedule: str, step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of optimizer step `step` (0-based), as transformers' schedules."""
    if step < warmup and schedule != "constant":
        return step / max(1, warmup)
    if schedule in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _total_steps(cfg: Any, batches_per_epoch: int) -> int:
    if cfg.max_steps and cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.num_train_epochs * max(1, batches_per_epoch // cfg.gradient_accumulation_steps)))


class _Order:
    """Micro-batch k of the run -> record indices: a fresh permutation per epoch from (seed, epoch),
    so the order does not depend on where a run was resumed."""

    def __init__(self, torch: Any, n: int, batch: int, seed: int):
        self.torch, self.n, self.batch, self.seed = torch, n, batch, seed
        self.per_epoch = math.ceil(n / batch)
        self._epoch, self._perm = -1, None

    def __call__(self, k: int) -> list[int]:
        epoch, at = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            gen = self.torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, self.torch.randperm(self.n, generator=gen).tolist()
        return self._perm[at * self.batch : (at + 1) * self.batch]


def _checkpoint_state(path: str) -> dict[str, Any]:
    state_file = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_file) or not is_model_dir(path):
        raise PayloadError("BAD_DATA", f"RESUME_FROM {path} is not a tiny-backend checkpoint (trainer_state.json, config.json, vocab.json, model.pt expected)")
    try:
        with open(state_file, "r", encoding="utf-8") as fh:
            state = json.load(fh)
        int(state["global_step"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PayloadError("BAD_DATA", f"unreadable {state_file}: {err}") from None


def _config_from(cfg: Any) -> TinyConfig:
    return TinyConfig(
        vocab_size=0,
        d_model=getattr(cfg, "tiny_d_model", 96),
        layers=getattr(cfg, "tiny_layers", 2),
        heads=getattr(cfg, "tiny_heads", 4),
        image_size=getattr(cfg, "tiny_image_size", 32),
        max_positions=getattr(cfg, "tiny_max_positions", 512),
    )


def _initial_model(cfg: Any, records: Sequence[dict[str, Any]], resume_from: Optional[str], reporter: report.Reporter) -> tuple[Any, Tokenizer, dict[str, Any]]:
    """(model, tokenizer, trainer state or {}) to start training from."""
    if resume_from:
        state = _checkpoint_state(resume_from)
        try:
            model, tok = load(resume_from, seed=cfg.seed)
        except PayloadError as err:
            raise PayloadError("BAD_DATA", f"RESUME_FROM {resume_from}: {err.message}") from None
        unknown = {p for text in record_texts(records) for p in tok.unknown(text)}
        if unknown:
            reporter.log(f"{len(unknown)} word(s) of the data are not in the checkpoint's vocabulary and read as <unk>", "warn")
        return model, tok, state
    if cfg.model_name_or_path in NAMES:
        tok = Tokenizer(base_vocabulary()).extended(record_texts(records))
        spec = TinyConfig(**{**asdict(_config_from(cfg)), "vocab_size": len(tok)})
        return new_model(spec, cfg.seed), tok, {}
    model, tok = load(cfg.model_name_or_path, seed=cfg.seed)
    model, tok = grow_vocabulary(model, tok, record_texts(records), cfg.seed)
    return model, tok, {}


def _save_checkpoint(model: Any, tok: Tokenizer, optimizer: Any, out_dir: str, step: int, extra: dict[str, Any], limit: Optional[int]) -> str:
    torch = require()
    final = os.path.join(out_dir, f"checkpoint-{step}")
    tmp = os.path.join(out_dir, f".checkpoint-{step}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(model, tok, tmp)
    torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
    torch.save({"torch": torch.get_rng_state()}, os.path.join(tmp, "rng_state.pt"))
    write_json(os.path.join(tmp, "trainer_state.json"), {"global_step": step, **extra})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if limit:
        steps = sorted(int(n.split("-", 1)[1]) for n in os.listdir(out_dir) if re.fullmatch(r"checkpoint-\d+", n))
        for old in steps[:-limit]:
            shutil.rmtree(os.path.join(out_dir, f"checkpoint-{old}"), ignore_errors=True)
    return os.path.abspath(final)


@dataclass
class _Run:
    """What the training loop works on: set up by _setup(), advanced by _loop()."""

    model: Any
    tok: Tokenizer
    data: list[Encoded]
    images: Images
    optimizer: Any
    order: _Order
    total: int  # optimizer steps of the whole run
    warmup: int
    params: int
    start_step: int
    history: list[dict[str, Any]]  # metrics entries, those of the resumed run's first
    logged_from: int  # history[logged_from:] are this run's
    step: int = 0
    last_checkpoint: Optional[str] = None
    window: list[float] = field(default_factory=list)  # step losses since the last metrics event


def train(
    cfg: Any,
    records: list[dict[str, Any]],
    image_root: Optional[str],
    out_dir: str,
    resume_from: Optional[str],
    reporter: report.Reporter,
) -> dict[str, Any]:
    """Train on LLaVA conversation records; returns the result fields (see stoker_fire.train)."""
    torch = require()

    if runtime.world_size() > 1:
        raise PayloadError("BAD_CONFIG", "the tiny backend trains in one process (WORLD_SIZE 1); do not start it with torchrun")
    run = _setup(torch, cfg, records, image_root, resume_from, reporter)
    began, began_cpu = time.perf_counter(), time.process_time()
    _loop(torch, run, cfg, out_dir, reporter)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    return _finish(run, cfg, len(records), out_dir, resume_from, reporter, seconds, cpu_seconds)


def _setup(torch: Any, cfg: Any, records: Sequence[dict[str, Any]], image_root: Optional[str], resume_from: Optional[str], reporter: report.Reporter) -> _Run:
    """Step 1: the model, the data, the images and the optimizer, restored from RESUME_FROM when given."""
    threads = getattr(cfg, "threads", None)
    if threads:
        torch.set_num_threads(threads)
    model, tok, state = _initial_model(cfg, records, resume_from, reporter)
    start_step = int(state.get("global_step", 0))
    model.train()
    max_length = min(cfg.max_length, model.cfg.max_positions)
    data = encode_records(tok, records, max_length)
    images = _read_images(data, image_root, model.cfg.image_size)
    params = count_parameters(model)
    reporter.metrics(trainableParameters=params, parameters=params)
    ignored = [n for n in ("deepspeed", "gradient_checkpointing") if getattr(cfg, n, None)]
    if ignored:
        reporter.log(f"the tiny backend ignores {', '.join(ignored)} (and the LoRA options: it trains every weight)", "info")

    order = _Order(torch, len(data), cfg.per_device_train_batch_size, cfg.seed)
    total = _total_steps(cfg, order.per_epoch)
    optimizer = _optimizer(torch, model, cfg)
    if resume_from:
        _restore_optimizer(torch, optimizer, resume_from)
        reporter.log(f"resuming from {resume_from} at step {start_step}")
    history: list[dict[str, Any]] = list(state.get("log_history", []))
    return _Run(
        model=model,
        tok=tok,
        data=data,
        images=images,
        optimizer=optimizer,
        order=order,
        total=total,
        warmup=math.ceil(cfg.warmup_ratio * total),
        params=params,
        start_step=start_step,
        history=history,
        logged_from=len(history),
        step=start_step,
    )


def _read_images(data: Sequence[Encoded], image_root: Optional[str], size: int) -> Images:
    """Every image of the data, read once (BAD_DATA for one that cannot be) and kept."""
    images = Images(size, image_root, limit=1 << 30)
    for name in sorted({d.image for d in data if d.image}):
        try:
            images.get(name)
        except (OSError, ValueError) as err:
            raise PayloadError("BAD_DATA", f"cannot read image {llava_data.image_path(name, image_root)}: {err}") from None
    return images


def _optimizer(torch: Any, model: Any, cfg: Any) -> Any:
    """AdamW; no weight decay on biases, norms and the token and position embeddings."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n and "tok" not in n]
    keep = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n and "tok" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": keep, "weight_decay": 0.0}], lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8
    )


def _restore_optimizer(torch: Any, optimizer: Any, resume_from: str) -> None:
    """The optimizer's state and torch's RNG state of a checkpoint."""
    try:
        optimizer.load_state_dict(torch.load(os.path.join(resume_from, "optimizer.pt")))
        rng = torch.load(os.path.join(resume_from, "rng_state.pt"))
        torch.set_rng_state(rng["torch"])
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise PayloadError("BAD_DATA", f"RESUME_FROM {resume_from}: unreadable optimizer or RNG state: {err}") from None


def _loop(torch: Any, run: _Run, cfg: Any, out_dir: str, reporter: report.Reporter) -> None:
    """Step 2: optimizer steps up to run.total, with their events and checkpoints; Preempted
    (after a checkpoint) when a stop was requested."""
    model, optimizer, order, accum = run.model, run.optimizer, run.order, cfg.gradient_accumulation_steps

    def checkpoint() -> str:
        extra = {"max_steps": run.total, "epoch": run.step * accum / order.per_epoch, "seed": cfg.seed, "log_history": run.history}
        path = _save_checkpoint(model, run.tok, optimizer, out_dir, run.step, extra, cfg.save_total_limit)
        reporter.checkpoint(path, run.step)
        return path

    while run.step < run.total:
        lr = cfg.learning_rate * _lr_factor(cfg.lr_scheduler_type, run.step, run.warmup, run.total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for micro in range(accum):
            items = [run.data[i] for i in order(run.step * accum + micro)]
            b = _collate(torch, items, run.images, run.tok.pad)
            logits = model(b["ids"], b["positions"], b["valid"], b["images"], b["image_rows"])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["labels"].reshape(-1), ignore_index=IGNORE)
            (loss / accum).backward()
            step_loss += float(loss) / accum
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.step += 1
        _report_step(run, cfg, step_loss, lr, grad_norm, reporter)
        if run.step % cfg.save_steps == 0 or run.step == run.total:
            run.last_checkpoint = checkpoint()
        elif signals.stop_requested():
            run.last_checkpoint = checkpoint()
            raise Preempted(f"stopped on request at step {run.step} after writing {run.last_checkpoint}; resume from it")


def _report_step(run: _Run, cfg: Any, step_loss: float, lr: float, grad_norm: float, reporter: report.Reporter) -> None:
    """progress after every step; metrics (the mean loss since the last ones) per logging step and at the end."""
    step = run.step
    epoch = step * cfg.gradient_accumulation_steps / run.order.per_epoch
    run.window.append(step_loss)
    reporter.progress(step, run.total, epoch)
    if step % cfg.logging_steps == 0 or step == run.total:
        entry = {"step": step, "loss": sum(run.window) / len(run.window), "lr": lr, "gradNorm": grad_norm, "epoch": epoch}
        run.window = []
        run.history.append(entry)
        reporter.metrics(step, loss=entry["loss"], lr=lr, gradNorm=grad_norm, epoch=epoch)


def _finish(
    run: _Run, cfg: Any, samples: int, out_dir: str, resume_from: Optional[str], reporter: report.Reporter, seconds: float, cpu_seconds: float
) -> dict[str, Any]:
    """Step 3: OUTPUT/final and OUTPUT/metrics.json written and reported; the result fields."""
    final_dir = os.path.join(out_dir, "final")
    save(run.model, run.tok, final_dir)
    metrics_path = os.path.join(out_dir, "metrics.json")
    losses = [h["loss"] for h in run.history[run.logged_from :] if h.get("loss") is not None]
    steps_per_second = (run.step - run.start_step) / seconds if seconds > 0 else None
    train_metrics = {"train_runtime": round(seconds, 3), "train_steps_per_second": steps_per_second, "train_loss": sum(losses) / len(losses) if losses else None}
    write_json(metrics_path, {"history": run.history, "train": train_metrics})
    reporter.artifact("model", os.path.abspath(final_dir))
    reporter.artifact("metrics", metrics_path)
    return {
        "backend": "tiny",
        "model": cfg.model_name_or_path,
        "steps": run.step,
        "startStep": run.start_step,
        "resumedFrom": resume_from,
        **loss_fields(losses),
        "samples": samples,
        "trainableParameters": run.params,
        "parameters": run.params,
        "seconds": round(seconds, 3),
        "cpuSeconds": round(cpu_seconds, 3),  # of the training loop: on a shared machine, what it cost
        "lastCheckpoint": run.last_checkpoint,
        "adapter": None,
        "modelPath": os.path.abspath(final_dir),
        "vocabSize": len(run.tok),
        "bf16": False,
        "device": "cpu",
    }
