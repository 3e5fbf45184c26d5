"""The hf backend's text and data: the prompt template, one conversation record encoded for
training, and the collator of a batch (stoker_fire.hf has the whole backend's description).

    render_prompt(messages, eos)                      # "USER: ...\nASSISTANT: " (generation)
    encode_conversation(processor, record, image_root, max_length)   # input_ids, labels, ...
    collate(items, pad_id, pixel_dtype)               # a padded batch for the model

Prompt template: the plain LLaVA one, `USER: {human}\nASSISTANT: {gpt}</s>\n` per turn
(consecutive human messages share one USER block); the loss is on the gpt text and its eos
token only. The template lives in render_segments() alone.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from stoker_payload.exit_codes import PayloadError

from . import llava_data
from .prompts import IMAGE_TOKEN

__all__ = ["IGNORE_INDEX", "render_segments", "render_prompt", "load_image", "encode_conversation", "collate"]

IGNORE_INDEX = -100


def render_segments(messages: Sequence[dict[str, str]], eos: str) -> list[tuple[str, bool]]:
    """(text, is_target) pieces of a conversation in the prompt template; the eos text ends
    each target piece. Consecutive human messages share one USER block."""
    pieces: list[tuple[str, bool]] = []
    prompt = ""
    previous = None
    for message in messages:
        role, value = message["from"], message["value"]
        if role == "human":
            prompt += ("\n" if previous == "human" else "USER: ") + value
        elif role == "gpt":
            prompt += ("\n" if previous == "human" else "") + "ASSISTANT: "
            pieces.append((prompt, False))
            pieces.append((value + eos, True))
            prompt = "\n"
        else:
            raise ValueError(f"unknown message role {role!r}")
        previous = role
    if previous == "human":
        pieces.append((prompt + "\nASSISTANT: ", False))
    return pieces


def render_prompt(messages: Sequence[dict[str, str]], eos: str = "") -> str:
    """The generation prompt of messages that end with a human turn. Pass the tokenizer's
    eos text so that earlier gpt turns end as they did in training."""
    if not messages or messages[-1]["from"] != "human":
        raise ValueError("a generation prompt must end with a human message")
    return "".join(text for text, _ in render_segments(messages, eos=eos))


def load_image(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def encode_conversation(
    processor: Any, record: dict[str, Any], image_root: Optional[str], max_length: int
) -> dict[str, Any]:
    """input_ids / labels / attention_mask (lists) and pixel_values / image_sizes (tensors or
    None) of one LLaVA conversation record. Raises PayloadError('BAD_DATA') for a record that
    cannot be trained on (a cut through the image, nothing left to learn, two images)."""
    tokenizer = processor.tokenizer
    turns = [dict(t) for t in record["conversations"]]
    image = record.get("image")
    where = f"record {record.get('id')!r}"
    marks = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if image and marks == 0:
        turns[0]["value"] = f"{IMAGE_TOKEN}\n{turns[0]['value']}"
    elif image and marks > 1:
        raise PayloadError("BAD_DATA", f"{where}: {marks} {IMAGE_TOKEN} marks for one image")
    elif not image and marks:
        raise PayloadError("BAD_DATA", f"{where}: {IMAGE_TOKEN} in the text but no image")
    ids: list[int] = []
    labels: list[int] = []
    pixel_values = image_sizes = None
    eos_id = tokenizer.eos_token_id
    for number, (text, target) in enumerate(render_segments(turns, eos="")):
        first = number == 0
        if IMAGE_TOKEN in text:
            pil = load_image(llava_data.image_path(image, image_root))
            enc = processor(text=[text], images=[pil], return_tensors="pt", add_special_tokens=first)
            piece = enc["input_ids"][0].tolist()
            pixel_values, image_sizes = enc["pixel_values"][0], enc["image_sizes"][0]
        else:
            piece = tokenizer(text, add_special_tokens=first)["input_ids"]
        if target:
            piece = piece + [eos_id]
        ids.extend(piece)
        labels.extend(piece if target else [IGNORE_INDEX] * len(piece))
    if len(ids) > max_length:
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if image_id in ids[max_length:]:
            raise PayloadError(
                "BAD_DATA", f"{where}: {len(ids)} tokens; max_length {max_length} would cut through the image tokens"
            )
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise PayloadError("BAD_DATA", f"{where}: no gpt tokens within max_length {max_length}")
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": [1] * len(ids),
        "pixel_values": pixel_values,
        "image_sizes": image_sizes,
    }


def collate(batch: Sequence[dict[str, Any]], pad_id: int, pixel_dtype: Any) -> dict[str, Any]:
    """Right-padded ids/labels/mask; the images of the batch (those that have one), padded
    to the same number of AnyRes tiles."""
    import torch

    width = max(len(item["input_ids"]) for item in batch)

    def pad(key: str, value: int) -> Any:
        return torch.tensor([item[key] + [value] * (width - len(item[key])) for item in batch], dtype=torch.long)

    out = {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", IGNORE_INDEX), "attention_mask": pad("attention_mask", 0)}
    images = [item for item in batch if item["pixel_values"] is not None]
    if images:
        tiles = max(item["pixel_values"].shape[0] for item in images)
        stacked = []
        for item in images:
            pv = item["pixel_values"]
            if pv.shape[0] < tiles:
                pv = torch.cat([pv, pv.new_zeros((tiles - pv.shape[0],) + tuple(pv.shape[1:]))])
            stacked.append(pv)
        out["pixel_values"] = torch.stack(stacked).to(pixel_dtype)
        out["image_sizes"] = torch.stack([torch.as_tensor(item["image_sizes"]) for item in images])
    return out
