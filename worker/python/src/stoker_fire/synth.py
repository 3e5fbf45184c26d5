r"""Synthetic FIRE data with rendered images: scripted student/teacher dialogues in FIRE's raw
format, or self-play/test seeds, for the CPU demo ("fire-mini") and for tests. No download.

Usage (from the repository root; PYTHONPATH=worker/python/src):

    # 600 scripted dialogues (FIRE-100K's role) and 400 self-play seeds, 200 test seeds
    python3 -m stoker_fire.synth --n 600 --out /tmp/mini/train --seed 1
    python3 -m stoker_fire.synth --n 400 --out /tmp/mini/seeds --kind seeds --seed 1 --start-id 100000
    python3 -m stoker_fire.synth --n 200 --out /tmp/mini/test --kind seeds --split fire_test --seed 1 --start-id 200000

The task. Each image (--image-size pixels, default 32, drawn at 4x and downsampled) belongs
to one of four question types, cycling with the item number. Every answer lies on an ORDERED
scale, so the teacher can say which way the answer is off without saying what it is:

    type      question (two paraphrases)           scale                                   feedback direction
    count     How many dots are in the picture?   1 2 3 4 5 6 7 (dots)                    more / fewer dots
    color     What color is the shape?            red orange yellow green cyan blue purple warmer / cooler
    shape     What shape is in the picture?       circle triangle square pentagon hexagon more / fewer corners
    position  Where is the dot, from left to right? far left, left, middle, right, far right further left / right

Colors are jittered (neighbours overlap), shapes are small and rotated, dots are tiny and
positions jittered a little into the neighbouring fifths of the width, so a small model
learns the scale roughly but not perfectly: there is room to refine.

The teacher (grade(); scripted, exact): an answer at distance d on the scale scores 10 when
d = 0, then 6, 4, 3, 2 for d = 1..4 and 1 beyond; an answer that is not on the scale (or not
in the `Answer:` format) scores 1. Feedback says the direction and whether the answer is
close (d = 1) or far, never the value: "Close, but there are more dots than that.", "Not
quite. The color is much warmer than that.". So a closer answer always scores higher.

The scripted student (kind dialogues; FIRE-100K's GPT-4V): its first answer is what it
perceives (perceive()), which is wrong where the picture is hard: a color jittered toward a
neighbour, a dot near the edge of its fifth, many dots (some are missed), a small shape with
many corners. As FIRE-100K keeps only dialogues that start unsatisfied, each dialogue's
picture is the first draw of its number that the student gets wrong (so dialogue pictures
are harder than seed pictures, which are drawn once). Then it follows the feedback: 2 rounds
(straight to the answer) or 3 (half way first, when the first answer was 2+ steps off). Every turn reads the
same way, `Thought: I count 5 red dots.\nAnswer: 5` (the value and one more fact of the
picture), so only the value tells a right answer from a wrong one (a teacher cannot score
the form). Every dialogue passes FIRE's keep rule: 2-3
rounds, strictly increasing scores, the last >= 8 (it is 10).

Contract:
    inputs     flags or --config FILE.yaml (keys: the SynthConfig fields below).
    outputs    OUT/dialogues.jsonl (--kind dialogues): FIRE raw records {id, image, img_path,
                   question {role: user, value}, groundtruth {role: user, value},
                   conversations [{role: student, type: response, value}, {role: teacher,
                   type: feedback, value}, ...], score [ints], round, source, split}
               OUT/seeds.jsonl (--kind seeds): {id, image, question, groundtruth, source, split}
               OUT/images/<id>.png: the images; `image` is relative to OUT/images.
               ids are PREFIX-NNNNNN with NNNNNN = --start-id + i, so sets made with disjoint
               id ranges never collide (and may share one images directory). source is
               synth-<type>. Item i depends only on (--seed, its id number, --image-size):
               the same flags give the same bytes, and a longer run extends a shorter one.
               Files are written to a temporary name and renamed.
               stdout: one JSON summary line {kind, n, file, imageRoot, seed, split, startId,
               firstId, lastId, types, rounds, seconds}.
    exit codes (common/exit-codes.json) SUCCESS; BAD_CONFIG for invalid options; USAGE for a
               bad command line; MISSING_DEPENDENCY without Pillow.

Library use: grade(kind, truth, response) is the scripted teacher (an oracle for tests and
for checking a trained teacher); student_view / teacher_view / answers_view build the LLaVA
training views of a raw record with stoker_fire.prompts (the pipeline's `stoker data views` builds
the same ones in TypeScript).

Modules (this one is the command: options, the set written to disk):
    synth_task     the types and scales, items, grade() and perceive()
    synth_images   render(): an item's picture
    synth_records  dialogue and seed records, the training views
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, exit_codes
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError

from .synth_images import render
from .synth_records import answers_view, dialogue_record, seed_record, student_view, teacher_view
from .synth_task import (
    SCALES,
    TYPES,
    UNGRADABLE_FEEDBACK,
    UNGRADABLE_SCORE,
    Item,
    answer_index,
    dialogue_item,
    grade,
    make_item,
    perceive,
    score_for_distance,
)

__all__ = [
    "TYPES",
    "SCALES",
    "UNGRADABLE_SCORE",
    "UNGRADABLE_FEEDBACK",
    "SynthConfig",
    "Item",
    "make_item",
    "dialogue_item",
    "perceive",
    "render",
    "grade",
    "score_for_distance",
    "answer_index",
    "dialogue_record",
    "seed_record",
    "student_view",
    "teacher_view",
    "answers_view",
    "write_set",
    "main",
]

DEFAULT_SPLITS = {"dialogues": "fire_100k", "seeds": "fire_1m"}


# -- the command ----------------------------------------------------------------------


@dataclass
class SynthConfig:
    n: int = field(default=0, metadata={"help": "items to write (required, >= 1)"})
    out: str = field(default="", metadata={"help": "output directory (required)", "metavar": "DIR"})
    seed: int = field(default=0, metadata={"help": "seed of the whole set"})
    split: Optional[str] = field(default=None, metadata={"help": "split tag (default: fire_100k for dialogues, fire_1m for seeds)"})
    kind: str = field(default="dialogues", metadata={"help": "what to write", "choices": ("dialogues", "seeds")})
    image_size: int = field(default=32, metadata={"help": "image width and height in pixels"})
    start_id: int = field(default=0, metadata={"help": "number of the first id"})
    prefix: str = field(default="synth", metadata={"help": "id prefix (ids are PREFIX-NNNNNN)"})

    def validate(self) -> list[str]:
        problems = []
        if self.n < 1:
            problems.append(f"n: must be >= 1, got {self.n}")
        if not self.out:
            problems.append("out: required")
        if not 8 <= self.image_size <= 512:
            problems.append(f"image_size: must be in 8..512, got {self.image_size}")
        if self.start_id < 0:
            problems.append(f"start_id: must be >= 0, got {self.start_id}")
        if not self.prefix or any(c in self.prefix for c in "/\\ \n"):
            problems.append(f"prefix: must be a non-empty name without slashes or spaces, got {self.prefix!r}")
        if self.split is not None and not self.split:
            problems.append("split: must not be empty")
        return problems

    def split_name(self) -> str:
        return self.split or DEFAULT_SPLITS[self.kind]


def write_set(cfg: SynthConfig) -> dict[str, Any]:
    """Write the set of `cfg`; returns the summary."""
    try:
        import PIL  # noqa: F401
    except ModuleNotFoundError:
        raise PayloadError("MISSING_DEPENDENCY", "stoker_fire.synth draws images with Pillow: apt-get install python3-pil (or pip install pillow)") from None
    began = time.perf_counter()
    out = os.path.abspath(cfg.out)
    image_dir = os.path.join(out, "images")
    os.makedirs(image_dir, exist_ok=True)
    split = cfg.split_name()
    name = "dialogues.jsonl" if cfg.kind == "dialogues" else "seeds.jsonl"
    path = os.path.join(out, name)
    types: dict[str, int] = {}
    rounds: dict[str, int] = {}
    tmp = f"{path}.tmp-{os.getpid()}"
    first = last = None
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for number in range(cfg.start_id, cfg.start_id + cfg.n):
            item = dialogue_item(number, cfg.seed, cfg.prefix) if cfg.kind == "dialogues" else make_item(number, cfg.seed, cfg.prefix)
            image_path = os.path.join(image_dir, item.image)
            image_tmp = f"{image_path}.tmp-{os.getpid()}.png"
            render(item, cfg.seed, cfg.image_size).save(image_tmp, format="PNG")
            os.replace(image_tmp, image_path)
            if cfg.kind == "dialogues":
                record = dialogue_record(item, cfg.seed, split)
                rounds[str(record["round"])] = rounds.get(str(record["round"]), 0) + 1
            else:
                record = seed_record(item, split)
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            types[item.kind] = types.get(item.kind, 0) + 1
            first = first or item.id
            last = item.id
    os.replace(tmp, path)
    return {
        "kind": cfg.kind,
        "n": cfg.n,
        "file": path,
        "imageRoot": image_dir,
        "seed": cfg.seed,
        "split": split,
        "startId": cfg.start_id,
        "firstId": first,
        "lastId": last,
        "types": types,
        "rounds": dict(sorted(rounds.items())),
        "seconds": round(time.perf_counter() - began, 3),
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> SynthConfig:
    return parse_config(SynthConfig, argv, prog="python -m stoker_fire.synth", description="Write synthetic FIRE dialogues or seeds with rendered images.")


def main(cfg: SynthConfig) -> int:
    summary = write_set(cfg)
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return exit_codes.SUCCESS


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
