r"""The `deepspeed` launcher on one node of a stoker gang. A multi-node stage's pods get the
rendezvous variables torchrun reads (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT,
NPROC_PER_NODE and their PET_* twins; orchestrator/backends/kubernetes/train-job.ts), but the
deepspeed launcher reads none of them: on its own it ssh-es from node 0 into the others, which
a pod cannot do. This turns the variables into its flags, so each pod starts its own ranks
(`--no_ssh`, DeepSpeed >= 0.14.5) and they meet at MASTER_ADDR:

    python3 -m stoker_payload.deepspeed_launch -- deepspeed llava/train/train_mem.py \
        --deepspeed scripts/zero3.json --output_dir /out/student

    # what it execs on node 1 of 2 with 8 GPUs each:
    deepspeed --num_nodes=2 --num_gpus=8 --node_rank=1 --master_addr=JOB-0.SVC --master_port=29500 \
        --hostfile=/tmp/stoker-deepspeed-hostfile-XXXX --no_ssh llava/train/train_mem.py ...

stoker_fire.external does the same for a command that starts with `deepspeed` (it calls
deepspeed_command()); use this module for any other payload.

Contract:
    inputs     the command after `--`: `deepspeed` (a path ending in it too), its own options,
               the script and its arguments; env: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT
               (default 29500), NPROC_PER_NODE, each read from its PET_* name when unset.
    mapping    NNODES unset or 1: the command unchanged (one node needs no rendezvous).
               Otherwise these go before the script, each only when the command does not
               give that option itself (its own value wins): --num_nodes=NNODES,
               --num_gpus=NPROC_PER_NODE, --node_rank=NODE_RANK, --master_addr=MASTER_ADDR,
               --master_port=MASTER_PORT, --hostfile=FILE, --no_ssh. FILE (a temporary file)
               lists NNODES lines `node-I slots=NPROC_PER_NODE`: the launcher counts the
               nodes and each one's ranks from it (node I's ranks are I*NPROC .. I*NPROC+NPROC-1);
               with --no_ssh no host in it is ever contacted.
    outputs    the process is replaced by the command (exec): its exit code and signals are
               the launcher's.
    exit codes USAGE: no command, or a command that is not the deepspeed launcher;
               BAD_CONFIG: a multi-node gang without NODE_RANK, MASTER_ADDR or
               NPROC_PER_NODE, or a variable that is not a number in range;
               MISSING_INPUT: the launcher cannot be started.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from . import entrypoint
from .exit_codes import PayloadError

__all__ = ["Gang", "gang_from_env", "is_deepspeed", "deepspeed_command", "main"]

USAGE_TEXT = "usage: python3 -m stoker_payload.deepspeed_launch -- deepspeed [LAUNCHER OPTIONS] SCRIPT [ARGS...]"

# The deepspeed runner's options that take a value (deepspeed/launcher/runner.py); the
# others are flags. The first argument after them that is not an option is the script.
_VALUED = {
    "-H",
    "--hostfile",
    "-i",
    "--include",
    "-e",
    "--exclude",
    "--num_nodes",
    "--min_elastic_nodes",
    "--max_elastic_nodes",
    "--num_gpus",
    "--num_accelerators",
    "--master_port",
    "--master_addr",
    "--node_rank",
    "--launcher",
    "--launcher_args",
    "--enable_each_rank_log",
    "--autotuning",
    "--comment",
    "--account",
    "--bind_core_list",
    "--ssh_port",
}


@dataclass(frozen=True)
class Gang:
    nodes: int
    node_rank: int
    master_addr: str
    master_port: int
    procs_per_node: int


def _var(env: Mapping[str, str], name: str) -> Optional[str]:
    value = (env.get(name) or env.get(f"PET_{name}") or "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, minimum: int, default: Optional[int] = None) -> int:
    raw = _var(env, name)
    if raw is None:
        if default is None:
            raise PayloadError("BAD_CONFIG", f"a multi-node deepspeed launch needs {name} (or PET_{name}); stoker sets it in a gang's pods")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PayloadError("BAD_CONFIG", f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise PayloadError("BAD_CONFIG", f"{name} must be >= {minimum}, got {value}")
    return value


def gang_from_env(env: Mapping[str, str]) -> Optional[Gang]:
    """The gang this node belongs to, or None for one node (NNODES unset or 1)."""
    nodes = _int(env, "NNODES", 1, default=1)
    if nodes == 1:
        return None
    rank = _int(env, "NODE_RANK", 0)
    if rank >= nodes:
        raise PayloadError("BAD_CONFIG", f"NODE_RANK {rank} is not below NNODES {nodes}")
    addr = _var(env, "MASTER_ADDR")
    if addr is None:
        raise PayloadError("BAD_CONFIG", "a multi-node deepspeed launch needs MASTER_ADDR (or PET_MASTER_ADDR); stoker sets it in a gang's pods")
    return Gang(nodes, rank, addr, _int(env, "MASTER_PORT", 1, default=29500), _int(env, "NPROC_PER_NODE", 1))


def is_deepspeed(command: Sequence[str]) -> bool:
    """Whether the command starts with the deepspeed launcher."""
    return bool(command) and os.path.basename(command[0]) == "deepspeed"


def _script_index(command: Sequence[str]) -> int:
    """Where the launcher's own options end (the index of the script, or len(command))."""
    i = 1
    while i < len(command) and command[i].startswith("-"):
        arg = command[i]
        i += 2 if "=" not in arg and arg in _VALUED else 1
    return min(i, len(command))


def deepspeed_command(command: Sequence[str], env: Mapping[str, str], hostfile_dir: Optional[str] = None) -> list[str]:
    """The command with the gang's flags (the module's mapping); unchanged for one node.
    Writes the hostfile under hostfile_dir (default: the temporary directory)."""
    if not is_deepspeed(command):
        raise PayloadError("USAGE", f"not the deepspeed launcher: {command[0] if command else '(nothing)'}\n{USAGE_TEXT}")
    gang = gang_from_env(env)
    if gang is None:
        return list(command)
    at = _script_index(command)
    given = {arg.split("=", 1)[0] for arg in command[1:at] if arg.startswith("-")}
    wanted = [
        ("--num_nodes", str(gang.nodes)),
        ("--num_gpus", str(gang.procs_per_node)),
        ("--node_rank", str(gang.node_rank)),
        ("--master_addr", gang.master_addr),
        ("--master_port", str(gang.master_port)),
    ]
    # The runner refuses --num_nodes/--num_gpus beside --include/--exclude: the hostfile says it then.
    skip = given | ({"--num_nodes", "--num_gpus"} if given & {"-i", "--include", "-e", "--exclude"} else set())
    skip |= {"--num_gpus"} if "--num_accelerators" in given else set()
    added = [f"{flag}={value}" for flag, value in wanted if flag not in skip]
    if not given & {"-H", "--hostfile"}:
        added.append(f"--hostfile={_write_hostfile(gang, hostfile_dir)}")
    if "--no_ssh" not in given:
        added.append("--no_ssh")
    return [*command[:at], *added, *command[at:]]


def _write_hostfile(gang: Gang, directory: Optional[str]) -> str:
    fd, path = tempfile.mkstemp(prefix="stoker-deepspeed-hostfile-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(f"node-{i} slots={gang.procs_per_node}\n" for i in range(gang.nodes)))
    return path


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE_TEXT)
        return 0
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise PayloadError("USAGE", f"no command given\n{USAGE_TEXT}")
    command = deepspeed_command(args, os.environ)
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)
    except OSError as err:
        raise PayloadError("MISSING_INPUT", f"cannot start {command[0]!r}: {err.strerror or err} (is deepspeed installed?)") from None
    return 0  # not reached


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(sys.argv[1:]))
