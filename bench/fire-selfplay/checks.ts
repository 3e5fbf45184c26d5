/**
 * fire-selfplay's checks on what the self-play server wrote: every output file holds one
 * JSON record per kept dialogue, as many as `done` said (and the server's `kept`), ids
 * among the shard's seeds and in seed order, score / round / conversations consistent;
 * and, to compare two outputs of the same seeds, which records differ.
 */
import { existsSync, readFileSync } from 'node:fs';

/** The records of a shard output, checked; returns the file's text (for comparisons). */
export function checkOutput(
  file: string,
  ids: readonly string[],
  items: number,
  kept: unknown,
): string {
  if (!existsSync(file)) throw new Error(`no output file ${file}`);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const where = (i: number) => `${file} line ${i + 1}`;
  if (lines.length !== items)
    throw new Error(`${file}: ${lines.length} records, but done said ${items} items`);
  if (typeof kept === 'number' && kept !== items)
    throw new Error(`${file}: done said ${items} items, the server's metrics kept ${kept}`);
  let last = -1;
  lines.forEach((line, i) => {
    const r = JSON.parse(line) as {
      id?: unknown;
      conversations?: Array<{ role?: unknown; value?: unknown }>;
      score?: unknown[];
      round?: unknown;
    };
    const at = ids.indexOf(String(r.id));
    if (at === -1) throw new Error(`${where(i)}: id ${String(r.id)} is not a seed of the shard`);
    if (at <= last) throw new Error(`${where(i)}: id ${String(r.id)} out of seed order`);
    last = at;
    const conv = r.conversations;
    const score = r.score;
    if (!Array.isArray(conv) || !Array.isArray(score) || score.length < 1)
      throw new Error(`${where(i)}: no conversations or score`);
    if (r.round !== score.length || conv.length !== 2 * score.length)
      throw new Error(
        `${where(i)}: round ${String(r.round)}, ${score.length} scores, ${conv.length} turns`,
      );
    conv.forEach((turn, t) => {
      const role = t % 2 === 0 ? 'student' : 'teacher';
      if (turn.role !== role || typeof turn.value !== 'string')
        throw new Error(`${where(i)}: turn ${t + 1} is not a ${role} turn`);
    });
  });
  return text;
}

/** Ids of the records that differ between two outputs of the same seeds. */
export function differing(a: string, b: string): { count: number; first: unknown } {
  const parse = (t: string) =>
    new Map(
      t
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => [String((JSON.parse(l) as { id: unknown }).id), l] as const),
    );
  const ma = parse(a);
  const mb = parse(b);
  const ids = [...new Set([...ma.keys(), ...mb.keys()])];
  const diff = ids.filter((id) => ma.get(id) !== mb.get(id));
  const id = diff[0];
  const first =
    id === undefined
      ? null
      : {
          id,
          batched: ma.has(id) ? JSON.parse(ma.get(id) as string) : null,
          alone: mb.has(id) ? JSON.parse(mb.get(id) as string) : null,
        };
  return { count: diff.length, first };
}
