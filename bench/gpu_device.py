r"""The device run of bench/gpu-check.sh: training-configs/fire-gpu-mini through `stoker run` with
the packed Node, stoker and redis-server (bench/gpu-pack.sh), then, on a GPU, the hf check and
the self-play figures (bench/gpu_check.py). Standard library only: it runs under the GPU
machine's python3 and under /usr/bin/python3 here.

    python3 bench/gpu_device.py --from .travel --device cuda     # on the GPU machine
    python3 bench/gpu_device.py --from DIR --device cpu          # CPU mode (bench/gpu-check.sh --cpu)

Steps:
    1. unpack DIR (node.xz, stoker.tar.xz, redis.tar.xz; Python's lzma and tarfile, no xz
       needed) into a work directory; bin/ gets node and a redis-server wrapper (its libraries
       by LD_LIBRARY_PATH, for it alone); PATH becomes bin/ plus links to every program of
       the old PATH except node, nodejs, npm, npx and redis-*, so the packed ones are what run
    2. versions: node, redis-server, stoker (and `stoker validate` of the pipeline by the packed
       CLI), python, torch, transformers
    3. `node stoker/bin/stoker.js run training-configs/fire-gpu-mini/pipeline.yaml --set
       spec.params.device=D --set spec.params.python=PYTHON --json` (the embedded Redis: no
       REDIS_URL, redis-server from PATH), with nvidia-smi sampling the GPU's utilisation
       every 500 ms meanwhile (cuda)
    4. the report's table (report.md of the report stage), per-stage times (the run's JSON:
       each stage's startedAt and finishedAt), the GPU's busy share
    5. cuda: bench/gpu_check.py --only training,figures (LoRA train + resume; self-play batched
       vs one at a time, tokens/s against bare model.generate, the GPU's utilisation, a
       torch.profiler summary of one batched self-play step); cpu: "no GPU: n/a"
Output: progress lines, one JSON line at the end {ok, mode, device, versions, pipeline:
{status, seconds, stages, report}, gpu: {...}, hfCheck: {...}, failures}; exit 1 when
something failed, else 0. $OUT (when set) gets at most 8 files: summary.json, console.log,
report.md, stoker-run.json, stages.tsv, stage-logs.tar.gz, hf-check.tar.gz (gpu_check.py's
JSON and logs, profile.txt among them), gpu-util.csv.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE = os.path.join(ROOT, "training-configs", "fire-gpu-mini", "pipeline.yaml")
HIDDEN = {"node", "nodejs", "npm", "npx", "corepack", "redis-server", "redis-cli", "redis-check-rdb", "redis-check-aof", "redis-benchmark", "redis-sentinel"}
LOG = io.StringIO()


def say(text: str) -> None:
    line = f"gpu-device: {text}"
    print(line, flush=True)
    LOG.write(line + "\n")


def out_path(name: str) -> Optional[str]:
    out = os.environ.get("OUT")
    return os.path.join(out, name) if out else None


def write_out(name: str, text: str) -> None:
    path = out_path(name)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


# -- 1. unpack --------------------------------------------------------------------------------


def unpack(pack: str, work: str) -> dict[str, str]:
    manifest_file = os.path.join(pack, "manifest.json")
    if not os.path.isfile(manifest_file):
        raise RuntimeError(f"{pack} holds no manifest.json: make it with `bash bench/gpu-check.sh --pack {pack}` on a machine with Node")
    bin_dir = os.path.join(work, "bin")
    os.makedirs(bin_dir)
    node = os.path.join(bin_dir, "node")
    with lzma.open(os.path.join(pack, "node.xz")) as src, open(node, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.chmod(node, 0o755)
    for name in ("stoker.tar.xz", "redis.tar.xz"):
        with tarfile.open(os.path.join(pack, name), "r:xz") as tar:
            tar.extractall(work, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(work)
    redis_dir = os.path.join(work, "redis")
    wrapper = os.path.join(bin_dir, "redis-server")
    with open(wrapper, "w", encoding="utf-8") as fh:
        fh.write(f'#!/bin/sh\nLD_LIBRARY_PATH="{redis_dir}/lib" exec "{redis_dir}/redis-server" "$@"\n')
    os.chmod(wrapper, 0o755)
    # PATH: bin/ first, then links to the old PATH's programs without Node's and Redis's.
    sys_dir = os.path.join(work, "sysbin")
    os.makedirs(sys_dir)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry) or os.path.abspath(entry) == bin_dir:
            continue
        for name in os.listdir(entry):
            target = os.path.join(entry, name)
            link = os.path.join(sys_dir, name)
            if name in HIDDEN or os.path.lexists(link) or not (os.path.isfile(target) and os.access(target, os.X_OK)):
                continue
            os.symlink(target, link)
    return {"bin": bin_dir, "node": node, "stoker": os.path.join(work, "stoker", "bin", "stoker.js"), "PATH": f"{bin_dir}{os.pathsep}{sys_dir}"}


def run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Optional[str] = None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as err:
        text = lambda v: v.decode(errors="replace") if isinstance(v, bytes) else (v or "")  # noqa: E731
        return 124, text(err.stdout), text(err.stderr) + f"\n(timed out after {timeout:.0f}s)"


def versions(paths: dict[str, str], env: dict[str, str], python: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cmd in (
        ("node", [paths["node"], "--version"]),
        ("redis", ["redis-server", "--version"]),
        ("stokerValidate", [paths["node"], paths["stoker"], "validate", PIPELINE]),
    ):
        code, stdout, stderr = run(cmd, env, 60)
        out[name] = stdout.strip().splitlines()[0] if code == 0 and stdout.strip() else f"failed ({code}): {(stderr or stdout).strip()[-300:]}"
    with open(os.path.join(os.path.dirname(os.path.dirname(paths["stoker"])), "package.json"), encoding="utf-8") as fh:
        out["stoker"] = json.load(fh)["version"]
    out["whichNode"] = shutil.which("node", path=env["PATH"])
    out["whichRedis"] = shutil.which("redis-server", path=env["PATH"])
    probe = "import sys,importlib\nfor n in ('torch','transformers','peft','accelerate'):\n  try: print(n, importlib.import_module(n).__version__)\n  except Exception as e: print(n, 'unavailable', type(e).__name__)\n"
    code, stdout, _ = run([python, "-c", probe], env, 120)
    out["python"] = python
    out["pythonPackages"] = dict(line.split(" ", 1) for line in stdout.strip().splitlines() if " " in line) if code == 0 else None
    return out


# -- 3. the GPU sampler -----------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi --query-gpu=utilization.gpu every 500 ms while the pipeline runs."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.samples: list[tuple[float, int]] = []
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.time(), int(parts[0])))
            except (ValueError, IndexError):
                continue

    def stop(self) -> dict[str, Any]:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.thread:
            self.thread.join(5)
        values = [v for _, v in self.samples]
        write_out("gpu-util.csv", "unix_time,utilization_gpu_percent\n" + "".join(f"{t:.2f},{v}\n" for t, v in self.samples))
        if not values:
            return {"samples": 0, "busyShare": None, "meanUtilization": None}
        return {
            "samples": len(values),
            "busyShare": round(sum(1 for v in values if v > 0) / len(values), 3),
            "meanUtilization": round(sum(values) / len(values) / 100, 3),
            "maxUtilization": max(values) / 100,
        }


# -- 4. the run's figures ---------------------------------------------------------------------


def stage_times(run_json: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage of `stoker run --json`: phase, seconds (startedAt to finishedAt), tasks, attempts."""
    rows = []
    for st in run_json.get("stages") or []:
        start, end = _time(st, ("startedAt",)), _time(st, ("finishedAt",))
        tasks = st.get("tasks") or []
        rows.append({
            "stage": st.get("name"),
            "state": st.get("phase"),
            "seconds": round(end - start, 1) if start is not None and end is not None else None,
            "tasks": len(tasks),
            "attempts": max((t.get("attempt") or 0 for t in tasks), default=None),
        })  # fmt: skip
    return rows


def _time(obj: dict[str, Any], keys: tuple[str, ...]) -> Optional[float]:
    from datetime import datetime

    for key in keys:
        value = obj.get(key)
        if isinstance(value, (int, float)):
            return value / 1000 if value > 1e11 else float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def report_table(markdown: str) -> str:
    """The report's headline table (its first Markdown table) and its Engines line."""
    lines = markdown.splitlines()
    table, engines, seen = [], [], False
    for line in lines:
        if line.startswith("|"):
            table.append(line)
            seen = True
        elif seen and table and not line.startswith("|"):
            break
    engines = [line for line in lines if line.startswith("Engines:")]
    return "\n".join(table + ([""] + engines if engines else []))


def run_pipeline(paths: dict[str, str], env: dict[str, str], device: str, python: Optional[str], timeout: float, sets: list[str], failures: list[str]) -> dict[str, Any]:
    home = os.path.join(os.path.dirname(paths["bin"]), "home")
    os.makedirs(home, exist_ok=True)
    cmd = [paths["node"], paths["stoker"], "run", PIPELINE, "--set", f"spec.params.device={device}", "--json"]
    if python:
        cmd += ["--set", f"spec.params.python={python}"]
    for s in sets:
        cmd += ["--set", s]
    say("$ stoker " + " ".join(cmd[2:]))
    sampler = GpuSampler() if device == "cuda" and shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    began = time.perf_counter()
    code, stdout, stderr = run(cmd, env, timeout, cwd=home)
    seconds = round(time.perf_counter() - began, 1)
    gpu = sampler.stop() if sampler else {"busyShare": "no GPU: n/a"}
    write_out("stoker-run.json", stdout)
    LOG.write(f"--- stoker run stderr (exit {code})\n{stderr[-20000:]}\n")
    say(f"stoker run exited {code} after {seconds}s")
    result: dict[str, Any] = {"exit": code, "seconds": seconds, "gpu": gpu}
    try:
        run_json = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        run_json = {}
    result["runId"] = run_json.get("id")
    result["status"] = run_json.get("phase")
    result["message"] = run_json.get("message")
    result["stages"] = stage_times(run_json)
    if code != 0:
        failures.append(f"stoker run exited {code} ({run_json.get('phase')}: {run_json.get('message')}): {stderr.strip()[-600:]}")
        say(f"stderr tail:\n{stderr[-3000:]}")
    elif run_json.get("phase") != "Succeeded":
        failures.append(f"stoker run: phase {run_json.get('phase')}: {run_json.get('message')}")
    run_dir = run_json.get("runDir") or _newest(os.path.join(home, ".stoker", "runs"))
    result["runDir"] = run_dir
    if run_dir:
        _tar_dir(os.path.join(run_dir, "logs"), "stage-logs.tar.gz")
        report_md = os.path.join(run_dir, "stages", "report", "report.md")
        report_json = os.path.join(run_dir, "stages", "report", "report.json")
        if os.path.isfile(report_md):
            with open(report_md, encoding="utf-8") as fh:
                markdown = fh.read()
            write_out("report.md", markdown)
            result["reportTable"] = report_table(markdown)
        elif code == 0:
            failures.append(f"the run passed but wrote no {report_md}")
        if os.path.isfile(report_json):
            with open(report_json, encoding="utf-8") as fh:
                rep = json.load(fh)
            result["report"] = [
                {"model": m["name"], "engine": (m.get("run") or {}).get("engine"), "device": (m.get("run") or {}).get("device"),
                 "dialogues": m["free"].get("dialogues"), "accAt": m["free"].get("accAt")}
                for m in rep.get("models", [])
            ]  # fmt: skip
    return result


def _newest(runs: str) -> Optional[str]:
    if not os.path.isdir(runs):
        return None
    entries = [os.path.join(runs, e) for e in os.listdir(runs)]
    return max(entries, key=os.path.getmtime) if entries else None


def _tar_dir(directory: str, name: str) -> None:
    path = out_path(name)
    if path and os.path.isdir(directory):
        with tarfile.open(path, "w:gz") as tar:
            tar.add(directory, arcname=os.path.splitext(os.path.splitext(name)[0])[0])


# -- 5. the hf check and the self-play figures ------------------------------------------------


def hf_check(python: str, env: dict[str, str], timeout: float, extra: list[str], failures: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gpu-check-out-") as check_out:
        child_env = {**env, "OUT": check_out, "PYTHONUNBUFFERED": "1"}
        cmd = [python, os.path.join(ROOT, "bench", "gpu_check.py"), *extra]
        say("$ python3 bench/gpu_check.py " + " ".join(extra))
        code, stdout, stderr = run(cmd, child_env, timeout, cwd=ROOT)
        for line in stdout.splitlines():
            if line.startswith("gpu-check:"):
                say(line)
        LOG.write(f"--- gpu_check.py stderr (exit {code})\n{stderr[-20000:]}\n")
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "failures": [f"no JSON line (exit {code})"]}
        result["exit"] = code
        if code != 0:
            failures.append(f"gpu_check.py exited {code}: {result.get('failures')}")
        path = out_path("hf-check.tar.gz")
        if path:
            with tarfile.open(path, "w:gz") as tar:
                tar.add(check_out, arcname="hf-check")
    return result


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="pack", required=True, help="the folder bench/gpu-pack.sh wrote")
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True)
    parser.add_argument("--python", default=None, help="the payloads' Python (default: this one on cuda, the pipeline's on cpu)")
    parser.add_argument("--pipeline-timeout", type=float, default=300.0)
    parser.add_argument("--check-timeout", type=float, default=180.0)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="more --set for stoker run (e.g. spec.params.seeds=64)")
    parser.add_argument("--check-args", default="--only training,figures --steps 30 --resume-steps 5 --seeds 64 --batch-size 32 --single-budget 40")
    args = parser.parse_args()
    # The payloads' Python: --python; on cuda this one; on cpu the pipeline's own default.
    python = args.python or (sys.executable if args.device == "cuda" else None)
    if os.environ.get("OUT"):
        os.makedirs(os.environ["OUT"], exist_ok=True)
    failures: list[str] = []
    summary: dict[str, Any] = {"mode": args.device}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stoker-device-") as work:
        try:
            paths = unpack(os.path.abspath(args.pack), work)
        except Exception as err:  # noqa: BLE001 - reported in the summary
            failures.append(f"unpack: {type(err).__name__}: {err}")
            return finish(summary, failures, began)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "STOKER_REDIS_URL", "STOKER_FROM_SOURCE"))}
        env["PATH"] = paths["PATH"]
        env["STOKER_NODE"] = paths["node"]
        # No registry is reachable there: transformers must not try the hub (the payloads get
        # these two through the worker's allowlist).
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        summary["versions"] = versions(paths, env, python or "/usr/bin/python3")
        say(f"versions: {json.dumps(summary['versions'])}")
        if summary["versions"]["whichNode"] != paths["node"] or summary["versions"]["whichRedis"] != os.path.join(paths["bin"], "redis-server"):
            failures.append(f"PATH does not lead to the packed node and redis-server: {summary['versions']['whichNode']}, {summary['versions']['whichRedis']}")
        for name in ("node", "redis", "stokerValidate"):
            if str(summary["versions"][name]).startswith("failed"):
                failures.append(f"{name} does not run from the pack: {summary['versions'][name]}")
        if not failures:
            summary["pipeline"] = run_pipeline(paths, env, args.device, python, args.pipeline_timeout, args.sets, failures)
            pipe = summary["pipeline"]
            if pipe.get("reportTable"):
                say("report:\n" + pipe["reportTable"])
            rows = pipe.get("stages") or []
            if rows:
                write_out("stages.tsv", "stage\tstate\tseconds\ttasks\tattempts\n" + "".join(f"{r['stage']}\t{r['state']}\t{r['seconds']}\t{r['tasks']}\t{r['attempts']}\n" for r in rows))
                say("per-stage times:\n" + "\n".join(f"  {str(r['stage']):<14} {str(r['state']):<10} {r['seconds'] if r['seconds'] is not None else '?':>7} s" for r in rows))
            gpu = pipe["gpu"]
            say(f"GPU busy share during the run: {gpu['busyShare'] if args.device == 'cpu' else gpu}")
        if args.device == "cuda":
            summary["hfCheck"] = hf_check(python or sys.executable, env, args.check_timeout, args.check_args.split(), failures)
            fig = summary["hfCheck"].get("figures")
            if fig:
                say(f"self-play figures: {json.dumps(fig.get('targets'))}")
        else:
            summary["hfCheck"] = "no GPU: n/a (the hf check and the self-play figures run on a GPU)"
    return finish(summary, failures, began)


def finish(summary: dict[str, Any], failures: list[str], began: float) -> int:
    summary["seconds"] = round(time.perf_counter() - began, 1)
    summary["failures"] = failures
    summary["ok"] = not failures
    line = json.dumps(summary, separators=(",", ":"), default=str)
    write_out("summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    write_out("console.log", LOG.getvalue())
    print(line, flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
