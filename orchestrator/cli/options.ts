/**
 * What the command modules share: output, the global options, and the options several
 * commands take. Light on purpose: every command module imports it, and `stoker --help`
 * loads every command module (heavy modules are imported inside the actions).
 */
import { Option, type Command } from 'commander';
import { printable } from '../../common/terminal.js';

export interface GlobalOptions {
  home?: string;
  prefix?: string;
  logLevel?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/** Human output: control characters shown as escapes (common/terminal.ts). */
export function print(text: string): void {
  const safe = printable(text);
  process.stdout.write(safe.endsWith('\n') ? safe : `${safe}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `--set path=value`, repeatable. */
export function setOption(cmd: Command, example = false): Command {
  return cmd.option(
    '--set <path=value>',
    example
      ? 'override a value, e.g. spec.params.steps=100 (repeatable)'
      : 'override a value (repeatable)',
    collect,
  );
}

export const intOption = (flags: string, description: string): Option =>
  new Option(flags, description).argParser((v) => Number.parseInt(v, 10));

/** `--backend local|kubernetes` and `--simulate`, for the commands that run a stoker. */
export function backendOptions(cmd: Command, opts: { default?: string; env?: boolean }): Command {
  const backend = new Option(
    '--backend <name>',
    opts.env ? 'where tasks run (env STOKER_BACKEND)' : 'where tasks run',
  ).choices(['local', 'kubernetes']);
  if (opts.default) backend.default(opts.default);
  return cmd
    .addOption(backend)
    .option(
      '--simulate',
      'with --backend kubernetes: a fake API server and simulated kubelet in this process (a testing aid; needs a checkout of stoker)',
    );
}
