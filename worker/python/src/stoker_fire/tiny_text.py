r"""The tiny backend's text side: its word-level tokenizer and render(), the one function that
turns a conversation into token ids for training and for generation (stoker_fire.tiny has the
whole backend's description).

Tokenizer: word level and reversible. A text is cut into `\n`, words (letters, with the space in
front of them), digit runs (likewise), single other characters (likewise) and lone whitespace,
so joining the pieces gives the text back; `<image>` and the teacher's instruction
(stoker_fire.prompts.TEACHER_INSTRUCTION: constant, so one token instead of ~85) are one piece each.
A piece that is not in the vocabulary encodes as <unk> (decoded as the empty string).

Rendering: <bos>, then per message its role token (<human> / <gpt>) and its text's tokens; a
gpt message ends with <eot>. A generation prompt (messages ending with a human message) ends
with <gpt>. The targets are every gpt message's tokens and its <eot>. Each `<image>` becomes
IMAGE_TOKENS image positions (with_image_mark() puts one mark in front of the first message
of a record with an image and none). encode_records() renders training records (BAD_DATA names
every record that cannot be trained on).

Pure Python: nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from stoker_payload.exit_codes import PayloadError

from .parsing import ANSWER_MARKER, FEEDBACK_MARKER, SCORE_MARKER, THOUGHT_MARKER
from .prompts import IMAGE_TOKEN, TEACHER_INSTRUCTION

__all__ = [
    "PAD",
    "UNK",
    "BOS",
    "EOT",
    "HUMAN",
    "GPT",
    "IMAGE",
    "SPECIALS",
    "IMAGE_ID",
    "IMAGE_TOKENS",
    "PHRASES",
    "pieces",
    "base_vocabulary",
    "Tokenizer",
    "record_texts",
    "with_image_mark",
    "render",
    "Encoded",
    "encode_records",
]

PAD, UNK, BOS, EOT, HUMAN, GPT, IMAGE = "<pad>", "<unk>", "<bos>", "<eot>", "<human>", "<gpt>", IMAGE_TOKEN
SPECIALS = (PAD, UNK, BOS, EOT, HUMAN, GPT, IMAGE)
IMAGE_ID = SPECIALS.index(IMAGE)
IMAGE_TOKENS = 4  # positions an image takes in the sequence

MAX_LISTED = 20  # records named in one BAD_DATA message

_PIECE = re.compile(r"\n| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]|\s")

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


# -- training records --------------------------------------------------------------------------


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
