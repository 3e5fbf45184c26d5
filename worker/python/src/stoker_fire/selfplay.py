r"""FIRE self-play generation server: the student and the teacher are loaded once, then each
shard of seeds becomes FIRE raw records of kept dialogues (docs/fire.md, section 3; the
rules are stoker_fire/selfplay_rules.py, the protocol stoker_payload/server.py).

Backends: `--backend hf` (stoker_fire/hf.py) and `--backend tiny` (stoker_fire/tiny.py: CPU; a model is
tiny-new / tiny-random or a directory stoker_fire.train --backend tiny wrote, and the adapter options
must be left out); any other name is BAD_CONFIG.

Usage (from the repository root; PYTHONPATH=worker/python/src):

    # as a pool worker starts it: trained student and teacher (LoRA checkpoints of stoker_fire.train)
    python3 -m stoker_fire.selfplay --student-model /models/llava-next-8b-hf --student-adapter /out/student/final \
        --teacher-model /models/llava-next-8b-hf --teacher-adapter /out/teacher/final \
        --image-root /data/fire/images --batch-size 32

    # one shard by hand, two tiny random models (no download), one dialogue at a time
    printf '%s\n' '{"type":"shard","id":"s1","input":"/tmp/seeds.jsonl","output":"/tmp/s1.jsonl"}' \
        | python3 -m stoker_fire.selfplay --student-model tiny-random --teacher-model tiny-random \
            --image-root /tmp/images --batch-size 1 --max-new-tokens 32

    # the tiny backend on a CPU: models trained by stoker_fire.train --backend tiny
    python3 -m stoker_fire.selfplay --backend tiny --student-model /tmp/mini/student/final \
        --teacher-model /tmp/mini/teacher/final --image-root /tmp/mini/seeds/images \
        --batch-size 64 --max-new-tokens 40 --threads 1

Contract:
    inputs     flags or --config FILE.yaml (keys: the SelfPlayConfig fields below); requests
               on stdin (server mode). Each shard's `input` is JSONL, one seed per line:
                   {"id": str|int, "image": path relative to --image-root (or "img_path";
                    optional), "question": str | {role, value}, "groundtruth": str |
                    {role, value}, "source": str (optional)}
               Request params: {"image_root": DIR} overrides --image-root for that shard.
    outputs    each shard's `output`: one FIRE raw record per kept dialogue, in seed order
               (stoker_fire/selfplay_rules.py has the fields; split --split, default fire_1m).
    events     metrics {loadSeconds} and {studentParameters, teacherParameters} once; ready;
               per shard progress {step: dialogues finished, totalSteps: seeds}; done
               {id, items: kept dialogues} or failed {id, reason, message}; metrics {seeds,
               kept, droppedFormatFailure, droppedNoImprovement, droppedFirstAnswerSatisfied,
               droppedUnsatisfied, studentCalls, teacherCalls, dialoguesPerSec} and
               {shardSeconds, itemsPerSec}.
    errors     a bad seed line or a missing image: failed BAD_DATA naming every one (the
               server keeps serving); a missing input: failed MISSING_INPUT; SIGTERM while a
               shard runs: the shard is handed back (failed PREEMPTED, retried) at the next
               batch boundary and the server exits.
    exit codes (common/exit-codes.json) SUCCESS after shutdown, EOF or SIGTERM; BAD_CONFIG for
               invalid options or backend; UNKNOWN_MODEL for a model that does not load;
               MISSING_DEPENDENCY without transformers/peft; USAGE for a bad command line.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, report
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError, Preempted
from stoker_payload.server import ShardContext, ShardRequest, serve

from . import backends, llava_data
from .selfplay_rules import Rules, Seed, StopRequested, run_dialogues, seed_from_record

TINY_RANDOM = "tiny-random"
MAX_LISTED = 20


@dataclass
class SelfPlayConfig:
    backend: str = field(default="hf", metadata={"help": "model backend: hf, tiny, or auto (from --device: cuda -> hf, cpu -> tiny)"})
    device: Optional[str] = field(default=None, metadata={"help": "cpu or cuda (default: the backend's choice; hf takes CUDA when there is one)"})
    student_model: str = field(default=TINY_RANDOM, metadata={"help": "student model directory, or tiny-random (tiny: also tiny-new)", "metavar": "PATH"})
    teacher_model: str = field(default=TINY_RANDOM, metadata={"help": "teacher model directory, or tiny-random (tiny: also tiny-new)", "metavar": "PATH"})
    student_adapter: Optional[str] = field(default=None, metadata={"help": "LoRA checkpoint to merge into the student (hf only)", "metavar": "DIR"})
    teacher_adapter: Optional[str] = field(default=None, metadata={"help": "LoRA checkpoint to merge into the teacher (hf only)", "metavar": "DIR"})
    student_seed: int = field(default=1, metadata={"help": "weights seed of a tiny-random student"})
    teacher_seed: int = field(default=2, metadata={"help": "weights seed of a tiny-random teacher"})
    image_root: Optional[str] = field(default=None, metadata={"help": "directory the seeds' image paths are relative to", "metavar": "DIR"})
    batch_size: int = field(default=32, metadata={"help": "dialogues advanced together (1: one dialogue at a time)"})
    max_new_tokens: int = field(default=256, metadata={"help": "greedy tokens per turn"})
    max_rounds: int = field(default=3, metadata={"help": "student/teacher rounds at most"})
    satisfied: int = field(default=8, metadata={"help": "a score >= this ends a dialogue, kept"})
    min_rounds: int = field(default=2, metadata={"help": "drop dialogues satisfied in fewer rounds"})
    keep_unsatisfied: bool = field(default=False, metadata={"help": "keep improving dialogues that end below --satisfied"})
    teacher_sees_image: bool = field(default=False, metadata={"help": "give the teacher the image too"})
    split: str = field(default="fire_1m", metadata={"help": "split tag of the records"})
    bf16: Optional[bool] = field(default=None, metadata={"help": "bf16 on CUDA (default: on when CUDA is there)"})
    threads: Optional[int] = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)"})

    def validate(self) -> list[str]:
        problems = []
        why = backends.problem(self.backend, self.device)
        if why:
            problems.append(f"backend: {why}")
        engine = self.backend if why else backends.resolve(self.backend, self.device)
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads: must be >= 1, got {self.threads}")
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        problems.extend(self.rules().problems())
        if engine == "tiny":
            problems.extend(f"{name}: the tiny backend has no adapters; pass the trained model directory as the model" for name in ("student_adapter", "teacher_adapter") if getattr(self, name))
        return problems

    def rules(self) -> Rules:
        return Rules(
            max_rounds=self.max_rounds,
            satisfied=self.satisfied,
            min_rounds=self.min_rounds,
            keep_unsatisfied=self.keep_unsatisfied,
            teacher_sees_image=self.teacher_sees_image,
            split=self.split,
        )


def parse_args(argv: Optional[Sequence[str]] = None) -> SelfPlayConfig:
    return parse_config(
        SelfPlayConfig,
        argv,
        prog="python -m stoker_fire.selfplay",
        description="Serve shards of FIRE self-play seeds with a resident student and teacher (stoker server mode).",
    )


@dataclass
class Models:
    student: Any
    teacher: Any


def load_models(cfg: SelfPlayConfig, reporter: report.Reporter) -> Models:
    cfg.backend = backends.select(cfg.backend, cfg.device, reporter)  # auto -> hf / tiny, from the device
    backend = backends.load(cfg.backend)
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    common = dict(image_root=cfg.image_root, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, bf16=cfg.bf16)
    student = backend.make_generator(cfg.student_model, seed=cfg.student_seed, adapter=cfg.student_adapter, **common)
    teacher = backend.make_generator(cfg.teacher_model, seed=cfg.teacher_seed, adapter=cfg.teacher_adapter, **common)
    reporter.metrics(
        studentParameters=sum(p.numel() for p in student.model.parameters()),
        teacherParameters=sum(p.numel() for p in teacher.model.parameters()),
    )
    return Models(student, teacher)


def read_seeds(ctx: ShardContext) -> list[Seed]:
    seeds, problems = [], []
    for number, record in ctx.read_jsonl():
        try:
            seeds.append(seed_from_record(record, f"input line {number}"))
        except ValueError as err:
            problems.append(str(err))
    _fail(problems, "bad seeds")
    return seeds


def check_seed_images(seeds: Sequence[Seed], image_root: Optional[str]) -> None:
    missing = [
        f"seed {s.id!r}: image file not found: {llava_data.image_path(s.image, image_root)}"
        for s in seeds
        if s.image is not None and not os.path.isfile(llava_data.image_path(s.image, image_root))
    ]
    _fail(missing, "missing images")


def _fail(problems: list[str], what: str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise PayloadError("BAD_DATA", f"{len(problems)} {what}:\n  " + "\n  ".join(problems[:MAX_LISTED]) + more)


def metrics_of(stats: Any, seconds: float) -> dict[str, Any]:
    return {
        "seeds": stats.seeds,
        "kept": stats.kept,
        "droppedFormatFailure": stats.dropped["format_failure"],
        "droppedNoImprovement": stats.dropped["no_improvement"],
        "droppedFirstAnswerSatisfied": stats.dropped["first_answer_satisfied"],
        "droppedUnsatisfied": stats.dropped["unsatisfied"],
        "studentCalls": stats.student_calls,
        "teacherCalls": stats.teacher_calls,
        "dialoguesPerSec": stats.seeds / seconds if seconds > 0 else None,
    }


def make_handler(cfg: SelfPlayConfig):
    rules = cfg.rules()

    def handle(request: ShardRequest, ctx: ShardContext) -> int:
        models: Models = ctx.state
        image_root = request.params.get("image_root", cfg.image_root)
        if image_root is not None and not isinstance(image_root, str):
            raise PayloadError("BAD_CONFIG", f"params.image_root must be a string, got {image_root!r}")
        seeds = read_seeds(ctx)
        check_seed_images(seeds, image_root)
        models.student.image_root = models.teacher.image_root = image_root
        ctx.progress(0, len(seeds) or None, force=True)
        began = time.perf_counter()
        try:
            records, stats = run_dialogues(
                seeds,
                models.student,
                models.teacher,
                batch_size=cfg.batch_size,
                rules=rules,
                on_progress=lambda done, total: ctx.progress(done, total),
                should_stop=ctx.stop_requested,
            )
        except StopRequested as stop:
            raise Preempted(f"{stop}; the shard goes back to the queue") from None
        seconds = time.perf_counter() - began
        with ctx.writer() as out:
            out.write_all(records)
        ctx.metrics(**metrics_of(stats, seconds))
        return len(records)

    return handle


def main(cfg: SelfPlayConfig) -> int:
    reporter = report.get_reporter()
    return serve(make_handler(cfg), load=lambda: load_models(cfg, reporter), reporter=reporter)


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
