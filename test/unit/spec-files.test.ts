/**
 * spec.files (common/spec/files.ts): each listed file is checked when the spec is loaded,
 * every problem reported with its path in the spec, and what passes is read into the
 * normalised spec (text as it is, other bytes in base64).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SpecError } from '../../common/errors.js';
import { SPEC_FILES_MAX_BYTES } from '../../common/spec/files.js';
import { loadSpecFile, parseSpec } from '../../common/spec/load.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-spec-files-'));
  mkdirSync(join(dir, 'recipe', 'conf'), { recursive: true });
  writeFileSync(join(dir, 'recipe', 'conf', 'a.yaml'), 'lr: 1\n');
  writeFileSync(join(dir, 'recipe', 'bin.dat'), Buffer.from([0xff, 0x00, 0xfe]));
  writeFileSync(join(dir, 'outside.yaml'), 'x: 1\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function specFile(files: unknown[]): string {
  const file = join(dir, 'recipe', 'spec.yaml');
  writeFileSync(
    file,
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'files' },
      spec: { files, payload: { command: ['true'] } },
    }),
  );
  return file;
}

async function problems(files: unknown[]): Promise<Array<{ path: string; message: string }>> {
  try {
    await loadSpecFile(specFile(files));
  } catch (err) {
    if (err instanceof SpecError)
      return err.issues.map((i) => ({ path: i.path, message: i.message }));
    throw err;
  }
  return [];
}

describe('spec.files', () => {
  it('reads the listed files relative to the spec file: text as it is, other bytes in base64', async () => {
    const spec = await loadSpecFile(specFile(['conf/a.yaml', 'bin.dat']));
    expect(spec.files).toEqual([
      { path: 'conf/a.yaml', encoding: 'utf8', data: 'lr: 1\n' },
      {
        path: 'bin.dat',
        encoding: 'base64',
        data: Buffer.from([0xff, 0, 0xfe]).toString('base64'),
      },
    ]);
  });

  it.each([
    [
      'a missing file',
      ['conf/b.yaml'],
      'spec.files[0]',
      "no such file in the spec file's directory",
    ],
    ['a path out of the folder', ['../outside.yaml'], 'spec.files[0]', 'no ".."'],
    [
      'an absolute path',
      [join(dir ?? '/x', 'outside.yaml')],
      'spec.files[0]',
      'not an absolute path',
    ],
    ['a folder', ['conf'], 'spec.files[0]', 'not a regular file'],
    ['a path written twice', ['bin.dat', 'bin.dat'], 'spec.files[1]', 'listed twice'],
    ['an unnormalised path', ['./conf/a.yaml'], 'spec.files[0]', 'a normalised path'],
  ])('refuses %s', async (_what, files, path, message) => {
    const found = await problems(files);
    expect(found).toContainEqual({ path, message: expect.stringContaining(message) as string });
  });

  it("refuses a symbolic link that leads outside the spec file's directory, and reports every problem at once", async () => {
    symlinkSync(join(dir, 'outside.yaml'), join(dir, 'recipe', 'link.yaml'));
    const found = await problems(['link.yaml', 'nope.yaml']);
    expect(found.map((p) => p.path)).toEqual(['spec.files[0]', 'spec.files[1]']);
    expect(found[0]?.message).toContain('leads outside');
  });

  it('refuses more than a ConfigMap holds, saying so', async () => {
    writeFileSync(join(dir, 'recipe', 'big.bin'), Buffer.alloc(SPEC_FILES_MAX_BYTES));
    const found = await problems(['conf/a.yaml', 'big.bin']);
    expect(found).toEqual([
      {
        path: 'spec.files',
        message: expect.stringMatching(
          /more than the 1 MiB one Kubernetes ConfigMap holds/,
        ) as string,
      },
    ]);
  });

  it('a spec given as text (no file) cannot list files', () => {
    const text = stringify({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'files' },
      spec: { files: ['a.yaml'], payload: { command: ['true'] } },
    });
    expect(() => parseSpec(text)).toThrow(/files are read from the spec file's directory/);
  });
});
