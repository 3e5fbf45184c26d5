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
from stoker_payload.server import JsonlWriter, read_jsonl

from . import backends, llava_data
from . import prompts as P
from .parsing import MAX_SCORE, MIN_SCORE, feedback_text, parse_teacher
from .selfplay_rules import Prompt, Rules, Seed, StopRequested, run_dialogues, seed_from_record

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
OUTPUTS = {
    "fixed-student": "fixed-student.jsonl",
    "fixed-teacher": "fixed-teacher.jsonl",
    "fixed-teacher-scores": "fixed-teacher-scores.jsonl",
    "free": "free.jsonl",
}
TEST_SPLIT = "fire_test"
MAX_LISTED = 20


@dataclass
class EvalConfig:
    data: Optional[str] = field(default=None, metadata={"help": "FIRE-Bench raw records (.jsonl, or a .json list)", "metavar": "FILE"})
    image_root: Optional[str] = field(default=None, metadata={"help": "directory the records' image paths are relative to", "metavar": "DIR"})
    split: Optional[str] = field(default=None, metadata={"help": "evaluate only records of this split (e.g. fire_test); default all"})
    limit: Optional[int] = field(default=None, metadata={"help": "evaluate only the first N records (after --split)", "metavar": "N"})
    mode: Optional[str] = field(
        default=None, metadata={"help": "comma-separated: fixed-student,fixed-teacher,free; default every mode whose models are given"}
    )
    backend: str = field(default="hf", metadata={"help": "backend of the model under test (hf, or another stoker_fire.backends name)"})
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
                why = backends.problem(backend)
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


# -- data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialogue:
    """One FIRE-Bench record: the seed, and the reference rounds (empty for free-only runs)."""

    seed: Seed
    responses: tuple[str, ...] = ()
    teacher_turns: tuple[str, ...] = ()
    scores: tuple[Optional[int], ...] = ()  # None: not given and not parseable (teacher test refuses it)


def _score(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and MIN_SCORE <= value <= MAX_SCORE


Rounds = tuple[tuple[str, ...], tuple[str, ...], tuple[Optional[int], ...]]


def _rounds(record: Mapping[str, Any], where: str, need_scores: bool) -> tuple[list[str], Optional[Rounds]]:
    """(problems, None) or ([], (responses, teacher turns, scores)) of a record's reference rounds."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return [f"{where}: conversations must be a non-empty list of student/teacher turns"], None
    problems = []
    if len(turns) % 2:
        problems.append(f"{where}: conversations has {len(turns)} turns; student and teacher turns must alternate, ending with a teacher turn")
    values = []
    misplaced = False  # one role problem per record: the first turn out of place says it
    for i, turn in enumerate(turns):
        role = "student" if i % 2 == 0 else "teacher"
        if not isinstance(turn, Mapping):
            problems.append(f"{where}: conversations[{i}] must be an object, got {type(turn).__name__}")
            continue
        if turn.get("role") != role and not misplaced:
            misplaced = True
            problems.append(f"{where}: conversations[{i}].role must be {role!r} (turns alternate, student first), got {turn.get('role')!r}")
        if not isinstance(turn.get("value"), str) or not turn["value"].strip():
            problems.append(f"{where}: conversations[{i}].value must be a non-empty string, got {turn.get('value')!r}")
        values.append(turn.get("value"))
    if problems:
        return problems, None
    responses = tuple(v.strip() for v in values[0::2])
    teacher_turns = tuple(v.strip() for v in values[1::2])
    given = record.get("score")
    if given is not None:
        if not isinstance(given, list) or len(given) != len(teacher_turns) or not all(_score(s) for s in given):
            return [f"{where}: score must be a list of {len(teacher_turns)} integers in {MIN_SCORE}..{MAX_SCORE} (one per round), got {given!r}"], None
        scores: tuple[Optional[int], ...] = tuple(given)
    else:
        scores = tuple(parse_teacher(t)[0] for t in teacher_turns)
        if need_scores:
            missing = [i + 1 for i, s in enumerate(scores) if s is None]
            if missing:
                return [f"{where}: no score list, and the teacher turns of rounds {missing} have no parseable `Score:`"], None
    return [], (responses, teacher_turns, scores)


def dialogue_from_record(record: Mapping[str, Any], where: str, default_id: str, *, rounds: bool, scores: bool) -> Dialogue:
    """A Dialogue from one raw record; ValueError listing its problems (one per line)."""
    if "id" not in record:
        record = {**record, "id": default_id}
    problems = []
    try:
        seed: Optional[Seed] = seed_from_record(record, where)
    except ValueError as err:
        seed = None
        problems.append(str(err))
    reference: Optional[Rounds] = None
    if rounds:
        more, reference = _rounds(record, where, scores)
        problems.extend(more)
    if problems or seed is None:
        raise ValueError("\n".join(problems))
    return Dialogue(seed, *reference) if reference is not None else Dialogue(seed)


def _records(path: str) -> list[tuple[str, int, Any]]:
    """(where, position, record) of every record of a .jsonl file or a .json list."""
    if not os.path.isfile(path):
        raise PayloadError("MISSING_INPUT", f"data file does not exist: {path}")
    if not path.endswith(".json"):
        return [(f"line {number}", number, record) for number, record in read_jsonl(path)]
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (ValueError, UnicodeDecodeError) as err:
        raise PayloadError("BAD_DATA", f"{path}: not JSON ({err})") from None
    if not isinstance(data, list):
        raise PayloadError("BAD_DATA", f"{path}: must be a JSON list of records (or use .jsonl), got {type(data).__name__}")
    return [(f"record {i}", i, record) for i, record in enumerate(data, 1)]


def read_dialogues(
    path: str, *, rounds: bool = True, scores: bool = True, split: Optional[str] = None, limit: Optional[int] = None
) -> list[Dialogue]:
    """The checked records of `path` (those of `split`, the first `limit`), in file order.
    rounds: the reference conversations are needed (fixed modes); scores: a score per round
    too (teacher test). BAD_DATA lists every problem with its line."""
    dialogues: list[Dialogue] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    taken = 0
    for where, position, record in _records(path):
        if limit is not None and taken >= limit:
            break
        if not isinstance(record, dict):
            problems.append(f"{where}: must be an object, got {type(record).__name__}")
            continue
        if split is not None and record.get("split") != split:
            continue
        taken += 1
        try:
            dialogue = dialogue_from_record(record, where, f"line-{position}", rounds=rounds, scores=scores)
        except ValueError as err:
            problems.extend(str(err).split("\n"))
            continue
        if dialogue.seed.id in seen:
            problems.append(f"{where}: id {dialogue.seed.id!r} repeats {seen[dialogue.seed.id]} (ids name the output lines)")
            continue
        seen[dialogue.seed.id] = where
        dialogues.append(dialogue)
    _fail(problems, f"problems in the records of {path}")
    if not dialogues:
        which = f" of split {split!r}" if split is not None else ""
        raise PayloadError("BAD_DATA", f"{path}: no records{which} to evaluate")
    return dialogues


def check_images(dialogues: Sequence[Dialogue], image_root: Optional[str]) -> None:
    missing = [
        f"record {d.seed.id!r}: image file not found: {llava_data.image_path(d.seed.image, image_root)}"
        for d in dialogues
        if d.seed.image is not None and not os.path.isfile(llava_data.image_path(d.seed.image, image_root))
    ]
    _fail(missing, "missing images")


def _fail(problems: list[str], what: str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise PayloadError("BAD_DATA", f"{len(problems)} {what}:\n  " + "\n  ".join(problems[:MAX_LISTED]) + more)


# -- fixed dialogues ----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One fixed-dialogue prompt and what the reference dialogue has in its place."""

    id: str  # "<dialogue id>#<n>"
    prompt: Prompt
    reference: str
    score: Optional[int] = None  # teacher test: the reference score


def student_items(dialogues: Sequence[Dialogue]) -> list[Item]:
    """Student test: history up to feedback n (n = 1..T-1) -> response n+1."""
    items = []
    for d in dialogues:
        s = d.seed
        feedbacks = [feedback_text(t) for t in d.teacher_turns]
        for n in range(1, len(d.responses)):
            messages = P.student_messages(s.question, d.responses[:n], feedbacks[:n], with_image=s.image is not None)
            items.append(Item(f"{s.id}#{n}", Prompt(s.id, "student", s.image, tuple(messages)), d.responses[n]))
    return items


def teacher_items(dialogues: Sequence[Dialogue], *, with_image: bool = False) -> list[Item]:
    """Teacher test: question, ground truth and response n (n = 1..T) -> teacher turn n."""
    items = []
    for d in dialogues:
        s = d.seed
        image = s.image if with_image else None
        for n, (response, turn, score) in enumerate(zip(d.responses, d.teacher_turns, d.scores), 1):
            messages = P.teacher_messages(s.question, s.groundtruth, response, with_image=image is not None)
            items.append(Item(f"{s.id}#{n}", Prompt(s.id, "teacher", image, tuple(messages)), turn, score))
    return items


class Progress:
    """One progress counter over every mode: prompts and free dialogues done, of all."""

    def __init__(self, reporter: report.Reporter, total: int):
        self.reporter, self.total, self.done = reporter, total, 0

    def to(self, done: int) -> None:
        self.done = done
        self.reporter.progress(done, self.total or None)


def generate_items(
    generate: Callable[[Sequence[Prompt]], Sequence[str]],
    items: Sequence[Item],
    batch_size: int,
    progress: Progress,
    should_stop: Callable[[], bool],
    what: str,
) -> list[str]:
    """Every item's generated text (stripped), in item order; batches of similar length."""
    order = sorted(range(len(items)), key=lambda i: (items[i].prompt.image is None, sum(len(m["value"]) for m in items[i].prompt.messages)))
    out: list[str] = [""] * len(items)
    base = progress.done
    for start in range(0, len(order), batch_size):
        if should_stop():
            raise StopRequested(f"stop requested during {what}, after {start} of {len(order)} prompts")
        chunk = order[start : start + batch_size]
        texts = list(generate([items[i].prompt for i in chunk]))
        if len(texts) != len(chunk) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{what}: the model returned {len(texts)} texts (strings expected) for {len(chunk)} prompts")
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
        progress.to(base + start + len(chunk))
    return out


# -- free dialogues -----------------------------------------------------------------------


def end_reason(scores: Sequence[int], rules: Rules) -> str:
    """How a free dialogue ended, by the rules of selfplay_rules._judge: satisfied,
    format_failure (score 0), no_improvement, or max_turns."""
    last = scores[-1]
    if last == 0:
        return "format_failure"
    if len(scores) > 1 and last <= scores[-2]:
        return "no_improvement"
    if last >= rules.satisfied:
        return "satisfied"
    return "max_turns"


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


def write_jsonl(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """All of `rows` at `path`, or nothing: written to a temporary file, then renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    writer = JsonlWriter(tmp)
    try:
        writer.write_all(rows)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.abort()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(cfg: EvalConfig, *, should_stop: Optional[Callable[[], bool]] = None) -> int:
    began = time.perf_counter()
    if should_stop is None:
        signals.install()  # first: a SIGTERM while the models load still stops cleanly
        should_stop = signals.stop_requested
    reporter = report.get_reporter()
    modes, roles = cfg.modes(), cfg.roles()
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
    out_dir = runtime.output_dir(cfg.output_dir, create=True)

    s_items = student_items(dialogues) if "fixed-student" in modes else []
    t_items = teacher_items(dialogues, with_image=cfg.teacher_sees_image) if "fixed-teacher" in modes else []
    n_free = len(dialogues) if "free" in modes else 0
    progress = Progress(reporter, len(s_items) + len(t_items) + n_free)

    loading = time.perf_counter()
    models = load_generators(cfg, modules)
    load_seconds = time.perf_counter() - loading
    reporter.metrics(loadSeconds=load_seconds)
    progress.to(0)

    outputs: dict[str, str] = {}
    summary: dict[str, Any] = {}

    def done(name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        path = os.path.join(out_dir, OUTPUTS[name])
        write_jsonl(path, rows)
        outputs[name] = path
        reporter.artifact(name, path)

    try:
        if "fixed-student" in modes:
            t0 = time.perf_counter()
            texts = generate_items(models["model"], s_items, cfg.batch_size, progress, should_stop, "the student test")
            done("fixed-student", [{"id": it.id, "prediction": p, "references": [it.reference]} for it, p in zip(s_items, texts)])
            seconds = time.perf_counter() - t0
            summary["fixedStudent"] = {"prompts": len(s_items), "seconds": seconds}
            reporter.metrics(fixedStudentPrompts=len(s_items), fixedStudentSeconds=seconds)
        if "fixed-teacher" in modes:
            t0 = time.perf_counter()
            texts = generate_items(models[cfg.teacher_test_by], t_items, cfg.batch_size, progress, should_stop, "the teacher test")
            predicted = [parse_teacher(t)[0] for t in texts]
            done("fixed-teacher", [{"id": it.id, "prediction": p, "references": [it.reference]} for it, p in zip(t_items, texts)])
            done("fixed-teacher-scores", [{"id": it.id, "prediction": p, "reference": it.score} for it, p in zip(t_items, texts)])
            seconds = time.perf_counter() - t0
            unparseable = sum(s is None for s in predicted)
            summary["fixedTeacher"] = {"prompts": len(t_items), "by": cfg.teacher_test_by, "unparseable": unparseable, "seconds": seconds}
            reporter.metrics(fixedTeacherPrompts=len(t_items), fixedTeacherUnparseable=unparseable, fixedTeacherSeconds=seconds)
        if "free" in modes:
            summary["free"] = _free(cfg, dialogues, models, progress, should_stop, reporter, done)
    except StopRequested as stop:
        finished = ", ".join(OUTPUTS[n] for n in outputs) or "none"
        raise Preempted(
            f"{stop}: stopped at a batch boundary ({progress.done} of {progress.total} steps); evaluation keeps no "
            f"partial state, so a retry starts over (finished files: {finished})"
        ) from None

    reporter.result(
        data=cfg.data,
        records=len(dialogues),
        modes=modes,
        outputs=outputs,
        fixedStudent=summary.get("fixedStudent"),
        fixedTeacher=summary.get("fixedTeacher"),
        free=summary.get("free"),
        loadSeconds=load_seconds,
        seconds=time.perf_counter() - began,
    )
    return exit_codes.SUCCESS


def _free(cfg: EvalConfig, dialogues, models, progress: Progress, should_stop, reporter, done) -> dict[str, Any]:
    rules = cfg.rules()
    t0 = time.perf_counter()
    base = progress.done
    records, stats = run_dialogues(
        [d.seed for d in dialogues],
        models["model"],
        models["teacher"],
        batch_size=cfg.batch_size,
        rules=rules,
        on_progress=lambda finished, _total: progress.to(base + finished),
        should_stop=should_stop,
    )
    assert len(records) == len(dialogues), "keep_all keeps every dialogue"
    done("free", records)
    seconds = time.perf_counter() - t0
    ended = {reason: 0 for reason in ("satisfied", "no_improvement", "format_failure", "max_turns")}
    for record in records:
        ended[end_reason(record["score"], rules)] += 1
    at_turn_1 = sum(r["score"][0] >= rules.satisfied for r in records)
    turns = sum(r["round"] for r in records)
    reporter.metrics(
        freeDialogues=len(records),
        freeTurns=turns,
        freeSatisfied=ended["satisfied"],
        freeSatisfiedAtTurn1=at_turn_1,
        freeNoImprovement=ended["no_improvement"],
        freeFormatFailure=ended["format_failure"],
        freeMaxTurns=ended["max_turns"],
        freeStudentCalls=stats.student_calls,
        freeTeacherCalls=stats.teacher_calls,
        freeSeconds=seconds,
    )
    return {
        "dialogues": len(records),
        "kept": stats.kept,
        "turns": turns,
        "ended": ended,
        "satisfiedAtTurn1": at_turn_1,
        "maxTurns": rules.max_rounds,
        "tau": rules.satisfied,
        "seconds": seconds,
    }


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
