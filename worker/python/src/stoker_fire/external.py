r"""The `external` training backend: run a user's unmodified training script and read its
progress, loss and checkpoints from what the HF Trainer prints (docs/fire.md, section 5).

Usage (from the repository root; PYTHONPATH=worker/python/src). Everything after `--` is the
command, run as is (no shell):

    python3 -m stoker_fire.external -- deepspeed llava/train/train_mem.py --deepspeed scripts/zero3.json \
        --lora_enable True --lora_r 64 --lora_alpha 256 --model_name_or_path Lin-Chen/open-llava-next-llama3-8b \
        --data_path /data/fire/student_view.json --image_folder /data/fire/images \
        --bf16 True --num_train_epochs 1 --learning_rate 2e-4 --save_steps 5000 --logging_steps 1 \
        --output_dir /out/student

    # any script that prints like the HF Trainer (the test fixture does, in both formats)
    python3 -m stoker_fire.external -- python3 worker/python/tests/fixtures/fake_hf_trainer.py \
        --steps 20 --save-steps 10 --output_dir /tmp/fake-out

    # a retry: RESUME_FROM goes to the script as its own flag (default --resume_from_checkpoint)
    RESUME_FROM=/tmp/fake-out/checkpoint-10 python3 -m stoker_fire.external --resume-flag --resume_from_checkpoint \
        -- python3 worker/python/tests/fixtures/fake_hf_trainer.py --steps 20 --output_dir /tmp/fake-out

Contract:
    inputs     the command after `--` (argv[0] looked up on PATH); --resume-flag FLAG|none before
               `--`; env: STOKER_OUTPUT_DIR (the output directory when the command has no
               --output_dir / --output-dir), RESUME_FROM (a checkpoint: passed to the command
               as `FLAG PATH`, appended, or replacing the value the command gives FLAG; not
               passed with --resume-flag none).
    child      started without a shell in its own process group, cwd and environment
               inherited; its stdout and stderr are passed through unchanged (stdout line by
               line, so marker lines never split one of its lines) and both are parsed line
               by line, `\r` and `\n` both ending a line (tqdm redraws with `\r`).
    parsing    tqdm bars `[desc: ] NN%|bar| n/total [elapsed<left, rate]` -> the step and
               total (bars of data loading, maps, downloads, evaluation are ignored; a bar
               with another total replaces the training bar only once that one is done);
               HF Trainer log dicts (Python reprs, read with ast.literal_eval, never eval;
               values that are numbers, or numbers as strings as newer Trainers print them,
               {'loss': '0.6931'}; other values are left out; a dict that does not parse is
               read key by key for plain numbers); a Trainer log dict with no number in it
               is warned about once (a log event, level warn); the first stderr or stdout
               line that says CUDA out of memory / OutOfMemoryError, or
               `ModuleNotFoundError: No module named 'x'`;
               `Saving model checkpoint to PATH` (the Trainer's logger, shown with
               --log_level info) and, without that line, new OUTPUT/checkpoint-N directories
               that hold trainer_state.json. A line that matches nothing is only passed on.
    events     progress {step, totalSteps} at most once per step change; metrics {step?, loss,
               lr, gradNorm, epoch} per training log dict, {step?, evalLoss, ...} (camelCase)
               for other dicts, {trainRuntime, trainLoss, ...} for the final one;
               checkpoint {path, step} once per checkpoint directory; on success artifact
               "adapter" (OUTPUT, when it or an OUTPUT/checkpoint-* exists) and result
               {command, steps, totalSteps, firstLoss, lastLoss, lossFell, trainLoss,
               checkpoints, lastCheckpoint, outputDir, seconds}; a failing child gets a
               log event (level error) with its exit code.
    gangs      a command that starts with `deepspeed` on a node of a multi-node stage (NNODES
               > 1) gets the rendezvous as the launcher's flags (--num_nodes, --node_rank,
               --master_addr, --master_port, --num_gpus, a --hostfile, --no_ssh; those it gives
               itself win): stoker_payload.deepspeed_launch has the mapping.
    signals    SIGTERM and SIGINT are forwarded to the child's process group; the child is
               also sent SIGTERM if this process dies. What the child saves on SIGTERM is up
               to the script (the HF Trainer saves nothing).
    exit codes the child's code passes through: 0 -> SUCCESS; killed by signal N -> 128+N;
               after a forwarded SIGTERM any non-zero exit -> PREEMPTED; a non-zero exit after
               a CUDA out-of-memory line -> CUDA_OOM, after `No module named 'x'` ->
               MISSING_DEPENDENCY naming x (neither is retried: the same run fails again);
               no command or a bad option -> USAGE; a command that cannot be started, or a
               RESUME_FROM that does not exist -> MISSING_INPUT.

Modules (this one is the command: argv, the result and the exit code):
    external_output  parsing the child's lines, the Tracker (events)
    external_child   the child process, its pipes, forwarded signals
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from stoker_payload import deepspeed_launch, entrypoint, exit_codes, report, runtime
from stoker_payload.exit_codes import PayloadError

from .external_child import LineWriter, run_child
from .external_output import Tracker, output_dir_of, parse_checkpoint, parse_failure, parse_log_dict, parse_tqdm, split_segments

__all__ = [
    "split_segments",
    "parse_tqdm",
    "parse_log_dict",
    "parse_failure",
    "parse_checkpoint",
    "output_dir_of",
    "Tracker",
    "Options",
    "PayloadError",
    "parse_argv",
    "with_resume",
    "main",
]

DEFAULT_RESUME_FLAG = "--resume_from_checkpoint"  # TrainingArguments' own field

USAGE_TEXT = (
    "usage: python3 -m stoker_fire.external [--resume-flag FLAG|none] -- CMD [ARGS...]\n"
    "  runs CMD, reads HF Trainer logs and tqdm bars; RESUME_FROM is passed to CMD as FLAG PATH\n"
    f"  (default {DEFAULT_RESUME_FLAG}; none: not passed)"
)


@dataclass(frozen=True)
class Options:
    command: list[str]
    resume_flag: Optional[str] = DEFAULT_RESUME_FLAG


def parse_argv(argv: Sequence[str]) -> Options:
    args = list(argv)
    resume_flag: Optional[str] = DEFAULT_RESUME_FLAG
    while args and args[0] != "--":
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE_TEXT)
            raise SystemExit(exit_codes.SUCCESS)
        if arg == "--resume-flag" and args and args[0] != "--":
            value = args.pop(0)
        elif arg.startswith("--resume-flag="):
            value = arg.split("=", 1)[1]
        else:
            raise PayloadError("USAGE", f"unknown option {arg!r} (put the command after `--`)\n{USAGE_TEXT}")
        if value != "none" and not value.startswith("-"):
            raise PayloadError("USAGE", f"--resume-flag: a flag of the script (e.g. {DEFAULT_RESUME_FLAG}) or none, got {value!r}")
        resume_flag = None if value == "none" else value
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise PayloadError("USAGE", f"no command given\n{USAGE_TEXT}")
    return Options(args, resume_flag)


def with_resume(command: Sequence[str], flag: Optional[str], checkpoint: Optional[str]) -> list[str]:
    """The command with `flag checkpoint` (RESUME_FROM): appended, or replacing the value the
    command gives the flag itself (this task's own checkpoint is the newer one). Unchanged
    without a checkpoint or a flag."""
    out = list(command)
    if not checkpoint or not flag:
        return out
    for i, arg in enumerate(out):
        if arg == flag and i + 1 < len(out):
            out[i + 1] = checkpoint
            return out
        if arg.startswith(flag + "="):
            out[i] = f"{flag}={checkpoint}"
            return out
    return out + [flag, checkpoint]


def main(argv: Sequence[str]) -> int:
    options = parse_argv(argv)
    resume_from = runtime.resume_from()  # MISSING_INPUT when it names nothing
    command = with_resume(options.command, options.resume_flag, resume_from)
    given = command
    if deepspeed_launch.is_deepspeed(command):
        command = deepspeed_launch.deepspeed_command(command, os.environ)  # a gang's node: the rendezvous as flags
    writer = LineWriter(lambda: sys.stdout)
    reporter = report.Reporter(writer)
    report.set_reporter(reporter)
    if resume_from and options.resume_flag:
        reporter.log(f"resuming from {resume_from} ({options.resume_flag})")
    if command != given:
        reporter.log(f"deepspeed launcher on a gang's node: {shlex.join(a for a in command if a not in given)}")
    output_dir = output_dir_of(command) or os.environ.get("STOKER_OUTPUT_DIR") or None
    tracker = Tracker(reporter, output_dir)
    started = time.monotonic()
    code, forwarded = run_child(command, writer, tracker)
    tracker.scan_output_dir()
    seconds = round(time.monotonic() - started, 3)
    if code == 0:
        _report_success(command, tracker, reporter, seconds)
        return exit_codes.SUCCESS
    if forwarded == signal.SIGTERM:
        reporter.log(f"{command[0]} stopped after SIGTERM (exit {code}); exiting PREEMPTED", level="warn")
        return exit_codes.PREEMPTED
    at = tracker.step if tracker.step is not None else "?"
    if code > 0 and tracker.failure is not None:
        # The script's own error says another attempt fails the same way: not its plain
        # exit code (1, retried), but the class that says so (not retried).
        name, why, line = tracker.failure
        raise PayloadError(name, f"{command[0]} failed (exit code {code}) at step {at}: {why}: {line}")
    mapped = exit_codes.SIGNAL_BASE - code if code < 0 else code
    why = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit code {code}"
    reporter.log(f"{command[0]} failed ({why}) at step {at}; exiting {mapped}", level="error")
    return mapped


def _report_success(command: Sequence[str], tracker: Tracker, reporter: report.Reporter, seconds: float) -> None:
    """The artifact event (OUTPUT, when it exists) and the result event of a child that exited 0."""
    out = tracker.output_dir
    out_abs: Optional[str] = (out if os.path.isabs(out) else os.path.abspath(out)) if out else None
    if out_abs and os.path.isdir(out_abs):
        reporter.artifact("adapter", out_abs)
    first, last = tracker.first_loss, tracker.last_loss
    reporter.result(
        command=shlex.join(command),
        steps=tracker.step,
        totalSteps=tracker.total,
        firstLoss=first,
        lastLoss=last,
        lossFell=(last < first) if first is not None and last is not None else None,
        trainLoss=tracker.train_loss,
        checkpoints=tracker.checkpoints,
        lastCheckpoint=tracker.checkpoints[-1] if tracker.checkpoints else None,
        outputDir=out_abs,
        seconds=seconds,
    )


if __name__ == "__main__":
    entrypoint.run_main(lambda: main(sys.argv[1:]))
