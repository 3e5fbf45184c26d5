"""The hf backend's text and data: the model's chat template, one conversation record encoded
for training, and the collator of a batch (stoker_fire.hf has the whole backend's description).

    template = chat_template_of(processor, "/models/llava-next-8b")  # the processor's own template
    template.prompt(messages)                                         # generation prompt (hf_generate)
    encode_conversation(processor, record, image_root, max_length, template)   # input_ids, labels, ...
    collate(items, pad_id, pixel_dtype)                               # a padded batch for the model

Prompts: the model's own chat template (the processor's `chat_template`, from the model
directory's chat_template.json / chat_template.jinja, as apply_chat_template uses it), rendered
by stoker_fire.chat_template (jinja2, the way transformers renders it); LLaVA-NeXT-8B's is the
Llama-3 one. A model without one is UNKNOWN_MODEL, naming the command that writes one.
Training labels: the assistant turns only (ChatTemplate.segments(): each assistant span found by
rendering prefixes, so the text before a target is exactly the generation prompt of self-play),
with whatever the template ends a turn with (`<|eot_id|>`); where a template ends an assistant
turn with nothing, the tokenizer's eos token is added to each target so the model learns to stop.
Each piece is tokenized on its own (the first with the tokenizer's special tokens unless the
template already writes bos_token); the piece holding `<image>` goes through the processor,
which expands the mark into the image's tokens.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from stoker_payload.exit_codes import PayloadError

from . import llava_data
from .chat_template import ChatTemplate, ChatTemplateError, special_tokens
from .prompts import IMAGE_TOKEN

__all__ = ["IGNORE_INDEX", "WRITE_TEMPLATE_HINT", "chat_template_of", "load_image", "encode_conversation", "collate"]

IGNORE_INDEX = -100
WRITE_TEMPLATE_HINT = "python3 -m stoker_fire.chat_template --write llama3-llava-next DIR (LLaVA-NeXT-8B's template)"


def chat_template_of(processor: Any, where: str = "the model") -> ChatTemplate:
    """The processor's chat template with its tokenizer's special tokens. UNKNOWN_MODEL when the
    processor has none; BAD_CONFIG when it does not compile."""
    source = getattr(processor, "chat_template", None)
    if isinstance(source, dict):  # several named templates: apply_chat_template's default
        source = source.get("default")
    if not isinstance(source, str) or not source.strip():
        raise PayloadError(
            "UNKNOWN_MODEL",
            f"{where} has no chat template (chat_template.json or chat_template.jinja beside its processor); write one: {WRITE_TEMPLATE_HINT}",
        )
    try:
        return ChatTemplate(source, special_tokens(processor.tokenizer), name=f"the chat template of {where}")
    except ChatTemplateError as err:
        raise PayloadError("BAD_CONFIG", str(err)) from None


def load_image(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def encode_conversation(
    processor: Any, record: dict[str, Any], image_root: Optional[str], max_length: int, template: Optional[ChatTemplate] = None
) -> dict[str, Any]:
    """input_ids / labels / attention_mask (lists) and pixel_values / image_sizes (tensors or
    None) of one LLaVA conversation record, rendered by `template` (default: the processor's).
    Raises PayloadError('BAD_DATA') for a record that cannot be trained on (a cut through the
    image, nothing left to learn, two images, a template that rejects it)."""
    tokenizer = processor.tokenizer
    template = template or chat_template_of(processor)
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
    try:
        segments = template.segments(turns)
    except (ChatTemplateError, ValueError) as err:
        raise PayloadError("BAD_DATA", f"{where}: {err}") from None
    eos = [tokenizer.eos_token_id] if not template.end_of_turn().strip() and tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    labels: list[int] = []
    pixel_values = image_sizes = None
    for number, (text, target) in enumerate(segments):
        special = number == 0 and not template.starts_with_bos(text)
        if IMAGE_TOKEN in text:
            pil = load_image(llava_data.image_path(image, image_root))
            enc = processor(text=[text], images=[pil], return_tensors="pt", add_special_tokens=special)
            piece = enc["input_ids"][0].tolist()
            pixel_values, image_sizes = enc["pixel_values"][0], enc["image_sizes"][0]
        else:
            piece = tokenizer(text, add_special_tokens=special)["input_ids"]
        if target:
            piece = piece + eos
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
