"""The hf backend's models: the transformers and peft check, the tiny random LLaVA-NeXT built in
code, and loading a model (with a LoRA adapter merged) onto a device (stoker_fire.hf has the
whole backend's description).

    transformers, peft = require()          # or PayloadError('MISSING_DEPENDENCY')
    model, processor = load_model("tiny-random", seed=1)   # or a LLaVA-NeXT directory
    device, dtype = device_and_dtype(bf16=None)            # cuda:LOCAL_RANK in bf16, else cpu

transformers, peft and torch are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from stoker_payload import runtime
from stoker_payload.exit_codes import PayloadError

from .chat_template import builtin
from .prompts import IMAGE_TOKEN

__all__ = [
    "TINY_RANDOM",
    "INSTALL_HINT",
    "SPECIAL_TOKENS",
    "TINY_CHAT_TEMPLATE",
    "TinySpec",
    "require",
    "build_tiny_tokenizer",
    "build_tiny_processor",
    "tiny_config",
    "device_and_dtype",
    "load_model",
]

TINY_RANDOM = "tiny-random"
INSTALL_HINT = "pip install 'transformers>=4.57' peft accelerate pillow"
# The tiny model's chat template is LLaVA-NeXT-8B's (Llama-3), so tests take the recipe's code
# path; its header and end-of-turn markers are special tokens, as in Llama-3's tokenizer.
TINY_CHAT_TEMPLATE = "llama3-llava-next"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", IMAGE_TOKEN, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


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
    """A byte-level tokenizer built in code: ids 0-6 are <pad> <s> </s> <image> and Llama-3's
    <|start_header_id|> <|end_header_id|> <|eot_id|>, then 256 bytes. Every string encodes (one
    token per UTF-8 byte, special tokens whole) and decodes back exactly."""
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
    """The LlavaNextProcessor of the tiny model: tiny tokenizer + AnyRes image processor, with
    LLaVA-NeXT-8B's chat template (stoker_fire.chat_template's llama3-llava-next)."""
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
        chat_template=builtin(TINY_CHAT_TEMPLATE),
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
