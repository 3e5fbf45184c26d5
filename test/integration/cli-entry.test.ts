/**
 * How the `stoker` command starts (bin/stoker.js): which modules a command loads, the
 * worker image's tree (no orchestrator/), and `npx stoker` resolving to this checkout.
 * Start-up times are the bench's (cli-startup); here, what makes them: a command must
 * not load the heavy libraries it does not use.
 */
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STOKER_BIN } from '../util/cli.js';

const ROOT = join(import.meta.dirname, '..', '..');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-entry-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The packages a command resolved: a module-resolution hook (module.register) appends
 * every resolved URL to a file. The sources run through tsx (STOKER_FROM_SOURCE=1), so
 * that each npm package is seen by name rather than as a chunk of a bundle.
 */
async function packagesLoadedBy(args: string[], name: string): Promise<Set<string>> {
  const log = join(dir, `${name}.log`);
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';\nexport async function resolve(specifier, context, next) {\n  const r = await next(specifier, context);\n  appendFileSync(${JSON.stringify(log)}, r.url + '\\n');\n  return r;\n}\n`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );
  writeFileSync(log, '');
  await execa(process.execPath, ['--import', pathToFileURL(register).href, STOKER_BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, STOKER_FROM_SOURCE: '1', REDIS_URL: '', STOKER_HOME: join(dir, 'home') },
    reject: false,
    timeout: 120_000,
  });
  const packages = new Set<string>();
  for (const url of readFileSync(log, 'utf8').split('\n')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m?.[1]) packages.add(m[1]);
  }
  return packages;
}

describe('what a command loads', () => {
  it('stoker --help loads commander and none of the libraries the commands use', async () => {
    const loaded = await packagesLoadedBy(['--help'], 'help');
    expect(loaded).toContain('commander');
    for (const heavy of ['bullmq', 'ioredis', '@kubernetes/client-node', 'zod', 'yaml', 'pino'])
      expect(loaded, heavy).not.toContain(heavy);
  });

  it('stoker validate loads the spec loader, not Redis, BullMQ or the Kubernetes client', async () => {
    const loaded = await packagesLoadedBy(
      ['validate', 'training-configs/smoke-cpu.yaml'],
      'validate',
    );
    expect(loaded).toContain('zod');
    expect(loaded).toContain('yaml');
    for (const heavy of ['bullmq', 'ioredis', '@kubernetes/client-node'])
      expect(loaded, heavy).not.toContain(heavy);
  });

  it('stoker status loads Redis, not BullMQ or the Kubernetes client', async () => {
    // No stoker runs for this home: status says so, after loading what it uses.
    const loaded = await packagesLoadedBy(['status'], 'status');
    expect(loaded).toContain('ioredis');
    for (const heavy of ['bullmq', '@kubernetes/client-node'])
      expect(loaded, heavy).not.toContain(heavy);
  });
});

describe('the worker image tree (common/, fire/, worker/; no orchestrator/)', () => {
  it('runs the FIRE tools and stoker worker, and --help says what it has', async () => {
    const image = join(dir, 'image');
    for (const d of ['bin', 'common', 'fire', 'worker', 'package.json', 'tsconfig.json'])
      cpSync(join(ROOT, d), join(image, d), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(image, 'node_modules'));
    expect(existsSync(join(image, 'orchestrator'))).toBe(false);
    const run = (args: string[]) =>
      execa(process.execPath, [join(image, 'bin', 'stoker.js'), ...args], {
        cwd: image,
        reject: false,
        timeout: 120_000,
        env: { ...process.env, REDIS_URL: '' },
      });

    const help = await run(['--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/FIRE file tools/);
    expect(help.stdout).toMatch(/\bdata\b[\s\S]*\bmetrics\b[\s\S]*\breport\b/);

    const dialogues = join(dir, 'one.jsonl');
    writeFileSync(
      dialogues,
      `${JSON.stringify({ id: 'd1', image: 'x.jpg', question: 'q?', answer: 'a', conversations: [] })}\n`,
    );
    const validate = await run(['data', 'validate', dialogues, '--json']);
    expect(validate.stdout, validate.stderr).toContain('"records": 1');

    const worker = await run(['worker', '--help']);
    expect(worker.stdout + worker.stderr).toMatch(/usage: stoker worker/);

    const other = await run(['status']);
    expect(other.exitCode).not.toBe(0);
    expect(other.stderr).toMatch(/unknown command 'status'/);
  });
});

describe('npx stoker', () => {
  it('runs this checkout through node_modules/.bin, with nothing installed in the npx cache', async () => {
    const cache = join(dir, 'npm-cache');
    const r = await execa('npx', ['--offline', 'stoker', '--help'], {
      cwd: ROOT,
      reject: false,
      timeout: 120_000,
      env: { ...process.env, npm_config_cache: cache },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Usage: stoker/);
    expect(existsSync(join(cache, '_npx'))).toBe(false);
  });
});
