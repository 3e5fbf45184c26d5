r"""Smoke training payload: a small MLP trained for real, on CPU, on a synthetic regression task.

The payload of training-configs/smoke-cpu.yaml. It exercises every part of the payload
protocol that a real fine-tune uses (progress, metrics, checkpoints, resume, preemption,
several ranks) in seconds, with nothing to download.

Usage (from the repository root; /usr/bin/python3 is the interpreter with torch):

    # 60 steps, outputs under /tmp/smoke
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --steps 60 --output-dir /tmp/smoke

    # as the worker starts it (training-configs/smoke-cpu.yaml): a module on PYTHONPATH
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --steps 300 --checkpoint-every 50 \
        --step-delay 0.01 --output-dir /tmp/smoke

    # options from a file of the same names (steps: 100, batch_size: 64, ...); flags override it
    printf 'steps: 100\nbatch_size: 64\nlr: 0.005\n' > /tmp/smoke.yaml
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --config /tmp/smoke.yaml --steps 120

    # watchable: a quarter second per step, a checkpoint every 20 steps
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --steps 200 --step-delay 0.25 --checkpoint-every 20

    # continue a run from its checkpoint (steps continue at 41)
    RESUME_FROM=/tmp/smoke/checkpoints/step-000040.pt \
        PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --steps 60 --output-dir /tmp/smoke

    # two ranks, one process each (what torchrun would start), gloo over localhost
    for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
        PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.smoke_train --steps 60 --output-dir /tmp/smoke2 & done; wait

Contract:
    inputs     flags or --config FILE.yaml (keys are the flag names: steps, batch_size, ...);
               env STOKER_OUTPUT_DIR (unless --output-dir), RESUME_FROM (a checkpoint file),
               RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT when WORLD_SIZE > 1.
    outputs    OUTPUT/checkpoints/step-NNNNNN.pt  every --checkpoint-every steps and on SIGTERM
                   {format, step, model, optimizer, scheduler, rng, initial_loss, history, config}
               OUTPUT/final.pt       {format, step, model, config, initial_loss, final_loss}
               OUTPUT/metrics.json   {initialLoss, finalLoss, steps, worldSize, history: [...]}
               every file is written to a temporary name and renamed into place.
    events     (rank 0 only) progress every step; metrics {loss, lr, samplesPerSec} every
               --log-every steps; checkpoint after each checkpoint file; at the end metrics
               {evalLoss}, artifact "checkpoint" (final.pt), artifact "metrics"
               (metrics.json), result {initialLoss, finalLoss, lossFell, steps, startStep,
               resumedFrom, worldSize}. Losses in the result are the loss on a fixed
               held-out set, before any training and after the last step.
    exit codes (common/exit-codes.json) SUCCESS; PREEMPTED after SIGTERM (checkpoint written
               first); MISSING_INPUT for a RESUME_FROM or --config file that does not exist;
               BAD_CONFIG for unknown or invalid options or a checkpoint that does not fit
               the model; BAD_DATA for an unreadable checkpoint; USAGE for a bad command line.

Determinism: the data set comes from --seed, and the batch of step s on rank r is drawn
from a generator seeded by (seed, r, s), so a resumed run trains on exactly the batches
the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime, signals
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError, Preempted

CHECKPOINT_FORMAT = "stoker-smoke-train/1"
FEATURES = 8  # input width of the synthetic task
TEACHER_WIDTH = 16
EVAL_SIZE = 512


@dataclass
class SmokeTrainConfig:
    steps: int = field(default=100, metadata={"help": "optimizer steps in the whole run"})
    batch_size: int = field(default=32, metadata={"help": "samples per step on each rank"})
    lr: float = field(default=1e-2, metadata={"help": "peak learning rate (Adam)"})
    seed: int = field(default=0, metadata={"help": "seed of the data set, the model and the batches"})
    checkpoint_every: int = field(default=20, metadata={"help": "write a checkpoint every N steps (0: only on SIGTERM)"})
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "where outputs go; default $STOKER_OUTPUT_DIR, else ./out", "metavar": "DIR"}
    )
    step_delay: float = field(default=0.0, metadata={"help": "sleep SECONDS after each step, so a run is watchable"})
    log_every: int = field(default=10, metadata={"help": "report metrics every N steps"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process"})
    hidden_size: int = field(default=64, metadata={"help": "width of the MLP's hidden layers"})
    dataset_size: int = field(default=4096, metadata={"help": "training samples, split across ranks"})
    schedule: str = field(
        default="cosine", metadata={"help": "learning-rate schedule", "choices": ("constant", "cosine")}
    )
    dist_timeout: float = field(default=600.0, metadata={"help": "seconds a collective waits for the other ranks"})

    def validate(self) -> list[str]:
        problems = []
        for name in ("steps", "batch_size", "log_every", "threads", "hidden_size", "dataset_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every: must be >= 0, got {self.checkpoint_every}")
        if self.lr <= 0:
            problems.append(f"lr: must be > 0, got {self.lr}")
        if self.step_delay < 0:
            problems.append(f"step_delay: must be >= 0, got {self.step_delay}")
        if self.dist_timeout <= 0:
            problems.append(f"dist_timeout: must be > 0, got {self.dist_timeout}")
        return problems


def parse_args(argv: Optional[Sequence[str]] = None) -> SmokeTrainConfig:
    return parse_config(
        SmokeTrainConfig,
        argv,
        prog="python -m stoker_examples.smoke_train",
        description="Train a small MLP on a synthetic task on CPU, reporting to stoker.",
    )


def main(cfg: SmokeTrainConfig) -> int:
    signals.install()  # first: a SIGTERM during the slow imports below still stops cleanly
    rank, world = runtime.rank(), runtime.world_size()
    if rank >= world:
        raise PayloadError("BAD_CONFIG", f"RANK={rank} is not below WORLD_SIZE={world}")
    if cfg.dataset_size < world:
        raise PayloadError("BAD_CONFIG", f"dataset_size={cfg.dataset_size} leaves a rank without data (WORLD_SIZE={world})")
    resume_path = runtime.resume_from()  # MISSING_INPUT before paying for torch
    out_dir = Path(runtime.output_dir(cfg.output_dir))
    reporter = report.get_reporter()

    import torch  # heavy imports inside main, as in TRL's scripts

    torch.set_num_threads(cfg.threads)
    dist = _init_distributed(torch, cfg, rank, world)
    try:
        return _train(torch, dist, cfg, rank, world, resume_path, out_dir, reporter)
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


def _init_distributed(torch: Any, cfg: SmokeTrainConfig, rank: int, world: int) -> Any:
    if world == 1:
        return None
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise PayloadError("BAD_CONFIG", f"WORLD_SIZE={world} needs {' and '.join(missing)} (env:// rendezvous)")
    import datetime

    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method="env://",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=cfg.dist_timeout),
    )
    return dist


def _make_data(torch: Any, cfg: SmokeTrainConfig) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, eval x, eval y): y = a random two-layer 'teacher' of x, plus noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    w1 = torch.randn(FEATURES, TEACHER_WIDTH, generator=g)
    w2 = torch.randn(TEACHER_WIDTH, 1, generator=g) / math.sqrt(TEACHER_WIDTH)
    x = torch.randn(cfg.dataset_size + EVAL_SIZE, FEATURES, generator=g)
    y = torch.sin(x @ w1 / math.sqrt(FEATURES)) @ w2 + 0.05 * torch.randn(x.shape[0], 1, generator=g)
    return x[: cfg.dataset_size], y[: cfg.dataset_size], x[cfg.dataset_size :], y[cfg.dataset_size :]


def _make_model(torch: Any, cfg: SmokeTrainConfig) -> Any:
    nn = torch.nn
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    return nn.Sequential(
        nn.Linear(FEATURES, cfg.hidden_size),
        nn.Tanh(),
        nn.Linear(cfg.hidden_size, cfg.hidden_size),
        nn.Tanh(),
        nn.Linear(cfg.hidden_size, 1),
    )


def _lr_factor(cfg: SmokeTrainConfig):
    if cfg.schedule == "constant":
        return lambda _done: 1.0
    # cosine from lr down to lr/10 over the run
    return lambda done: 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(done, cfg.steps) / cfg.steps))


def _train(
    torch: Any,
    dist: Any,
    cfg: SmokeTrainConfig,
    rank: int,
    world: int,
    resume_path: Optional[str],
    out_dir: Path,
    reporter: report.Reporter,
) -> int:
    is_writer = rank == 0
    train_x, train_y, eval_x, eval_y = _make_data(torch, cfg)
    shard_x, shard_y = train_x[rank::world], train_y[rank::world]  # each rank its own samples
    net = _make_model(torch, cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
    loss_fn = torch.nn.functional.mse_loss

    def eval_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(net(eval_x), eval_y))

    start_step, history = 0, []
    if resume_path is not None:
        state = _load_checkpoint(torch, resume_path)
        _restore(torch, state, net, optimizer, scheduler, resume_path)
        start_step, initial_loss, history = int(state["step"]), float(state["initial_loss"]), list(state.get("history", []))
        if is_writer:
            reporter.log(f"resuming from {resume_path} at step {start_step}")
    else:
        initial_loss = eval_loss()

    model = net
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net)  # averages gradients across ranks

    ckpt_dir = out_dir / "checkpoints"
    if is_writer:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    def save_checkpoint(step: int) -> None:
        if not is_writer:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "initial_loss": initial_loss,
            "history": history,
            "config": dataclasses.asdict(cfg),
            "world_size": world,
        }
        path = ckpt_dir / f"step-{step:06d}.pt"
        _atomic_write(path, lambda fh: torch.save(state, fh))
        reporter.checkpoint(str(path), step)

    if is_writer:
        reporter.progress(start_step, cfg.steps, _epoch(start_step, cfg, len(shard_x)))
    window_loss, window_steps, window_seconds = 0.0, 0, 0.0
    last_saved = start_step if resume_path is not None else -1
    for step in range(start_step + 1, cfg.steps + 1):
        began = time.perf_counter()
        batch = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 7_919 + step)
        index = torch.randint(len(shard_x), (cfg.batch_size,), generator=batch)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(shard_x[index]), shard_y[index])
        loss.backward()
        optimizer.step()
        scheduler.step()
        window_loss += float(loss)
        window_steps += 1
        window_seconds += time.perf_counter() - began

        if is_writer:
            reporter.progress(step, cfg.steps, _epoch(step, cfg, len(shard_x)))
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean_loss = window_loss / window_steps
            rate = cfg.batch_size * world * window_steps / window_seconds if window_seconds > 0 else None
            history.append({"step": step, "loss": mean_loss, "lr": lr})
            if is_writer:
                reporter.metrics(step, loss=mean_loss, lr=lr, samplesPerSec=rate)
                print(f"step {step}/{cfg.steps} loss {mean_loss:.5f} lr {lr:.3g}", flush=True)
            window_loss, window_steps, window_seconds = 0.0, 0, 0.0
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save_checkpoint(step)
            last_saved = step

        if cfg.step_delay > 0:
            signals.sleep(cfg.step_delay)  # returns early on SIGTERM
        if step < cfg.steps and _stop_agreed(torch, dist):  # at the last step, finishing is cheaper
            if last_saved != step:
                save_checkpoint(step)
            if dist is not None:
                dist.barrier()  # rank 0's checkpoint is on disk before anyone exits
            raise Preempted(f"stopped on request at step {step} after writing a checkpoint; resume from it")

    final_loss = eval_loss()
    if is_writer:
        _finish(torch, cfg, out_dir, reporter, net, start_step, initial_loss, final_loss, history, resume_path, world)
    if dist is not None:
        dist.barrier()
    return exit_codes.SUCCESS


def _epoch(step: int, cfg: SmokeTrainConfig, shard_len: int) -> float:
    return round(step * cfg.batch_size / shard_len, 4)


def _stop_agreed(torch: Any, dist: Any) -> bool:
    """Whether to stop now; with several ranks all must agree, or the others hang in a collective."""
    wanted = signals.stop_requested()
    if dist is None:
        return wanted
    flag = torch.tensor([1 if wanted else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _finish(
    torch: Any,
    cfg: SmokeTrainConfig,
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
    final_path = out_dir / "final.pt"
    final_state = {
        "format": CHECKPOINT_FORMAT,
        "step": cfg.steps,
        "model": net.state_dict(),
        "config": dataclasses.asdict(cfg),
        "initial_loss": initial_loss,
        "final_loss": final_loss,
    }
    _atomic_write(final_path, lambda fh: torch.save(final_state, fh))
    metrics_path = out_dir / "metrics.json"
    summary = {
        "initialLoss": initial_loss,
        "finalLoss": final_loss,
        "steps": cfg.steps,
        "worldSize": world,
        "history": history,
    }
    _atomic_write(metrics_path, lambda fh: fh.write((json.dumps(summary, indent=2) + "\n").encode()))
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


def _load_checkpoint(torch: Any, path: str) -> dict:
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


def _restore(torch: Any, state: dict, net: Any, optimizer: Any, scheduler: Any, path: str) -> None:
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


def _atomic_write(path: Path, write) -> None:
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


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
