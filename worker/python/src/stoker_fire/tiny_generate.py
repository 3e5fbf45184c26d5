"""The tiny backend's generation: batched greedy decoding with a KV cache and left padding, and
the self-play callable (stoker_fire.tiny has the whole backend's description).

    gen = make_generator("/out/student/final", seed=0, adapter=None, image_root="/data/images",
                         max_new_tokens=32, batch_size=32)
    texts = gen(prompts)        # stoker_fire.selfplay_rules.Prompt -> generated text, in order

Each sequence's positions count from its first real token and pads are masked everywhere, so a
prompt decodes the same alone or in a batch. A model runs on the CPU in float32.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from stoker_payload.exit_codes import PayloadError

from .tiny_model import Images, load, modules, new_cache
from .tiny_text import Tokenizer, render, with_image_mark

__all__ = ["generate_ids", "Generator", "make_generator"]


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
    m = modules()
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
