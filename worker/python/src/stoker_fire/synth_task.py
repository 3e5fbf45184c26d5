"""stoker_fire.synth's task: the four question types on ordered scales, the items drawn from
(seed, number), the scripted teacher (grade()) and what the scripted student perceives
(stoker_fire.synth's docstring describes the task and both scripts).

    item = make_item(number, seed)           # what is drawn and asked (seed pictures)
    item = dialogue_item(number, seed)       # the first draw the student gets wrong (dialogues)
    score, feedback = grade(item.kind, item.truth, "Thought: ...\nAnswer: 5")

Every random choice comes from rng_for(seed, number, purpose): item i depends only on the seed
and its number, so the same flags give the same set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from .parsing import parse_student

__all__ = [
    "TYPES",
    "SCALES",
    "QUESTIONS",
    "COLORS",
    "SIDES",
    "SATISFIED_SCORE",
    "UNGRADABLE_SCORE",
    "UNGRADABLE_FEEDBACK",
    "score_for_distance",
    "answer_index",
    "grade",
    "Item",
    "rng_for",
    "make_item",
    "perceive",
    "dialogue_item",
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
SATISFIED_SCORE = 10
UNGRADABLE_SCORE = 1
MAX_DRAWS = 200
WILD_GUESS = 0.08


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


def rng_for(seed: int, number: int, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 (random's version 2): stable across runs and platforms.
    return random.Random(f"stoker_fire.synth:{seed}:{number}:{purpose}")


def make_item(number: int, seed: int, prefix: str = "synth", draw: int = 0) -> Item:
    kind = TYPES[number % len(TYPES)]
    rng = rng_for(seed, number, f"item:{draw}" if draw else "item")
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
    rng = rng_for(seed, item.number, f"perceive:{item.draw}")
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


def dialogue_item(number: int, seed: int, prefix: str = "synth") -> Item:
    """The first draw of `number` that the scripted student gets wrong: FIRE-100K keeps only
    dialogues that start unsatisfied, so its pictures are the hard ones."""
    for draw in range(MAX_DRAWS):
        item = make_item(number, seed, prefix, draw)
        if perceive(item, seed) != item.truth:
            return item
    raise RuntimeError(f"no draw of item {number} is misperceived in {MAX_DRAWS} tries")


def _jittered(rng: random.Random, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-JITTER, JITTER))) for c in rgb)  # type: ignore[return-value]
