/**
 * A payload in server mode (worker/server-process.ts): the shard's log file. Lines are
 * appended in batches, every one of them ends up in the file, and a shard that printed
 * nothing but its `done` answer leaves no file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PayloadEvent } from '../../common/events.js';
import { silentLogger } from '../../common/logger.js';
import type { PayloadSink } from '../../worker/runner.js';
import { ServerProcess } from '../../worker/server-process.js';

/**
 * A server that answers `done` at once, after printing LINES log lines and one progress
 * event when the shard's input names a number ("3" -> 3 lines).
 */
const SERVER = `
const emit = (e) => process.stdout.write('::stoker:: ' + JSON.stringify(e) + '\\n');
console.log('loading');
emit({ type: 'ready' });
require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
  const req = JSON.parse(l);
  if (req.type !== 'shard') return process.exit(0);
  const n = Number(req.input);
  for (let i = 0; i < n; i++) console.log('line ' + i);
  if (n > 0) emit({ type: 'progress', step: n });
  emit({ type: 'done', id: req.id, items: n });
});
`;

class Collect implements PayloadSink {
  readonly events: PayloadEvent[] = [];
  readonly lines: string[] = [];
  event(e: PayloadEvent): void {
    this.events.push(e);
  }
  log(line: string): void {
    this.lines.push(line);
  }
  warn(): void {}
}

let dir: string;
let server: ServerProcess;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-server-process-'));
  server = new ServerProcess({
    argv: [process.execPath, '-e', SERVER],
    env: { PATH: process.env.PATH ?? '' },
    cwd: dir,
    idleLogFile: join(dir, 'idle.log'),
    secretValues: [],
    log: silentLogger(),
  });
  await server.start();
});
afterEach(async () => {
  await server.stop(2000);
  rmSync(dir, { recursive: true, force: true });
});

const shard = (id: string, lines: number) => ({
  type: 'shard' as const,
  id,
  input: String(lines),
  output: join(dir, `${id}.out`),
  attempt: 1,
  params: {},
});

describe('a shard log of a server payload', () => {
  it('holds every line the shard printed, its events and its answer', async () => {
    const sink = new Collect();
    const logFile = join(dir, 'logs', 's1.attempt-1.log');
    expect(await server.runShard(shard('s1', 3), sink, logFile)).toEqual({
      kind: 'done',
      items: 3,
    });
    expect(readFileSync(logFile, 'utf8').trim().split('\n')).toEqual([
      'line 0',
      'line 1',
      'line 2',
      '::stoker:: {"type":"progress","step":3}',
      '::stoker:: {"type":"done","id":"s1","items":3}',
    ]);
    expect(sink.lines).toEqual(['line 0', 'line 1', 'line 2']);
    expect(sink.events).toEqual([{ type: 'progress', step: 3 }]);
  });

  it('is not created for a shard that printed nothing but its answer', async () => {
    const logFile = join(dir, 'logs', 's2.attempt-1.log');
    expect(await server.runShard(shard('s2', 0), new Collect(), logFile)).toEqual({
      kind: 'done',
      items: 0,
    });
    expect(existsSync(logFile)).toBe(false);
    // Output outside a shard still goes to the idle log at once.
    expect(readFileSync(join(dir, 'idle.log'), 'utf8')).toContain('loading');
  });
});
