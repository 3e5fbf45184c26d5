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

Modules: this one (options, the model, the training loop) and stoker_examples.smoke_files
(checkpoints written and restored, final.pt, metrics.json).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime, signals
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError, Preempted

from .smoke_files import CHECKPOINT_FORMAT, atomic_write, load_checkpoint, restore, write_final

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


@dataclass
class _Run:
    """One rank's training state: set up by _setup(), advanced by _loop()."""

    torch: Any
    dist: Any  # torch.distributed when WORLD_SIZE > 1, else None
    cfg: SmokeTrainConfig
    rank: int
    world: int
    reporter: report.Reporter
    net: Any
    model: Any  # net, or net wrapped in DistributedDataParallel
    optimizer: Any
    scheduler: Any
    shard_x: Any  # this rank's training samples
    shard_y: Any
    eval_loss: Callable[[], float]  # the loss on the fixed held-out set
    ckpt_dir: Path
    start_step: int = 0
    initial_loss: float = 0.0
    history: list = field(default_factory=list)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def save_checkpoint(self, step: int) -> None:
        """OUTPUT/checkpoints/step-NNNNNN.pt and its checkpoint event (rank 0 only)."""
        if not self.is_writer:
            return
        torch = self.torch
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "initial_loss": self.initial_loss,
            "history": self.history,
            "config": dataclasses.asdict(self.cfg),
            "world_size": self.world,
        }
        path = self.ckpt_dir / f"step-{step:06d}.pt"
        atomic_write(path, lambda fh: torch.save(state, fh))
        self.reporter.checkpoint(str(path), step)


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
    """1. data, model, optimizer (restored from RESUME_FROM when given); 2. the steps;
    3. the held-out loss, final.pt, metrics.json and the result (rank 0)."""
    run = _setup(torch, dist, cfg, rank, world, resume_path, out_dir, reporter)
    _loop(run, resume_path)
    final_loss = run.eval_loss()
    if run.is_writer:
        write_final(torch, cfg, out_dir, reporter, run.net, run.start_step, run.initial_loss, final_loss, run.history, resume_path, world)
    if dist is not None:
        dist.barrier()
    return exit_codes.SUCCESS


def _setup(
    torch: Any, dist: Any, cfg: SmokeTrainConfig, rank: int, world: int, resume_path: Optional[str], out_dir: Path, reporter: report.Reporter
) -> _Run:
    """Step 1: this rank's data, the model, the optimizer and the schedule, from RESUME_FROM
    when given (else the initial held-out loss is measured)."""
    train_x, train_y, eval_x, eval_y = _make_data(torch, cfg)
    net = _make_model(torch, cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))

    def eval_loss() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(eval_x), eval_y))

    run = _Run(
        torch, dist, cfg, rank, world, reporter, net, net, optimizer, scheduler,
        train_x[rank::world], train_y[rank::world],  # each rank its own samples
        eval_loss, out_dir / "checkpoints",
    )  # fmt: skip
    if resume_path is not None:
        state = load_checkpoint(torch, resume_path)
        restore(torch, state, net, optimizer, scheduler, resume_path)
        run.start_step, run.initial_loss, run.history = int(state["step"]), float(state["initial_loss"]), list(state.get("history", []))
        if run.is_writer:
            reporter.log(f"resuming from {resume_path} at step {run.start_step}")
    else:
        run.initial_loss = eval_loss()
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        run.model = DistributedDataParallel(net)  # averages gradients across ranks
    if run.is_writer:
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
    return run


def _loop(run: _Run, resume_path: Optional[str]) -> None:
    """Step 2: the optimizer steps after run.start_step, with their events and checkpoints;
    Preempted (after a checkpoint, on every rank) when a stop was requested."""
    torch, cfg, optimizer = run.torch, run.cfg, run.optimizer
    if run.is_writer:
        run.reporter.progress(run.start_step, cfg.steps, _epoch(run.start_step, cfg, len(run.shard_x)))
    window_loss, window_steps, window_seconds = 0.0, 0, 0.0
    last_saved = run.start_step if resume_path is not None else -1
    for step in range(run.start_step + 1, cfg.steps + 1):
        began = time.perf_counter()
        batch = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.rank * 7_919 + step)
        index = torch.randint(len(run.shard_x), (cfg.batch_size,), generator=batch)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(run.model(run.shard_x[index]), run.shard_y[index])
        loss.backward()
        optimizer.step()
        run.scheduler.step()
        window_loss += float(loss)
        window_steps += 1
        window_seconds += time.perf_counter() - began

        if run.is_writer:
            run.reporter.progress(step, cfg.steps, _epoch(step, cfg, len(run.shard_x)))
        if step % cfg.log_every == 0 or step == cfg.steps:
            _log_window(run, step, lr, window_loss / window_steps, window_steps, window_seconds)
            window_loss, window_steps, window_seconds = 0.0, 0, 0.0
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            run.save_checkpoint(step)
            last_saved = step

        if cfg.step_delay > 0:
            signals.sleep(cfg.step_delay)  # returns early on SIGTERM
        if step < cfg.steps and _stop_agreed(torch, run.dist):  # at the last step, finishing is cheaper
            if last_saved != step:
                run.save_checkpoint(step)
            if run.dist is not None:
                run.dist.barrier()  # rank 0's checkpoint is on disk before anyone exits
            raise Preempted(f"stopped on request at step {step} after writing a checkpoint; resume from it")


def _log_window(run: _Run, step: int, lr: float, mean_loss: float, steps: int, seconds: float) -> None:
    """The history entry of the steps since the last one; the metrics event and a log line (rank 0)."""
    cfg = run.cfg
    rate = cfg.batch_size * run.world * steps / seconds if seconds > 0 else None
    run.history.append({"step": step, "loss": mean_loss, "lr": lr})
    if run.is_writer:
        run.reporter.metrics(step, loss=mean_loss, lr=lr, samplesPerSec=rate)
        print(f"step {step}/{cfg.steps} loss {mean_loss:.5f} lr {lr:.3g}", flush=True)


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



if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
