"""The `hf` model backend of the FIRE payloads: LLaVA-NeXT through transformers, LoRA through
peft, training through the HF Trainer, batched greedy generation for self-play.

    from stoker_fire import hf
    model, processor = hf.load_model("tiny-random", seed=1)            # or a local model dir
    texts = hf.generate(model, processor, ["USER: <image>\\nWhat color?\\nASSISTANT: "], [image], 64)
    result = hf.train(cfg, records, image_root, out_dir, resume_from, reporter)   # stoker_fire.train's job

Imports: transformers, peft and torch are imported inside the functions, so importing this
module is cheap; without transformers or peft every entry point raises
PayloadError('MISSING_DEPENDENCY') with the pip command (exit 68 through run_main).

Models:
    a directory (or hub id already in the local cache) in the transformers LLaVA-NeXT format
    (LlavaNextForConditionalGeneration + its processor, e.g. llava-hf/llama3-llava-next-8b-hf).
    Checkpoints in the original LLaVA layout (Lin-Chen/open-llava-next-llama3-8b) must be
    converted to that format first; a path that does not load is UNKNOWN_MODEL.
    `tiny-random`: a randomly initialised LlavaNextConfig built in code (CLIP vision tower of
    2 layers on 32x32 tiles, 2-layer Llama of width 64, AnyRes grid up to 64x64) with a
    byte-level tokenizer also built in code (4 special tokens + 256 bytes), so tests and the
    GPU check need no download. The weights are a function of `seed`: a LoRA checkpoint of
    a tiny-random run resumes onto the same base weights when the seed is the same.

Prompt template: the plain LLaVA one, `USER: {human}\\nASSISTANT: {gpt}</s>\\n` per turn
(consecutive human messages share one USER block). The loss is on the gpt text and its eos
token only. (A model-specific chat template is a follow-up; the template lives in
render_segments() alone.)

Training (train()): LoRA r/alpha/dropout on the language model's attention projections named
by lora_target_modules (the vision tower's q/k/v are not touched), the multimodal projector
trained in full (peft modules_to_save), bf16 autocast on CUDA with base weights in bf16 and
trainable weights in fp32, optional gradient checkpointing, DeepSpeed JSON passed to the
Trainer when deepspeed is importable (otherwise a warn log line says ZeRO is off). The Trainer
writes OUTPUT/checkpoint-N (adapter, projector, optimizer, scheduler, RNG, trainer_state.json);
RESUME_FROM names such a directory and the step continues from N. Events (rank 0): progress
per optimizer step, metrics {step, loss, lr, gradNorm, epoch} per logging step, checkpoint
{path, step} after each save; SIGTERM saves a checkpoint at the end of the current step and
raises Preempted.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from stoker_payload import report, runtime, signals
from stoker_payload.exit_codes import PayloadError, Preempted

from . import llava_data
from .backends import loss_fields
from .prompts import IMAGE_TOKEN

__all__ = [
    "TINY_RANDOM",
    "INSTALL_HINT",
    "TinySpec",
    "require",
    "build_tiny_processor",
    "tiny_config",
    "load_model",
    "render_segments",
    "render_prompt",
    "encode_conversation",
    "generate",
    "Generator",
    "train",
]

TINY_RANDOM = "tiny-random"
INSTALL_HINT = "pip install 'transformers>=4.57' peft accelerate pillow"
IGNORE_INDEX = -100
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", IMAGE_TOKEN)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny random LLaVA-NeXT (small enough to train on a CPU in seconds)."""

    image_size: int = 32  # vision tile (crop) size; the processor's shortest edge
    patch_size: int = 8  # 4x4 patches per tile
    vision_hidden: int = 32
    vision_layers: int = 2  # vision_feature_layer -2 is the first layer's output
    vision_heads: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    max_positions: int = 4096
    grid_pinpoints: tuple[tuple[int, int], ...] = ((32, 64), (64, 32), (64, 64))


def require() -> tuple[Any, Any]:
    """(transformers, peft), or PayloadError('MISSING_DEPENDENCY') naming what is missing."""
    import importlib

    modules, missing = {}, []
    for name in ("transformers", "peft"):
        try:
            modules[name] = importlib.import_module(name)
        except ModuleNotFoundError as err:
            missing.append(err.name or name)
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise PayloadError("MISSING_DEPENDENCY", f"the hf backend needs transformers and peft: {INSTALL_HINT} (missing: {names})")
    return modules["transformers"], modules["peft"]


# -- model and processor --------------------------------------------------------------


def build_tiny_tokenizer() -> Any:
    """A byte-level tokenizer built in code: ids 0-3 are <pad> <s> </s> <image>, then 256 bytes.
    Every string encodes (one token per UTF-8 byte) and decodes back exactly."""
    require()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=1 << 20
    )


def _image_processor_class() -> Any:
    """LLaVA-NeXT's image processor: the torchvision one when torchvision is there (the
    default in transformers 5), else the PIL/numpy one."""
    import transformers

    try:
        import torchvision  # noqa: F401

        return transformers.LlavaNextImageProcessor
    except ImportError:
        for name in ("LlavaNextImageProcessorPil", "LlavaNextImageProcessor"):
            cls = getattr(transformers, name, None)
            if cls is not None:
                return cls
        raise


def build_tiny_processor(spec: TinySpec = TinySpec()) -> Any:
    """The LlavaNextProcessor of the tiny model: tiny tokenizer + AnyRes image processor."""
    require()
    from transformers import LlavaNextProcessor

    image_processor = _image_processor_class()(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        image_grid_pinpoints=[list(p) for p in spec.grid_pinpoints],
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=build_tiny_tokenizer(),
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def tiny_config(tokenizer: Any, spec: TinySpec = TinySpec()) -> Any:
    require()
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig

    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        projection_dim=spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=[list(p) for p in spec.grid_pinpoints],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(spec.image_size // spec.patch_size) ** 2,
    )


def device_and_dtype(bf16: Optional[bool] = None) -> tuple[Any, Any]:
    """(device, dtype): cuda:LOCAL_RANK with bf16 (unless bf16=False) when CUDA is there,
    else cpu with float32 (bf16=True on a CPU is ignored: CPU bf16 matmuls are slow)."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda", runtime.local_rank() % torch.cuda.device_count())
        return device, (torch.float32 if bf16 is False else torch.bfloat16)
    return torch.device("cpu"), torch.float32


def load_model(
    name_or_path: str,
    *,
    seed: int = 0,
    dtype: Any = None,
    attn_implementation: Optional[str] = None,
    adapter: Optional[str] = None,
    spec: TinySpec = TinySpec(),
) -> tuple[Any, Any]:
    """(LlavaNextForConditionalGeneration, processor) on the CPU, in `dtype` (default float32).

    adapter: a LoRA checkpoint directory of stoker_fire.train to merge into the weights (self-play
    with a trained student or teacher).
    """
    require()
    import torch
    import transformers

    dtype = dtype if dtype is not None else torch.float32
    if name_or_path == TINY_RANDOM:
        processor = build_tiny_processor(spec)
        config = tiny_config(processor.tokenizer, spec)
        if attn_implementation:
            config._attn_implementation = attn_implementation
        torch.manual_seed(seed)  # the weights are a function of the seed
        model = transformers.LlavaNextForConditionalGeneration(config).to(dtype)
    else:
        local = name_or_path.startswith((os.path.sep, ".", "~")) or os.path.exists(name_or_path)
        if local and not os.path.isdir(os.path.expanduser(name_or_path)):
            raise PayloadError("UNKNOWN_MODEL", f"model directory does not exist: {name_or_path}")
        kwargs: dict[str, Any] = {"dtype": dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            processor = transformers.AutoProcessor.from_pretrained(name_or_path)
            model = transformers.LlavaNextForConditionalGeneration.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError, KeyError) as err:  # not found, not LLaVA-NeXT, unknown model type
            raise PayloadError(
                "UNKNOWN_MODEL", f"cannot load a LLaVA-NeXT model and processor from {name_or_path!r}: {err}"
            ) from None
    if adapter:
        from peft import PeftModel

        if not os.path.isdir(adapter):
            raise PayloadError("MISSING_INPUT", f"adapter directory does not exist: {adapter}")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model, processor


# -- text -----------------------------------------------------------------------------


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


def _load_image(path: str) -> Any:
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
            pil = _load_image(llava_data.image_path(image, image_root))
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


def _collate(batch: Sequence[dict[str, Any]], pad_id: int, pixel_dtype: Any) -> dict[str, Any]:
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


# -- generation -----------------------------------------------------------------------


def generate(
    model: Any, processor: Any, texts: Sequence[str], images: Sequence[Any], max_new_tokens: int
) -> list[str]:
    """Greedy continuations of `texts` (rendered prompts), one batch, left-padded.

    images: one PIL image per text, or all None (text-only prompts); each text with an image
    holds one `<image>` mark. Returns the new text only, special tokens skipped, stripped.
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
        inputs = processor(text=list(texts), images=list(images), padding=True, return_tensors="pt")
    else:
        inputs = tokenizer(list(texts), padding=True, return_tensors="pt")
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
            eos_token_id=tokenizer.eos_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


class Generator:
    """A self-play model callable: prompts (stoker_fire.selfplay_rules.Prompt) -> texts, in order.

    Prompts are grouped by rendered length and run batch_size at a time (with and without an
    image apart), so padding stays small; images are loaded once and kept in a small cache.
    """

    def __init__(
        self, model: Any, processor: Any, *, image_root: Optional[str], max_new_tokens: int, batch_size: int, cache_images: int = 256
    ):
        self.model = model.eval()
        self.processor = processor
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
        img = _load_image(path)
        self._images[path] = img
        while len(self._images) > self._cache:
            self._images.popitem(last=False)
        return img

    def __call__(self, prompts: Sequence[Any]) -> list[str]:
        eos = self.processor.tokenizer.eos_token or ""
        texts = [render_prompt(p.messages, eos) for p in prompts]
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
            for i, text in zip(chunk, generate(self.model, self.processor, [texts[i] for i in chunk], images, self.max_new_tokens)):
                out[i] = text
            self.calls += 1
        return [text if text is not None else "" for text in out]


# -- training -------------------------------------------------------------------------


def _lora_model(model: Any, cfg: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
    # Only the language model's projections: CLIP's attention has q/k/v_proj too.
    pattern = r".*language_model.*\.(" + "|".join(map(re.escape, targets)) + r")"
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=pattern,
        modules_to_save=["multi_modal_projector"] if cfg.train_projector else None,
        bias="none",
    )
    peft_model = get_peft_model(model, lora)
    for param in peft_model.parameters():  # adapters and the projector copy train in fp32
        if param.requires_grad and param.dtype != _torch().float32:
            param.data = param.data.float()
    return peft_model


def _torch() -> Any:
    import torch

    return torch


def _total_steps(cfg: Any, samples: int, world: int) -> int:
    """Optimizer steps of the run, as the Trainer counts them (for the warmup length)."""
    if cfg.max_steps and cfg.max_steps > 0:
        return cfg.max_steps
    batches = math.ceil(samples / (cfg.per_device_train_batch_size * world))
    per_epoch = max(1, batches // cfg.gradient_accumulation_steps)
    return max(1, math.ceil(cfg.num_train_epochs * per_epoch))


def _deepspeed(cfg: Any, reporter: report.Reporter) -> Optional[str]:
    if not cfg.deepspeed:
        return None
    if not os.path.isfile(cfg.deepspeed):
        raise PayloadError("MISSING_INPUT", f"deepspeed config does not exist: {cfg.deepspeed}")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        reporter.log(
            f"deepspeed is not installed: training WITHOUT ZeRO ({cfg.deepspeed} ignored); pip install deepspeed to use it",
            "warn",
        )
        return None
    return cfg.deepspeed


def _checkpoint_step(path: str) -> int:
    state_file = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_file):
        raise PayloadError("BAD_DATA", f"RESUME_FROM {path} is not a Trainer checkpoint (no trainer_state.json)")
    try:
        with open(state_file, "r", encoding="utf-8") as fh:
            return int(json.load(fh)["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PayloadError("BAD_DATA", f"unreadable {state_file}: {err}") from None


def train(
    cfg: Any,
    records: list[dict[str, Any]],
    image_root: Optional[str],
    out_dir: str,
    resume_from: Optional[str],
    reporter: report.Reporter,
) -> dict[str, Any]:
    """LoRA-train on LLaVA conversation records; returns the result fields (see stoker_fire.train).

    cfg: stoker_fire.train.TrainConfig (model_name_or_path, lora_*, learning_rate, ...).
    """
    transformers, _ = require()
    import torch
    from torch.utils.data import Dataset

    world = runtime.world_size()
    cuda = torch.cuda.is_available()
    bf16 = cuda and cfg.bf16 is not False
    start_step = _checkpoint_step(resume_from) if resume_from else 0
    deepspeed = _deepspeed(cfg, reporter)

    model, processor = load_model(
        cfg.model_name_or_path,
        seed=cfg.seed,
        dtype=torch.bfloat16 if bf16 else torch.float32,
        attn_implementation=cfg.attn_implementation or None,
    )
    model.config.use_cache = False
    model = _lora_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    reporter.metrics(trainableParameters=trainable, parameters=total)

    pad_id = processor.tokenizer.pad_token_id
    pixel_dtype = torch.bfloat16 if bf16 else torch.float32

    class ConversationDataset(Dataset):
        def __len__(self) -> int:
            return len(records)

        def __getitem__(self, index: int) -> dict[str, Any]:
            return encode_conversation(processor, records[index], image_root, cfg.max_length)

    total_steps = _total_steps(cfg, len(records), world)
    warmup_steps = math.ceil(cfg.warmup_ratio * total_steps)
    args = transformers.TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=warmup_steps,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else -1,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        bf16=bf16,
        tf32=True if (cuda and cfg.tf32) else None,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        deepspeed=deepspeed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        seed=cfg.seed,
        disable_tqdm=True,
        use_cpu=not cuda,
    )
    callback = _stoker_callback(transformers, reporter)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=ConversationDataset(),
        data_collator=lambda batch: _collate(batch, pad_id, pixel_dtype),
        processing_class=processor,
        callbacks=[callback],
    )
    if resume_from:
        reporter.log(f"resuming from {resume_from} at step {start_step}")
    began = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - began
    step = trainer.state.global_step
    if callback.preempted and step < trainer.state.max_steps:
        raise Preempted(f"stopped on request at step {step} after writing {callback.last_checkpoint}; resume from it")

    final_dir = os.path.join(out_dir, "final")
    trainer.save_model(final_dir)  # adapter + projector (+ processor) for self-play / merging
    history = callback.history
    losses = [h["loss"] for h in history if h.get("loss") is not None]
    metrics_path = os.path.join(out_dir, "metrics.json")
    if trainer.is_world_process_zero():
        tmp = metrics_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"history": history, "train": output.metrics}, fh, indent=1)
        os.replace(tmp, metrics_path)
        reporter.artifact("adapter", final_dir)
        reporter.artifact("metrics", metrics_path)
    return {
        "backend": "hf",
        "model": cfg.model_name_or_path,
        "steps": step,
        "startStep": start_step,
        "resumedFrom": resume_from,
        **loss_fields(losses),  # of this run's logged steps
        "samples": len(records),
        "trainableParameters": trainable,
        "parameters": total,
        "seconds": round(seconds, 3),
        "lastCheckpoint": callback.last_checkpoint,
        "adapter": final_dir,
        "bf16": bf16,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }


def _stop_agreed() -> bool:
    """Whether to stop now. With several ranks all must agree (a MAX all-reduce of the flag),
    or one rank would save collectively while the others step on and hang."""
    wanted = signals.stop_requested()
    torch = _torch()
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return wanted
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    flag = torch.tensor([1 if wanted else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _stoker_callback(transformers: Any, reporter: report.Reporter) -> Any:
    """A TrainerCallback that reports to stoker and turns SIGTERM into checkpoint + stop."""

    class StokerCallback(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []
            self.last_checkpoint: Optional[str] = None
            self.preempted = False

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                reporter.progress(state.global_step, state.max_steps or None, max(0.0, float(state.epoch or 0.0)))
            if _stop_agreed() and state.global_step < state.max_steps:
                self.preempted = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "loss" not in logs:
                return control
            entry = {
                "step": state.global_step,
                "loss": logs.get("loss"),
                "lr": logs.get("learning_rate"),
                "gradNorm": logs.get("grad_norm"),
                "epoch": logs.get("epoch"),
            }
            self.history.append(entry)
            if state.is_world_process_zero:
                reporter.metrics(state.global_step, loss=entry["loss"], lr=entry["lr"], gradNorm=entry["gradNorm"], epoch=entry["epoch"])
            return control

        def on_save(self, args, state, control, **kwargs):
            path = os.path.abspath(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
            self.last_checkpoint = path
            if state.is_world_process_zero:
                reporter.checkpoint(path, state.global_step)
            return control

    return StokerCallback()


def make_generator(
    name_or_path: str, *, seed: int, adapter: Optional[str], image_root: Optional[str], max_new_tokens: int, batch_size: int, bf16: Optional[bool] = None
) -> Generator:
    """Load a model onto this process's device and wrap it as a self-play callable."""
    require()
    device, dtype = device_and_dtype(bf16)
    model, processor = load_model(name_or_path, seed=seed, dtype=dtype, adapter=adapter)
    model.to(device)
    return Generator(model, processor, image_root=image_root, max_new_tokens=max_new_tokens, batch_size=batch_size)


__all__ += ["make_generator", "device_and_dtype", "build_tiny_tokenizer"]
