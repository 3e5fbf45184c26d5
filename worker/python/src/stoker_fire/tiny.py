r"""The `tiny` model backend of the FIRE payloads: a small vision-language model in plain PyTorch
that trains and generates on a CPU in seconds (the fire-mini demo, tests). Same interface as
stoker_fire.hf (see stoker_fire/backends.py).

    from stoker_fire import tiny
    model, tok = tiny.load("tiny-new", seed=1)                     # random weights, base vocabulary
    model, tok = tiny.load("/out/student/final")                    # a trained model
    gen = tiny.make_generator("/out/student/final", seed=0, adapter=None, image_root="/data/images",
                              max_new_tokens=32, batch_size=32)
    texts = gen([Prompt("id", "student", "a.png", tuple(student_messages("How many dots?", [], [])))])

Model names:
    tiny-new (alias tiny-random)   a fresh, randomly initialised model; its weights are a function
                                   of the seed. stoker_fire.train builds its vocabulary from the base
                                   vocabulary plus every word of the training data; a generator
                                   made from the name alone gets the base vocabulary.
    a directory                    OUTPUT/final or OUTPUT/checkpoint-N written by this backend
                                   (config.json, vocab.json, model.pt). Training from it continues
                                   from its weights at step 0 (new words of the data are appended
                                   to its vocabulary); RESUME_FROM=checkpoint-N continues the run.
    The hf-style `adapter` does not apply: the tiny backend trains every weight and a trained
    model is a directory of its own, so adapter must be None (BAD_CONFIG otherwise).

Tokenizer: word level and reversible. A text is cut into `\n`, words (letters, with the space in
front of them), digit runs (likewise), single other characters (likewise) and lone whitespace,
so joining the pieces gives the text back; `<image>` and the teacher's instruction
(stoker_fire.prompts.TEACHER_INSTRUCTION: constant, so one token instead of ~85) are one piece each.
A piece that is not in the vocabulary encodes as <unk> (decoded as the empty string).

Rendering (render(); the ONE function that both training and generation use): <bos>, then per
message its role token (<human> / <gpt>) and its text's tokens; a gpt message ends with <eot>.
A generation prompt (messages ending with a human message) ends with <gpt>, and the model
writes until <eot>. The loss is on every gpt message's tokens and its <eot>. A record with an
image but no `<image>` mark gets one in front of its first human message (as stoker_fire.hf does);
each `<image>` becomes IMAGE_TOKENS (4) image positions, filled with the image encoder's
output (prefix embeddings where the mark is).

Architecture (TinyConfig; about 0.8M parameters at the defaults): the image, resized to
image_size (32), goes through 4 convolutions (3x3, strides 1, 2, 2, 2, GroupNorm) to a 4x4
grid; the grid and its mean go through one linear map to the 4 image embeddings. Text: token
embeddings, a token shift (each input plus linear maps of the `shift` (4) inputs before it, a
short causal convolution as in H3/Mamba, so "the word after `Answer:`" is visible to the first
layer), learned positions, a pre-LayerNorm causal transformer (layers x heads, GELU MLP of
4 x d_model), output tied to the token embedding. Generation is batched greedy decoding with a
KV cache and left padding (each sequence's positions count from its first real token and pads
are masked everywhere, so a prompt decodes the same alone or in a batch).

Training (train()): full-weight AdamW (lr, weight decay, betas 0.9/0.999), warmup + cosine /
linear / constant schedule, gradient clipping at 1.0, gradient accumulation, fixed data order
per (seed, epoch), so a run resumed from checkpoint-N ends with the same weights as an
uninterrupted one. Writes OUTPUT/checkpoint-N (model, vocabulary, optimizer, trainer_state.json)
every save_steps steps and at the end, OUTPUT/final and OUTPUT/metrics.json. Events as stoker_fire.hf:
progress per step, metrics {step, loss, lr, gradNorm, epoch} per logging step, checkpoint per
save; SIGTERM -> a checkpoint at the end of the step, then Preempted. The hf-only options
(lora_*, deepspeed, gradient_checkpointing, attn_implementation, bf16, tf32,
dataloader_num_workers, train_projector) are ignored; one process only (WORLD_SIZE 1).
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Iterable, Optional, Sequence

from stoker_payload import report, runtime, signals
from stoker_payload.exit_codes import PayloadError, Preempted

from . import llava_data
from .backends import loss_fields
from .parsing import ANSWER_MARKER, FEEDBACK_MARKER, SCORE_MARKER, THOUGHT_MARKER
from .prompts import IMAGE_TOKEN, TEACHER_INSTRUCTION

__all__ = [
    "TINY_NEW",
    "TINY_RANDOM",
    "NAMES",
    "SPECIALS",
    "IMAGE_TOKENS",
    "TinyConfig",
    "Tokenizer",
    "pieces",
    "base_vocabulary",
    "with_image_mark",
    "render",
    "require",
    "load",
    "save",
    "Generator",
    "make_generator",
    "generate_ids",
    "new_model",
    "new_cache",
    "is_model_dir",
    "count_parameters",
    "grow_vocabulary",
    "record_texts",
    "encode_records",
    "train",
]

TINY_NEW = "tiny-new"
TINY_RANDOM = "tiny-random"  # stoker_fire.train / stoker_fire.selfplay's default model name: the same as tiny-new
NAMES = (TINY_NEW, TINY_RANDOM)
FORMAT = "stoker-fire-tiny"
PAD, UNK, BOS, EOT, HUMAN, GPT, IMAGE = "<pad>", "<unk>", "<bos>", "<eot>", "<human>", "<gpt>", IMAGE_TOKEN
SPECIALS = (PAD, UNK, BOS, EOT, HUMAN, GPT, IMAGE)
GRID = 4  # the image encoder's last feature map is GRID x GRID
IMAGE_TOKENS = 4  # positions an image takes in the sequence
IGNORE = -100
MAX_GRAD_NORM = 1.0
MAX_LISTED = 20

_PIECE = re.compile(r"\n| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]|\s")


def require() -> Any:
    """torch, or PayloadError('MISSING_DEPENDENCY')."""
    try:
        import torch
    except ModuleNotFoundError:
        raise PayloadError("MISSING_DEPENDENCY", "the tiny backend needs torch: apt-get install python3-torch (or pip install torch)") from None
    return torch


# -- tokenizer ----------------------------------------------------------------------------


# Whole texts that are one piece: the image mark, and the teacher's instruction (constant, so
# it carries nothing word by word; as one token it costs one position instead of ~85).
PHRASES = (IMAGE_TOKEN, TEACHER_INSTRUCTION)


def pieces(text: str, phrases: Sequence[str] = PHRASES) -> list[str]:
    """The pieces of a text; "".join(pieces(text)) == text. Each of `phrases` is one piece."""
    for phrase in phrases:
        if phrase in text:
            rest = [p for p in phrases if p != phrase]
            parts = text.split(phrase)
            out: list[str] = []
            for i, part in enumerate(parts):
                if i:
                    out.append(phrase)
                out.extend(pieces(part, rest))
            return out
    return _PIECE.findall(text)


def base_vocabulary() -> list[str]:
    """What every tiny model knows: the special tokens, the FIRE markers, the teacher's
    instruction, digits 0-10 and common punctuation."""
    words = list(SPECIALS) + [p for p in PHRASES if p not in SPECIALS]
    seed_text = " ".join(
        [SCORE_MARKER, FEEDBACK_MARKER, THOUGHT_MARKER, ANSWER_MARKER, "Question:", "Groundtruth:"]
        + [str(n) for n in range(11)]
        + [". , ; : ? ! ' \" ( ) -"]
    )
    for text in (seed_text, "\n" + seed_text.replace(" ", "\n")):
        for piece in pieces(text):
            if piece not in words:
                words.append(piece)
    return words


class Tokenizer:
    """Word-level, reversible for known words (see the module docstring)."""

    def __init__(self, vocab: Sequence[str]):
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a tiny vocabulary starts with {SPECIALS}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("a tiny vocabulary has no duplicates")
        self.vocab = list(vocab)
        self.index = {piece: i for i, piece in enumerate(self.vocab)}
        # vocabulary entries that the word rule would cut (the instruction) are kept whole
        self.phrases = tuple(sorted((v for v in self.vocab[len(SPECIALS) :] if len(_PIECE.findall(v)) > 1), key=len, reverse=True))
        self._phrases = (IMAGE_TOKEN, *self.phrases)
        self.pad, self.unk, self.bos, self.eot, self.human, self.gpt, self.image = range(len(SPECIALS))

    def __len__(self) -> int:
        return len(self.vocab)

    def pieces(self, text: str) -> list[str]:
        return pieces(text, self._phrases)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(piece, self.unk) for piece in self.pieces(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ids; special tokens (and <unk>) are left out."""
        return "".join(self.vocab[i] for i in ids if i >= len(SPECIALS))

    def unknown(self, text: str) -> list[str]:
        return [piece for piece in self.pieces(text) if piece not in self.index]

    def extended(self, texts: Iterable[str]) -> "Tokenizer":
        """This vocabulary plus every new piece of `texts`, appended in sorted order."""
        new = sorted({piece for text in texts for piece in self.pieces(text)} - set(self.index))
        return Tokenizer(self.vocab + new)


def record_texts(records: Iterable[dict[str, Any]]) -> Iterable[str]:
    for record in records:
        for turn in record["conversations"]:
            yield turn["value"]


# -- rendering: the one function for training and generation --------------------------------


def with_image_mark(messages: Sequence[dict[str, str]], has_image: bool, where: str) -> list[dict[str, str]]:
    """The messages with exactly one `<image>` when there is an image (put in front of the first
    message when absent) and none otherwise; ValueError for two marks or a mark without image."""
    out = [dict(m) for m in messages]
    marks = sum(m["value"].count(IMAGE_TOKEN) for m in out)
    if has_image and marks == 0:
        out[0]["value"] = f"{IMAGE_TOKEN}\n{out[0]['value']}"
    elif has_image and marks > 1:
        raise ValueError(f"{where}: {marks} {IMAGE_TOKEN} marks for one image")
    elif not has_image and marks:
        raise ValueError(f"{where}: {IMAGE_TOKEN} in the text but no image")
    return out


def render(tok: Tokenizer, messages: Sequence[dict[str, str]], *, generation: bool) -> tuple[list[int], list[bool]]:
    """(ids, is_target) of a conversation. generation=True: the messages end with a human
    message and the ids end with <gpt> (nothing is a target)."""
    if not messages:
        raise ValueError("no messages")
    ids, target = [tok.bos], [False]
    for message in messages:
        role = message["from"]
        if role not in ("human", "gpt"):
            raise ValueError(f"unknown message role {role!r}")
        text_ids: list[int] = []
        for i in tok.encode(message["value"]):
            text_ids.extend([tok.image] * IMAGE_TOKENS if i == tok.image else [i])
        learn = role == "gpt" and not generation
        ids.append(tok.human if role == "human" else tok.gpt)
        target.append(False)
        ids.extend(text_ids)
        target.extend([learn] * len(text_ids))
        if role == "gpt":
            ids.append(tok.eot)
            target.append(learn)
    if generation:
        if messages[-1]["from"] != "human":
            raise ValueError("a generation prompt must end with a human message")
        ids.append(tok.gpt)
        target.append(False)
    return ids, target


# -- model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int
    d_model: int = 96
    layers: int = 2
    heads: int = 4
    image_size: int = 32
    max_positions: int = 512
    shift: int = 4  # token shift: inputs mixed into each position from just before it

    def problems(self) -> list[str]:
        out = []
        if self.d_model < 8 or self.d_model % self.heads:
            out.append(f"d_model must be >= 8 and a multiple of heads ({self.heads}), got {self.d_model}")
        if self.layers < 1 or self.heads < 1:
            out.append(f"layers and heads must be >= 1, got {self.layers} and {self.heads}")
        if self.image_size < 16 or self.image_size % 8:
            out.append(f"image_size must be a multiple of 8, >= 16, got {self.image_size}")
        if not 0 <= self.shift <= 8:
            out.append(f"shift must be in 0..8, got {self.shift}")
        if self.max_positions < IMAGE_TOKENS + 8:
            out.append(f"max_positions must be >= {IMAGE_TOKENS + 8}, got {self.max_positions}")
        return out


def _modules() -> Any:
    """The nn.Module classes (defined on first use, so importing stoker_fire.tiny needs no torch)."""
    global _MODULES
    if _MODULES is not None:
        return _MODULES
    torch = require()
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, d: int, heads: int):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x, bias, cache):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            shape = (b, t, self.heads, d // self.heads)
            q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
            if cache is not None:  # keys and values of earlier positions, in a buffer grown in place
                n = cache["n"]
                if cache["k"] is None or cache["k"].shape[2] < n + t:
                    grown = max(n + t, cache["capacity"])
                    kb, vb = k.new_empty(b, self.heads, grown, k.shape[-1]), v.new_empty(b, self.heads, grown, v.shape[-1])
                    if n:
                        kb[:, :, :n], vb[:, :, :n] = cache["k"][:, :, :n], cache["v"][:, :, :n]
                    cache["k"], cache["v"] = kb, vb
                cache["k"][:, :, n : n + t], cache["v"][:, :, n : n + t] = k, v
                cache["n"] = n + t
                k, v = cache["k"][:, :, : n + t], cache["v"][:, :, : n + t]
            scale = 1.0 / math.sqrt(k.shape[-1])
            if t == 1:  # one new token: broadcasting beats many tiny matrix products
                att = (q * k).sum(-1, keepdim=True).transpose(-1, -2) * scale + bias
                y = (att.softmax(dim=-1).transpose(-1, -2) * v).sum(-2, keepdim=True).transpose(1, 2).reshape(b, t, d)
            else:
                att = (q @ k.transpose(-2, -1)) * scale + bias
                y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.mlp(self.ln2(x))

    class Vision(nn.Module):
        """image (B, 3, S, S) -> (B, IMAGE_TOKENS, d): 4 convolutions down to a 4x4 grid (every
        image size is pooled to 4x4), then one linear map of the whole grid to the image tokens,
        so each token can carry global facts (how many, how far left) without attention having
        to gather them."""

        def __init__(self, d: int):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.GELU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GroupNorm(4, 32), nn.GELU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
                nn.AdaptiveAvgPool2d(GRID),
            )  # fmt: skip
            # the grid, plus its mean (a sum of detections is how many; an easy path for counting)
            self.out = nn.Linear(64 * (GRID * GRID + 1), IMAGE_TOKENS * d)
            self.d = d

        def forward(self, images):
            grid = self.net(images)
            feats = torch.cat([grid.flatten(1), grid.mean(dim=(2, 3))], dim=1)
            return self.out(feats).view(images.shape[0], IMAGE_TOKENS, self.d)

    class TinyVLM(nn.Module):
        def __init__(self, cfg: TinyConfig):
            super().__init__()
            self.cfg = cfg
            self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
            self.vision = Vision(cfg.d_model)
            # token shift: each input also sees the two before it (a causal convolution over the
            # inputs, as in H3/Mamba's short convolutions), so "the value after `Groundtruth:`"
            # or "after `Answer:`" is visible to the first layer's attention at once
            self.shift = nn.ModuleList([nn.Linear(cfg.d_model, cfg.d_model, bias=False) for _ in range(cfg.shift)])
            self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.heads) for _ in range(cfg.layers))
            self.norm = nn.LayerNorm(cfg.d_model)
            self.apply(self._init)

        @staticmethod
        def _init(module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

        def forward(self, ids, positions, valid, images=None, image_rows=None, cache=None, last_only=False):
            """Logits (B, T, V) of ids (B, T) at positions (B, T); valid (B, K) marks the real keys
            (K = cached + T); images (N, 3, S, S) fill the image positions of rows image_rows.
            cache: new_cache(), updated in place, for incremental decoding. last_only: the
            logits of the last position only (B, 1, V): all that decoding needs."""
            x = self.tok(ids)
            if images is not None and len(images):
                feats = self.vision(images)  # (N, 16, d), in the (ascending) order of image_rows
                has_image = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
                has_image[image_rows] = True
                mask = (ids == IMAGE_ID) & has_image[:, None]
                if int(mask.sum()) != feats.shape[0] * feats.shape[1]:
                    raise ValueError(f"each image row needs exactly one block of {IMAGE_TOKENS} image positions")
                x = x.clone()
                x[mask] = feats.reshape(-1, feats.shape[-1])
            t, k = ids.shape[1], valid.shape[1]
            n = len(self.shift)
            if n:
                x = x * valid[:, k - t :, None]  # a pad contributes nothing to the shift
                before = cache["shift"] if cache is not None and cache["shift"] is not None else x.new_zeros(x.shape[0], n, x.shape[2])
                padded = torch.cat([before, x], dim=1)
                if cache is not None:
                    cache["shift"] = padded[:, -n:]
                # lin j sees the input j + 1 places back (zeros before the start)
                x = x + sum(lin(padded[:, n - 1 - j : n - 1 - j + t]) for j, lin in enumerate(self.shift))
            x = x + self.pos(positions)
            allowed = torch.ones(t, k, dtype=torch.bool, device=ids.device).tril(diagonal=k - t)[None] & valid[:, None, :]
            # a query with no real key (a left pad) may see itself, so its softmax stays finite
            diag = torch.zeros(t, k, dtype=torch.bool, device=ids.device)
            diag[torch.arange(t), torch.arange(k - t, k)] = True
            allowed = allowed | diag[None]
            bias = torch.zeros(allowed.shape, dtype=x.dtype, device=ids.device).masked_fill(~allowed, -1e9)[:, None]
            for i, block in enumerate(self.blocks):
                x = block(x, bias, cache["layers"][i] if cache is not None else None)
            if last_only:
                x = x[:, -1:]
            return F.linear(self.norm(x), self.tok.weight)

    _MODULES = collections.namedtuple("Modules", "torch nn F TinyVLM")(torch, nn, F, TinyVLM)
    return _MODULES


_MODULES: Any = None
IMAGE_ID = SPECIALS.index(IMAGE)


def new_cache(model: Any, capacity: int = 0) -> dict[str, Any]:
    """Decoding state: the last inputs (token shift) and each layer's keys and values
    (buffers of `capacity` positions, grown when needed)."""
    return {"shift": None, "layers": [{"k": None, "v": None, "n": 0, "capacity": capacity} for _ in model.blocks]}


def new_model(cfg: TinyConfig, seed: int) -> Any:
    m = _modules()
    problems = cfg.problems()
    if problems:
        raise PayloadError("BAD_CONFIG", "invalid tiny model: " + "; ".join(problems))
    m.torch.manual_seed(seed)  # the weights are a function of the seed
    return m.TinyVLM(cfg)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# -- saving and loading -------------------------------------------------------------------


def save(model: Any, tok: Tokenizer, directory: str) -> None:
    """config.json + vocab.json + model.pt in `directory` (created)."""
    torch = require()
    os.makedirs(directory, exist_ok=True)
    _write_json(os.path.join(directory, "config.json"), {"format": FORMAT, "version": 1, **asdict(model.cfg)})
    _write_json(os.path.join(directory, "vocab.json"), tok.vocab)
    tmp = os.path.join(directory, f"model.pt.tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, os.path.join(directory, "model.pt"))


def _write_json(path: str, data: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def is_model_dir(path: str) -> bool:
    return all(os.path.isfile(os.path.join(path, name)) for name in ("config.json", "vocab.json", "model.pt"))


def load(name_or_path: str, *, seed: int = 0, cfg: Optional[TinyConfig] = None, vocab: Optional[Sequence[str]] = None) -> tuple[Any, Tokenizer]:
    """(model, tokenizer) on the CPU: a new random model for tiny-new / tiny-random (vocab: the
    base vocabulary unless given; cfg: the sizes), else a model directory of this backend.
    A directory that is not there or not a tiny model is UNKNOWN_MODEL."""
    torch = require()
    if name_or_path in NAMES:
        tok = Tokenizer(vocab if vocab is not None else base_vocabulary())
        spec = TinyConfig(**{**(asdict(cfg) if cfg else {}), "vocab_size": len(tok)})
        return new_model(spec, seed), tok
    path = os.path.expanduser(name_or_path)
    if not os.path.isdir(path):
        raise PayloadError("UNKNOWN_MODEL", f"the tiny backend knows {', '.join(NAMES)} or a model directory; {name_or_path!r} is neither (no such directory)")
    if not is_model_dir(path):
        raise PayloadError("UNKNOWN_MODEL", f"{name_or_path} is not a tiny model directory (config.json, vocab.json and model.pt expected)")
    try:
        with open(os.path.join(path, "config.json"), "r", encoding="utf-8") as fh:
            raw = json.load(fh)
        with open(os.path.join(path, "vocab.json"), "r", encoding="utf-8") as fh:
            tok = Tokenizer(json.load(fh))
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT!r}")
        spec = TinyConfig(**{f.name: raw[f.name] for f in fields(TinyConfig) if f.name in raw or f.default is MISSING})
        model = new_model(spec, seed)
        model.load_state_dict(torch.load(os.path.join(path, "model.pt"), map_location="cpu"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise PayloadError("UNKNOWN_MODEL", f"cannot load a tiny model from {name_or_path}: {err}") from None
    return model, tok


def grow_vocabulary(model: Any, tok: Tokenizer, texts: Iterable[str], seed: int) -> tuple[Any, Tokenizer]:
    """The model and tokenizer with the new words of `texts` appended (new embedding rows random)."""
    bigger = tok.extended(texts)
    if len(bigger) == len(tok):
        return model, tok
    torch = require()
    spec = TinyConfig(**{**asdict(model.cfg), "vocab_size": len(bigger)})
    grown = new_model(spec, seed)
    state = model.state_dict()
    new_rows = grown.tok.weight.data[len(tok) :].clone()
    state["tok.weight"] = torch.cat([state["tok.weight"], new_rows], dim=0)
    grown.load_state_dict(state)
    return grown, bigger


# -- images -------------------------------------------------------------------------------


class Images:
    """Image files -> normalised (3, S, S) tensors, cached (least recently used dropped)."""

    def __init__(self, size: int, root: Optional[str], limit: int = 4096):
        self.size, self.root, self.limit = size, root, limit
        self._cache: "collections.OrderedDict[str, Any]" = collections.OrderedDict()

    def get(self, name: str) -> Any:
        path = llava_data.image_path(name, self.root)
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        tensor = load_image(path, self.size)
        self._cache[path] = tensor
        while len(self._cache) > self.limit:
            self._cache.popitem(last=False)
        return tensor

    def batch(self, names: Sequence[str]) -> Any:
        torch = require()
        return torch.stack([self.get(n) for n in names]) if names else None


def load_image(path: str, size: int) -> Any:
    torch = require()
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        array = np.asarray(rgb, dtype=np.float32)
    return (torch.from_numpy(array.copy()).permute(2, 0, 1) / 255.0 - 0.5) / 0.25


# -- generation -----------------------------------------------------------------------------


def _left_padded(torch: Any, seqs: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any, Any]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    valid = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        valid[row, width - len(seq) :] = True
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    return ids, valid, positions


def generate_ids(model: Any, prompts: Sequence[Sequence[int]], images: Sequence[Any], eot: int, pad: int, max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations (ids, without <eot>) of one batch of rendered prompts, left-padded,
    with a KV cache. images[i]: a (3, S, S) tensor for a prompt with an image block, or None."""
    m = _modules()
    torch = m.torch
    limit = model.cfg.max_positions
    for seq in prompts:
        if len(seq) >= limit:
            raise PayloadError("BAD_DATA", f"a prompt of {len(seq)} tokens does not fit the model's {limit} positions")
    ids, valid, positions = _left_padded(torch, prompts, pad)
    rows = [i for i, img in enumerate(images) if img is not None]
    image_rows = torch.tensor(rows, dtype=torch.long)
    pixels = torch.stack([images[i] for i in rows]) if rows else None
    width = ids.shape[1]
    cache = new_cache(model, width + max_new_tokens)
    keys = torch.ones((len(prompts), width + max_new_tokens), dtype=torch.bool)
    keys[:, :width] = valid
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    lengths = [len(s) for s in prompts]
    with torch.no_grad():
        logits = model(ids, positions, valid, pixels, image_rows, cache, last_only=True)
        for step in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1)
            for row, token in enumerate(nxt.tolist()):
                if done[row]:
                    continue
                if token == eot:
                    done[row] = True
                else:
                    out[row].append(token)
                    # the token just chosen sits at position lengths[row] + step; the next needs room
                    done[row] = lengths[row] + step + 1 >= limit
            if all(done) or step == max_new_tokens - 1:
                break
            position = torch.tensor([[n + step] for n in lengths], dtype=torch.long)
            logits = model(nxt[:, None], position, keys[:, : width + step + 1], None, None, cache, last_only=True)
    return out


class Generator:
    """A self-play model callable: prompts (stoker_fire.selfplay_rules.Prompt) -> texts, in order.
    Prompts are sorted by rendered length and run batch_size at a time."""

    def __init__(self, model: Any, tok: Tokenizer, *, image_root: Optional[str], max_new_tokens: int, batch_size: int):
        self.model = model.eval()
        self.tok = tok
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.calls = 0
        self._images = Images(model.cfg.image_size, image_root)

    @property
    def image_root(self) -> Optional[str]:
        return self._images.root

    @image_root.setter
    def image_root(self, root: Optional[str]) -> None:
        if root != self._images.root:
            self._images = Images(self.model.cfg.image_size, root)

    def __call__(self, prompts: Sequence[Any]) -> list[str]:
        rendered = []
        for p in prompts:
            messages = with_image_mark(p.messages, p.image is not None, f"prompt {p.id!r}")
            rendered.append(render(self.tok, messages, generation=True)[0])
        order = sorted(range(len(prompts)), key=lambda i: len(rendered[i]))
        out: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            images = [self._images.get(prompts[i].image) if prompts[i].image is not None else None for i in chunk]
            results = generate_ids(self.model, [rendered[i] for i in chunk], images, self.tok.eot, self.tok.pad, self.max_new_tokens)
            for i, ids in zip(chunk, results):
                out[i] = self.tok.decode(ids).strip()
            self.calls += 1
        return out


def make_generator(
    name_or_path: str,
    *,
    seed: int,
    adapter: Optional[str],
    image_root: Optional[str],
    max_new_tokens: int,
    batch_size: int,
    bf16: Optional[bool] = None,
) -> Generator:
    """Load a tiny model (see the module docstring for names) as a self-play callable, on the
    CPU in float32 (bf16 is ignored). adapter must be None."""
    if adapter:
        raise PayloadError("BAD_CONFIG", f"the tiny backend has no adapters (got {adapter!r}): pass the trained model directory (OUTPUT/final) as the model instead")
    model, tok = load(name_or_path, seed=seed)
    return Generator(model, tok, image_root=image_root, max_new_tokens=max_new_tokens, batch_size=batch_size)


# -- training -------------------------------------------------------------------------------


@dataclass
class Encoded:
    ids: list[int]
    target: list[bool]
    image: Optional[str]


def encode_records(tok: Tokenizer, records: Sequence[dict[str, Any]], max_length: int) -> list[Encoded]:
    """Every record rendered for training; BAD_DATA naming every record that cannot be."""
    out, problems = [], []
    for i, record in enumerate(records):
        where = f"[{i}] (id {record.get('id')!r})"
        try:
            messages = with_image_mark(record["conversations"], bool(record.get("image")), where)
            ids, target = render(tok, messages, generation=False)
        except ValueError as err:
            problems.append(str(err))
            continue
        if len(ids) > max_length:
            ids, target = ids[:max_length], target[:max_length]
            if IMAGE_ID in ids and ids.count(IMAGE_ID) != IMAGE_TOKENS:
                problems.append(f"{where}: max length {max_length} cuts through the image")
                continue
        if not any(target[1:]):
            problems.append(f"{where}: no gpt tokens within max length {max_length}")
            continue
        out.append(Encoded(ids, target, record.get("image") or None))
    if problems:
        listed = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - len(listed)} more" if len(problems) > len(listed) else ""
        raise PayloadError("BAD_DATA", f"{len(problems)} record(s) the tiny backend cannot train on:\n  " + "\n  ".join(listed) + more)
    return out


def _collate(torch: Any, items: Sequence[Encoded], images: Images, pad: int) -> dict[str, Any]:
    width = max(len(it.ids) for it in items) - 1
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    valid = torch.zeros((len(items), width), dtype=torch.bool)
    for row, it in enumerate(items):
        n = len(it.ids) - 1
        ids[row, :n] = torch.tensor(it.ids[:-1])
        target = torch.tensor(it.ids[1:])
        labels[row, :n] = target.masked_fill(~torch.tensor(it.target[1:]), IGNORE)
        valid[row, :n] = True
    rows = [row for row, it in enumerate(items) if it.image]
    positions = torch.arange(width)[None].expand(len(items), width)
    return {
        "ids": ids,
        "positions": positions,
        "valid": valid,
        "labels": labels,
        "images": images.batch([items[r].image for r in rows]) if rows else None,
        "image_rows": torch.tensor(rows, dtype=torch.long),
    }


def _lr_factor(schedule: str, step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of optimizer step `step` (0-based), as transformers' schedules."""
    if step < warmup and schedule != "constant":
        return step / max(1, warmup)
    if schedule in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _total_steps(cfg: Any, batches_per_epoch: int) -> int:
    if cfg.max_steps and cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.num_train_epochs * max(1, batches_per_epoch // cfg.gradient_accumulation_steps)))


class _Order:
    """Micro-batch k of the run -> record indices: a fresh permutation per epoch from (seed, epoch),
    so the order does not depend on where a run was resumed."""

    def __init__(self, torch: Any, n: int, batch: int, seed: int):
        self.torch, self.n, self.batch, self.seed = torch, n, batch, seed
        self.per_epoch = math.ceil(n / batch)
        self._epoch, self._perm = -1, None

    def __call__(self, k: int) -> list[int]:
        epoch, at = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            gen = self.torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, self.torch.randperm(self.n, generator=gen).tolist()
        return self._perm[at * self.batch : (at + 1) * self.batch]


def _checkpoint_state(path: str) -> dict[str, Any]:
    state_file = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_file) or not is_model_dir(path):
        raise PayloadError("BAD_DATA", f"RESUME_FROM {path} is not a tiny-backend checkpoint (trainer_state.json, config.json, vocab.json, model.pt expected)")
    try:
        with open(state_file, "r", encoding="utf-8") as fh:
            state = json.load(fh)
        int(state["global_step"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PayloadError("BAD_DATA", f"unreadable {state_file}: {err}") from None


def _config_from(cfg: Any) -> TinyConfig:
    return TinyConfig(
        vocab_size=0,
        d_model=getattr(cfg, "tiny_d_model", 96),
        layers=getattr(cfg, "tiny_layers", 2),
        heads=getattr(cfg, "tiny_heads", 4),
        image_size=getattr(cfg, "tiny_image_size", 32),
        max_positions=getattr(cfg, "tiny_max_positions", 512),
    )


def _initial_model(cfg: Any, records: Sequence[dict[str, Any]], resume_from: Optional[str], reporter: report.Reporter) -> tuple[Any, Tokenizer, dict[str, Any]]:
    """(model, tokenizer, trainer state or {}) to start training from."""
    if resume_from:
        state = _checkpoint_state(resume_from)
        try:
            model, tok = load(resume_from, seed=cfg.seed)
        except PayloadError as err:
            raise PayloadError("BAD_DATA", f"RESUME_FROM {resume_from}: {err.message}") from None
        unknown = {p for text in record_texts(records) for p in tok.unknown(text)}
        if unknown:
            reporter.log(f"{len(unknown)} word(s) of the data are not in the checkpoint's vocabulary and read as <unk>", "warn")
        return model, tok, state
    if cfg.model_name_or_path in NAMES:
        tok = Tokenizer(base_vocabulary()).extended(record_texts(records))
        spec = TinyConfig(**{**asdict(_config_from(cfg)), "vocab_size": len(tok)})
        return new_model(spec, cfg.seed), tok, {}
    model, tok = load(cfg.model_name_or_path, seed=cfg.seed)
    model, tok = grow_vocabulary(model, tok, record_texts(records), cfg.seed)
    return model, tok, {}


def _save_checkpoint(model: Any, tok: Tokenizer, optimizer: Any, out_dir: str, step: int, extra: dict[str, Any], limit: Optional[int]) -> str:
    torch = require()
    final = os.path.join(out_dir, f"checkpoint-{step}")
    tmp = os.path.join(out_dir, f".checkpoint-{step}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(model, tok, tmp)
    torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
    torch.save({"torch": torch.get_rng_state()}, os.path.join(tmp, "rng_state.pt"))
    _write_json(os.path.join(tmp, "trainer_state.json"), {"global_step": step, **extra})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if limit:
        steps = sorted(int(n.split("-", 1)[1]) for n in os.listdir(out_dir) if re.fullmatch(r"checkpoint-\d+", n))
        for old in steps[:-limit]:
            shutil.rmtree(os.path.join(out_dir, f"checkpoint-{old}"), ignore_errors=True)
    return os.path.abspath(final)


def train(
    cfg: Any,
    records: list[dict[str, Any]],
    image_root: Optional[str],
    out_dir: str,
    resume_from: Optional[str],
    reporter: report.Reporter,
) -> dict[str, Any]:
    """Train on LLaVA conversation records; returns the result fields (see stoker_fire.train)."""
    torch = require()

    if runtime.world_size() > 1:
        raise PayloadError("BAD_CONFIG", "the tiny backend trains in one process (WORLD_SIZE 1); do not start it with torchrun")
    threads = getattr(cfg, "threads", None)
    if threads:
        torch.set_num_threads(threads)
    model, tok, state = _initial_model(cfg, records, resume_from, reporter)
    start_step = int(state.get("global_step", 0))
    model.train()
    max_length = min(cfg.max_length, model.cfg.max_positions)
    data = encode_records(tok, records, max_length)
    images = Images(model.cfg.image_size, image_root, limit=1 << 30)
    for name in sorted({d.image for d in data if d.image}):
        try:
            images.get(name)
        except (OSError, ValueError) as err:
            raise PayloadError("BAD_DATA", f"cannot read image {llava_data.image_path(name, image_root)}: {err}") from None
    params = count_parameters(model)
    reporter.metrics(trainableParameters=params, parameters=params)
    ignored = [n for n in ("deepspeed", "gradient_checkpointing") if getattr(cfg, n, None)]
    if ignored:
        reporter.log(f"the tiny backend ignores {', '.join(ignored)} (and the LoRA options: it trains every weight)", "info")

    batch, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    order = _Order(torch, len(data), batch, cfg.seed)
    total = _total_steps(cfg, order.per_epoch)
    warmup = math.ceil(cfg.warmup_ratio * total)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n and "tok" not in n]
    keep = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n and "tok" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": keep, "weight_decay": 0.0}], lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8
    )
    if resume_from:
        try:
            optimizer.load_state_dict(torch.load(os.path.join(resume_from, "optimizer.pt")))
            rng = torch.load(os.path.join(resume_from, "rng_state.pt"))
            torch.set_rng_state(rng["torch"])
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise PayloadError("BAD_DATA", f"RESUME_FROM {resume_from}: unreadable optimizer or RNG state: {err}") from None
        reporter.log(f"resuming from {resume_from} at step {start_step}")
    history: list[dict[str, Any]] = list(state.get("log_history", []))
    logged_from = len(history)
    window: list[float] = []
    last_checkpoint: Optional[str] = None
    step = start_step
    began, began_cpu = time.perf_counter(), time.process_time()

    def checkpoint() -> str:
        path = _save_checkpoint(model, tok, optimizer, out_dir, step, {"max_steps": total, "epoch": step * accum / order.per_epoch, "seed": cfg.seed, "log_history": history}, cfg.save_total_limit)
        reporter.checkpoint(path, step)
        return path

    while step < total:
        lr = cfg.learning_rate * _lr_factor(cfg.lr_scheduler_type, step, warmup, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for micro in range(accum):
            items = [data[i] for i in order(step * accum + micro)]
            b = _collate(torch, items, images, tok.pad)
            logits = model(b["ids"], b["positions"], b["valid"], b["images"], b["image_rows"])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["labels"].reshape(-1), ignore_index=IGNORE)
            (loss / accum).backward()
            step_loss += float(loss) / accum
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        epoch = step * accum / order.per_epoch
        window.append(step_loss)
        reporter.progress(step, total, epoch)
        if step % cfg.logging_steps == 0 or step == total:
            entry = {"step": step, "loss": sum(window) / len(window), "lr": lr, "gradNorm": grad_norm, "epoch": epoch}
            window = []
            history.append(entry)
            reporter.metrics(step, loss=entry["loss"], lr=lr, gradNorm=grad_norm, epoch=epoch)
        if step % cfg.save_steps == 0 or step == total:
            last_checkpoint = checkpoint()
        elif signals.stop_requested():
            last_checkpoint = checkpoint()
            raise Preempted(f"stopped on request at step {step} after writing {last_checkpoint}; resume from it")
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu

    final_dir = os.path.join(out_dir, "final")
    save(model, tok, final_dir)
    metrics_path = os.path.join(out_dir, "metrics.json")
    losses = [h["loss"] for h in history[logged_from:] if h.get("loss") is not None]
    train_metrics = {"train_runtime": round(seconds, 3), "train_steps_per_second": (step - start_step) / seconds if seconds > 0 else None, "train_loss": sum(losses) / len(losses) if losses else None}
    _write_json(metrics_path, {"history": history, "train": train_metrics})
    reporter.artifact("model", os.path.abspath(final_dir))
    reporter.artifact("metrics", metrics_path)
    return {
        "backend": "tiny",
        "model": cfg.model_name_or_path,
        "steps": step,
        "startStep": start_step,
        "resumedFrom": resume_from,
        **loss_fields(losses),
        "samples": len(records),
        "trainableParameters": params,
        "parameters": params,
        "seconds": round(seconds, 3),
        "cpuSeconds": round(cpu_seconds, 3),  # of the training loop: on a shared machine, what it cost
        "lastCheckpoint": last_checkpoint,
        "adapter": None,
        "modelPath": os.path.abspath(final_dir),
        "vocabSize": len(tok),
        "bf16": False,
        "device": "cpu",
    }
