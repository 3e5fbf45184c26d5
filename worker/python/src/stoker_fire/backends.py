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
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from stoker_payload.exit_codes import PayloadError

__all__ = ["KNOWN", "problem", "load", "loss_fields"]

KNOWN = {"hf": "stoker_fire.hf", "tiny": "stoker_fire.tiny"}


def problem(name: str) -> Optional[str]:
    """Why `name` is not a usable backend, or None."""
    if name in KNOWN:
        return None
    return f"unknown backend {name!r} (known: {', '.join(KNOWN)})"


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
