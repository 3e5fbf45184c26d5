/**
 * Secrets on a descriptor (common/secrets-fd.ts): the format's parser and encoder, the
 * worker's side (worker/secrets-fd.ts: read, close, merge, warn), the local backend's
 * split of a worker's environment (orchestrator/backends/local.ts), and the container
 * launcher worker/bin/stoker-env-fd run by real shells (dash as /bin/sh) with odd values.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { payloadBinDir } from '../../common/paths.js';
import {
  encodeSecrets,
  MAX_SECRETS_BYTES,
  parseSecrets,
  SecretsFormatError,
} from '../../common/secrets-fd.js';
import { splitWorkerEnv } from '../../orchestrator/backends/worker-process.js';
import { readFdToEnd, SecretsFdError, workerEnvironment } from '../../worker/secrets-fd.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const LAUNCHER = join(payloadBinDir(), 'stoker-env-fd');

/** Values a shell, a here-document or a line format could get wrong. */
const ODD: Record<string, string> = {
  NEWLINES: 'line one\nline two\n\n',
  QUOTES: `it's "quoted" and \`ticked\``,
  DOLLARS: '$HOME ${PATH} $(id) $$ $1 %s %n',
  BACKSLASHES: 'a\\nb \\\\ c\\ \\0',
  UNICODE: 'é ☃ 日本語 🚀 \u200b',
  SPACES: '  leading and trailing  ',
  DASHES: '-n -e --',
  EMPTY: '',
  HEREDOC_END: 'END\n_STOKER_ENVFD_EOF\nEND',
  URL: 'redis://:p@ss:w0rd/#?@127.0.0.1:6379/0',
};

describe('parseSecrets and encodeSecrets', () => {
  it('round-trips values with newlines, quotes, $, backslashes, unicode and empty ones', () => {
    const text = encodeSecrets(ODD);
    expect(text.endsWith('END\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(Object.keys(ODD).length + 2);
    expect(parseSecrets(text)).toEqual(ODD);
    expect(parseSecrets(Buffer.from(text))).toEqual(ODD);
  });

  it('takes a value of several megabytes', () => {
    const big = 'x'.repeat(3 * 1024 * 1024) + '\n☃';
    expect(parseSecrets(encodeSecrets({ BIG: big })).BIG).toBe(big);
  });

  it('decodes any byte but NUL as an environment would (UTF-8, invalid bytes replaced)', () => {
    const bytes = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));
    const parsed = parseSecrets(`BIN ${b64(bytes)}\nEND\n`);
    expect(parsed.BIN).toBe(bytes.toString('utf8'));
    // Valid UTF-8 comes back byte for byte.
    const utf8 = Buffer.from('☃\x01\x7f\t\r\n"\'');
    expect(Buffer.from(parseSecrets(`U ${b64(utf8)}\nEND`).U ?? '')).toEqual(utf8);
  });

  it('takes an empty set (just END), with or without its final newline', () => {
    expect(parseSecrets('END\n')).toEqual({});
    expect(parseSecrets('END')).toEqual({});
  });

  it('is not fooled by a name like __proto__', () => {
    const parsed = parseSecrets(`__proto__ ${b64('x')}\nEND\n`);
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(Object.hasOwn(parsed, '__proto__')).toBe(true);
  });

  it.each<[string, string | Buffer, RegExp]>([
    ['nothing at all', '', /empty/],
    [
      'a writer that stopped before END',
      `A ${b64('a')}\nB ${b64('b')}\n`,
      /no END line after 2 lines/,
    ],
    [
      'a value cut in the middle',
      `A ${b64('abcdef').slice(0, 5)}`,
      /line 1: the value of A is not base64/,
    ],
    ['bytes after END', `END\nA ${b64('a')}\n`, /line 1: END is not the last line/],
    ['a line without a space', 'JUSTANAME\nEND\n', /line 1: not "NAME BASE64"/],
    ['a name with a dash', `A-B ${b64('x')}\nEND\n`, /line 1: the name is not a variable name/],
    ['a name starting with a digit', `1A ${b64('x')}\nEND\n`, /the name is not a variable name/],
    ['a value that is not base64', 'A hello world\nEND\n', /line 1: the value of A is not base64/],
    ['base64 with bad padding', 'A YQ=\nEND\n', /the value of A is not base64/],
    [
      'base64 split over lines',
      `A ${b64('x'.repeat(80)).slice(0, 76)}\n${b64('x'.repeat(80)).slice(76)}\nEND\n`,
      /line 2: not "NAME BASE64"/,
    ],
    ['a name given twice', `A ${b64('1')}\nA ${b64('2')}\nEND\n`, /line 2: A is given twice/],
    ['CRLF line ends', `A ${b64('1')}\r\nEND\r\n`, /line 1: a carriage return/],
    [
      'a NUL in a value',
      `A ${b64(Buffer.from([0x61, 0, 0x62]))}\nEND\n`,
      /the value of A holds a NUL byte/,
    ],
    [
      'bytes that are not text',
      Buffer.from([0xff, 0xfe, 0x20, 0x41, 0x0a]),
      /line 1: the name is not a variable name/,
    ],
    ['too much', `A ${'Q'.repeat(MAX_SECRETS_BYTES)}\nEND\n`, /more than 16777216 bytes/],
  ])('refuses %s, saying what is wrong', (_name, input, message) => {
    let err: unknown;
    try {
      parseSecrets(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecretsFormatError);
    expect((err as Error).message).toMatch(message);
  });

  it('never puts a value in its messages', () => {
    const secret = 'hunter2hunter2';
    for (const bad of [
      `A ${secret}!\nEND`,
      `A ${secret}\nEND`,
      `A ${b64(secret)}`,
      `A-${secret} x`,
    ])
      expect(() => parseSecrets(bad)).toThrow(
        expect.objectContaining({ message: expect.not.stringContaining(secret) }),
      );
  });

  it('refuses to encode a name that is not a variable name, or a NUL', () => {
    expect(() => encodeSecrets({ 'A B': 'x' })).toThrow(/not a variable name/);
    expect(() => encodeSecrets({ A: 'a\0b' })).toThrow(/NUL/);
  });
});

describe('workerEnvironment (the worker, at its start)', () => {
  const fromFd = (text: string) => () => Buffer.from(text);

  it('merges the descriptor over the environment, without STOKER_SECRETS_FD', () => {
    const read: number[] = [];
    const {
      env,
      fromFd: names,
      exposed,
    } = workerEnvironment({ PATH: '/bin', STOKER_SECRETS_FD: '3', HF_TOKEN: 'old' }, (fd) => {
      read.push(fd);
      return Buffer.from(encodeSecrets({ STOKER_REDIS_URL: 'redis://:pw@h:1', HF_TOKEN: 'new' }));
    });
    expect(read).toEqual([3]);
    expect(env).toEqual({ PATH: '/bin', STOKER_REDIS_URL: 'redis://:pw@h:1', HF_TOKEN: 'new' });
    expect(names).toEqual(['STOKER_REDIS_URL', 'HF_TOKEN']);
    // HF_TOKEN was in the real environment too: readable there, so it is reported.
    expect(exposed).toEqual(['HF_TOKEN']);
  });

  it('without STOKER_SECRETS_FD reads nothing and reports what looks secret', () => {
    const { env, exposed } = workerEnvironment(
      {
        STOKER_REDIS_URL: 'redis://:pw@h:1',
        // An address only: nothing secret in it.
        REDIS_URL: 'redis://h:1',
        CACHE: 'redis://:pw@cache:6379',
        DB_PASSWORD: 'x',
        PATH: '/bin',
        STOKER_SECRET_ENV: 'A B',
      },
      () => {
        throw new Error('must not read');
      },
    );
    expect(env.PATH).toBe('/bin');
    expect(exposed).toEqual(['CACHE', 'DB_PASSWORD', 'STOKER_REDIS_URL']);
    expect(workerEnvironment({ PATH: '/bin' }).exposed).toEqual([]);
  });

  it.each<[string, Record<string, string>, () => Buffer, RegExp]>([
    [
      'not a number',
      { STOKER_SECRETS_FD: 'three' },
      fromFd('END'),
      /STOKER_SECRETS_FD=three: not a file descriptor number/,
    ],
    [
      'a negative number',
      { STOKER_SECRETS_FD: '-1' },
      fromFd('END'),
      /not a file descriptor number/,
    ],
    [
      'malformed content',
      { STOKER_SECRETS_FD: '3' },
      fromFd('A !!\nEND\n'),
      /STOKER_SECRETS_FD=3: line 1: the value of A is not base64/,
    ],
    [
      'a descriptor that is not open',
      { STOKER_SECRETS_FD: '3' },
      () => {
        throw Object.assign(new Error('EBADF: bad file descriptor'), { code: 'EBADF' });
      },
      /STOKER_SECRETS_FD=3: cannot read it: the descriptor is not open/,
    ],
  ])('is a SecretsFdError for %s', (_name, env, read, message) => {
    expect(() => workerEnvironment(env, read)).toThrow(SecretsFdError);
    expect(() => workerEnvironment(env, read)).toThrow(message);
  });
});

describe('readFdToEnd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stoker-secrets-fd-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file descriptor to its end and closes it', () => {
    const file = join(dir, 'secrets');
    const text = encodeSecrets({ BIG: 'y'.repeat(200_000), SMALL: 'z' });
    writeFileSync(file, text);
    const fd = openSync(file, 'r');
    expect(readFdToEnd(fd).toString()).toBe(text);
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
  });

  it('says EBADF for a descriptor that is not open', () => {
    const fd = openSync(join(dir, 'secrets'), 'r');
    closeSync(fd);
    expect(() => readFdToEnd(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('splitWorkerEnv (the local backend)', () => {
  it('shows the worker only the payload allowlist and plain settings; the rest goes on the descriptor', () => {
    const { seen, secret } = splitWorkerEnv({
      PATH: '/bin',
      HOME: '/home/u',
      LC_ALL: 'C.UTF-8',
      CUDA_VISIBLE_DEVICES: '0',
      NODE_OPTIONS: '--max-old-space-size=4096',
      STOKER_PREFIX: 'stoker:',
      STOKER_HOME: '/var/lib/stoker',
      STOKER_LOG_LEVEL: 'debug',
      STOKER_LOCK_DURATION_MS: '4000',
      STOKER_REDIS_URL: 'redis://:pw@h:1',
      REDIS_URL: 'redis://h:1',
      HF_TOKEN: 'hf',
      AWS_SECRET_ACCESS_KEY: 'aws',
      MY_SETTING: 'plain but not allowlisted',
      // Allowlisted names with secret-looking values or names stay off the environ too.
      NCCL_TOKEN: 'nccl',
      TORCH_CACHE_URL: 'https://u:pw@cache',
      'BASH_FUNC_f%%': '() { :; }',
      STOKER_SECRETS_FD: '9',
      UNSET: undefined,
    });
    expect(seen).toEqual({
      PATH: '/bin',
      HOME: '/home/u',
      LC_ALL: 'C.UTF-8',
      CUDA_VISIBLE_DEVICES: '0',
      NODE_OPTIONS: '--max-old-space-size=4096',
      STOKER_PREFIX: 'stoker:',
      STOKER_HOME: '/var/lib/stoker',
      STOKER_LOG_LEVEL: 'debug',
      STOKER_LOCK_DURATION_MS: '4000',
    });
    expect(secret).toEqual({
      STOKER_REDIS_URL: 'redis://:pw@h:1',
      REDIS_URL: 'redis://h:1',
      HF_TOKEN: 'hf',
      AWS_SECRET_ACCESS_KEY: 'aws',
      MY_SETTING: 'plain but not allowlisted',
      NCCL_TOKEN: 'nccl',
      TORCH_CACHE_URL: 'https://u:pw@cache',
    });
    // What goes on the descriptor can always be encoded.
    expect(parseSecrets(encodeSecrets(secret))).toEqual(secret);
  });
});

// ---------------------------------------------------------------------------------------
// The launcher, under real shells

/** /bin/sh (dash here), and bash and busybox where present, each once. */
const SHELLS = [
  ...new Set(
    ['/bin/sh', '/bin/bash', '/bin/busybox'].filter(existsSync).map((s) => realpathSync(s)),
  ),
];

/** What the exec'd command saw: its descriptor 3 and its /proc/self/environ and cmdline. */
interface Seen {
  fd3: string;
  environ: string[];
  cmdline: string[];
  pid: number;
}

const PROBE = `
const fs = require('node:fs');
const fd3 = fs.readFileSync(3);
fs.closeSync(3);
const environ = fs.readFileSync('/proc/self/environ').toString().split('\\0').filter(Boolean);
const cmdline = fs.readFileSync('/proc/self/cmdline').toString().split('\\0').filter(Boolean);
process.stdout.write(JSON.stringify({ fd3: fd3.toString('base64'), environ, cmdline, pid: process.pid }));
`;

async function launch(
  shell: string,
  env: Record<string, string>,
  cmd: string[] = [process.execPath, '-e', PROBE],
  cwd?: string,
): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  const argv = shell.endsWith('busybox') ? ['sh', LAUNCHER, ...cmd] : [LAUNCHER, ...cmd];
  const child = spawn(shell, argv, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  return { code, stdout, stderr, pid: child.pid as number };
}

describe.each(SHELLS)('stoker-env-fd under %s', (shell) => {
  const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', KEEP_ME: 'plain' };

  it('moves the named variables to descriptor 3, out of the environ of the process it execs', async () => {
    const big = 'ß'.repeat(50_000); // over the 4 KiB a here-document holds without a writer
    const r = await launch(shell, {
      ...base,
      ...ODD,
      BIG: big,
      STOKER_SECRET_ENV: ` ${Object.keys(ODD).join('  ')}\tBIG NOT_SET `,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const seen = JSON.parse(r.stdout) as Seen;
    // exec: the same process, now node.
    expect(seen.pid).toBe(r.pid);
    expect(seen.cmdline[0]).toBe(process.execPath);
    expect(parseSecrets(Buffer.from(seen.fd3, 'base64'))).toEqual({ ...ODD, BIG: big });
    const names = seen.environ.map((e) => e.slice(0, e.indexOf('=')));
    for (const name of [...Object.keys(ODD), 'BIG', 'STOKER_SECRET_ENV'])
      expect(names).not.toContain(name);
    expect(names.filter((n) => n.startsWith('_stoker_envfd_'))).toEqual([]);
    expect(seen.environ).toContain('STOKER_SECRETS_FD=3');
    expect(seen.environ).toContain('KEEP_ME=plain');
    const raw = seen.environ.join('\0');
    for (const value of [ODD.DOLLARS, ODD.QUOTES, ODD.UNICODE, ODD.URL, big])
      expect(raw).not.toContain(value);
  });

  it('hands over an empty set when STOKER_SECRET_ENV is empty or unset', async () => {
    for (const env of [base, { ...base, STOKER_SECRET_ENV: '' }]) {
      const r = await launch(shell, env);
      expect(r.code).toBe(0);
      const seen = JSON.parse(r.stdout) as Seen;
      expect(parseSecrets(Buffer.from(seen.fd3, 'base64'))).toEqual({});
    }
  });

  it('does not carry a variable named like its own into the command', async () => {
    const r = await launch(shell, {
      ...base,
      _stoker_envfd_data: 'leak',
      A: 'secret-a',
      STOKER_SECRET_ENV: 'A',
    });
    expect(r.code).toBe(0);
    const seen = JSON.parse(r.stdout) as Seen;
    expect(seen.environ.join('\n')).not.toMatch(/leak|secret-a/);
    expect(parseSecrets(Buffer.from(seen.fd3, 'base64'))).toEqual({ A: 'secret-a' });
  });

  it.each([
    ['A-B'],
    ['1ABC'],
    ['A.B'],
    ['$(touch${IFS}pwned)'],
    ['A;B'],
    ['*'],
    ['é'],
    ['_stoker_envfd_data'],
  ])('refuses %s in STOKER_SECRET_ENV with a clear message, running nothing', async (bad) => {
    const dir = mkdtempSync(join(tmpdir(), 'stoker-envfd-bad-'));
    try {
      const marker = join(dir, 'ran');
      const r = await launch(
        shell,
        { ...base, OK: 'x', STOKER_SECRET_ENV: `OK ${bad}` },
        [process.execPath, '-e', `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`],
        dir,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`stoker-env-fd: STOKER_SECRET_ENV: "${bad}" is`);
      expect(existsSync(marker)).toBe(false);
      expect(existsSync(join(dir, 'pwned'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how to use it when given no command', async () => {
    const r = await launch(shell, base, []);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^usage: stoker-env-fd CMD/);
  });
});
