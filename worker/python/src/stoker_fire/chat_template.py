"""Chat templates: LLaVA conversations rendered to model text by the model's own Jinja chat
template, as transformers' `apply_chat_template` renders it, with jinja2 only (no transformers,
no torch), so the rendering is testable anywhere and is the same code on every backend path.

    tpl = ChatTemplate(processor.chat_template, special_tokens(processor.tokenizer))
    tpl.prompt([human("<image>\\nWhat color?")])      # the generation prompt (self-play, evaluation)
    tpl.segments(record["conversations"])           # [(text, is_target), ...] for training
    tpl.end_of_turn()                                # "<|eot_id|>": what ends an assistant turn
    chat_messages(conversation)                      # the message list the template is given
    python3 -m stoker_fire.chat_template --write llama3-llava-next /models/llava-next-8b

Conversations are LLaVA's (docs/fire.md, section 2): [{"from": "human"|"gpt", "value": str}].
chat_messages() turns one into the messages a LLaVA processor's template takes:
    human -> role "user", gpt -> role "assistant"; consecutive messages of one role become one
    message, their values joined by "\\n" (the teacher's three human messages: one user turn);
    content [{"type": "image"}, {"type": "text", "text": ...}] for the message that holds the
    `<image>` mark (the mark and one newline after it taken out of the text: the image goes
    first, as LLaVA's own preprocessing puts it), [{"type": "text", "text": ...}] otherwise.

Rendering reproduces transformers' (utils/chat_template_utils.py, _compile_jinja_template and
render_jinja_template; ProcessorMixin.apply_chat_template): an ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension and a `{% generation %}` block tag
(rendered as its body), `raise_exception(message)` raising a template error, `tojson` as
json.dumps without ASCII escaping, `strftime_now(fmt)`; the variables are messages, tools None,
documents None, add_generation_prompt and the tokenizer's special tokens (bos_token, eos_token,
...). test/fixtures/fire-chat-template-vectors.json pins the output (worker/python/tests/fire/
test_chat_template.py here; test/unit/fire-chat-template.test.ts for fire/data/chat-template.ts);
where transformers is installed the same test compares with the processor's own rendering.

Training targets (segments): each assistant message's span is found by rendering prefixes, the
way that works for any template: text before it = render(messages[:i], add_generation_prompt=
True) (exactly the generation prompt the model sees in self-play), through it = render(
messages[:i+1]); the target is the difference, so it holds the assistant text and whatever the
template ends a turn with (`<|eot_id|>`), which the model must learn to write. A template whose
renderings are not prefixes of one another cannot be trained on this way: ChatTemplateError.

Errors: ChatTemplateError (a ValueError) for a template that does not compile or that raises
(raise_exception, an undefined variable used wrongly), with the template's name; callers turn
it into PayloadError BAD_CONFIG (the model's template) or BAD_DATA (a record).

Templates stoker ships (common/chat-templates.json, read by fire/data/chat-template.ts too):
`llama3-llava-next`, the processor template of llava-hf/llama3-llava-next-8b-hf; the tiny
random model of the hf backend is given the same one.

Command `python3 -m stoker_fire.chat_template --write NAME DIR | --list`:
    inputs     NAME, a template of common/chat-templates.json; DIR, a model directory whose
               processor has no chat template (a converted checkpoint)
    outputs    DIR/chat_template.json {"chat_template": ...}, which transformers' processors
               load (its path is printed); --list prints `name: source` per template
    exit codes 0 written; 2 an unknown NAME, a DIR that does not exist, a bad command line
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .prompts import IMAGE_TOKEN

__all__ = [
    "TEMPLATES_FILE",
    "ROLES",
    "ChatTemplateError",
    "builtin_templates",
    "builtin",
    "chat_messages",
    "special_tokens",
    "ChatTemplate",
    "main",
]

# <root>/worker/python/src/stoker_fire/chat_template.py: the root is parents[4].
TEMPLATES_FILE = Path(__file__).resolve().parents[4] / "common" / "chat-templates.json"
ROLES = {"human": "user", "gpt": "assistant"}
# The special-token attributes of a transformers tokenizer (its special_tokens_map), which
# apply_chat_template passes to the template.
_SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_PROBE = "\u0000stoker-probe\u0000"


class ChatTemplateError(ValueError):
    """A chat template that does not compile, raises, or cannot mark the assistant turns."""


@functools.lru_cache(maxsize=None)
def builtin_templates() -> dict[str, dict[str, str]]:
    """name -> {source, template} of common/chat-templates.json."""
    with open(TEMPLATES_FILE, "r", encoding="utf-8") as fh:
        return json.load(fh)["templates"]


def builtin(name: str) -> str:
    """The template text of a template stoker ships; ValueError naming the known ones."""
    templates = builtin_templates()
    if name not in templates:
        raise ValueError(f"unknown chat template {name!r}; known: {', '.join(sorted(templates))}")
    return templates[name]["template"]


def _content(value: str) -> list[dict[str, str]]:
    if IMAGE_TOKEN not in value:
        return [{"type": "text", "text": value}]
    text = value.replace(IMAGE_TOKEN + "\n", "", 1) if value.startswith(IMAGE_TOKEN + "\n") else value.replace(IMAGE_TOKEN, "", 1)
    if IMAGE_TOKEN in text:
        raise ValueError(f"a message holds more than one {IMAGE_TOKEN} mark: {value[:80]!r}")
    return [{"type": "image"}, {"type": "text", "text": text}]


def chat_messages(conversation: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """The chat messages ({role, content: [...]}) of a LLaVA conversation (see the module doc)."""
    merged: list[tuple[str, str]] = []
    for i, message in enumerate(conversation):
        who, value = message.get("from"), message.get("value")
        if who not in ROLES:
            raise ValueError(f"conversation[{i}].from: must be 'human' or 'gpt', got {who!r}")
        if not isinstance(value, str):
            raise ValueError(f"conversation[{i}].value: must be a string, got {type(value).__name__}")
        if merged and merged[-1][0] == who:
            merged[-1] = (who, merged[-1][1] + "\n" + value)
        else:
            merged.append((who, value))
    return [{"role": ROLES[who], "content": _content(value)} for who, value in merged]


def special_tokens(tokenizer: Any) -> dict[str, Any]:
    """The special tokens a tokenizer gives a template, as apply_chat_template passes them: its
    special_tokens_map (bos_token, eos_token, ... : those set), else the same attributes."""
    mapping = getattr(tokenizer, "special_tokens_map", None)
    if not isinstance(mapping, dict):
        mapping = {name: getattr(tokenizer, name, None) for name in _SPECIAL_TOKEN_NAMES}
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        if isinstance(value, (list, tuple)):
            out[name] = [str(token) for token in value]
        elif value is not None:
            out[name] = str(value)  # a str, or a tokenizers AddedToken
    return out


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    """The jinja2 template of `source`, in an environment like transformers' (module doc)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        # transformers tracks `{% generation %}` spans for assistant masks; rendered text is
        # the block's body either way (the spans come from prefix rendering here).
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


class ChatTemplate:
    """A Jinja chat template with the special tokens of its tokenizer (see the module doc)."""

    def __init__(self, source: str, tokens: Optional[Mapping[str, Any]] = None, *, name: str = "the chat template"):
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError(f"{name} is empty")
        self.source = source
        self.tokens = dict(tokens or {})
        self.name = name
        try:
            self._template = _compile(source)
        except Exception as err:  # jinja2.TemplateSyntaxError and friends
            raise ChatTemplateError(f"{name} does not compile: {err}") from None

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False) -> str:
        """The template's text of chat messages (chat_messages() output)."""
        try:
            return self._template.render(
                messages=list(messages), tools=None, documents=None, add_generation_prompt=add_generation_prompt, **self.tokens
            )
        except Exception as err:  # raise_exception, a type error inside the template
            raise ChatTemplateError(f"{self.name} failed: {err}") from None

    def prompt(self, conversation: Sequence[Mapping[str, str]]) -> str:
        """The generation prompt of a conversation that ends with a human message."""
        if not conversation or conversation[-1].get("from") != "human":
            raise ValueError("a generation prompt must end with a human message")
        return self.render(chat_messages(conversation), add_generation_prompt=True)

    def segments(self, conversation: Sequence[Mapping[str, str]]) -> list[tuple[str, bool]]:
        """(text, is_target) pieces that join into the conversation's whole rendering; the
        targets are the assistant turns (as the module doc says), no piece is empty."""
        messages = chat_messages(conversation)
        whole = self.render(messages)
        pieces: list[tuple[str, bool]] = []
        at = 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            through = self.render(messages[: i + 1])
            if not (whole.startswith(through) and through.startswith(before) and len(before) >= at):
                raise ChatTemplateError(
                    f"{self.name} does not render the start of a conversation as a prefix of the whole "
                    f"(at message {i}), so the assistant turns cannot be marked for training"
                )
            pieces += [(whole[at : len(before)], False), (whole[len(before) : len(through)], True)]
            at = len(through)
        pieces.append((whole[at:], False))
        return [(text, target) for text, target in pieces if text]

    def end_of_turn(self) -> str:
        """What the template writes right after an assistant message's text (e.g. `<|eot_id|>`;
        "" when nothing): the text a generation stops at."""
        probe = self.render(chat_messages([{"from": "human", "value": "x"}, {"from": "gpt", "value": _PROBE}]))
        at = probe.find(_PROBE)
        return probe[at + len(_PROBE) :] if at >= 0 else ""

    def starts_with_bos(self, text: str) -> bool:
        """Whether rendered text already begins with the bos token (the tokenizer must then add
        no special tokens, as apply_chat_template decides)."""
        bos = self.tokens.get("bos_token")
        return bool(bos) and text.startswith(bos)


def _write(name: str, directory: str) -> str:
    """DIR/chat_template.json holding a template stoker ships (transformers' processors read it)."""
    if not os.path.isdir(directory):
        raise ValueError(f"model directory does not exist: {directory}")
    path = os.path.join(directory, "chat_template.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"chat_template": builtin(name)}, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python3 -m stoker_fire.chat_template --write NAME DIR` (a model directory whose processor
    has no chat template); `--list` prints the templates stoker ships with their sources."""
    parser = argparse.ArgumentParser(prog="python3 -m stoker_fire.chat_template", description="Chat templates stoker ships.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", nargs=2, metavar=("NAME", "DIR"), help="write DIR/chat_template.json with template NAME")
    group.add_argument("--list", action="store_true", help="list the templates and their sources")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for name, entry in sorted(builtin_templates().items()):
                print(f"{name}: {entry['source']}")
        else:
            print(_write(*args.write))
    except (OSError, ValueError) as err:
        print(f"stoker_fire.chat_template: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
