r"""FIRE-Bench evaluation (docs/fire.md, section 4): fixed dialogues (the student and the teacher
tests, teacher forcing on the reference dialogues) and free dialogues (the model under test
plays the student against the teacher model), written as the input files of `stoker metrics`.

Usage (from the repository root; PYTHONPATH=worker/python/src):

    # everything: the trained FIRE-LLaVA against the FIRE teacher, on FIRE-Bench
    python3 -m stoker_fire.evaluate --data /data/fire/fire_bench.jsonl --image-root /data/fire/images \
        --model-name-or-path /models/llava-next-8b-hf --adapter /out/fire-llava/final \
        --teacher-model /models/llava-next-8b-hf --teacher-adapter /out/teacher/final \
        --batch-size 32 --output-dir /out/eval

    # only the student test of a model (no teacher needed), on the first 100 records
    python3 -m stoker_fire.evaluate --data bench.jsonl --image-root images --model-name-or-path /models/m \
        --mode fixed-student --limit 100

    # the teacher test of a model under test acting as the teacher
    python3 -m stoker_fire.evaluate --data bench.jsonl --image-root images --model-name-or-path /models/m \
        --mode fixed-teacher --teacher-test-by model

    # the shared samples' test split, two tiny random models (no download), options from a file
    python3 -m stoker_fire.evaluate --config eval.yaml   # keys: the EvalConfig fields below

Modes (--mode, comma-separated; default: every mode whose models are given):
    fixed-student  the model under test (--model-name-or-path) answers after the reference
                   history up to feedback n (n = 1..T-1 of a T-round dialogue): response n+1.
    fixed-teacher  given the question, the ground truth and reference response n (n = 1..T),
                   write teacher turn n; by the teacher model (--teacher-model, the default) or
                   by the model under test (--teacher-test-by model).
    free           the model under test plays the student against the teacher model, with the
                   self-play stopping rules (stoker_fire/selfplay_rules.py): a dialogue ends when the
                   score is >= --tau or 0, or does not increase, or after --max-turns turns;
                   every dialogue is kept (rules.keep_all), including one satisfied at turn 1.
Prompts are those of stoker_fire.prompts (the student sees the feedback text with the score
stripped; the teacher sees the question, the ground truth, its instruction and one answer,
and the image only with --teacher-sees-image), so a model is prompted as it was trained.

Contract:
    inputs     flags or --config FILE.yaml (keys: the EvalConfig fields below). --data: raw
               FIRE records (docs/fire.md, section 1), JSONL (one per line) or a .json list;
               `id` is optional (default `line-N`, N the line or 1-based list position) and
               must be unique; free needs image/question/groundtruth (the checks of
               stoker_fire.selfplay_rules.seed_from_record); the fixed modes also need
               `conversations` alternating student/teacher turns (T >= 1 rounds) and, for
               the teacher test, a score per round (`score`, else parsed from the teacher
               turns). --split keeps only records of that split; --limit the first N kept.
               Images under --image-root. env: STOKER_OUTPUT_DIR (unless --output-dir).
    outputs    (written to a temporary file, then renamed; record order, n ascending)
               OUTPUT/fixed-student.jsonl         {"id": "<id>#<n>", "prediction": response
                                                   n+1, "references": [reference response n+1]}
               OUTPUT/fixed-teacher.jsonl         {"id": "<id>#<n>", "prediction": teacher turn
                                                   n, "references": [reference teacher turn n]}
               OUTPUT/fixed-teacher-scores.jsonl  {"id": "<id>#<n>", "prediction": teacher turn
                                                   n (text; `stoker metrics scores` parses it:
                                                   unparseable = error 10), "reference": int}
               OUTPUT/free.jsonl                  one FIRE raw record per dialogue (split
                                                   fire_test, `score` per turn, `round` turns)
               The first two are the input of `stoker metrics text`, the third of `stoker
               metrics scores`, the last of `stoker metrics dialogues`. Texts are stripped.
               OUTPUT/evaluation.json             {engine, teacherEngine, device, model,
                                                   teacher, records, modes}: what ran (the
                                                   engine after --backend auto), read by
                                                   `stoker report`
    events     progress {step: prompts and free dialogues done, totalSteps: all of them}
               after each batch; metrics {loadSeconds} once the models are loaded, and per
               mode when it ends {fixedStudentPrompts, fixedStudentSeconds} |
               {fixedTeacherPrompts, fixedTeacherUnparseable, fixedTeacherSeconds} |
               {freeDialogues, freeTurns, freeSatisfied, freeSatisfiedAtTurn1,
               freeNoImprovement, freeFormatFailure, freeMaxTurns, freeStudentCalls,
               freeTeacherCalls, freeSeconds}; artifact fixed-student, fixed-teacher,
               fixed-teacher-scores, free (each file once written); result {data, records,
               modes, outputs, fixedStudent, fixedTeacher, free, loadSeconds, seconds}.
    exit codes (common/exit-codes.json) SUCCESS; PREEMPTED after SIGTERM, at the next batch
               boundary: evaluation keeps no partial state, so a retry simply starts over
               (files of modes that finished are complete; the running mode's is not
               written); BAD_CONFIG for invalid options, modes or backends; BAD_DATA for a
               malformed record (naming its line and why), duplicate ids, no records, or
               missing images (listing them); MISSING_INPUT for a --data, --config or adapter
               path that does not exist; UNKNOWN_MODEL for a model path that does not exist or
               does not load; MISSING_DEPENDENCY when the backend's libraries are missing;
               CUDA_OOM; USAGE for a bad command line.

Modules (this one is the command: options, models, the order of the modes):
    evaluate_data     FIRE-Bench records -> Dialogues (every problem listed, BAD_DATA)
    evaluate_fixed    the student and teacher tests (fixed dialogues)
    evaluate_free     the free dialogues
    evaluate_outputs  the output files, their artifact events, the progress counter
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime, signals
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError, Preempted

from . import backends
from .evaluate_data import Dialogue, check_images, read_dialogues
from .evaluate_fixed import Item, run_student_test, run_teacher_test, student_items, teacher_items
from .evaluate_free import end_reason, run_free
from .evaluate_outputs import OUTPUTS, Outputs, Progress
from .parsing import MAX_SCORE
from .selfplay_rules import Rules, StopRequested

__all__ = [
    "MODES",
    "EvalConfig",
    "Dialogue",
    "Item",
    "parse_args",
    "read_dialogues",
    "student_items",
    "teacher_items",
    "end_reason",
    "main",
]

MODES = ("fixed-student", "fixed-teacher", "free")
TEST_SPLIT = "fire_test"


@dataclass
class EvalConfig:
    data: Optional[str] = field(default=None, metadata={"help": "FIRE-Bench raw records (.jsonl, or a .json list)", "metavar": "FILE"})
    image_root: Optional[str] = field(default=None, metadata={"help": "directory the records' image paths are relative to", "metavar": "DIR"})
    split: Optional[str] = field(default=None, metadata={"help": "evaluate only records of this split (e.g. fire_test); default all"})
    limit: Optional[int] = field(default=None, metadata={"help": "evaluate only the first N records (after --split)", "metavar": "N"})
    mode: Optional[str] = field(
        default=None, metadata={"help": "comma-separated: fixed-student,fixed-teacher,free; default every mode whose models are given"}
    )
    backend: str = field(default="hf", metadata={"help": "backend of the model under test (hf, tiny, or auto: from --device, cuda -> hf, cpu -> tiny)"})
    device: Optional[str] = field(default=None, metadata={"help": "cpu or cuda (default: the backend's choice; hf takes CUDA when there is one)"})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "the model under test, or tiny-random", "metavar": "PATH"})
    adapter: Optional[str] = field(default=None, metadata={"help": "LoRA checkpoint to merge into the model under test", "metavar": "DIR"})
    model_seed: int = field(default=1, metadata={"help": "weights seed of a tiny-random model under test"})
    teacher_backend: Optional[str] = field(default=None, metadata={"help": "backend of the teacher (default: --backend)"})
    teacher_model: Optional[str] = field(default=None, metadata={"help": "the FIRE teacher model, or tiny-random", "metavar": "PATH"})
    teacher_adapter: Optional[str] = field(default=None, metadata={"help": "LoRA checkpoint to merge into the teacher", "metavar": "DIR"})
    teacher_seed: int = field(default=2, metadata={"help": "weights seed of a tiny-random teacher"})
    teacher_test_by: str = field(
        default="teacher",
        metadata={"help": "who writes the fixed-teacher turns: the teacher model or the model under test", "choices": ("teacher", "model")},
    )
    teacher_sees_image: bool = field(default=False, metadata={"help": "give the teacher the image too (teacher test and free)"})
    batch_size: int = field(default=32, metadata={"help": "prompts (fixed) or dialogues (free) per batch"})
    max_new_tokens: int = field(default=256, metadata={"help": "greedy tokens per turn"})
    max_turns: int = field(default=5, metadata={"help": "free dialogues: student turns at most"})
    tau: int = field(default=8, metadata={"help": "free dialogues: a score >= tau is satisfied and ends the dialogue"})
    output_dir: Optional[str] = field(default=None, metadata={"help": "where outputs go; default $STOKER_OUTPUT_DIR, else ./out", "metavar": "DIR"})
    bf16: Optional[bool] = field(default=None, metadata={"help": "bf16 on CUDA (default: on when CUDA is there)"})
    threads: Optional[int] = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)"})

    # -- derived --------------------------------------------------------------------------
    def has_model(self) -> bool:
        return bool(self.model_name_or_path)

    def has_teacher(self) -> bool:
        return bool(self.teacher_model)

    def mode_problems(self) -> tuple[list[str], list[str]]:
        """(the modes to run, in MODES order; problems)."""
        givers = {"model": self.has_model(), "teacher": self.has_teacher()}
        needs = {"fixed-student": ("model",), "fixed-teacher": (self.teacher_test_by,), "free": ("model", "teacher")}
        flags = {"model": "--model-name-or-path", "teacher": "--teacher-model"}
        if self.mode is None:
            modes = [m for m in MODES if all(givers[g] for g in needs[m])]
            if not modes:
                return [], ["nothing to evaluate: give --model-name-or-path (student test), --teacher-model (teacher test) or both (all modes)"]
            return modes, []
        asked = [m.strip() for m in self.mode.split(",") if m.strip()]
        problems = [f"mode: unknown mode {m!r} (known: {', '.join(MODES)})" for m in asked if m not in MODES]
        if not asked:
            problems.append(f"mode: name at least one of {', '.join(MODES)}")
        for m in MODES:
            if m in asked:
                problems.extend(f"mode: {m} needs {flags[g]}" for g in needs[m] if not givers[g])
        return [m for m in MODES if m in asked], problems

    def modes(self) -> list[str]:
        return self.mode_problems()[0]

    def roles(self) -> list[str]:
        """The models the chosen modes use: "model" (under test) and/or "teacher"."""
        modes = self.modes()
        used = set()
        if "fixed-student" in modes or "free" in modes:
            used.add("model")
        if "free" in modes:
            used.add("teacher")
        if "fixed-teacher" in modes:
            used.add(self.teacher_test_by)
        return [r for r in ("model", "teacher") if r in used]

    def spec(self, role: str) -> "ModelSpec":
        if role == "model":
            return ModelSpec(self.backend, self.model_name_or_path or "", self.adapter, self.model_seed)
        return ModelSpec(self.teacher_backend or self.backend, self.teacher_model or "", self.teacher_adapter, self.teacher_seed)

    def rules(self) -> Rules:
        # keep_all: evaluation records every dialogue, however it ended (min_rounds moot).
        return Rules(
            max_rounds=self.max_turns,
            satisfied=self.tau,
            min_rounds=1,
            keep_all=True,
            teacher_sees_image=self.teacher_sees_image,
            split=TEST_SPLIT,
            default_source="unknown",
        )

    def validate(self) -> list[str]:
        problems = []
        if not self.data:
            problems.append("data: required (a file of FIRE-Bench raw records)")
        modes, mode_problems = self.mode_problems()
        problems.extend(mode_problems)
        if modes and not mode_problems:
            for backend in sorted({self.spec(r).backend for r in self.roles()}):
                why = backends.problem(backend, self.device)
                if why:
                    problems.append(f"backend: {why}")
        if self.adapter and not self.has_model():
            problems.append("adapter: given without model_name_or_path")
        if self.teacher_adapter and not self.has_teacher():
            problems.append("teacher_adapter: given without teacher_model")
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit: must be >= 1, got {self.limit}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads: must be >= 1, got {self.threads}")
        if self.max_turns < 1:
            problems.append(f"max_turns: must be >= 1, got {self.max_turns}")
        if not 1 <= self.tau <= MAX_SCORE:
            problems.append(f"tau: must be in 1..{MAX_SCORE}, got {self.tau}")
        return problems


def parse_args(argv: Optional[Sequence[str]] = None) -> EvalConfig:
    return parse_config(
        EvalConfig,
        argv,
        prog="python -m stoker_fire.evaluate",
        description="FIRE-Bench evaluation: fixed dialogues (student and teacher tests) and free dialogues.",
    )


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name_or_path: str
    adapter: Optional[str]
    seed: int


# -- the run ------------------------------------------------------------------------------


def _check_model_paths(cfg: EvalConfig) -> None:
    """Cheap checks before any model loads (a typo in the second model should not cost the
    first one's load time): a local-looking model path that is not there, an adapter that is
    not there. Whatever passes here may still fail to load (the backend's UNKNOWN_MODEL)."""
    for role in cfg.roles():
        spec = cfg.spec(role)
        name = spec.name_or_path
        if name.startswith((os.path.sep, ".", "~")) and not os.path.exists(os.path.expanduser(name)):
            raise PayloadError("UNKNOWN_MODEL", f"{role} model path does not exist: {name}")
        if spec.adapter and not os.path.exists(spec.adapter):
            raise PayloadError("MISSING_INPUT", f"{role} adapter does not exist: {spec.adapter}")


def load_generators(cfg: EvalConfig, modules: Mapping[str, Any]) -> dict[str, Any]:
    """role -> generator; a role whose spec equals another's shares its generator."""
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    loaded: dict[ModelSpec, Any] = {}
    out = {}
    for role in cfg.roles():
        spec = cfg.spec(role)
        if spec not in loaded:
            loaded[spec] = modules[spec.backend].make_generator(
                spec.name_or_path,
                seed=spec.seed,
                adapter=spec.adapter,
                image_root=cfg.image_root,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
                bf16=cfg.bf16,
            )
        out[role] = loaded[spec]
    return out


def main(cfg: EvalConfig, *, should_stop: Optional[Callable[[], bool]] = None) -> int:
    """The evaluation of `cfg`, in steps:
    1. the backends (BAD_CONFIG, MISSING_DEPENDENCY) and the model paths, before anything loads
    2. the records (BAD_DATA, MISSING_INPUT) and their images; the items of the fixed modes
    3. the models, loaded once (a role whose spec equals another's shares its model)
    4. the modes in MODES order, each writing its files; a stop request between two batches
       is PREEMPTED (the running mode writes nothing)
    5. the result event
    """
    began = time.perf_counter()
    if should_stop is None:
        signals.install()  # first: a SIGTERM while the models load still stops cleanly
        should_stop = signals.stop_requested
    reporter = report.get_reporter()
    modes, roles = cfg.modes(), cfg.roles()
    cfg.backend = backends.select(cfg.backend, cfg.device, reporter)  # auto -> hf / tiny, from the device
    if cfg.teacher_backend:
        cfg.teacher_backend = backends.resolve(cfg.teacher_backend, cfg.device)
    modules = {cfg.spec(r).backend: backends.load(cfg.spec(r).backend) for r in roles}  # BAD_CONFIG / MISSING_DEPENDENCY
    _check_model_paths(cfg)
    assert cfg.data is not None  # validate() saw to it
    dialogues = read_dialogues(
        cfg.data,
        rounds=any(m.startswith("fixed-") for m in modes),
        scores="fixed-teacher" in modes,
        split=cfg.split,
        limit=cfg.limit,
    )
    check_images(dialogues, cfg.image_root)
    outputs = Outputs(runtime.output_dir(cfg.output_dir, create=True), reporter)

    s_items = student_items(dialogues) if "fixed-student" in modes else []
    t_items = teacher_items(dialogues, with_image=cfg.teacher_sees_image) if "fixed-teacher" in modes else []
    n_free = len(dialogues) if "free" in modes else 0
    progress = Progress(reporter, len(s_items) + len(t_items) + n_free)

    loading = time.perf_counter()
    models = load_generators(cfg, modules)
    load_seconds = time.perf_counter() - loading
    reporter.metrics(loadSeconds=load_seconds)
    progress.to(0)

    summary: dict[str, Any] = {}
    try:
        if "fixed-student" in modes:
            summary["fixedStudent"] = run_student_test(models["model"], s_items, cfg.batch_size, progress, should_stop, outputs, reporter)
        if "fixed-teacher" in modes:
            by = cfg.teacher_test_by
            summary["fixedTeacher"] = run_teacher_test(models[by], by, t_items, cfg.batch_size, progress, should_stop, outputs, reporter)
        if "free" in modes:
            summary["free"] = run_free(cfg.rules(), cfg.batch_size, dialogues, models, progress, should_stop, outputs, reporter)
    except StopRequested as stop:
        finished = ", ".join(OUTPUTS[n] for n in outputs.written) or "none"
        raise Preempted(
            f"{stop}: stopped at a batch boundary ({progress.done} of {progress.total} steps); evaluation keeps no "
            f"partial state, so a retry starts over (finished files: {finished})"
        ) from None

    _write_run_file(outputs.out_dir, cfg, len(dialogues), modes)
    reporter.result(
        data=cfg.data,
        records=len(dialogues),
        modes=modes,
        outputs=outputs.written,
        fixedStudent=summary.get("fixedStudent"),
        fixedTeacher=summary.get("fixedTeacher"),
        free=summary.get("free"),
        loadSeconds=load_seconds,
        seconds=time.perf_counter() - began,
        engine=cfg.backend,
        teacherEngine=cfg.teacher_backend or cfg.backend,
        device=cfg.device,
    )
    return exit_codes.SUCCESS


def _write_run_file(out_dir: str, cfg: EvalConfig, records: int, modes: Sequence[str]) -> None:
    """OUTPUT/evaluation.json: what ran (engines, device, models), for `stoker report`."""
    data = {
        "engine": cfg.backend,
        "teacherEngine": cfg.teacher_backend or cfg.backend,
        "device": cfg.device,
        "model": cfg.model_name_or_path,
        "teacher": cfg.teacher_model,
        "records": records,
        "modes": list(modes),
    }
    path = os.path.join(out_dir, "evaluation.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
