/**
 * What stoker prints cannot drive the user's terminal: control characters in a spec or
 * in a payload's output are shown as escapes (common/terminal.ts), in `validate` and in
 * error messages (here through the real CLI), and in human output.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { printable } from '../../common/terminal.js';
import { stoker } from '../util/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'stoker-terminal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('terminal output', () => {
  it('shows control characters as escapes, keeping newlines and tabs', () => {
    expect(printable('a\x1b[31mred\x07\r\n\tb\x9b\x7f')).toBe(
      'a\\x1b[31mred\\x07\\x0d\n\tb\\x9b\\x7f',
    );
    expect(printable('plain é ✓')).toBe('plain é ✓');
  });

  it('validate: a spec with an escape sequence in a value prints it harmlessly', async () => {
    const file = join(dir, 'evil.yaml');
    writeFileSync(
      file,
      [
        'apiVersion: stoker/v1',
        'kind: Pipeline',
        'metadata: {name: evil}',
        'spec:',
        '  stages:',
        '    - name: a',
        '      kind: train',
        '      payload: {command: [a]}',
        '      dependsOn: ["\\e]0;pwned\\a\\e[2J"]',
        '',
      ].join('\n'),
    );
    const r = await stoker(['validate', file], { home: join(dir, 'home') });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('spec.stages[0].dependsOn[0]');
    expect(r.all).not.toContain('\x07');
    expect(r.all).not.toContain('\x1b');
    expect(r.stderr).toContain('\\x1b]0;pwned\\x07');
  });
});
