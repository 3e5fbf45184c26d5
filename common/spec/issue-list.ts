/**
 * IssueList: the problems found in one spec, each with its YAML path and, where the value
 * came from the file, the line and column of the node that holds it (found in the parsed
 * YAML document, through aliases and merge keys). Values a `--set` introduced have no line.
 * The same path and message are kept once; `sorted()` gives them in file order.
 */
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node as YamlNode, Pair } from 'yaml';
import type { SpecIssue } from '../errors.js';
import { formatPath, startsWith } from './values.js';
import type { Path, Segment } from './values.js';

export interface AddOptions {
  /** Point at the key (an unknown field, a bad key) rather than its value. */
  atKey?: boolean;
  /** The problem is not in the file (a malformed --set): no line. */
  noLine?: boolean;
}

export class IssueList {
  private readonly issues: SpecIssue[] = [];
  private readonly seen = new Set<string>();
  private readonly setPaths: Path[] = [];

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lineCounter: LineCounter,
  ) {}

  get length(): number {
    return this.issues.length;
  }

  /** Values at or under `path` came from a --set: they have no line. */
  markSet(path: Path): void {
    this.setPaths.push(path);
  }

  /**
   * A problem at `path`. A path not found in the source points at its nearest ancestor
   * (the mapping that lacks a required field), unless a --set made it.
   */
  add(path: Path, message: string, opts: AddOptions = {}): void {
    let line: number | undefined;
    let column: number | undefined;
    const fromSet = this.setPaths.some((p) => startsWith(path, p) || startsWith(p, path));
    const found = opts.noLine ? undefined : nodeAt(this.doc, path, opts.atKey ?? false);
    const overridden = this.setPaths.some((p) => startsWith(path, p));
    if (found && !overridden && (found.exact || !fromSet)) {
      const offset = found.node.range?.[0];
      if (offset !== undefined) {
        const pos = this.lineCounter.linePos(offset);
        line = pos.line;
        column = pos.col;
      }
    }
    this.addAt(path, message, line, column);
  }

  /** A problem whose line is known already (a YAML syntax error). */
  addAt(path: Path, message: string, line?: number, column?: number): void {
    const formatted = formatPath(path);
    const key = `${formatted}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.issues.push({ path: formatted, message, ...(line === undefined ? {} : { line, column }) });
  }

  /** By position in the file; problems without a line (from --set) last, in order found. */
  sorted(): SpecIssue[] {
    const pos = (i: SpecIssue): number =>
      i.line === undefined ? Infinity : i.line * 1e6 + (i.column ?? 0);
    return [...this.issues].sort((a, b) => pos(a) - pos(b));
  }
}

/** A mapping key as text; a merge key (which the parser gives the value Symbol(<<)) is `<<`. */
export function scalarKey(node: unknown): string | undefined {
  if (!isScalar(node)) return undefined;
  return typeof node.value === 'symbol' ? (node.value.description ?? '') : String(node.value);
}

/** The YAML node at `path`, or its nearest ancestor (exact: false). */
function nodeAt(
  doc: Document.Parsed,
  path: Path,
  atKey: boolean,
): { node: YamlNode; exact: boolean } | undefined {
  let node: YamlNode | null = doc.contents;
  if (!node) return undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i] as Segment;
    const last = i === path.length - 1;
    let next: YamlNode | null | undefined;
    let target: unknown = node;
    for (let hops = 0; isAlias(target) && hops < 10; hops++) target = target.resolve(doc);
    if (isMap(target)) {
      const pair = findPair(doc, target, String(seg), 0);
      if (pair)
        next =
          last && atKey
            ? (pair.key as YamlNode)
            : ((pair.value as YamlNode | null) ?? (pair.key as YamlNode));
    } else if (isSeq(target) && typeof seg === 'number') {
      next = target.items[seg] as YamlNode | undefined;
    }
    if (!next) return { node, exact: false };
    node = next;
  }
  return { node, exact: true };
}

/** A key's pair in a mapping, looking through merge keys (`<<: *base`). */
function findPair(
  doc: Document.Parsed,
  map: unknown,
  key: string,
  depth: number,
): Pair<unknown, unknown> | undefined {
  if (!isMap(map) || depth > 5) return undefined;
  const own = map.items.find((p) => scalarKey(p.key) === key);
  if (own) return own;
  for (const pair of map.items) {
    if (scalarKey(pair.key) !== '<<') continue;
    const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
    for (const source of sources) {
      const resolved = isAlias(source) ? source.resolve(doc) : source;
      const found: Pair<unknown, unknown> | undefined = findPair(doc, resolved, key, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}
