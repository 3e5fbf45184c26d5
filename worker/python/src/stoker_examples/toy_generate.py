r"""Toy generation server: a small PyTorch "scorer" loaded once, then applied shard after shard.

The server payload of training-configs/generate-cpu.yaml (pulled execution: a pool worker
starts it once and sends it shards on stdin; stoker_payload/server.py has the protocol).
The model is a randomly initialised, seeded embedding bag + MLP; what it computes means
nothing, but it is real PyTorch inference with a real (optionally slow) load, so a pool's
scheduling, retries and throughput can be exercised on CPU in seconds.

Usage (from the repository root; /usr/bin/python3 is the interpreter with torch):

    # some input: 100 items {"id": "item-000001", "text": "..."}
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.make_items --n 100 --output /tmp/gen/items.jsonl

    # one shard by hand: a request line on stdin, marker lines on stdout, /tmp/gen/out.jsonl
    printf '%s\n' '{"type":"shard","id":"s1","input":"/tmp/gen/items.jsonl","output":"/tmp/gen/out.jsonl","attempt":1,"params":{}}' \
        | PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.toy_generate

    # as the pool worker starts it: a slow model load, then 20 ms per item, batches of 16
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.toy_generate --load-delay 3 --item-delay 0.02 --batch-size 16

    # interactive: type request lines, end with {"type":"shutdown"} or Ctrl-D
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.toy_generate --seed 7

Contract:
    inputs     flags or --config FILE.yaml (keys: load_delay, item_delay, seed, batch_size,
               threads); requests on stdin (server mode); each shard's `input` is JSONL,
               one item per line: {"id": non-empty string or integer, "text": string, ...}.
               Request `params` are not used.
    outputs    each shard's `output` (JSONL, one line per input item, in input order):
                   {"id", "text", "score": float in (0, 1), "label": "positive"|"negative",
                    "worker": pid}
               The same text gets the same score from every process with the same --seed
               (tokens are hashed with crc32, not Python's salted hash).
    events     metrics {loadSeconds, parameters} once; ready; per shard progress
               {step: items done, totalSteps: items in the shard}, done {id, items} or
               failed {id, reason, message}, metrics {shardSeconds, itemsPerSec}.
    errors     a line that is not a JSON object, or an item without a usable id/text:
               failed BAD_DATA "input line N: ..." (the server keeps serving); a missing
               input file: failed MISSING_INPUT; anything unexpected: failed FAILURE.
    exit codes (common/exit-codes.json) SUCCESS after shutdown, EOF or SIGTERM (the shard
               being worked on is finished first); BAD_CONFIG for invalid options;
               MISSING_DEPENDENCY without torch; USAGE for a bad command line.
"""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from stoker_payload import entrypoint, report, signals
from stoker_payload.config import parse_config
from stoker_payload.exit_codes import PayloadError
from stoker_payload.server import ShardContext, ShardRequest, serve

VOCAB_SIZE = 4096
EMBED_DIM = 32
HIDDEN_SIZE = 64
MAX_TOKENS = 256  # words per item the model looks at
LABELS = ("negative", "positive")


@dataclass
class ToyGenerateConfig:
    load_delay: float = field(default=0.0, metadata={"help": "sleep SECONDS while loading, like a big model", "metavar": "SECONDS"})
    item_delay: float = field(default=0.0, metadata={"help": "sleep SECONDS per item, so a shard is watchable", "metavar": "SECONDS"})
    seed: int = field(default=0, metadata={"help": "seed of the model's weights"})
    batch_size: int = field(default=32, metadata={"help": "items per forward pass"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads"})

    def validate(self) -> list[str]:
        problems = []
        for name in ("load_delay", "item_delay"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "threads"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        return problems


def parse_args(argv: Optional[Sequence[str]] = None) -> ToyGenerateConfig:
    return parse_config(
        ToyGenerateConfig,
        argv,
        prog="python -m stoker_examples.toy_generate",
        description="Serve shards of JSONL items with a small seeded PyTorch scorer (stoker server mode).",
    )


def tokenize(text: str) -> list[int]:
    """Word ids in [1, VOCAB_SIZE); 0 stands for an empty text. Stable across processes."""
    words = text.lower().split()[:MAX_TOKENS]
    if not words:
        return [0]
    return [1 + zlib.crc32(word.encode("utf-8")) % (VOCAB_SIZE - 1) for word in words]


class Scorer:
    """Embedding bag (mean of word vectors) -> MLP -> one logit; score = sigmoid(logit)."""

    def __init__(self, torch: Any, seed: int):
        nn = torch.nn
        self.torch = torch
        torch.manual_seed(seed)
        self.embed = nn.EmbeddingBag(VOCAB_SIZE, EMBED_DIM, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(EMBED_DIM, HIDDEN_SIZE), nn.Tanh(), nn.Linear(HIDDEN_SIZE, 1))
        self.embed.eval()
        self.mlp.eval()

    @property
    def parameters(self) -> int:
        return sum(p.numel() for m in (self.embed, self.mlp) for p in m.parameters())

    def scores(self, texts: Sequence[str]) -> list[float]:
        torch = self.torch
        ids: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(ids))
            ids.extend(tokenize(text))
        with torch.no_grad():
            bag = self.embed(torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long))
            logits = self.mlp(bag).squeeze(1)
            return torch.sigmoid(logits).tolist()


def load_model(cfg: ToyGenerateConfig, reporter: report.Reporter) -> Scorer:
    if cfg.load_delay > 0:
        reporter.log(f"loading the model (simulated {cfg.load_delay}s)")
        signals.sleep(cfg.load_delay)  # cut short by SIGTERM
    import torch  # heavy imports inside, as in TRL's scripts

    torch.set_num_threads(cfg.threads)
    model = Scorer(torch, cfg.seed)
    reporter.metrics(parameters=model.parameters)
    return model


def _check_item(number: int, record: dict[str, Any]) -> tuple[Any, str]:
    item_id = record.get("id")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or item_id == "":
        raise PayloadError("BAD_DATA", f"input line {number}: id must be a non-empty string or an integer, got {item_id!r}")
    text = record.get("text")
    if not isinstance(text, str):
        raise PayloadError("BAD_DATA", f"input line {number}: text must be a string, got {text!r}")
    return item_id, text


def make_handler(cfg: ToyGenerateConfig):
    pid = os.getpid()

    def handle(request: ShardRequest, ctx: ShardContext) -> int:
        model: Scorer = ctx.state
        # Read and check the whole shard first: bad data fails before any work is done.
        items = [_check_item(number, record) for number, record in ctx.read_jsonl()]
        total = len(items)
        ctx.progress(0, total, force=True)
        with ctx.writer() as out:
            for start in range(0, total, cfg.batch_size):
                batch = items[start : start + cfg.batch_size]
                for (item_id, text), score in zip(batch, model.scores([text for _, text in batch])):
                    if cfg.item_delay > 0:
                        signals.sleep(cfg.item_delay)  # shortened once a stop is requested
                    out.write(
                        {
                            "id": item_id,
                            "text": text,
                            "score": round(score, 6),
                            "label": LABELS[score >= 0.5],
                            "worker": pid,
                        }
                    )
                    ctx.progress(out.items, total)
        return total

    return handle


def main(cfg: ToyGenerateConfig) -> int:
    reporter = report.get_reporter()
    return serve(make_handler(cfg), load=lambda: load_model(cfg, reporter), reporter=reporter)


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
