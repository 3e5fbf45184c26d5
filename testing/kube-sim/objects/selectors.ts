/**
 * Label and field selectors as the API server parses and applies them on list, watch and
 * deletecollection: `a=b,c!=d,e in (f,g),h notin (i),j,!k` for labels, `path=value` and
 * `path!=value` on dotted paths for fields. A selector that does not parse is a 400 with
 * the real server's message.
 */
import { type KubeObject, apiError, getPath } from './meta.js';

export type LabelOp = 'eq' | 'neq' | 'in' | 'notin' | 'exists' | 'notexists';
export interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

const KEY = String.raw`[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?`;
const VALUE = String.raw`(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?`;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; a bad selector is a 400 like the real one. */
export function parseLabelSelector(s: string | null | undefined): LabelRequirement[] {
  if (!s) return [];
  const reqs: LabelRequirement[] = [];
  for (const part of splitTopLevel(s)) {
    let m: RegExpMatchArray | null;
    if ((m = part.match(new RegExp(`^!\\s*(${KEY})$`)))) {
      reqs.push({ key: m[1]!, op: 'notexists', values: [] });
    } else if ((m = part.match(new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\((.*)\\)$`)))) {
      const values = m[3]!
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v.length > 0);
      if (!values.every((v) => new RegExp(`^${VALUE}$`).test(v)))
        throw apiError(400, `unable to parse requirement: invalid label value in "${part}"`);
      reqs.push({ key: m[1]!, op: m[2] === 'in' ? 'in' : 'notin', values });
    } else if ((m = part.match(new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`)))) {
      reqs.push({ key: m[1]!, op: m[2] === '!=' ? 'neq' : 'eq', values: [m[3]!] });
    } else if ((m = part.match(new RegExp(`^(${KEY})$`)))) {
      reqs.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw apiError(
        400,
        `unable to parse requirement: found '${part}', expected a label requirement`,
      );
    }
  }
  return reqs;
}

export function matchesLabels(
  reqs: readonly LabelRequirement[],
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return has && v === r.values[0];
      case 'neq':
        return !has || v !== r.values[0];
      case 'in':
        return has && r.values.includes(v!);
      case 'notin':
        return !has || !r.values.includes(v!);
      case 'exists':
        return has;
      case 'notexists':
        return !has;
    }
  });
}

export interface FieldRequirement {
  path: string;
  negate: boolean;
  value: string;
}

export function parseFieldSelector(s: string | null | undefined): FieldRequirement[] {
  if (!s) return [];
  return splitTopLevel(s).map((part) => {
    const m = part.match(/^([A-Za-z0-9_.[\]-]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw apiError(400, `invalid selector: '${part}'; can't understand '${part}'`);
    return { path: m[1]!, negate: m[2] === '!=', value: m[3]! };
  });
}

export function matchesFields(reqs: readonly FieldRequirement[], obj: KubeObject): boolean {
  return reqs.every((r) => {
    const raw = getPath(obj, r.path);
    const v = raw === undefined || raw === null ? '' : String(raw);
    return r.negate ? v !== r.value : v === r.value;
  });
}
