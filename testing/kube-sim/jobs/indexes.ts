/**
 * Completion indexes of an Indexed Job: the index a pod runs (its
 * `batch.kubernetes.io/job-completion-index` annotation and label) and the set of
 * completed ones, written in status.completedIndexes as the real controller writes it:
 * sorted ranges, `0-2,5,7-8`.
 */

export const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';

export function parseIndexes(s: string | undefined): Set<number> {
  const out = new Set<number>();
  for (const part of (s ?? '').split(',').filter((p) => p.length > 0)) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let i = a; i <= (b ?? a); i++) out.add(i);
  }
  return out;
}

export function formatIndexes(set: Set<number>): string | undefined {
  const xs = [...set].sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const parts: string[] = [];
  let start = xs[0]!;
  let prev = start;
  for (const x of xs.slice(1).concat([Number.NaN])) {
    if (x === prev + 1) {
      prev = x;
      continue;
    }
    parts.push(start === prev ? String(start) : `${start}-${prev}`);
    start = x;
    prev = x;
  }
  return parts.join(',');
}
