/**
 * fire-selfplay's resident phase: K shards through one resident server (spawn -> last
 * `done`, load included) against K fresh processes in sequence, each spawn -> ready ->
 * one shard -> done -> shutdown -> exit (first spawn -> last exit); per-shard and load
 * seconds for both. The texts of the outputs come back so that the caller can check the
 * two wrote the same records per shard.
 */
import { join } from 'node:path';
import { type BenchContext, type Cleanup, median, procCpuSeconds, round } from '../lib/harness.js';
import { ServerProcess } from '../lib/python-server.js';
import { checkOutput } from './checks.js';
import {
  BATCH,
  READY_TIMEOUT_MS,
  SHARD_SEEDS,
  SHARD_TIMEOUT_MS,
  type Setup,
  load1,
  selfplayArgv,
  shardsOf,
} from './setup.js';

export async function resident(ctx: BenchContext, cleanup: Cleanup, s: Setup, k: number) {
  const shards = shardsOf(s, k);
  const loadBefore = load1();
  const srv = new ServerProcess('resident stoker_fire.selfplay', selfplayArgv(s, BATCH), {
    cwd: s.dir,
    env: s.env,
    cleanup,
  });
  const ready = await srv.ready(READY_TIMEOUT_MS);
  const per: number[] = [];
  const texts: string[] = [];
  let kept = 0;
  let lastDone = ready.at;
  for (let i = 0; i < k; i++) {
    const sh = shards[i] as (typeof shards)[number];
    const output = join(s.dir, 'out', `resident-${i}.jsonl`);
    const res = await srv.shard({ id: `resident-${i}`, input: sh.input, output }, SHARD_TIMEOUT_MS);
    texts.push(checkOutput(output, sh.ids, res.items, res.metrics.kept));
    per.push(res.ms);
    kept += res.items;
    lastDone = res.doneAt;
  }
  const cpu = procCpuSeconds(srv.child.pid ?? -1);
  const bye = await srv.shutdown(30_000);
  const spawnToReady = ready.at - srv.spawnedAt;
  const wallMs = lastDone - srv.spawnedAt;
  return {
    texts,
    result: {
      wallSeconds: round(wallMs / 1000, 2),
      dialoguesPerSec: round((k * SHARD_SEEDS * 1000) / wallMs, 2),
      spawnToReadySeconds: round(spawnToReady / 1000, 2),
      loadSeconds: ready.loadSeconds === null ? null : round(ready.loadSeconds, 2),
      processStartSeconds:
        ready.loadSeconds === null ? null : round(spawnToReady / 1000 - ready.loadSeconds, 2),
      shardSeconds: per.map((v) => round(v / 1000, 3)),
      shardSecondsMedian: round(median(per) / 1000, 3),
      steadyShardSecondsMedian: per.length > 1 ? round(median(per.slice(1)) / 1000, 3) : null,
      cpuSeconds: cpu === null ? null : round(cpu, 2),
      shutdownToExitSeconds: round((bye.exitedAt - bye.sentAt) / 1000, 2),
      kept,
      processes: 1,
      loadavg1m: { before: loadBefore, after: load1() },
    },
  };
}

export async function freshPerShard(ctx: BenchContext, cleanup: Cleanup, s: Setup, k: number) {
  const shards = shardsOf(s, k);
  const loadBefore = load1();
  const per: Array<{
    spawnToReady: number;
    load: number | null;
    shard: number;
    doneToExit: number;
    total: number;
    cpu: number | null;
  }> = [];
  const texts: string[] = [];
  let kept = 0;
  let first = 0;
  let lastExit = 0;
  for (let i = 0; i < k; i++) {
    const sh = shards[i] as (typeof shards)[number];
    const srv = new ServerProcess(`fresh stoker_fire.selfplay ${i}`, selfplayArgv(s, BATCH), {
      cwd: s.dir,
      env: s.env,
      cleanup,
    });
    if (i === 0) first = srv.spawnedAt;
    const ready = await srv.ready(READY_TIMEOUT_MS);
    const output = join(s.dir, 'out', `fresh-${i}.jsonl`);
    const res = await srv.shard({ id: `fresh-${i}`, input: sh.input, output }, SHARD_TIMEOUT_MS);
    const cpu = procCpuSeconds(srv.child.pid ?? -1);
    const bye = await srv.shutdown(30_000);
    texts.push(checkOutput(output, sh.ids, res.items, res.metrics.kept));
    kept += res.items;
    lastExit = bye.exitedAt;
    per.push({
      spawnToReady: ready.at - srv.spawnedAt,
      load: ready.loadSeconds,
      shard: res.ms,
      doneToExit: bye.exitedAt - res.doneAt,
      total: bye.exitedAt - srv.spawnedAt,
      cpu,
    });
  }
  const wallMs = lastExit - first;
  const loads = per.map((p) => p.load).filter((v): v is number => v !== null);
  const cpus = per.map((p) => p.cpu).filter((v): v is number => v !== null);
  const spawnToReady = median(per.map((p) => p.spawnToReady)) / 1000;
  return {
    texts,
    result: {
      wallSeconds: round(wallMs / 1000, 2),
      dialoguesPerSec: round((k * SHARD_SEEDS * 1000) / wallMs, 2),
      processSecondsMedian: round(median(per.map((p) => p.total)) / 1000, 2),
      spawnToReadySecondsMedian: round(spawnToReady, 2),
      loadSecondsMedian: loads.length ? round(median(loads), 2) : null,
      processStartSecondsMedian: loads.length ? round(spawnToReady - median(loads), 2) : null,
      shardSeconds: per.map((p) => round(p.shard / 1000, 3)),
      shardSecondsMedian: round(median(per.map((p) => p.shard)) / 1000, 3),
      doneToExitSecondsMedian: round(median(per.map((p) => p.doneToExit)) / 1000, 2),
      cpuSeconds:
        cpus.length === k
          ? round(
              cpus.reduce((a, b) => a + b, 0),
              2,
            )
          : null,
      kept,
      processes: k,
      loadavg1m: { before: loadBefore, after: load1() },
    },
  };
}
