/**
 * `stoker data stage SOURCE --to DIR [--json]`: copy a model or a data set (a file, or a
 * folder and everything under it) from SOURCE into DIR, where the pods read it (the
 * models and datasets PVCs, k8s/base/models-pvc.yaml; training-configs/fire/stage.yaml
 * runs it in the cluster). Staged again, it copies only what changed:
 *
 *   DIR/.stoker-staged.json   {version: 1, files: {relative path: {size, sha256}}}, written
 *                             after every file is in place (a staging cut short leaves the
 *                             previous manifest, and the next run checks everything again)
 *   a file is skipped         when DIR holds it with the size and SHA-256 the manifest
 *                             records, and the source has that size and SHA-256 too
 *   a file is copied          to a temporary name beside its destination, checked against
 *                             the source's SHA-256 while it is written, then renamed: a
 *                             reader never sees half a file
 *
 * Files in DIR that SOURCE does not have are left alone (DIR may hold other models).
 * Symbolic links inside SOURCE are followed only to files inside SOURCE; others are an
 * error. SOURCE is a local path: in a pod, a mounted volume. There is no download here
 * (the clusters this targets often have no way out, and pods run with HF_HUB_OFFLINE=1);
 * README, "FIRE on a cluster", says how to get a model onto a volume first.
 *
 * Hand-written (not fs.cp): the checksum manifest, the skip rule and the atomic rename are
 * what this command is for, and no npm package does those three together.
 *
 * Output: one line per copied file, then a summary (with --json one JSON object:
 * {source, to, files, copied, skipped, bytesCopied}). Exit 0; 2 for a missing SOURCE or
 * a bad flag; 1 when a copy fails or a file changed while it was copied.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as z from 'zod';
import { UsageError } from '../../common/errors.js';

export const MANIFEST = '.stoker-staged.json';

const Manifest = z.object({
  version: z.literal(1),
  files: z.record(z.string(), z.object({ size: z.number(), sha256: z.string() })),
});
type Manifest = z.infer<typeof Manifest>;

export interface StageResult {
  source: string;
  to: string;
  files: number;
  copied: string[];
  skipped: number;
  bytesCopied: number;
}

/** The files under `root` (or `root` itself), as [path relative to root's folder, absolute]. */
async function sourceFiles(root: string): Promise<Array<[string, string]>> {
  const st = await stat(root).catch(() => null);
  if (!st) throw new UsageError(`${root}: no such file or directory`);
  if (st.isFile()) return [[basename(root), root]];
  const realRoot = realpathSync(root);
  const out: Array<[string, string]> = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const at = join(dir, entry.name);
      const rel = relative(root, at);
      if (entry.isDirectory()) {
        await walk(at);
        continue;
      }
      const real = realpathSync(at);
      if (relative(realRoot, real).startsWith(`..${sep}`))
        throw new UsageError(`${at}: a symbolic link that leads outside ${root}`);
      const target = await stat(real);
      if (target.isDirectory()) throw new UsageError(`${at}: a link to a folder is not staged`);
      if (target.isFile()) out.push([rel.split(sep).join('/'), at]);
    }
  };
  await walk(root);
  return out;
}

async function sha256Of(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

async function readManifest(to: string): Promise<Manifest> {
  try {
    return Manifest.parse(JSON.parse(await readFile(join(to, MANIFEST), 'utf8')));
  } catch {
    return { version: 1, files: {} };
  }
}

/** Copies `from` to `dest` by a temporary name; the SHA-256 of what was written. */
async function copyChecked(from: string, dest: string): Promise<{ size: number; sha256: string }> {
  await mkdir(dirname(dest), { recursive: true });
  const temp = join(dirname(dest), `.${basename(dest)}.staging-${process.pid}`);
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(from), tap, createWriteStream(temp, { mode: 0o644 }));
    await rename(temp, dest);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return { size, sha256: hash.digest('hex') };
}

export async function stage(source: string, to: string): Promise<StageResult> {
  const files = await sourceFiles(source);
  await mkdir(to, { recursive: true });
  const before = await readManifest(to);
  const after: Manifest = { version: 1, files: {} };
  const result: StageResult = {
    source,
    to,
    files: files.length,
    copied: [],
    skipped: 0,
    bytesCopied: 0,
  };
  for (const [rel, from] of files) {
    const want = await sha256Of(from);
    const dest = join(to, ...rel.split('/'));
    const recorded = before.files[rel];
    const there = await stat(dest).catch(() => null);
    if (
      recorded &&
      there?.isFile() &&
      there.size === recorded.size &&
      recorded.size === want.size &&
      recorded.sha256 === want.sha256
    ) {
      after.files[rel] = recorded;
      result.skipped += 1;
      continue;
    }
    const wrote = await copyChecked(from, dest);
    if (wrote.sha256 !== want.sha256)
      throw new Error(`${from} changed while it was copied: stage it again`);
    after.files[rel] = wrote;
    result.copied.push(rel);
    result.bytesCopied += wrote.size;
  }
  // Entries of files staged before from elsewhere stay (DIR may hold other sources).
  for (const [rel, entry] of Object.entries(before.files)) after.files[rel] ??= entry;
  await writeFile(join(to, `${MANIFEST}.tmp`), JSON.stringify(after, null, 1));
  await rename(join(to, `${MANIFEST}.tmp`), join(to, MANIFEST));
  return result;
}
