"""stoker_payload: the Python side of stoker's payload protocol (README: "Worker and payload protocol").

    from stoker_payload import report, signals, run_main, PayloadError, resume_from, output_dir

report      marker lines on stdout (progress, metrics, checkpoint, artifact, result, log)
exit_codes  the shared exit-code table (common/exit-codes.json), PayloadError, Preempted
entrypoint  run_main: how main() ended -> the exit code, and a `log` event on failure
signals     cooperative preemption: SIGTERM -> stop_requested() -> checkpoint -> PREEMPTED
runtime     rank variables, RESUME_FROM, STOKER_OUTPUT_DIR
config      dataclass options from flags and --config file.yaml
server      server mode: load once, then shard after shard from requests on stdin
            (server_requests: the request lines; jsonl: read_jsonl, JsonlWriter)
deepspeed_launch  a gang's rendezvous variables as the deepspeed launcher's flags
            (python3 -m stoker_payload.deepspeed_launch -- deepspeed SCRIPT ...)

Imports between the modules go one way (tests/test_packages.py checks there is no cycle):
    exit_codes  <- runtime <- report <- entrypoint      signals: none of ours
    exit_codes  <- config                               exit_codes <- jsonl <- server_requests
    server: exit_codes, jsonl, report, server_requests, signals
    deepspeed_launch: exit_codes, entrypoint (not imported here: `python -m` runs it)

Importing this package is cheap: nothing here imports torch.
"""

from . import config, entrypoint, exit_codes, report, runtime, signals
from .config import parse_config
from .entrypoint import run_main
from .exit_codes import PayloadError, Preempted
from .report import Reporter, get_reporter, set_reporter
from .runtime import is_rank0, local_rank, output_dir, rank, resume_from, world_size

__all__ = [
    "config",
    "parse_config",
    "exit_codes",
    "entrypoint",
    "report",
    "runtime",
    "signals",
    "PayloadError",
    "Preempted",
    "run_main",
    "Reporter",
    "get_reporter",
    "set_reporter",
    "is_rank0",
    "rank",
    "world_size",
    "local_rank",
    "resume_from",
    "output_dir",
]
