"""LLaVA conversation data (docs/fire.md, section 2): reading and checking it, plus the small
synthetic set that `--model tiny-random` trains on when no data is given.

    records = read_conversations("student_view.json")      # [{id, image?, conversations}]
    check_images(records, "/data/images")                   # BAD_DATA naming every missing file
    records = synthetic_conversations(256, seed=0, image_dir="/tmp/syn")   # writes PNGs
    seeds = synthetic_seeds(64, seed=0, image_dir="/tmp/syn")              # self-play seeds

Format: a JSON list (`.json`) or one object per line (`.jsonl`) of
    {"id": str|int, "image": "relative/path.jpg" (optional),
     "conversations": [{"from": "human"|"gpt", "value": str}, ...]}
with at least one gpt turn; the loss is on every gpt turn. `<image>` in the first human
turn marks where the image goes (it is put in front of that turn when absent).
Problems are PayloadError('BAD_DATA') listing every bad record with its path (the first
MAX_LISTED of them); a missing file is MISSING_INPUT.

Nothing here imports torch; the synthetic writers need Pillow.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Iterable, Optional

from stoker_payload.exit_codes import PayloadError

__all__ = [
    "MAX_LISTED",
    "read_conversations",
    "check_record",
    "check_images",
    "image_path",
    "synthetic_conversations",
    "synthetic_seeds",
    "SYNTHETIC_COLORS",
]

MAX_LISTED = 20
SYNTHETIC_COLORS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (250, 140, 20),
}
SYNTHETIC_SHAPES = ("square", "circle", "stripe")
# Sizes that pick different AnyRes grids (wide, tall, square) on the tiny model.
SYNTHETIC_SIZES = ((48, 32), (32, 48), (40, 40), (64, 36))


def _fail(problems: list[str], what: str) -> None:
    if not problems:
        return
    listed = problems[:MAX_LISTED]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise PayloadError("BAD_DATA", f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(listed) + tail)


def check_record(record: Any, where: str) -> list[str]:
    """Every problem of one LLaVA conversation record, each with its path."""
    if not isinstance(record, dict):
        return [f"{where}: must be an object, got {type(record).__name__}"]
    problems = []
    rid = record.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        problems.append(f"{where}.id: must be a non-empty string or an integer, got {rid!r}")
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        problems.append(f"{where}.image: must be a non-empty string or absent, got {image!r}")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        problems.append(f"{where}.conversations: must be a non-empty list")
        return problems
    gpt_turns = 0
    for i, turn in enumerate(turns):
        at = f"{where}.conversations[{i}]"
        if not isinstance(turn, dict):
            problems.append(f"{at}: must be an object")
            continue
        if turn.get("from") not in ("human", "gpt"):
            problems.append(f"{at}.from: must be 'human' or 'gpt', got {turn.get('from')!r}")
        gpt_turns += turn.get("from") == "gpt"
        if not isinstance(turn.get("value"), str):
            problems.append(f"{at}.value: must be a string, got {type(turn.get('value')).__name__}")
    if gpt_turns == 0:
        problems.append(f"{where}.conversations: has no gpt turn to learn from")
    elif turns and isinstance(turns[0], dict) and turns[0].get("from") != "human":
        problems.append(f"{where}.conversations[0].from: the first turn must be human")
    return problems


def read_conversations(path: str) -> list[dict[str, Any]]:
    """The records of a LLaVA conversation file (.json list or .jsonl), all checked."""
    if not os.path.isfile(path):
        raise PayloadError("MISSING_INPUT", f"data file does not exist: {path}")
    problems: list[str] = []
    records: list[Any] = []
    with open(path, "r", encoding="utf-8") as fh:
        if path.endswith(".jsonl"):
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as err:
                    problems.append(f"line {number}: not JSON ({err})")
        else:
            try:
                data = json.load(fh)
            except ValueError as err:
                raise PayloadError("BAD_DATA", f"{path}: not JSON ({err})") from None
            if not isinstance(data, list):
                raise PayloadError("BAD_DATA", f"{path}: must be a JSON list of records, got {type(data).__name__}")
            records = data
    for i, record in enumerate(records):
        problems.extend(check_record(record, f"[{i}]"))
    _fail(problems, path)
    if not records:
        raise PayloadError("BAD_DATA", f"{path}: no records")
    return records


def image_path(image: str, image_root: Optional[str]) -> str:
    return image if os.path.isabs(image) or not image_root else os.path.join(image_root, image)


def check_images(records: Iterable[dict[str, Any]], image_root: Optional[str], what: str = "data") -> None:
    """BAD_DATA listing every record whose image file is missing (never a silent drop)."""
    problems = []
    for i, record in enumerate(records):
        image = record.get("image")
        if image and not os.path.isfile(image_path(image, image_root)):
            problems.append(f"[{i}] (id {record.get('id')!r}): image file not found: {image_path(image, image_root)}")
    _fail(problems, f"{what}: missing images")


def _draw(image_dir: str, name: str, shape: str, color: tuple[int, int, int], size: tuple[int, int]) -> str:
    from PIL import Image, ImageDraw

    path = os.path.join(image_dir, name)
    if os.path.isfile(path):
        return name
    width, height = size
    img = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    box = (width // 6, height // 6, width - width // 6, height - height // 6)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "stripe":
        draw.rectangle((0, height // 3, width, 2 * height // 3), fill=color)
    else:
        draw.rectangle(box, fill=color)
    tmp = f"{path}.{os.getpid()}.tmp"  # ranks may draw the same file at once
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return name


def _synthetic_items(n: int, seed: int, image_dir: str) -> list[tuple[str, str, str, str]]:
    """(id, image name, shape, color) for n items; deterministic in (n, seed)."""
    os.makedirs(image_dir, exist_ok=True)
    rng = random.Random(seed)
    colors = sorted(SYNTHETIC_COLORS)
    items = []
    for i in range(n):
        shape, color = rng.choice(SYNTHETIC_SHAPES), rng.choice(colors)
        size = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        name = f"syn-{shape}-{color}-{size[0]}x{size[1]}.png"
        _draw(image_dir, name, shape, SYNTHETIC_COLORS[color], size)
        items.append((f"syn-{seed}-{i:06d}", name, shape, color))
    return items


def synthetic_conversations(n: int, seed: int, image_dir: str) -> list[dict[str, Any]]:
    """n student-view-like conversations about colored shapes (some with a feedback round);
    images are written to image_dir (names are relative to it)."""
    rng = random.Random(seed + 1)
    colors = sorted(SYNTHETIC_COLORS)
    records = []
    for rid, name, shape, color in _synthetic_items(n, seed, image_dir):
        question = f"What color is the {shape} in the image?"
        right = f"Thought: The {shape} in the middle of the picture is {color}.\nAnswer: The {shape} is {color}."
        turns = [{"from": "human", "value": f"<image>\n{question}"}]
        if rng.random() < 0.5:
            wrong = rng.choice([c for c in colors if c != color])
            turns.append({"from": "gpt", "value": f"Thought: The {shape} looks {wrong} to me.\nAnswer: The {shape} is {wrong}."})
            turns.append({"from": "human", "value": f"Look again at the color of the {shape}; it is not {wrong}."})
        turns.append({"from": "gpt", "value": right})
        records.append({"id": rid, "image": name, "conversations": turns})
    return records


def synthetic_seeds(n: int, seed: int, image_dir: str) -> list[dict[str, Any]]:
    """n self-play seeds {id, image, question, groundtruth, source} about colored shapes."""
    seeds = []
    for rid, name, shape, color in _synthetic_items(n, seed, image_dir):
        seeds.append(
            {
                "id": rid,
                "image": name,
                "question": f"What color is the {shape} in the image?",
                "groundtruth": f"The {shape} is {color}.",
                "source": "synthetic",
            }
        )
    return seeds
