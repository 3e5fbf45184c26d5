"""The tiny backend's model: its configuration, the PyTorch modules, saving and loading a model
directory, and the image input (stoker_fire.tiny has the whole backend's description).

    model, tok = load("tiny-new", seed=1)          # random weights, base vocabulary
    model, tok = load("/out/student/final")         # a directory written by save()
    save(model, tok, "/out/x")                      # config.json + vocab.json + model.pt

Architecture (TinyConfig; about 0.8M parameters at the defaults): the image, resized to
image_size (32), goes through 4 convolutions (3x3, strides 1, 2, 2, 2, GroupNorm) to a 4x4
grid; the grid and its mean go through one linear map to the 4 image embeddings. Text: token
embeddings, a token shift (each input plus linear maps of the `shift` (4) inputs before it, a
short causal convolution as in H3/Mamba, so "the word after `Answer:`" is visible to the first
layer), learned positions, a pre-LayerNorm causal transformer (layers x heads, GELU MLP of
4 x d_model), output tied to the token embedding. The forward pass takes a KV cache
(new_cache()) for incremental decoding.

Importing this module needs no torch: the nn.Module classes are defined on first use
(modules()), each by a function of its own.
"""

from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Iterable, Optional, Sequence

from stoker_payload.exit_codes import PayloadError

from . import llava_data
from .tiny_text import IMAGE_ID, IMAGE_TOKENS, Tokenizer, base_vocabulary

__all__ = [
    "TINY_NEW",
    "TINY_RANDOM",
    "NAMES",
    "FORMAT",
    "TinyConfig",
    "require",
    "modules",
    "new_cache",
    "new_model",
    "count_parameters",
    "save",
    "write_json",
    "is_model_dir",
    "load",
    "grow_vocabulary",
    "Images",
    "load_image",
]

TINY_NEW = "tiny-new"
TINY_RANDOM = "tiny-random"  # stoker_fire.train / stoker_fire.selfplay's default model name: the same as tiny-new
NAMES = (TINY_NEW, TINY_RANDOM)
FORMAT = "stoker-fire-tiny"
GRID = 4  # the image encoder's last feature map is GRID x GRID


def require() -> Any:
    """torch, or PayloadError('MISSING_DEPENDENCY')."""
    try:
        import torch
    except ModuleNotFoundError:
        raise PayloadError("MISSING_DEPENDENCY", "the tiny backend needs torch: apt-get install python3-torch (or pip install torch)") from None
    return torch


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


def modules() -> Any:
    """torch, nn, F and the TinyVLM class (defined on the first call, so importing this module
    needs no torch)."""
    global _MODULES
    if _MODULES is None:
        torch = require()
        from torch import nn
        from torch.nn import functional as F

        vlm = _tiny_vlm_class(torch, nn, F, _block_class(nn), _vision_class(torch, nn))
        _MODULES = collections.namedtuple("Modules", "torch nn F TinyVLM")(torch, nn, F, vlm)
    return _MODULES


_MODULES: Any = None


def _block_class(nn: Any) -> Any:
    """A pre-LayerNorm transformer block with a KV cache grown in place."""

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

    return Block


def _vision_class(torch: Any, nn: Any) -> Any:
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

    return Vision


def _tiny_vlm_class(torch: Any, nn: Any, F: Any, Block: Any, Vision: Any) -> Any:
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

    return TinyVLM


def new_cache(model: Any, capacity: int = 0) -> dict[str, Any]:
    """Decoding state: the last inputs (token shift) and each layer's keys and values
    (buffers of `capacity` positions, grown when needed)."""
    return {"shift": None, "layers": [{"k": None, "v": None, "n": 0, "capacity": capacity} for _ in model.blocks]}


def new_model(cfg: TinyConfig, seed: int) -> Any:
    m = modules()
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
    write_json(os.path.join(directory, "config.json"), {"format": FORMAT, "version": 1, **asdict(model.cfg)})
    write_json(os.path.join(directory, "vocab.json"), tok.vocab)
    tmp = os.path.join(directory, f"model.pt.tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, os.path.join(directory, "model.pt"))


def write_json(path: str, data: Any) -> None:
    """`data` as JSON at `path`, through a temporary file and a rename."""
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
