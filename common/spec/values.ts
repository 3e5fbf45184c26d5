/**
 * Plain values of a spec before the schema has typed them (what YAML gives), and their
 * paths: `['spec', 'stages', 1, 'dependsOn', 0]`, shown as `spec.stages[1].dependsOn[0]`.
 */

export type Segment = string | number;
export type Path = Segment[];
/** A value as YAML gives it: not yet checked against the schema. */
export type Json = unknown;

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** A key that, assigned, would replace an object's prototype. */
export const UNSAFE_KEYS: ReadonlySet<string> = new Set(['__proto__']);

/** `['spec', 'stages', 1, 'dependsOn', 0]` -> `spec.stages[1].dependsOn[0]`. */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Whether `path` is `prefix` or lies under it. */
export const startsWith = (path: readonly Segment[], prefix: readonly Segment[]): boolean =>
  prefix.length <= path.length && prefix.every((seg, i) => String(seg) === String(path[i]));

export function isPlainObject(value: unknown): value is Record<string, Json> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/** The value at `path`, or undefined where the path leads nowhere. */
export function valueAt(root: Json, path: readonly Segment[]): Json {
  let node: Json = root;
  for (const seg of path) {
    if (Array.isArray(node) && typeof seg === 'number') node = node[seg];
    else if (isPlainObject(node) && Object.hasOwn(node, String(seg))) node = node[String(seg)];
    else return undefined;
  }
  return node;
}

/** A value as an error message names it: `the string "x"`, `a list`, `number 3`. */
export function describeValue(value: Json): string {
  if (value === null) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (isPlainObject(value)) return 'a mapping';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean')
    return `${typeof value} ${String(value)}`;
  return typeof value;
}

/** Levels of nesting a spec value may have (a real spec uses under 10; shardParams a few more). */
export const MAX_NESTING = 64;

/**
 * Why a value cannot be a spec value, with where: it contains itself (a recursive YAML
 * alias, `a: &a [*a]`, which has no finite value and would overflow every recursive walk
 * and `JSON.stringify`), or it nests deeper than MAX_NESTING. Undefined when it is sound.
 * Walks at most MAX_NESTING levels, so it cannot overflow the stack itself.
 */
export function shapeProblem(
  value: Json,
  path: Path = [],
): { path: Path; message: string } | undefined {
  const ancestors = new Set<object>();
  const walk = (v: Json, at: Path): { path: Path; message: string } | undefined => {
    if (typeof v !== 'object' || v === null) return undefined;
    if (ancestors.has(v))
      return {
        path: at,
        message:
          'a recursive alias: this value refers back to a mapping or list that contains it (as in `a: &a [*a]`), so it has no finite value',
      };
    if (at.length - path.length >= MAX_NESTING)
      return {
        path: at,
        message: `nested too deeply: a spec value nests at most ${MAX_NESTING} levels`,
      };
    ancestors.add(v);
    try {
      const entries: [Segment, Json][] = Array.isArray(v)
        ? v.map((item, i): [Segment, Json] => [i, item])
        : Object.entries(v);
      for (const [seg, child] of entries) {
        const found = walk(child, [...at, seg]);
        if (found) return found;
      }
      return undefined;
    } finally {
      ancestors.delete(v);
    }
  };
  return walk(value, path);
}

/**
 * A deep copy that breaks the sharing YAML aliases create, so that a --set changes one
 * place. Keys that could reach an object's prototype are collected, not copied. The value
 * must have passed shapeProblem (no cycle, bounded depth).
 */
export function cloneJson(value: Json, path: Path = [], unsafe: Path[] = []): Json {
  if (Array.isArray(value)) return value.map((v, i) => cloneJson(v, [...path, i], unsafe));
  if (isPlainObject(value)) {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) {
      if (UNSAFE_KEYS.has(k)) unsafe.push([...path, k]);
      else out[k] = cloneJson(v, [...path, k], unsafe);
    }
    return out;
  }
  return value;
}
