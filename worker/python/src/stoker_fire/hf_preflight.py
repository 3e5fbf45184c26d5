"""The hf backend's checks before anything heavy runs (stoker_fire.hf has the whole backend's
description): every Python module the options need, the attention implementation, DeepSpeed.
A failure here costs seconds, not the minutes of loading an 8B model first.

    plan = preflight(cfg, out_dir, reporter)   # or PayloadError, before the model loads
    plan.attn_implementation                   # what to load the model with
    plan.deepspeed, plan.zero_stage            # the DeepSpeed JSON to train with (or None), its ZeRO stage
    plan.tensorboard                           # OUTPUT/tensorboard, or None

Rules:
    modules      torch, transformers, peft, accelerate, PIL and jinja2 always; deepspeed when
                 cfg.deepspeed is set (unless cfg.deepspeed_fallback allows training without
                 it): whatever is missing is one PayloadError('MISSING_DEPENDENCY') naming
                 every missing module (not retried: another attempt on the same image fails
                 the same way); then tensorboard or tensorboardX with report_to tensorboard
                 (MISSING_DEPENDENCY too).
    attention    flash_attention_2 without the flash_attn module, or without CUDA, falls back
                 to sdpa, with one log event (level warn) saying why; any other value is
                 passed on as asked (None: the model's default).
    deepspeed    cfg.deepspeed names a JSON file (MISSING_INPUT when it does not exist;
                 BAD_CONFIG when it is not a JSON object). deepspeed not importable:
                 deepspeed_fallback none (the default) -> MISSING_DEPENDENCY at once, naming
                 the file; ddp -> train without DeepSpeed (plain data parallel across the
                 ranks torchrun started, each holding a whole copy of the model), with one
                 warn log event. zero_stage is the JSON's zero_optimization.stage (0 without).

Module lookups go through importlib.util.find_spec (tests replace it), and a module that is
found is also imported only by the code that uses it, later.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

from stoker_payload import report
from stoker_payload.exit_codes import PayloadError

__all__ = [
    "Plan",
    "preflight",
    "missing_modules",
    "attention",
    "deepspeed_plan",
    "tensorboard_dir",
    "ALWAYS",
    "DEEPSPEED_FALLBACKS",
    "FLASH_ATTENTION",
]

# What the hf backend imports in every run (PIL: the images; jinja2: the chat template), with
# the pip names.
ALWAYS = {"torch": "torch", "transformers": "transformers>=4.57", "peft": "peft", "accelerate": "accelerate", "PIL": "pillow", "jinja2": "jinja2>=3.1"}
DEEPSPEED_FALLBACKS = ("none", "ddp")
FLASH_ATTENTION = "flash_attention_2"


@dataclass(frozen=True)
class Plan:
    attn_implementation: Optional[str]
    deepspeed: Optional[str]
    zero_stage: int
    tensorboard: Optional[str]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that fails to import, a module without a spec
        return False


def missing_modules(names: "list[str] | tuple[str, ...]") -> list[str]:
    """The names among `names` that cannot be imported here."""
    return [name for name in names if not _installed(name)]


def attention(requested: Optional[str], reporter: report.Reporter, *, cuda: bool) -> Optional[str]:
    """The attention implementation to load the model with (see the module's rules)."""
    if requested != FLASH_ATTENTION:
        return requested or None
    why = None if cuda else "no CUDA device"
    if why is None and not _installed("flash_attn"):
        why = "the flash_attn module is not installed (pip install flash-attn)"
    if why is None:
        return requested
    reporter.log(f"attn_implementation {FLASH_ATTENTION} is not available ({why}): using sdpa", level="warn")
    return "sdpa"


def _zero_stage(path: str) -> int:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as err:
        raise PayloadError("BAD_CONFIG", f"deepspeed config {path} is not readable JSON: {err}") from None
    if not isinstance(config, dict):
        raise PayloadError("BAD_CONFIG", f"deepspeed config {path} is not a JSON object")
    zero = config.get("zero_optimization")
    stage = zero.get("stage", 0) if isinstance(zero, dict) else 0
    return stage if isinstance(stage, int) and not isinstance(stage, bool) else 0


def deepspeed_plan(cfg: Any, reporter: report.Reporter) -> tuple[Optional[str], int]:
    """(the DeepSpeed JSON to train with, or None; its ZeRO stage), by the module's rules."""
    path = getattr(cfg, "deepspeed", None)
    if not path:
        return None, 0
    if not os.path.isfile(path):
        raise PayloadError("MISSING_INPUT", f"deepspeed config does not exist: {path}")
    stage = _zero_stage(path)
    if _installed("deepspeed"):
        return path, stage
    fallback = getattr(cfg, "deepspeed_fallback", "none")
    if fallback == "ddp":
        reporter.log(
            f"deepspeed is not installed: training WITHOUT DeepSpeed ({path}, ZeRO stage {stage}, ignored; "
            "deepspeed_fallback ddp): every rank holds the whole model",
            level="warn",
        )
        return None, 0
    raise PayloadError(
        "MISSING_DEPENDENCY",
        f"deepspeed {path} (ZeRO stage {stage}) was asked for, but the deepspeed module is not installed "
        "(pip install deepspeed; or set deepspeed_fallback: ddp to train without it)",
    )


def tensorboard_dir(cfg: Any, out_dir: str) -> Optional[str]:
    """OUTPUT/tensorboard when cfg.report_to asks for TensorBoard, else None; without tensorboard
    (or tensorboardX) installed, MISSING_DEPENDENCY (the Trainer would fail after the model loaded)."""
    if getattr(cfg, "report_to", "none") != "tensorboard":
        return None
    if not _installed("tensorboard") and not _installed("tensorboardX"):
        raise PayloadError("MISSING_DEPENDENCY", "report_to tensorboard: neither tensorboard nor tensorboardX is installed (pip install tensorboard)")
    return os.path.join(out_dir, "tensorboard")


def preflight(cfg: Any, out_dir: str, reporter: report.Reporter, *, cuda: bool) -> Plan:
    """Every check of the module's rules; the plan the training follows."""
    needed = list(ALWAYS)
    if getattr(cfg, "deepspeed", None) and getattr(cfg, "deepspeed_fallback", "none") == "none":
        needed.append("deepspeed")
    missing = missing_modules(needed)
    if missing:
        pips = " ".join(ALWAYS.get(name, name) for name in missing)
        hint = "; or deepspeed_fallback: ddp to train without DeepSpeed" if "deepspeed" in missing else ""
        raise PayloadError(
            "MISSING_DEPENDENCY",
            f"the hf backend needs Python modules that are not installed: {', '.join(missing)} (pip install '{pips}'{hint})",
        )
    tensorboard = tensorboard_dir(cfg, out_dir)
    deepspeed, stage = deepspeed_plan(cfg, reporter)
    return Plan(attention(getattr(cfg, "attn_implementation", None), reporter, cuda=cuda), deepspeed, stage, tensorboard)
