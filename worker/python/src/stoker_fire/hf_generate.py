"""The hf backend's generation: batched greedy decoding and the self-play callable
(stoker_fire.hf has the whole backend's description).

    gen = make_generator("tiny-random", seed=1, adapter=None, image_root="/data/images",
                         max_new_tokens=64, batch_size=32)
    texts = gen(prompts)     # stoker_fire.selfplay_rules.Prompt -> generated text, in order
    template = chat_template_of(processor)
    texts = generate(model, processor, [template.prompt([human("<image>\nWhat color?")])], [image], 64,
                     add_special_tokens=True, eos_token_id=stop_token_ids(model, processor, template))

Prompts are rendered by the model's chat template with its generation prompt (hf_data.
chat_template_of: the processor's own template, as in training), and generation stops at the
tokenizer's eos token, the model's generation_config eos tokens, and the token the template ends
an assistant turn with (`<|eot_id|>` for Llama-3), whichever comes first.

torch is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import collections
from typing import Any, Optional, Sequence

from . import llava_data
from .chat_template import ChatTemplate
from .hf_data import chat_template_of, load_image
from .hf_model import device_and_dtype, load_model, require

__all__ = ["generate", "stop_token_ids", "Generator", "make_generator"]


def stop_token_ids(model: Any, processor: Any, template: ChatTemplate) -> list[int]:
    """The ids a generation stops at: the tokenizer's eos, the model's generation_config
    eos_token_id (an int or a list), and the template's end of turn when it is one token."""
    tokenizer = processor.tokenizer
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    for value in [tokenizer.eos_token_id] + (list(configured) if isinstance(configured, (list, tuple)) else [configured]):
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    end = template.end_of_turn().strip()
    if end:
        piece = tokenizer(end, add_special_tokens=False)["input_ids"]
        if len(piece) == 1 and piece[0] not in ids:
            ids.append(piece[0])
    return ids


def generate(
    model: Any,
    processor: Any,
    texts: Sequence[str],
    images: Sequence[Any],
    max_new_tokens: int,
    *,
    add_special_tokens: bool = True,
    eos_token_id: Optional[Sequence[int]] = None,
) -> list[str]:
    """Greedy continuations of `texts` (rendered prompts), one batch, left-padded.

    images: one PIL image per text, or all None (text-only prompts); each text with an image
    holds one `<image>` mark. add_special_tokens: False when the texts already begin with the
    bos token (the template wrote it). eos_token_id: the stop ids (default: the tokenizer's
    eos). Returns the new text only, special tokens skipped, stripped.
    """
    import torch

    if len(texts) != len(images):
        raise ValueError(f"{len(texts)} texts but {len(images)} images")
    if not texts:
        return []
    with_images = [img is not None for img in images]
    if any(with_images) and not all(with_images):
        raise ValueError("a generate() batch must be all with images or all without")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    if all(with_images):
        inputs = processor(text=list(texts), images=list(images), padding=True, return_tensors="pt", add_special_tokens=add_special_tokens)
    else:
        inputs = tokenizer(list(texts), padding=True, return_tensors="pt", add_special_tokens=add_special_tokens)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    batch = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_sizes")}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=list(eos_token_id) if eos_token_id else tokenizer.eos_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


class Generator:
    """A self-play model callable: prompts (stoker_fire.selfplay_rules.Prompt) -> texts, in order.

    Prompts are rendered by `template` (default: the processor's chat template) with its
    generation prompt, grouped by rendered length and run batch_size at a time (with and
    without an image apart), so padding stays small; images are loaded once and kept in a
    small cache.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        image_root: Optional[str],
        max_new_tokens: int,
        batch_size: int,
        cache_images: int = 256,
        template: Optional[ChatTemplate] = None,
    ):
        self.model = model.eval()
        self.processor = processor
        self.template = template or chat_template_of(processor)
        self.stop_ids = stop_token_ids(model, processor, self.template)
        self.image_root = image_root
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.calls = 0  # generate() batches run
        self._images: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
        self._cache = cache_images

    def image(self, name: str) -> Any:
        path = llava_data.image_path(name, self.image_root)
        if path in self._images:
            self._images.move_to_end(path)
            return self._images[path]
        img = load_image(path)
        self._images[path] = img
        while len(self._images) > self._cache:
            self._images.popitem(last=False)
        return img

    def __call__(self, prompts: Sequence[Any]) -> list[str]:
        texts = [self.template.prompt(p.messages) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (prompts[i].image is None, len(texts[i])))
        out: list[Optional[str]] = [None] * len(prompts)
        start = 0
        while start < len(order):
            has_image = prompts[order[start]].image is not None
            chunk = []
            while start < len(order) and len(chunk) < self.batch_size and (prompts[order[start]].image is not None) == has_image:
                chunk.append(order[start])
                start += 1
            images = [self.image(prompts[i].image) if has_image else None for i in chunk]
            batch = [texts[i] for i in chunk]
            special = not self.template.starts_with_bos(batch[0])
            for i, text in zip(chunk, generate(self.model, self.processor, batch, images, self.max_new_tokens, add_special_tokens=special, eos_token_id=self.stop_ids)):
                out[i] = text
            self.calls += 1
        return [text if text is not None else "" for text in out]


def make_generator(
    name_or_path: str, *, seed: int, adapter: Optional[str], image_root: Optional[str], max_new_tokens: int, batch_size: int, bf16: Optional[bool] = None
) -> Generator:
    """Load a model onto this process's device and wrap it as a self-play callable."""
    require()
    device, dtype = device_and_dtype(bf16)
    model, processor = load_model(name_or_path, seed=seed, dtype=dtype, adapter=adapter)
    template = chat_template_of(processor, name_or_path)  # UNKNOWN_MODEL before the model moves
    model.to(device)
    return Generator(model, processor, image_root=image_root, max_new_tokens=max_new_tokens, batch_size=batch_size, template=template)
