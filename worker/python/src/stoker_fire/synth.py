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
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, exit_codes
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError

from . import prompts as P
from .parsing import feedback_text, format_student, format_teacher, parse_student

__all__ = [
    "TYPES",
    "SCALES",
    "SynthConfig",
    "Item",
    "make_item",
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

TYPES = ("count", "color", "shape", "position")
SCALES: dict[str, tuple[str, ...]] = {
    "count": ("1", "2", "3", "4", "5", "6", "7"),
    "color": ("red", "orange", "yellow", "green", "cyan", "blue", "purple"),
    "shape": ("circle", "triangle", "square", "pentagon", "hexagon"),
    "position": ("far left", "left", "middle", "right", "far right"),
}
QUESTIONS: dict[str, tuple[str, str]] = {
    "count": ("How many dots are in the picture?", "How many dots can you see?"),
    "color": ("What color is the shape?", "Which color does the shape have?"),
    "shape": ("What shape is in the picture?", "Which shape is drawn?"),
    "position": ("Where is the dot, from left to right?", "How far left or right is the dot?"),
}
# RGB of each color name; drawn with +-JITTER per channel, so neighbours overlap a little.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 135, 30),
    "yellow": (225, 215, 40),
    "green": (50, 165, 60),
    "cyan": (40, 190, 200),
    "blue": (45, 80, 215),
    "purple": (140, 55, 185),
}
JITTER = 35
SIDES = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
SUPERSAMPLE = 4
SATISFIED_SCORE = 10
UNGRADABLE_SCORE = 1
DEFAULT_SPLITS = {"dialogues": "fire_100k", "seeds": "fire_1m"}


# -- the task -------------------------------------------------------------------------


def _thought(item: "Item", value: str) -> str:
    """What the student says it sees: the value and one more fact of the picture; the same
    words in every round, so the form of a response says nothing about whether it is right."""
    return {
        "count": f"I count {value} {item.color} dots.",
        "color": f"The {item.form} looks {value}.",
        "shape": f"The {item.color} shape looks like a {value}.",
        "position": f"The {item.color} dot is at the {value}.",
    }[item.kind]


def _feedback(kind: str, distance: int, up: bool) -> str:
    """The teacher's feedback for an answer `distance` steps off; never names the answer."""
    if distance == 0:
        return {
            "count": "Correct, you counted every dot.",
            "color": "Correct, that is the right color.",
            "shape": "Correct, you named the shape.",
            "position": "Correct, that is where the dot is.",
        }[kind]
    close = distance == 1
    if kind == "count":
        more = "more" if up else "fewer"
        return f"Close, but there are {more} dots than that." if close else f"Not quite. There are many {more} dots than that; count again."
    if kind == "color":
        way = "cooler" if up else "warmer"
        return f"Close, but the color is a little {way} than that." if close else f"Not quite. The color is much {way} than that."
    if kind == "shape":
        more = "more" if up else "fewer"
        return f"Close, but the shape has {more} corners than that." if close else f"Not quite. The shape has many {more} corners than that."
    way = "right" if up else "left"
    return f"Close, but the dot is a little further {way}." if close else f"Not quite. The dot is much further {way}."


UNGRADABLE_FEEDBACK = "Answer the question with one clear value from the picture."


def score_for_distance(distance: int) -> int:
    """10 for the answer, then 6, 4, 3, 2 for one to four steps off, and 1 beyond."""
    return SATISFIED_SCORE if distance == 0 else {1: 6, 2: 4, 3: 3, 4: 2}.get(distance, 1)


def answer_index(kind: str, response: str) -> Optional[int]:
    """Where the `Answer:` of a student response lies on the type's scale, or None."""
    _, answer = parse_student(response)
    if answer is None:
        return None
    value = " ".join(answer.strip().rstrip(".").lower().split())
    for article in ("a ", "an ", "the "):
        if value.startswith(article):
            value = value[len(article) :]
    scale = SCALES[kind]
    return scale.index(value) if value in scale else None


def grade(kind: str, truth: int, response: str) -> tuple[int, str]:
    """The scripted teacher: (score, feedback) of a student response, truth an index on the scale."""
    at = answer_index(kind, response)
    if at is None:
        return UNGRADABLE_SCORE, UNGRADABLE_FEEDBACK
    distance = abs(at - truth)
    return score_for_distance(distance), _feedback(kind, distance, truth > at)


@dataclass(frozen=True)
class Item:
    """One synthetic example: what is drawn and asked."""

    number: int
    id: str
    kind: str  # a TYPES entry
    truth: int  # index on SCALES[kind]
    question: str
    image: str  # file name under the images directory
    color: str  # the color name the picture is drawn in (the truth for kind color)
    form: str  # circle or square: the blob of a color picture
    rgb: tuple[int, int, int]  # the color actually drawn (the name's, jittered)
    place: float  # position: x of the dot; shape: its radius (fractions of the width); else 0
    draw: int = 0  # which draw of this number (dialogues redraw until the student errs)

    @property
    def groundtruth(self) -> str:
        return SCALES[self.kind][self.truth]

    @property
    def source(self) -> str:
        return f"synth-{self.kind}"


def _rng(seed: int, number: int, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 (random's version 2): stable across runs and platforms.
    return random.Random(f"stoker_fire.synth:{seed}:{number}:{purpose}")


def make_item(number: int, seed: int, prefix: str = "synth", draw: int = 0) -> Item:
    kind = TYPES[number % len(TYPES)]
    rng = _rng(seed, number, f"item:{draw}" if draw else "item")
    truth = rng.randrange(len(SCALES[kind]))
    question = rng.choice(QUESTIONS[kind])
    color = SCALES["color"][truth] if kind == "color" else rng.choice(SCALES["color"])
    form = rng.choice(("circle", "square"))
    rgb = _jittered(rng, COLORS[color])
    if kind == "position":
        place = 0.1 + 0.2 * truth + rng.uniform(-0.1, 0.1)  # a little into the neighbours' fifths
    elif kind == "shape":
        place = rng.uniform(0.3, 0.42)
    else:
        place = 0.0
    item_id = f"{prefix}-{number:06d}"
    return Item(number, item_id, kind, truth, question, f"{item_id}.png", color, form, rgb, place, draw)


def perceive(item: Item, seed: int) -> int:
    """What the scripted student (FIRE-100K's GPT-4V) makes of the picture: a scale index, wrong
    where the picture is hard: a color jittered toward a neighbour, a dot near the edge of its
    fifth, many dots (some are missed), a small shape with many corners; and now and then
    (WILD_GUESS) anything on the scale."""
    rng = _rng(seed, item.number, f"perceive:{item.draw}")
    top = len(SCALES[item.kind]) - 1
    if rng.random() < WILD_GUESS:  # now and then a guess anywhere on the scale
        return rng.randrange(top + 1)
    if item.kind == "color":
        seen = [c + rng.gauss(0, 22) for c in item.rgb]
        return min(range(top + 1), key=lambda i: sum((a - b) ** 2 for a, b in zip(seen, COLORS[SCALES["color"][i]])))
    if item.kind == "position":
        return max(0, min(top, int((item.place + rng.gauss(0, 0.04)) / 0.2)))
    if item.kind == "count":
        count = item.truth + 1
        missed = sum(rng.random() < 0.035 * count for _ in range(count))
        extra = 1 if rng.random() < 0.08 else 0
        return max(0, min(top, count - missed + extra - 1))
    hard = SIDES.get(item.groundtruth, 99) >= 5 or item.place < 0.34
    if rng.random() < (0.5 if hard else 0.25):
        return max(0, min(top, item.truth + rng.choice((-1, 1))))
    return item.truth


MAX_DRAWS = 200
WILD_GUESS = 0.08


def dialogue_item(number: int, seed: int, prefix: str = "synth") -> Item:
    """The first draw of `number` that the scripted student gets wrong: FIRE-100K keeps only
    dialogues that start unsatisfied, so its pictures are the hard ones."""
    for draw in range(MAX_DRAWS):
        item = make_item(number, seed, prefix, draw)
        if perceive(item, seed) != item.truth:
            return item
    raise RuntimeError(f"no draw of item {number} is misperceived in {MAX_DRAWS} tries")


# -- images ---------------------------------------------------------------------------


def _jittered(rng: random.Random, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-JITTER, JITTER))) for c in rgb)  # type: ignore[return-value]


def _polygon(cx: float, cy: float, radius: float, sides: int, rotation: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(rotation + 2 * math.pi * k / sides), cy + radius * math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def render(item: Item, seed: int, size: int) -> Any:
    """The PIL image of an item (size x size RGB)."""
    from PIL import Image, ImageDraw

    rng = _rng(seed, item.number, f"image:{item.draw}" if item.draw else "image")
    big = size * SUPERSAMPLE
    background = tuple(rng.randint(225, 250) for _ in range(3))
    img = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(img)
    color = item.rgb
    if item.kind == "count":
        count = int(item.groundtruth)
        radius = big * rng.uniform(0.065, 0.085)
        centres: list[tuple[float, float]] = []
        tries = 0
        while len(centres) < count:  # apart from each other; after 500 tries, anywhere
            tries += 1
            x, y = rng.uniform(radius * 1.3, big - radius * 1.3), rng.uniform(radius * 1.3, big - radius * 1.3)
            if tries > 500 or all((x - a) ** 2 + (y - b) ** 2 > (2.6 * radius) ** 2 for a, b in centres):
                centres.append((x, y))
        for x, y in centres:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
    elif item.kind == "color":
        radius = big * rng.uniform(0.2, 0.32)
        cx, cy = rng.uniform(radius, big - radius), rng.uniform(radius, big - radius)
        if item.form == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
        else:
            draw.polygon(_polygon(cx, cy, radius, 4, rng.uniform(0, math.pi / 2)), fill=color)
    elif item.kind == "shape":
        radius = big * item.place
        cx, cy = big / 2 + rng.uniform(-0.08, 0.08) * big, big / 2 + rng.uniform(-0.08, 0.08) * big
        if item.groundtruth == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
        else:
            sides = SIDES[item.groundtruth]
            draw.polygon(_polygon(cx, cy, radius, sides, rng.uniform(0, 2 * math.pi / sides)), fill=color)
    else:  # position: a dot in its fifth of the width, anywhere in height
        radius = big * rng.uniform(0.07, 0.1)
        cx = big * item.place
        cy = rng.uniform(radius, big - radius)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
    return img.resize((size, size), Image.BOX)


# -- records --------------------------------------------------------------------------


def _scripted_answers(item: Item, seed: int) -> list[int]:
    """The scripted student's answers (scale indices): its misperception first, then toward
    the truth as the feedback says, ending on it: 2 rounds, or 3 (half way first) when the
    first answer was far off and a coin says so."""
    rng = _rng(seed, item.number, f"student:{item.draw}")
    t = item.truth
    first = perceive(item, seed)
    if first == t:
        raise ValueError(f"item {item.id}: the scripted student is right at once; use dialogue_item()")
    distance = abs(first - t)
    if distance == 1 or rng.random() < 0.5:
        return [first, t]
    step = rng.randint(1, distance - 1)  # half way: strictly closer, not yet there
    middle = first + step if first < t else first - step
    return [first, middle, t]


def _student_turns(item: Item, answers: Sequence[int]) -> list[str]:
    scale = SCALES[item.kind]
    return [format_student(_thought(item, scale[a]), scale[a]) for a in answers]


def dialogue_record(item: Item, seed: int, split: str) -> dict[str, Any]:
    """The FIRE raw record of the item's scripted dialogue."""
    conversations: list[dict[str, str]] = []
    scores: list[int] = []
    for response in _student_turns(item, _scripted_answers(item, seed)):
        score, feedback = grade(item.kind, item.truth, response)
        conversations.append({"role": "student", "type": "response", "value": response})
        conversations.append({"role": "teacher", "type": "feedback", "value": format_teacher(score, feedback)})
        scores.append(score)
    return {
        "id": item.id,
        "image": item.image,
        "img_path": item.image,
        "question": {"role": "user", "value": item.question},
        "groundtruth": {"role": "user", "value": item.groundtruth},
        "conversations": conversations,
        "score": scores,
        "round": len(scores),
        "source": item.source,
        "split": split,
    }


def seed_record(item: Item, split: str) -> dict[str, Any]:
    return {"id": item.id, "image": item.image, "question": item.question, "groundtruth": item.groundtruth, "source": item.source, "split": split}


# -- training views (docs/fire.md, section 2), built with stoker_fire.prompts ---------------


def _value(part: Any) -> str:
    return part["value"] if isinstance(part, dict) else str(part)


def _turns(record: dict[str, Any]) -> tuple[list[str], list[str]]:
    conv = record["conversations"]
    responses = [c["value"] for c in conv if c["role"] == "student"]
    teacher = [c["value"] for c in conv if c["role"] == "teacher"]
    return responses, teacher


def student_view(record: dict[str, Any]) -> dict[str, Any]:
    """human `<image>\\n{q}` -> gpt first response; per round human feedback (score stripped)
    -> gpt refined response. The last (satisfied) feedback is not shown: nothing answers it."""
    responses, teacher = _turns(record)
    feedbacks = [feedback_text(t) for t in teacher]
    messages = P.student_messages(_value(record["question"]), responses[:-1], feedbacks[: len(responses) - 1])
    messages.append(P.gpt(responses[-1]))
    return {"id": record["id"], "image": record.get("image") or record.get("img_path"), "conversations": messages}


def teacher_view(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per round: question + ground truth, the instruction, one response -> the teacher turn."""
    responses, teacher = _turns(record)
    question, groundtruth = _value(record["question"]), _value(record["groundtruth"])
    return [
        {"id": f"{record['id']}-t{n}", "conversations": [*P.teacher_messages(question, groundtruth, response), P.gpt(turn)]}
        for n, (response, turn) in enumerate(zip(responses, teacher), 1)
    ]


def answers_view(record: dict[str, Any]) -> dict[str, Any]:
    """human `<image>\\n{q}` -> gpt the final (satisfied) response: single turn, no feedback."""
    responses, _ = _turns(record)
    return {
        "id": f"{record['id']}-a",
        "image": record.get("image") or record.get("img_path"),
        "conversations": [P.human(f"{P.IMAGE_TOKEN}\n{_value(record['question'])}"), P.gpt(responses[-1])],
    }


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
