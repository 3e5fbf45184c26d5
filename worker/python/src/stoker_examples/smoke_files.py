"""smoke_train's files: every file written whole (a temporary file, fsync, rename, fsync of the
directory); a checkpoint read back with its format checked and restored into the model, the
optimizer, the scheduler and both RNGs; final.pt and metrics.json with their events at the end
(stoker_examples.smoke_train's docstring has the files' contents).

    atomic_write(path, lambda fh: torch.save(state, fh))
    state = load_checkpoint(torch, path)     # MISSING_INPUT (a directory) or BAD_DATA
    restore(torch, state, net, optimizer, scheduler, path)   # BAD_CONFIG when it does not fit
    write_final(torch, cfg, out_dir, reporter, net, ...)     # rank 0, after the last step
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any, Optional

from stoker_payload import report
from stoker_payload.exit_codes import PayloadError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "restore", "atomic_write", "write_final"]

CHECKPOINT_FORMAT = "stoker-smoke-train/1"


def load_checkpoint(torch: Any, path: str) -> dict:
    if os.path.isdir(path):
        raise PayloadError("MISSING_INPUT", f"RESUME_FROM must be a checkpoint file, got the directory {path}")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing
        raise PayloadError("BAD_DATA", f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    missing = [k for k in ("step", "model", "optimizer", "scheduler", "initial_loss") if not isinstance(state, dict) or k not in state]
    if missing or state.get("format") != CHECKPOINT_FORMAT:
        raise PayloadError(
            "BAD_DATA",
            f"{path} is not a {CHECKPOINT_FORMAT} checkpoint"
            + (f" (missing {', '.join(missing)})" if missing else f" (format {state.get('format')!r})"),
        )
    return state


def restore(torch: Any, state: dict, net: Any, optimizer: Any, scheduler: Any, path: str) -> None:
    try:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise PayloadError(
            "BAD_CONFIG", f"checkpoint {path} does not fit this model (was hidden_size changed?): {err}"
        ) from None
    scheduler.load_state_dict(state["scheduler"])
    rng = state.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "python" in rng:
        random.setstate(rng["python"])


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable; best effort (not every file system allows it)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_final(
    torch: Any,
    cfg: Any,  # smoke_train.SmokeTrainConfig
    out_dir: Path,
    reporter: report.Reporter,
    net: Any,
    start_step: int,
    initial_loss: float,
    final_loss: float,
    history: list,
    resume_path: Optional[str],
    world: int,
) -> None:
    """OUTPUT/final.pt and OUTPUT/metrics.json; the metrics {evalLoss}, artifact and result events."""
    final_path = out_dir / "final.pt"
    final_state = {
        "format": CHECKPOINT_FORMAT,
        "step": cfg.steps,
        "model": net.state_dict(),
        "config": dataclasses.asdict(cfg),
        "initial_loss": initial_loss,
        "final_loss": final_loss,
    }
    atomic_write(final_path, lambda fh: torch.save(final_state, fh))
    metrics_path = out_dir / "metrics.json"
    summary = {
        "initialLoss": initial_loss,
        "finalLoss": final_loss,
        "steps": cfg.steps,
        "worldSize": world,
        "history": history,
    }
    atomic_write(metrics_path, lambda fh: fh.write((json.dumps(summary, indent=2) + "\n").encode()))
    reporter.metrics(cfg.steps, evalLoss=final_loss)
    reporter.artifact("checkpoint", str(final_path))
    reporter.artifact("metrics", str(metrics_path))
    reporter.result(
        initialLoss=initial_loss,
        finalLoss=final_loss,
        lossFell=final_loss < initial_loss,
        steps=cfg.steps,
        startStep=start_step,
        resumedFrom=resume_path,
        worldSize=world,
    )
