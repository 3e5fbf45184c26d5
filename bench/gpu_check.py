r"""GPU check of the FIRE `hf` backend (run through bench/gpu-check.sh, which skips it on a
machine without an NVIDIA GPU).

    bash bench/gpu-check.sh                      # prints progress lines, then one JSON line
    OUT=/tmp/check bash bench/gpu-check.sh       # also writes $OUT/gpu-check.json and the logs

What it does, with tiny random LLaVA-NeXT models (stoker_fire.hf `tiny-random`: nothing to download):
    (a) train: `python -m stoker_fire.train` LoRA-trains 50 steps (checkpoint at 50), then a second
        run with RESUME_FROM=checkpoint-50 trains 10 more. Checks: exit 0, the loss fell,
        checkpoint-50 was written and reported, the resumed run's first step is 51 and it
        ends at 60.
    (b) self-play throughput: one shard of 64 synthetic seeds through
        stoker_fire.selfplay_rules.run_dialogues with two resident tiny models (student seed 1,
        teacher seed 2) and stoker_fire.hf.Generator, batched (32 dialogues per call) and one dialogue
        at a time, greedy, --max-new-tokens per turn. A random teacher never writes a valid
        `Score:`, which would end every dialogue after one round; so the teacher's generated
        text is kept as the feedback, and its score is scripted per dialogue id (crc32 % 4 ->
        [9], [4, 8], [3, 5, 9] or [5, 5]): both runs play the same rounds, the model work is
        real, and the ratio compares like with like. The single run stops at a time budget
        (dialogues/s counts the dialogues it finished).
    (c) server smoke: `python -m stoker_fire.selfplay` (batch 32) serves the same shard from stdin
        and must answer `done`; its own dialoguesPerSec is reported (random teacher: every
        dialogue ends after round 1 with a format failure).
    (d) evaluate: `python -m stoker_fire.evaluate --backend hf` on 12 synthetic FIRE-Bench dialogues
        (stoker_fire.synth), tiny-random as the model under test and as the teacher, every mode;
        checks exit 0 and the line count of each output (fixed-student: rounds - 1 per
        dialogue, fixed-teacher and its scores: rounds, free: one per dialogue).
    (figures, only when --only names it; bench/gpu-check.sh's device run does) issue 14 item 5:
        self-play batched vs one at a time in dialogues/s and tokens/s, self-play tokens/s over
        bare model.generate at the same batch size (targets >= 5x and >= 0.8), the GPU's
        utilisation during batched self-play (nvidia-smi), and a torch.profiler summary of one
        batched student step ($OUT/profile.txt; sync and copy ops counted in profileSuspects).
    (profile, only when --only names it) where one generate() call spends its time, batch 1
        vs --batch-size, with and without an image, at torch's CPU threads and at 1 (best of
        3 after a warm-up of the same shape), and the top functions of one batched call.
--only picks parts (default training,selfplay,server,evaluate); --torch-threads sets torch's CPU
threads for (b) and (c); --record-versions FILE writes the versions it ran with (python,
torch, transformers, peft, accelerate, tokenizers, torchvision, deepspeed) as JSON, the
format of bench/gpu-check-versions.json, which docker/worker-gpu.Dockerfile's pins must
agree with (test/unit/gpu-image-pins.test.ts). $OUT gets gpu-check-versions.json too.
Output: progress lines, then one JSON line {ok, device, versions, train: {...}, resume:
{...}, selfplay: {...}, server: {...}, evaluate: {...}, profile?: {...}, failures: [...]}; exit 0 when every
check passed, 1 otherwise. Files under $OUT (when set): gpu-check.json, train.log,
resume.log, server.log, evaluate.log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY_DIR = os.path.join(ROOT, "worker", "python", "src")
sys.path.insert(0, PY_DIR)
MARKER = "::stoker::"
SCRIPT = ([9], [4, 8], [3, 5, 9], [5, 5])  # teacher scores by crc32(id) % 4


def say(text: str) -> None:
    print(f"gpu-check: {text}", flush=True)


def markers(stdout: str) -> list[dict[str, Any]]:
    out = []
    for line in stdout.splitlines():
        at = line.find(MARKER)
        if at != -1:
            out.append(json.loads(line[at + len(MARKER) :]))
    return out


def run_payload(args: list[str], env_extra: dict[str, str], log_name: str, timeout: float, stdin: Optional[str] = None) -> tuple[int, list[dict[str, Any]], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PY_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("RESUME_FROM", "STOKER_OUTPUT_DIR", "RANK", "WORLD_SIZE"):
        env.pop(key, None)
    env.update(env_extra)
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
        )
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as err:
        code = 124
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = (err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")) + f"\n(timed out after {timeout}s)"
    seconds = time.perf_counter() - began
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, log_name), "w", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(args)}\n# exit {code} after {seconds:.1f}s\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    if code != 0:
        say(f"{args[0]} exited {code}; stderr tail:\n{stderr[-3000:]}")
    return code, markers(stdout), stderr


def check_training(work: str, steps: int, more: int, failures: list[str], timeout: float) -> tuple[dict, dict]:
    out = os.path.join(work, "train")
    common = [
        "stoker_fire.train", "--backend", "hf", "--model-name-or-path", "tiny-random",
        "--lora-r", "16", "--lora-alpha", "32", "--learning-rate", "1e-2", "--warmup-ratio", "0.03",
        "--per-device-train-batch-size", "8", "--logging-steps", "1", "--save-steps", str(steps),
        "--synthetic-samples", "256", "--output-dir", out,
    ]  # fmt: skip
    say(f"training {steps} steps")
    code, evts, _ = run_payload(common + ["--max-steps", str(steps)], {}, "train.log", timeout)
    result = next((e for e in evts if e["type"] == "result"), {})
    losses = [e["loss"] for e in evts if e["type"] == "metrics" and "loss" in e and e["loss"] is not None]
    ckpts = [e for e in evts if e["type"] == "checkpoint"]
    ckpt = os.path.join(out, f"checkpoint-{steps}")
    train = {
        "exit": code,
        "steps": result.get("steps"),
        "firstLoss": losses[0] if losses else None,
        "lastLoss": losses[-1] if losses else None,
        "firstLossMean5": sum(losses[:5]) / 5 if len(losses) >= 5 else None,
        "lastLossMean5": sum(losses[-5:]) / 5 if len(losses) >= 5 else None,
        "checkpoints": [e["step"] for e in ckpts],
        "checkpointWritten": os.path.isfile(os.path.join(ckpt, "trainer_state.json")),
        "seconds": result.get("seconds"),
        "bf16": result.get("bf16"),
        "device": result.get("device"),
        "trainableParameters": result.get("trainableParameters"),
    }
    if code != 0:
        failures.append(f"train exited {code}")
    if train["steps"] != steps:
        failures.append(f"train ended at step {train['steps']}, expected {steps}")
    if not (train["firstLossMean5"] and train["lastLossMean5"] and train["lastLossMean5"] < train["firstLossMean5"]):
        failures.append(f"the loss did not fall: {train['firstLossMean5']} -> {train['lastLossMean5']} (means of 5 steps)")
    if not train["checkpointWritten"] or steps not in train["checkpoints"]:
        failures.append(f"no checkpoint-{steps} written and reported")

    say(f"resuming from {ckpt} for {more} more steps")
    code, evts, _ = run_payload(common + ["--max-steps", str(steps + more)], {"RESUME_FROM": ckpt}, "resume.log", timeout)
    result = next((e for e in evts if e["type"] == "result"), {})
    progress = [e["step"] for e in evts if e["type"] == "progress"]
    losses = [e["loss"] for e in evts if e["type"] == "metrics" and "loss" in e and e["loss"] is not None]
    resume = {
        "exit": code,
        "startStep": result.get("startStep"),
        "firstStep": progress[0] if progress else None,
        "steps": result.get("steps"),
        "firstLoss": losses[0] if losses else None,
        "lastLoss": losses[-1] if losses else None,
        "lastCheckpoint": result.get("lastCheckpoint"),
    }
    if code != 0:
        failures.append(f"resume exited {code}")
    if (resume["startStep"], resume["firstStep"], resume["steps"]) != (steps, steps + 1, steps + more):
        failures.append(f"resume did not continue the steps: {resume}")
    return train, resume


class ScriptedScores:
    """Wraps the teacher model: its text is generated (real work) and kept as the feedback;
    its score comes from SCRIPT, by dialogue id and round."""

    def __init__(self, teacher: Any):
        self.teacher = teacher
        self.turns: dict[str, int] = {}

    def __call__(self, prompts: Any) -> list[str]:
        texts = self.teacher(prompts)
        out = []
        for prompt, text in zip(prompts, texts):
            script = SCRIPT[zlib.crc32(prompt.id.encode()) % len(SCRIPT)]
            turn = self.turns.get(prompt.id, 0)
            self.turns[prompt.id] = turn + 1
            feedback = " ".join(text.split()) or "try again"
            out.append(f"Score: {script[min(turn, len(script) - 1)]}.\nFeedback: {feedback}")
        return out


def check_selfplay(work: str, seeds_n: int, batch: int, max_new_tokens: int, budget: float, failures: list[str], threads: Optional[int]) -> dict:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    from stoker_fire import hf, llava_data
    from stoker_fire.selfplay_rules import Rules, StopRequested, run_dialogues, seed_from_record

    images = os.path.join(work, "images")
    raw = llava_data.synthetic_seeds(seeds_n, seed=7, image_dir=images)
    seeds = [seed_from_record(r) for r in raw]
    with open(os.path.join(work, "seeds.jsonl"), "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in raw)
    say("loading student and teacher (tiny-random, seeds 1 and 2)")
    began = time.perf_counter()
    student = hf.make_generator("tiny-random", seed=1, adapter=None, image_root=images, max_new_tokens=max_new_tokens, batch_size=batch)
    teacher = hf.make_generator("tiny-random", seed=2, adapter=None, image_root=images, max_new_tokens=max_new_tokens, batch_size=batch)
    load_seconds = time.perf_counter() - began
    rules = Rules()

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def play(size: int, subset: list, limit: Optional[float]) -> dict:
        student.batch_size = teacher.batch_size = size
        calls_before = student.calls + teacher.calls
        done = [0]
        deadline = None if limit is None else time.perf_counter() + limit
        sync()
        t0 = time.perf_counter()
        stopped = False
        records: list = []
        stats = None
        try:
            records, stats = run_dialogues(
                subset, student, ScriptedScores(teacher), batch_size=size, rules=rules,
                on_progress=lambda d, _t: done.__setitem__(0, d),
                should_stop=(lambda: time.perf_counter() > deadline) if deadline else None,
            )  # fmt: skip
        except StopRequested:
            stopped = True
        sync()
        seconds = time.perf_counter() - t0
        return {
            "batchSize": size,
            "dialogues": done[0],
            "seconds": round(seconds, 3),
            "dialoguesPerSec": round(done[0] / seconds, 3) if seconds > 0 else None,
            "stoppedAtBudget": stopped,
            "kept": stats.kept if stats else None,
            "dropped": stats.dropped if stats else None,
            "modelCalls": student.calls + teacher.calls - calls_before,
            "records": records,
        }

    say("warming up")
    play(batch, seeds[:4], None)
    say(f"self-play, batched: {len(seeds)} dialogues, {batch} per call")
    batched = play(batch, seeds, None)
    say(f"self-play, one dialogue at a time (budget {budget:.0f}s)")
    single = play(1, seeds, budget)
    same = None
    if not single["stoppedAtBudget"]:
        pairs = list(zip(batched["records"], single["records"]))
        same_shape = [r["id"] for r in batched["records"]] == [r["id"] for r in single["records"]]
        same = sum(a["conversations"] == b["conversations"] for a, b in pairs) / len(pairs) if pairs else None
        if not same_shape:
            failures.append("batched and single self-play kept different dialogues")
    if batched["dialogues"] != len(seeds):
        failures.append(f"batched self-play finished {batched['dialogues']} of {len(seeds)} dialogues")
    if not batched["kept"]:
        failures.append("batched self-play kept no dialogue")
    ratio = batched["dialoguesPerSec"] / single["dialoguesPerSec"] if single["dialoguesPerSec"] else None
    for run in (batched, single):
        run.pop("records")
    return {
        "seeds": len(seeds),
        "maxNewTokens": max_new_tokens,
        "torchThreads": torch.get_num_threads(),
        "loadSeconds": round(load_seconds, 3),
        "batched": batched,
        "single": single,
        "ratio": round(ratio, 2) if ratio else None,
        "sameTextsFraction": same,
    }


class TokenCount:
    """Counts the positions model.generate produces (rows x new length, pads after an early eos
    included, as for the bare generate below), by wrapping the model's generate."""

    def __init__(self, model: Any):
        self.tokens = 0
        original = model.generate

        def counting(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self.tokens += int(out.shape[0]) * int(out.shape[1] - ids.shape[1])
            return out

        model.generate = counting


class UtilSampler:
    """nvidia-smi's utilization.gpu every 200 ms between start() and stop() (None without it)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.values: list[int] = []

    def start(self) -> None:
        import shutil
        import threading

        if not shutil.which("nvidia-smi"):
            return
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

        def read() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                if line.strip().isdigit():
                    self.values.append(int(line.strip()))

        threading.Thread(target=read, daemon=True).start()

    def stop(self) -> Optional[dict]:
        if not self.proc:
            return None
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.values:
            return {"samples": 0}
        return {"samples": len(self.values), "mean": round(sum(self.values) / len(self.values) / 100, 3), "busyShare": round(sum(v > 0 for v in self.values) / len(self.values), 3)}


def check_figures(work: str, seeds_n: int, batch: int, max_new_tokens: int, budget: float, failures: list[str]) -> dict:
    """Issue 14 item 5, measured in one run: self-play batched vs one dialogue at a time
    (dialogues/s and tokens/s), self-play tokens/s against bare model.generate at the same
    batch size on the same model (inputs prepared beforehand: the floor no orchestration
    beats), the GPU's utilisation during batched self-play, and a torch.profiler summary of
    one batched student step ($OUT/profile.txt; syncs and host-device copies counted)."""
    import torch

    from stoker_fire import hf, llava_data
    from stoker_fire.prompts import student_messages
    from stoker_fire.selfplay_rules import Prompt, Rules, StopRequested, run_dialogues, seed_from_record

    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    images = os.path.join(work, "figure-images")
    raw = llava_data.synthetic_seeds(seeds_n, seed=7, image_dir=images)
    seeds = [seed_from_record(r) for r in raw]
    student = hf.make_generator("tiny-random", seed=1, adapter=None, image_root=images, max_new_tokens=max_new_tokens, batch_size=batch)
    teacher = hf.make_generator("tiny-random", seed=2, adapter=None, image_root=images, max_new_tokens=max_new_tokens, batch_size=batch)
    counts = (TokenCount(student.model), TokenCount(teacher.model))
    rules = Rules()

    def play(size: int, subset: list, limit: Optional[float], sampler: Optional[UtilSampler] = None) -> dict:
        student.batch_size = teacher.batch_size = size
        tokens_before = sum(c.tokens for c in counts)
        done = [0]
        deadline = None if limit is None else time.perf_counter() + limit
        if sampler:
            sampler.start()
        sync()
        t0 = time.perf_counter()
        stopped = False
        try:
            run_dialogues(
                subset, student, ScriptedScores(teacher), batch_size=size, rules=rules,
                on_progress=lambda d, _t: done.__setitem__(0, d),
                should_stop=(lambda: time.perf_counter() > deadline) if deadline else None,
            )  # fmt: skip
        except StopRequested:
            stopped = True
        sync()
        seconds = time.perf_counter() - t0
        tokens = sum(c.tokens for c in counts) - tokens_before
        return {
            "batchSize": size, "dialogues": done[0], "seconds": round(seconds, 3), "stoppedAtBudget": stopped,
            "dialoguesPerSec": round(done[0] / seconds, 3) if seconds > 0 else None,
            "tokens": tokens, "tokensPerSec": round(tokens / seconds, 1) if seconds > 0 else None,
            "gpuUtilization": sampler.stop() if sampler else None,
        }  # fmt: skip

    say("figures: warming up")
    play(batch, seeds[:4], None)
    say(f"figures: self-play batched ({len(seeds)} dialogues, {batch} per call)")
    batched = play(batch, seeds, None, UtilSampler())
    say(f"figures: self-play one at a time (budget {budget:.0f}s)")
    single = play(1, seeds, budget)

    # Bare model.generate: the student's first-turn prompts of `batch` seeds, prepared once.
    model, processor = student.model, student.processor
    tok = processor.tokenizer
    tok.padding_side = "left"
    first = seeds[:batch]
    # Rendered, tokenized and stopped exactly as the self-play Generator does it.
    texts = [student.template.prompt(student_messages(sd.question, [], [])) for sd in first]
    pil = [student.image(sd.image) for sd in first]
    special = not student.template.starts_with_bos(texts[0])
    inputs = processor(text=texts, images=pil, padding=True, return_tensors="pt", add_special_tokens=special)
    device = next(model.parameters()).device
    feed = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_sizes")}
    feed["pixel_values"] = feed["pixel_values"].to(next(model.parameters()).dtype)
    generate = model.generate

    def bare_once() -> tuple[float, int]:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = generate(**feed, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=student.stop_ids)
        sync()
        return time.perf_counter() - t0, int(out.shape[0]) * int(out.shape[1] - feed["input_ids"].shape[1])

    bare_once()
    runs = [bare_once() for _ in range(3)]
    bare_seconds = min(r[0] for r in runs)
    bare_tps = runs[0][1] / bare_seconds

    # One batched student step under torch.profiler.
    from torch.profiler import ProfilerActivity, profile

    prompts = [Prompt(sd.id, "student", sd.image, tuple(student_messages(sd.question, [], []))) for sd in first]
    student.batch_size = batch
    student(prompts)  # warm
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=False) as prof:
        student(prompts)
        sync()
    averages = prof.key_averages()
    sort_key = "cpu_time_total"
    if cuda:  # torch >= 2.4 names it device_time_total; older ones cuda_time_total
        sort_key = "device_time_total" if hasattr(averages[0], "device_time_total") else "cuda_time_total"
    try:
        table = averages.table(sort_by=sort_key, row_limit=40)
    except (AttributeError, KeyError, ValueError):
        sort_key = "cpu_time_total"
        table = averages.table(sort_by=sort_key, row_limit=40)
    by_self_cpu = averages.table(sort_by="self_cpu_time_total", row_limit=25)
    suspects = {}
    for evt in averages:
        if any(k in evt.key for k in ("Synchronize", "Memcpy", "aten::item", "_local_scalar_dense", "aten::to", "aten::copy_", "Preprocess", "processor")):
            suspects[evt.key] = {"count": evt.count, "cpuMs": round(evt.cpu_time_total / 1000, 3)}
    text = f"one batched student step (batch {batch}, max_new_tokens {max_new_tokens}), sorted by {sort_key}\n{table}\n\nsorted by self CPU time\n{by_self_cpu}\n"
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "profile.txt"), "w", encoding="utf-8") as fh:
            fh.write(text)
    print(text, flush=True)

    ratio = batched["dialoguesPerSec"] / single["dialoguesPerSec"] if single["dialoguesPerSec"] else None
    over_bare = batched["tokensPerSec"] / bare_tps if batched["tokensPerSec"] and bare_tps else None
    if batched["dialogues"] != len(seeds):
        failures.append(f"figures: batched self-play finished {batched['dialogues']} of {len(seeds)} dialogues")
    util = (batched.get("gpuUtilization") or {}).get("mean")
    return {
        "seeds": len(seeds),
        "maxNewTokens": max_new_tokens,
        "batched": batched,
        "single": single,
        "bareGenerate": {"batchSize": len(first), "seconds": round(bare_seconds, 4), "tokensPerSec": round(bare_tps, 1)},
        "profileSuspects": suspects,
        "targets": {
            "batchedOverSingle": {"value": round(ratio, 2) if ratio else None, "target": 5.0, "met": bool(ratio and ratio >= 5.0)},
            "selfplayOverBareGenerate": {"value": round(over_bare, 3) if over_bare else None, "target": 0.8, "met": bool(over_bare and over_bare >= 0.8)},
            "gpuUtilizationBatched": util,
        },
    }


def check_server(work: str, batch: int, max_new_tokens: int, failures: list[str], timeout: float, threads: Optional[int]) -> dict:
    seeds = os.path.join(work, "seeds.jsonl")
    request = {"type": "shard", "id": "gpu-check", "input": seeds, "output": os.path.join(work, "server-out.jsonl"), "attempt": 1, "params": {}}
    stdin = json.dumps(request) + "\n" + json.dumps({"type": "shutdown"}) + "\n"
    say("selfplay server smoke (python -m stoker_fire.selfplay)")
    code, evts, _ = run_payload(
        ["stoker_fire.selfplay", "--batch-size", str(batch), "--max-new-tokens", str(max_new_tokens), "--image-root", os.path.join(work, "images")]
        + (["--threads", str(threads)] if threads else []),
        {}, "server.log", timeout, stdin=stdin,
    )  # fmt: skip
    answer = next((e for e in evts if e["type"] in ("done", "failed")), None)
    stats = next((e for e in evts if "dialoguesPerSec" in e), {})
    if code != 0 or not answer or answer["type"] != "done":
        failures.append(f"selfplay server: exit {code}, answer {answer}")
    return {
        "exit": code,
        "answer": answer,
        "ready": any(e["type"] == "ready" for e in evts),
        "dialoguesPerSec": stats.get("dialoguesPerSec"),
        "kept": stats.get("kept"),
        "droppedFormatFailure": stats.get("droppedFormatFailure"),
    }


def check_evaluate(work: str, n: int, batch: int, max_new_tokens: int, failures: list[str], timeout: float) -> dict:
    """stoker_fire.evaluate with the hf backend: n synthetic FIRE-Bench dialogues (stoker_fire.synth), every
    mode, tiny-random as the model under test and as the teacher (one model, loaded once)."""
    from stoker_fire import synth  # noqa: F401 - fails early when Pillow is missing

    data_dir = os.path.join(work, "bench")
    say(f"stoker_fire.synth: {n} test dialogues")
    done = subprocess.run(
        [sys.executable, "-m", "stoker_fire.synth", "--n", str(n), "--split", "fire_test", "--seed", "3", "--out", data_dir],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": PY_DIR},
    )  # fmt: skip
    if done.returncode != 0:
        failures.append(f"stoker_fire.synth: exit {done.returncode}: {done.stderr[-500:]}")
        return {"exit": done.returncode}
    records = [json.loads(line) for line in open(os.path.join(data_dir, "dialogues.jsonl"), encoding="utf-8") if line.strip()]
    out = os.path.join(work, "eval-out")
    say("stoker_fire.evaluate --backend hf (fixed-student, fixed-teacher, free)")
    began = time.perf_counter()
    code, evts, _ = run_payload(
        ["stoker_fire.evaluate", "--backend", "hf", "--model-name-or-path", "tiny-random", "--teacher-model", "tiny-random",
         "--data", os.path.join(data_dir, "dialogues.jsonl"), "--image-root", os.path.join(data_dir, "images"),
         "--batch-size", str(batch), "--max-new-tokens", str(max_new_tokens), "--output-dir", out],
        {}, "evaluate.log", timeout,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    result = next((e for e in evts if e["type"] == "result"), {})

    def lines(name: str) -> Optional[int]:
        path = os.path.join(out, name)
        return sum(1 for line in open(path, encoding="utf-8") if line.strip()) if os.path.exists(path) else None

    expected = {
        "fixed-student.jsonl": sum(r["round"] - 1 for r in records),
        "fixed-teacher.jsonl": sum(r["round"] for r in records),
        "fixed-teacher-scores.jsonl": sum(r["round"] for r in records),
        "free.jsonl": len(records),
    }
    got = {name: lines(name) for name in expected}
    if code != 0:
        failures.append(f"stoker_fire.evaluate: exit {code}")
    elif got != expected:
        failures.append(f"stoker_fire.evaluate: output lines {got}, expected {expected}")
    return {"exit": code, "dialogues": len(records), "lines": got, "expected": expected, "seconds": round(seconds, 1),
            "loadSeconds": next((e.get("loadSeconds") for e in evts if "loadSeconds" in e), None), "free": result.get("free")}  # fmt: skip


def profile_generate(work: str, batch: int, max_new_tokens: int) -> dict:
    """Where a generate() call spends its time, batch 1 vs `batch`, with and without images:
    preprocessing (processor/tokenizer), model.generate, decoding; tokens actually generated;
    and the top functions of one batched call with an image (cProfile, printed)."""
    import cProfile
    import io
    import pstats

    import torch

    from stoker_fire import hf, llava_data
    from stoker_fire.prompts import student_messages, teacher_messages

    images = os.path.join(work, "profile-images")
    raw = llava_data.synthetic_seeds(batch, seed=11, image_dir=images)
    model, processor = hf.load_model("tiny-random", seed=1, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device).eval()
    tok = processor.tokenizer
    pil = [hf.load_image(os.path.join(images, r["image"])) for r in raw]
    template = hf.chat_template_of(processor)
    student = [template.prompt(student_messages(r["question"], [], [])) for r in raw]
    teacher = [template.prompt(teacher_messages(r["question"], r["groundtruth"], "Thought: it is red.\nAnswer: red")) for r in raw]

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def once(n: int, with_image: bool) -> dict:
        tok.padding_side = "left"
        t0 = time.perf_counter()
        if with_image:
            inputs = processor(text=student[:n], images=pil[:n], padding=True, return_tensors="pt")
        else:
            inputs = tok(teacher[:n], padding=True, return_tensors="pt")
        t1 = time.perf_counter()
        feed = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_sizes")}
        if "pixel_values" in feed:
            feed["pixel_values"] = feed["pixel_values"].to(next(model.parameters()).dtype)
        sync()
        t2 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**feed, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=student.stop_ids)
        sync()
        t3 = time.perf_counter()
        tok.batch_decode(out[:, feed["input_ids"].shape[1] :], skip_special_tokens=True)
        t4 = time.perf_counter()
        return {
            "prep": round(t1 - t0, 4),
            "toDevice": round(t2 - t1, 4),
            "generate": round(t3 - t2, 4),
            "decode": round(t4 - t3, 4),
            "promptTokens": int(feed["input_ids"].shape[1]),
            "newTokens": int(out.shape[1] - feed["input_ids"].shape[1]),
        }

    result: dict[str, Any] = {"torchThreads": torch.get_num_threads()}
    for threads in (None, 1):
        if threads is not None:
            torch.set_num_threads(threads)
        label = f"threads{torch.get_num_threads()}"
        for n in (1, batch):
            for with_image in (True, False):
                once(n, with_image)  # warm-up of this shape
                runs = [once(n, with_image) for _ in range(3)]
                best = min(runs, key=lambda r: r["prep"] + r["generate"])
                result[f"{label}.b{n}.{'image' if with_image else 'text'}"] = best
                say(f"generate profile {label} batch {n} {'image' if with_image else 'text'}: {best}")
    profiler = cProfile.Profile()
    profiler.enable()
    once(batch, True)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    print(text.getvalue(), flush=True)
    return result


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers", "torchvision"):
        try:
            out[name] = __import__(name).__version__
        except Exception as err:  # noqa: BLE001 - reporting only
            out[name] = f"unavailable ({type(err).__name__})"
    try:
        __import__("deepspeed")
        out["deepspeed"] = __import__("deepspeed").__version__
    except Exception:  # noqa: BLE001
        out["deepspeed"] = "not installed"
    return out


def record_versions(path: str, device: str, found: dict) -> None:
    """The versions this check ran with, as bench/gpu-check-versions.json holds them."""
    record = {
        "about": "What bench/gpu-check.sh ran with on a GPU: its report's versions. docker/worker-gpu.Dockerfile pins "
        "these (test/unit/gpu-image-pins.test.ts). Rewrite it with: bash bench/gpu-check.sh --record-versions "
        "bench/gpu-check-versions.json",
        "device": device,
        "recorded": time.strftime("%Y-%m-%d"),
        "versions": {name: value for name, value in found.items() if not value.startswith("unavailable")},
    }
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--resume-steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--single-budget", type=float, default=120.0, help="seconds at most for the one-at-a-time run")
    parser.add_argument("--payload-timeout", type=float, default=240.0)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads for self-play (default: torch's)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (a dry run of this script)")
    parser.add_argument(
        "--only", default="training,selfplay,server,evaluate", help="comma-separated parts: training, selfplay, server, evaluate, profile, figures"
    )
    parser.add_argument("--record-versions", metavar="FILE", help="write the versions this check ran with to FILE (JSON)")
    parser.add_argument("--eval-dialogues", type=int, default=12, help="synthetic FIRE-Bench dialogues for the evaluate part")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(json.dumps({"skipped": "torch sees no CUDA device"}))
        return 0
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {"device": device, "versions": versions()}
    say(f"device {device}; {report['versions']}")
    if args.record_versions:
        record_versions(args.record_versions, device, report["versions"])
    if os.environ.get("OUT"):
        record_versions(os.path.join(os.environ["OUT"], "gpu-check-versions.json"), device, report["versions"])
    failures: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fire-gpu-check-") as work:
        parts = {part.strip() for part in args.only.split(",") if part.strip()}
        for name, step in (
            ("profile", lambda: profile_generate(work, args.batch_size, args.max_new_tokens)),
            ("training", lambda: check_training(work, args.steps, args.resume_steps, failures, args.payload_timeout)),
            ("selfplay", lambda: check_selfplay(work, args.seeds, args.batch_size, args.max_new_tokens, args.single_budget, failures, args.torch_threads)),
            ("figures", lambda: check_figures(work, args.seeds, args.batch_size, args.max_new_tokens, args.single_budget, failures)),
            ("server", lambda: check_server(work, args.batch_size, args.max_new_tokens, failures, args.payload_timeout, args.torch_threads)),
            ("evaluate", lambda: check_evaluate(work, args.eval_dialogues, args.batch_size, args.max_new_tokens, failures, args.payload_timeout)),
        ):
            if name not in parts:
                continue
            if name == "server" and "selfplay" not in parts:
                continue  # the server serves the seeds the self-play part wrote
            try:
                value = step()
            except Exception as err:  # noqa: BLE001 - report every part, whatever fails
                import traceback

                traceback.print_exc()
                failures.append(f"{name}: {type(err).__name__}: {err}")
                continue
            if name == "training":
                report["train"], report["resume"] = value
            else:
                report[name] = value
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["failures"] = failures
    report["ok"] = not failures
    line = json.dumps(report, separators=(",", ":"))
    print(line, flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu-check.json"), "w", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
