"""stoker_fire.synth's pictures: an item drawn at SUPERSAMPLE times its size and downsampled
(Pillow, imported on the first call).

    render(item, seed, size).save("a.png")   # a size x size RGB picture of the item
"""

from __future__ import annotations

import math
from typing import Any

from .synth_task import SIDES, Item, rng_for

__all__ = ["SUPERSAMPLE", "render"]

SUPERSAMPLE = 4


def _polygon(cx: float, cy: float, radius: float, sides: int, rotation: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(rotation + 2 * math.pi * k / sides), cy + radius * math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def render(item: Item, seed: int, size: int) -> Any:
    """The PIL image of an item (size x size RGB)."""
    from PIL import Image, ImageDraw

    rng = rng_for(seed, item.number, f"image:{item.draw}" if item.draw else "image")
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
