/**
 * Lineage: what each stage of a run consumed and produced, by content.
 *
 * When the controller starts a stage it describes every upstream output the stage's
 * payload references (`${stages.X.outputs.Y}` in its command, env, working directory or
 * input): path, content hash, size, and for datasets the record count. When a stage
 * succeeds, it describes the stage's own outputs the same way. So a report can say "the
 * final model was trained on generated.jsonl, 1,874 records, sha256 9f2c..., which is
 * exactly what the merge stage produced", and a re-run can tell whether its inputs
 * changed.
 *
 *   file        sha256 of the bytes; records = non-blank lines of a .jsonl file, the
 *               length of a .json file holding an array (files up to 64 MiB)
 *   directory   sha256 over the sorted lines "relative/path\tsize\tsha256\n" of every
 *               regular file below it (symlinks followed); records = the sum over its
 *               .jsonl files, when it has any
 *   missing     the path does not exist (yet) where the controller runs; on Kubernetes
 *               the controller sees the files only when it mounts the same volume
 *   url         s3://, gs://, http(s):// and the like: recorded, not read
 *
 *   unread      not read, and the problem says why: outside the run's folders, a
 *               system path, not a regular file (a FIFO, a device), or not hashed
 *               within the time budget
 *
 * Hashes are cached by (path, size, mtime), so a checkpoint produced by one stage and
 * consumed by two others is read once. Reading is streamed: memory does not grow with
 * the size of a file.
 *
 * Paths come from specs and payloads (artifacts), so they are untrusted: only regular
 * files and directories inside the run's folders are read, through descriptors opened
 * non-blocking (orchestrator/untrusted-path.ts), and one stage's description stops at
 * BUDGET_MS (what is left is recorded unread): a FIFO, /dev/zero or a huge tree cannot
 * hold up the controller's loop.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import { type LineageEntry } from '../common/model.js';
import { findReferences, URL_LIKE } from '../common/spec/interpolate.js';
import type { NormalizedStage } from '../common/spec/schema.js';
import type { FileHandle } from 'node:fs/promises';
import { checkedRealPath, openUntrusted, UntrustedPathError } from './untrusted-path.js';

/** How long one stage's description may take (its outputs, or its inputs). */
export const BUDGET_MS = 60_000;

/** Where paths may be read and until when. */
interface Scope {
  roots: readonly string[];
  deadline: number;
}

const JSON_ARRAY_LIMIT = 64 * 1024 * 1024;

interface FileFacts {
  sha256: string;
  bytes: number;
  records: number | null;
}

interface CacheEntry extends FileFacts {
  size: number;
  mtimeMs: number;
}

/** Hashes files once per (path, size, mtime). One per controller. */
export class LineageRecorder {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly maxEntries: number;

  private readonly budgetMs: number;

  constructor(opts: { maxEntries?: number; budgetMs?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.budgetMs = opts.budgetMs ?? BUDGET_MS;
  }

  /** The upstream outputs a stage references, each described. */
  async consumed(
    stage: NormalizedStage,
    upstream: Record<string, { outputs: Record<string, string> }>,
    roots: readonly string[],
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    const refs = new Map<string, string>();
    for (const template of stageTemplates(stage)) {
      for (const r of findReferences(template).references) {
        if (r.kind !== 'stageOutput') continue;
        const value = upstream[r.stage]?.outputs[r.output];
        if (value !== undefined) refs.set(`stages.${r.stage}.outputs.${r.output}`, value);
      }
    }
    return this.describeAll([...refs.entries()], roots);
  }

  /** A finished stage's outputs, each described. */
  async produced(
    outputs: Record<string, string>,
    roots: readonly string[],
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    const refs = Object.entries(outputs).map(([name, p]): [string, string] => [
      `outputs.${name}`,
      p,
    ]);
    return this.describeAll(refs, roots);
  }

  private async describeAll(
    refs: Array<[string, string]>,
    roots: readonly string[],
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    const entries: LineageEntry[] = [];
    const problems: string[] = [];
    const scope: Scope = { roots, deadline: Date.now() + this.budgetMs };
    for (const [ref, p] of refs.sort(([a], [b]) => a.localeCompare(b))) {
      try {
        entries.push({ ref, ...(await this.describe(p, scope)) });
      } catch (err) {
        problems.push(`${ref} (${p}): ${(err as Error).message}`);
        entries.push(unreadable(ref, p));
      }
    }
    return { entries, problems };
  }

  /** One path: a file, a directory tree, a URL, or missing (else it throws why it is not read). */
  async describe(
    p: string,
    scope: Scope = { roots: ['/'], deadline: Infinity },
  ): Promise<Omit<LineageEntry, 'ref'>> {
    if (URL_LIKE.test(p))
      return { path: p, kind: 'url', sha256: null, bytes: null, files: null, records: null };
    let real: string;
    try {
      real = await checkedRealPath(p, scope.roots);
    } catch (err) {
      if (err instanceof UntrustedPathError && err.message.endsWith('does not exist'))
        return { path: p, kind: 'missing', sha256: null, bytes: null, files: null, records: null };
      throw err;
    }
    const st = await lstat(real);
    if (st.isDirectory())
      return { path: p, kind: 'directory', ...(await this.directory(real, scope)) };
    const f = await this.file(real, scope);
    return {
      path: p,
      kind: 'file',
      sha256: f.sha256,
      bytes: f.bytes,
      files: 1,
      records: f.records,
    };
  }

  private async directory(
    root: string,
    scope: Scope,
  ): Promise<{ sha256: string; bytes: number; files: number; records: number | null }> {
    const files = await listFiles(root, scope);
    const tree = createHash('sha256');
    let bytes = 0;
    let records: number | null = null;
    for (const f of files) {
      const facts = await this.file(f, scope);
      tree.update(`${relative(root, f)}\t${facts.bytes}\t${facts.sha256}\n`);
      bytes += facts.bytes;
      if (extname(f) === '.jsonl' && facts.records !== null)
        records = (records ?? 0) + facts.records;
    }
    return { sha256: tree.digest('hex'), bytes, files: files.length, records };
  }

  /** A regular file inside the scope's roots, hashed (from the cache when unchanged). */
  private async file(p: string, scope: Scope): Promise<FileFacts> {
    const { handle, stats } = await openUntrusted(p, scope.roots);
    let facts: FileFacts;
    const size = stats.size;
    const mtimeMs = stats.mtimeMs;
    try {
      const hit = this.cache.get(p);
      if (hit && hit.size === size && hit.mtimeMs === mtimeMs) return hit;
      facts = await hashFile(p, handle, scope.deadline);
      if (extname(p) === '.json' && size <= JSON_ARRAY_LIMIT)
        facts.records = await jsonArrayLength(handle);
    } finally {
      await handle.close().catch(() => undefined);
    }
    if (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(p, { ...facts, size, mtimeMs });
    return facts;
  }
}

/** Every template of a stage that may name an upstream output. */
function stageTemplates(stage: NormalizedStage): string[] {
  const out = [...stage.payload.command, ...Object.values(stage.payload.env)];
  if (stage.payload.workingDir !== undefined) out.push(stage.payload.workingDir);
  if (stage.input?.file !== undefined) out.push(stage.input.file);
  if (stage.input?.shards) out.push(...stage.input.shards);
  return out;
}

function unreadable(ref: string, p: string): LineageEntry {
  return { ref, path: p, kind: 'unread', sha256: null, bytes: null, files: null, records: null };
}

/**
 * Regular files below a directory, sorted. A symlink is followed when it stays inside
 * the roots (a cycle is cut by depth); anything else (a FIFO, a device, a link out) is
 * an error naming it: the whole tree is then unread, rather than described in part.
 */
async function listFiles(root: string, scope: Scope, depth = 0): Promise<string[]> {
  if (depth > 32)
    throw new Error(`${root}: directories nested more than 32 deep (a symlink cycle?)`);
  if (Date.now() > scope.deadline) throw new Error(overBudget());
  const out: string[] = [];
  const names = (await readdir(root)).sort();
  for (const name of names) {
    const p = join(root, name);
    let st = await lstat(p);
    let real = p;
    if (st.isSymbolicLink()) {
      real = await checkedRealPath(p, scope.roots);
      st = await lstat(real);
    }
    if (st.isDirectory()) out.push(...(await listFiles(real, scope, depth + 1)));
    else if (st.isFile()) out.push(real);
    else throw new UntrustedPathError(`${p} is not a regular file or a directory: not read`);
  }
  return out;
}

const overBudget = () =>
  `not read: describing it took longer than the controller gives one stage (${BUDGET_MS / 1000} s)`;

/** sha256, size and (for .jsonl) the count of non-blank lines, in one streamed read. */
async function hashFile(p: string, handle: FileHandle, deadline: number): Promise<FileFacts> {
  const countLines = extname(p) === '.jsonl';
  const hash = createHash('sha256');
  let bytes = 0;
  let records = 0;
  let lineHasContent = false;
  const stream = handle.createReadStream({ autoClose: false, start: 0 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (Date.now() > deadline) {
      stream.destroy();
      throw new Error(overBudget());
    }
    hash.update(chunk);
    bytes += chunk.length;
    if (!countLines) continue;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i] as number;
      if (c === 0x0a) {
        if (lineHasContent) records++;
        lineHasContent = false;
      } else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) {
        lineHasContent = true;
      }
    }
  }
  if (lineHasContent) records++;
  return { sha256: hash.digest('hex'), bytes, records: countLines ? records : null };
}

async function jsonArrayLength(handle: FileHandle): Promise<number | null> {
  try {
    const { buffer } = await handle
      .read({ buffer: Buffer.alloc(JSON_ARRAY_LIMIT + 1), position: 0 })
      .then((r) => ({ buffer: r.buffer.subarray(0, r.bytesRead) }));
    const value: unknown = JSON.parse(buffer.toString('utf8'));
    return Array.isArray(value) ? value.length : null;
  } catch {
    return null;
  }
}
