/**
 * Step 1 of loading a spec (load.ts): YAML text -> a plain value, and the IssueList that
 * finds each problem's line in that text.
 *
 *   readSource(text, file) -> { root, issues }
 *
 * The text must be one YAML document whose top level is a mapping, with unique keys;
 * aliases may expand to at most MAX_ALIAS_COUNT values (a "billion laughs" bomb fails in
 * microseconds); merge keys (`<<: *base`) are allowed; no alias may be recursive (`a: &a
 * [*a]`, a value that contains itself) and nothing may nest deeper than MAX_NESTING. Anything
 * else throws a SpecError at once: nothing after this step could say more. A `__proto__` key is dropped from the
 * value and recorded in `issues` (loading goes on, to report the rest too).
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { Document, ParsedNode } from 'yaml';
import { SpecError } from '../errors.js';
import { IssueList, scalarKey } from './issue-list.js';
import { cloneJson, describeValue, isPlainObject, MAX_NESTING, shapeProblem } from './values.js';
import type { Json, Path } from './values.js';

/** Alias expansions allowed while converting YAML to values (yaml's own default, kept explicit). */
export const MAX_ALIAS_COUNT = 100;

export interface SpecSourceText {
  /** The document as plain values, aliases expanded into copies. */
  root: Record<string, Json>;
  issues: IssueList;
}

/** Parses the YAML of a spec. Throws SpecError for text that is not one YAML mapping. */
export function readSource(text: string, file?: string): SpecSourceText {
  const fail = (message: string, line?: number, column?: number): never => {
    throw new SpecError(
      [{ path: '', message, ...(line === undefined ? {} : { line, column }) }],
      file,
    );
  };
  if (text.trim() === '') fail('the file is empty');

  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    merge: true,
    uniqueKeys: true,
  });
  const issues = new IssueList(doc, lineCounter);
  for (const err of [...doc.errors, ...doc.warnings]) {
    const { line, col } = lineCounter.linePos(err.pos[0]);
    // Only a duplicate key has a path worth naming; a syntax error has a line, not a path.
    const path = err.code === 'DUPLICATE_KEY' ? pathAtOffset(doc, err.pos[0]) : [];
    issues.addAt(path, yamlMessage(err.code, err.message), line, col);
  }
  if (issues.length) throw new SpecError(issues.sorted(), file);
  if (doc.contents === null) fail('the file is empty (it holds only comments)');

  let raw: Json;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/excessive alias count/i.test(message))
      fail(
        `aliases expand to too many values (more than ${MAX_ALIAS_COUNT}): this looks like a YAML bomb ("billion laughs"), refused`,
      );
    // An alias of no anchor (`*a` first), a merge key of a scalar (`<<: 3`): say where.
    const bad = unresolvable(doc);
    if (bad !== undefined) {
      const { line, col } = lineCounter.linePos(bad.offset);
      issues.addAt(pathAtOffset(doc, bad.offset), bad.message, line, col);
      throw new SpecError(issues.sorted(), file);
    }
    fail(`not a valid spec: ${message}`);
  }
  if (!isPlainObject(raw)) {
    fail(
      `the top level must be a mapping with apiVersion, kind, metadata and spec, not ${describeValue(raw)}`,
      1,
      1,
    );
  }
  // Before anything walks it: a recursive alias would overflow the stack of every walk.
  const unsound = shapeProblem(raw);
  if (unsound) {
    issues.add(unsound.path, unsound.message);
    throw new SpecError(issues.sorted(), file);
  }
  const unsafeKeys: Path[] = [];
  const root = cloneJson(raw, [], unsafeKeys) as Record<string, Json>;
  for (const path of unsafeKeys)
    issues.add(path, `"${String(path[path.length - 1])}" is not allowed as a key`, { atKey: true });
  return { root, issues };
}

function yamlMessage(code: string, message: string): string {
  switch (code) {
    case 'MULTIPLE_DOCS':
      return 'the file holds more than one YAML document (a second "---"): a spec is exactly one';
    case 'DUPLICATE_KEY':
      return 'duplicate key: each key may appear once in a mapping';
    case 'TAG_RESOLVE_FAILED':
      return `${message} (specs use plain YAML values, no custom tags)`;
    default:
      // The parser recurses per level: a value nested thousands deep overflows its stack.
      return /maximum call stack/i.test(message)
        ? `nested too deeply (a spec value nests at most ${MAX_NESTING} levels)`
        : `not valid YAML: ${message}`;
  }
}

/**
 * Where toJS fails, and why: the first alias of an anchor not defined before it, or merge
 * key (`<<`) whose value is not a mapping or a list of them.
 */
function unresolvable(doc: Document.Parsed): { offset: number; message: string } | undefined {
  const isMapping = (node: unknown): boolean => isMap(isAlias(node) ? node.resolve(doc) : node);
  let found: { offset: number; message: string } | undefined;
  visit(doc, {
    Alias: (_key, alias) => {
      if (alias.resolve(doc) !== undefined) return undefined;
      found = {
        offset: alias.range?.[0] ?? 0,
        message: `the alias *${alias.source} has no anchor &${alias.source} before it`,
      };
      return visit.BREAK;
    },
    Pair: (_key, pair) => {
      // With `merge: true` the parser gives a merge key the value Symbol(<<).
      if (!isScalar(pair.key) || typeof pair.key.value !== 'symbol') return undefined;
      const value = pair.value;
      if (isSeq(value) ? value.items.every(isMapping) : isMapping(value)) return undefined;
      found = {
        offset: pair.key.range?.[0] ?? 0,
        message: 'a merge key (<<) takes a mapping, an alias of one, or a list of them',
      };
      return visit.BREAK;
    },
  });
  return found;
}

/** The path of the innermost node holding `offset`: where a duplicate key is. */
function pathAtOffset(doc: Document.Parsed, offset: number): Path {
  const path: Path = [];
  let node: unknown = doc.contents;
  const holds = (n: unknown): boolean => {
    const range = (n as ParsedNode | null)?.range;
    return !!range && range[0] <= offset && offset < Math.max(range[2], range[0] + 1);
  };
  for (let depth = 0; depth < 100; depth++) {
    if (isMap(node)) {
      const pair = node.items.find((p) => holds(p.key) || holds(p.value));
      const key = pair && scalarKey(pair.key);
      if (!pair || key === undefined) break;
      path.push(key);
      if (holds(pair.key)) break;
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => holds(item));
      if (index < 0) break;
      path.push(index);
      node = node.items[index];
    } else break;
  }
  return path;
}
