r"""Make items: a tiny CPU step that writes N JSONL items for stoker_examples.toy_generate.

The first stage of training-configs/generate-cpu.yaml (a one-shot payload, not server
mode): deterministic short texts from a small vocabulary, one JSON object per line.

Usage (from the repository root; needs no torch):

    # 100 items into /tmp/gen/items.jsonl
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.make_items --n 100 --output /tmp/gen/items.jsonl

    # as the worker starts it: $STOKER_OUTPUT_DIR/items.jsonl
    STOKER_OUTPUT_DIR=/tmp/gen PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.make_items --n 1000 --seed 3

    # a broken file for tests: line 5 is not JSON (the file still holds 20 good items)
    PYTHONPATH=worker/python/src /usr/bin/python3 -m stoker_examples.make_items --n 20 --bad-line 5 --output /tmp/gen/bad.jsonl

Contract:
    inputs     flags or --config FILE.yaml (keys: n, seed, output, bad_line);
               env STOKER_OUTPUT_DIR (unless --output).
    outputs    OUTPUT (default $STOKER_OUTPUT_DIR/items.jsonl, else ./out/items.jsonl):
                   {"id": "item-000001", "text": "..."}   ids numbered from 1, in order
               written to a temporary name in the same directory, fsynced, renamed into place.
               With --bad-line K a line that is not JSON is inserted as line K.
    events     progress {step: n, totalSteps: n}; artifact "items" (OUTPUT, absolute);
               result {items: N, path}.
    exit codes (common/exit-codes.json) SUCCESS; BAD_CONFIG for invalid options; USAGE
               for a bad command line.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from stoker_payload import entrypoint, exit_codes, report, runtime
from stoker_payload.config import parse_config

from .smoke_files import atomic_write

WORDS = (
    "the a quick lazy brown fox dog model token shard worker pool batch loss gradient "
    "river mountain quiet bright dark signal noise happy sad good bad great terrible "
    "fast slow warm cold stable broken fresh stale green red blue learns waits runs "
    "jumps sleeps writes reads scores ranks counts"
).split()
BAD_LINE = '{"id": "item-bad", "text": '  # cut short: not JSON


@dataclass
class MakeItemsConfig:
    n: int = field(default=100, metadata={"help": "how many items to write"})
    seed: int = field(default=0, metadata={"help": "seed of the texts"})
    output: Optional[str] = field(
        default=None,
        metadata={"help": "the JSONL file; default $STOKER_OUTPUT_DIR/items.jsonl, else ./out/items.jsonl", "metavar": "FILE"},
    )
    bad_line: Optional[int] = field(
        default=None, metadata={"help": "insert a malformed line as line K (for tests)", "metavar": "K"}
    )

    def validate(self) -> list[str]:
        problems = []
        if self.n < 0:
            problems.append(f"n: must be >= 0, got {self.n}")
        if self.bad_line is not None and not 1 <= self.bad_line <= self.n + 1:
            problems.append(f"bad_line: must be between 1 and n+1 ({self.n + 1}), got {self.bad_line}")
        return problems


def parse_args(argv: Optional[Sequence[str]] = None) -> MakeItemsConfig:
    return parse_config(
        MakeItemsConfig,
        argv,
        prog="python -m stoker_examples.make_items",
        description="Write N JSONL items {id, text} for toy_generate.py.",
    )


def make_items(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {"id": f"item-{i:06d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))}
        for i in range(1, n + 1)
    ]


def _atomic_write_lines(path: Path, lines: Sequence[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


def main(cfg: MakeItemsConfig) -> int:
    reporter = report.get_reporter()
    if cfg.output:
        path = Path(cfg.output).expanduser().resolve()
    else:
        path = Path(runtime.output_dir()) / "items.jsonl"
    lines = [json.dumps(item, ensure_ascii=False) for item in make_items(cfg.n, cfg.seed)]
    if cfg.bad_line is not None:
        lines.insert(cfg.bad_line - 1, BAD_LINE)
    _atomic_write_lines(path, lines)
    reporter.progress(cfg.n, cfg.n if cfg.n > 0 else None)
    reporter.artifact("items", str(path))
    reporter.result(items=cfg.n, path=str(path))
    return exit_codes.SUCCESS


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(parse_args(sys.argv[1:])))
