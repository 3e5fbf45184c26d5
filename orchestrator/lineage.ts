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
 * Hashes are cached by (path, size, mtime), so a checkpoint produced by one stage and
 * consumed by two others is read once. Reading is streamed: memory does not grow with
 * the size of a file.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import { type LineageEntry } from '../common/model.js';
import { findReferences, URL_LIKE } from '../common/spec/interpolate.js';
import type { NormalizedStage } from '../common/spec/schema.js';

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

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** The upstream outputs a stage references, each described. */
  async consumed(
    stage: NormalizedStage,
    upstream: Record<string, { outputs: Record<string, string> }>,
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    const refs = new Map<string, string>();
    for (const template of stageTemplates(stage)) {
      for (const r of findReferences(template).references) {
        if (r.kind !== 'stageOutput') continue;
        const value = upstream[r.stage]?.outputs[r.output];
        if (value !== undefined) refs.set(`stages.${r.stage}.outputs.${r.output}`, value);
      }
    }
    return this.describeAll([...refs.entries()]);
  }

  /** A finished stage's outputs, each described. */
  async produced(
    outputs: Record<string, string>,
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    return this.describeAll(Object.entries(outputs).map(([name, p]) => [`outputs.${name}`, p]));
  }

  private async describeAll(
    refs: Array<[string, string]>,
  ): Promise<{ entries: LineageEntry[]; problems: string[] }> {
    const entries: LineageEntry[] = [];
    const problems: string[] = [];
    for (const [ref, p] of refs.sort(([a], [b]) => a.localeCompare(b))) {
      try {
        entries.push({ ref, ...(await this.describe(p)) });
      } catch (err) {
        problems.push(`${ref} (${p}): ${(err as Error).message}`);
        entries.push(unreadable(ref, p));
      }
    }
    return { entries, problems };
  }

  /** One path: a file, a directory tree, a URL, or missing. */
  async describe(p: string): Promise<Omit<LineageEntry, 'ref'>> {
    if (URL_LIKE.test(p))
      return { path: p, kind: 'url', sha256: null, bytes: null, files: null, records: null };
    let st;
    try {
      st = await stat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return { path: p, kind: 'missing', sha256: null, bytes: null, files: null, records: null };
      throw err;
    }
    if (st.isDirectory()) return { path: p, kind: 'directory', ...(await this.directory(p)) };
    const f = await this.file(p, st.size, st.mtimeMs);
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
  ): Promise<{ sha256: string; bytes: number; files: number; records: number | null }> {
    const files = await listFiles(root);
    const tree = createHash('sha256');
    let bytes = 0;
    let records: number | null = null;
    for (const f of files) {
      const st = await stat(f);
      const facts = await this.file(f, st.size, st.mtimeMs);
      tree.update(`${relative(root, f)}\t${facts.bytes}\t${facts.sha256}\n`);
      bytes += facts.bytes;
      if (extname(f) === '.jsonl' && facts.records !== null)
        records = (records ?? 0) + facts.records;
    }
    return { sha256: tree.digest('hex'), bytes, files: files.length, records };
  }

  private async file(p: string, size: number, mtimeMs: number): Promise<FileFacts> {
    const hit = this.cache.get(p);
    if (hit && hit.size === size && hit.mtimeMs === mtimeMs) return hit;
    const facts = await hashFile(p);
    if (extname(p) === '.json' && size <= JSON_ARRAY_LIMIT)
      facts.records = await jsonArrayLength(p);
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
  return { ref, path: p, kind: 'missing', sha256: null, bytes: null, files: null, records: null };
}

/** Regular files below a directory, sorted, symlinks followed (a cycle is cut by depth). */
async function listFiles(root: string, depth = 0): Promise<string[]> {
  if (depth > 32)
    throw new Error(`${root}: directories nested more than 32 deep (a symlink cycle?)`);
  const out: string[] = [];
  const names = (await readdir(root)).sort();
  for (const name of names) {
    const p = join(root, name);
    const st = await stat(p);
    if (st.isDirectory()) out.push(...(await listFiles(p, depth + 1)));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** sha256, size and (for .jsonl) the count of non-blank lines, in one streamed read. */
async function hashFile(p: string): Promise<FileFacts> {
  const countLines = extname(p) === '.jsonl';
  const hash = createHash('sha256');
  let bytes = 0;
  let records = 0;
  let lineHasContent = false;
  for await (const chunk of createReadStream(p) as AsyncIterable<Buffer>) {
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

async function jsonArrayLength(p: string): Promise<number | null> {
  try {
    const value: unknown = JSON.parse(await readFile(p, 'utf8'));
    return Array.isArray(value) ? value.length : null;
  } catch {
    return null;
  }
}
