"""Model backends of the FIRE payloads, by name (`--backend`).

    hf     LLaVA-NeXT through transformers + peft (stoker_fire.hf): the real recipe, on GPUs.
    tiny   a small vision-language model in plain PyTorch (stoker_fire.tiny): CPU tests and the
           fire-mini demo; models are `tiny-new` (random) or a directory it wrote.

A backend is a module with:
    require() -> None
        raise PayloadError('MISSING_DEPENDENCY', ...) when its libraries are missing;
        called first, before any data is read.
    train(cfg, records, image_root, out_dir, resume_from, reporter) -> dict
        LoRA-train on LLaVA conversation records (stoker_fire.llava_data) with the options of
        stoker_fire.train.TrainConfig; report progress/metrics/checkpoint events; return the fields
        of the final `result` event (stoker_fire.train lists them).
    make_generator(name_or_path, *, seed, adapter, image_root, max_new_tokens, batch_size, bf16)
        -> callable(list[stoker_fire.selfplay_rules.Prompt]) -> list[str]: batched greedy
        generation for self-play, with a settable `image_root` and `batch_size`.
    TINY_RANDOM: the model name that needs no download ("tiny-random"; tiny also takes "tiny-new").

`auto` and `--device` (select()): the payloads (train, selfplay, evaluate, init_model) take
`--backend auto` with `--device cpu|cuda`, and auto is resolved from the device alone, never
from what happens to be installed: cuda -> hf, cpu -> tiny. `--device cpu` hides the GPUs
from the process (CUDA_VISIBLE_DEVICES empty, before torch starts CUDA), so `--backend hf
--device cpu` runs hf on the CPU even where there is a GPU; `--device cuda` without a CUDA
device torch can see is MISSING_DEPENDENCY; tiny runs on the CPU only (`--backend tiny
--device cuda` is BAD_CONFIG). Without --device the backends keep their old choice (hf: CUDA
when there is one). With --device, the engine used is logged once ("engine: hf (auto, device
cuda)"); the payloads put it in their result event.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any, Optional

from stoker_payload.exit_codes import PayloadError

__all__ = ["KNOWN", "AUTO", "DEVICES", "problem", "resolve", "select", "load", "loss_fields"]

KNOWN = {"hf": "stoker_fire.hf", "tiny": "stoker_fire.tiny"}
AUTO = "auto"
DEVICES = ("cpu", "cuda")
_AUTO_BY_DEVICE = {"cuda": "hf", "cpu": "tiny"}


def problem(name: str, device: Optional[str] = None) -> Optional[str]:
    """Why `name` on `device` (None: the backend's own choice) is not usable, or None."""
    if device is not None and device not in DEVICES:
        return f"unknown device {device!r} (known: {', '.join(DEVICES)})"
    if name == AUTO:
        if device is None:
            return "backend auto is chosen from the device: give --device cpu (tiny) or --device cuda (hf)"
        return None
    if name not in KNOWN:
        return f"unknown backend {name!r} (known: {', '.join(KNOWN)}, or auto with --device)"
    if name == "tiny" and device == "cuda":
        return "the tiny backend runs on the CPU only: use --device cpu, or --backend hf (or auto) for cuda"
    return None


def resolve(name: str, device: Optional[str]) -> str:
    """The backend `name` stands for on `device`: auto -> hf on cuda, tiny on cpu."""
    why = problem(name, device)
    if why is not None:
        raise PayloadError("BAD_CONFIG", why)
    return _AUTO_BY_DEVICE[device] if name == AUTO else name  # type: ignore[index]


def select(name: str, device: Optional[str], reporter: Optional[Any] = None) -> str:
    """resolve(), then make the device hold for this process, and log the engine once.

    cpu: CUDA_VISIBLE_DEVICES is emptied (call this before anything starts CUDA);
    cuda: torch must see a CUDA device (MISSING_DEPENDENCY otherwise)."""
    engine = resolve(name, device)
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PayloadError("MISSING_DEPENDENCY", f"--device cuda: torch {torch.__version__} sees no CUDA device (use --device cpu)")
    if device is None:
        return engine  # the old flags: nothing new to say
    how = f"{name}, device {device}" if name == AUTO else f"device {device}"
    line = f"engine: {engine} ({how})"
    if reporter is not None:
        reporter.log(line)  # a marker line: it lands in the attempt's log and its log tail
    else:
        print(line, file=sys.stderr, flush=True)
    return engine


def load(name: str) -> ModuleType:
    """The backend module, after its require() passed."""
    why = problem(name)
    if why is not None:
        raise PayloadError("BAD_CONFIG", why)
    module = importlib.import_module(KNOWN[name])
    module.require()
    return module


def loss_fields(losses: "list[float]") -> dict:
    """The loss fields of every backend's train result, from this run's logged losses."""
    return {
        "firstLoss": losses[0] if losses else None,
        "lastLoss": losses[-1] if losses else None,
        "lossFell": len(losses) > 1 and losses[-1] < losses[0],
        "meanLoss": sum(losses) / len(losses) if losses else None,
    }
