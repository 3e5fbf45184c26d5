/**
 * Step 2 of loading a spec (load.ts): `--set path=value` overrides, applied in order to
 * the plain value before the schema sees it.
 *
 *   parseSetExpression(expression) -> { tokens, value } | error text
 *   applySets(root, sets, issues)     each set applied in place; problems into `issues`
 *
 * A malformed expression is an issue at the root; a path that cannot be followed is an
 * issue at the deepest path reached; a value that contains itself (a recursive alias) or
 * nests too deeply is an issue at the path it would have been written to. Neither has a line (it is not in the file), and
 * everything a set wrote is marked so that later problems under it have no line either.
 */
import { parseDocument } from 'yaml';
import type { IssueList } from './issue-list.js';
import { MAX_ALIAS_COUNT } from './source.js';
import {
  describeValue,
  formatPath,
  isPlainObject,
  MAX_NESTING,
  shapeProblem,
  UNSAFE_KEYS,
} from './values.js';
import type { Json, Path, Segment } from './values.js';

export type SetToken = { key: string } | { index: number } | { numeric: string };

/** Applies every `--set` to `root`, in order; each problem becomes an issue. */
export function applySets(
  root: Record<string, Json>,
  sets: readonly string[],
  issues: IssueList,
): void {
  for (const set of sets) {
    const problem = applySet(root, set);
    if (typeof problem === 'string') issues.add([], `--set ${set}: ${problem}`, { noLine: true });
    else if (problem.error)
      issues.add(problem.path, `--set ${set}: ${problem.error}`, { noLine: true });
    else issues.markSet(problem.path);
  }
}

/**
 * `spec.stages[0].payload.env.SEED=3`: a dotted path whose segments may be numeric
 * (`spec.stages.0`: an index into a list, a key in a mapping), with `[i]` indices and
 * `["quoted.key"]` for keys holding dots. The value is YAML: `100` is a number, `[a, b]` a
 * list, `"100"` a string, nothing at all an empty string.
 */
export function parseSetExpression(
  expression: string,
): { tokens: SetToken[]; value: Json } | string {
  const eq = expression.indexOf('=');
  if (eq < 0) return 'expected path=value (e.g. spec.params.steps=100)';
  const pathText = expression.slice(0, eq).trim();
  const valueText = expression.slice(eq + 1);
  const tokens: SetToken[] = [];
  let i = 0;
  let expectSegment = true;
  while (i < pathText.length) {
    const ch = pathText[i];
    if (ch === '[') {
      const close = pathText.indexOf(']', i);
      if (close < 0) return `"${pathText}": "[" without "]"`;
      const inner = pathText.slice(i + 1, close);
      if (/^\d+$/.test(inner)) tokens.push({ index: Number(inner) });
      else if (/^"(?:[^"\\]|\\.)*"$/.test(inner)) tokens.push({ key: JSON.parse(inner) as string });
      else return `"${pathText}": [${inner}] is neither an index nor a quoted key`;
      i = close + 1;
      expectSegment = false;
    } else if (ch === '.') {
      if (expectSegment) return `"${pathText}": empty path segment`;
      expectSegment = true;
      i += 1;
    } else {
      if (!expectSegment) return `"${pathText}": expected "." or "[" before "${pathText.slice(i)}"`;
      const m = /^[^.[\]]+/.exec(pathText.slice(i));
      const seg = m?.[0] ?? '';
      tokens.push(/^\d+$/.test(seg) ? { numeric: seg } : { key: seg });
      i += seg.length;
      expectSegment = false;
    }
  }
  if (tokens.length === 0) return 'the path before "=" is empty';
  if (expectSegment) return `"${pathText}": ends with "."`;
  const unsafe = tokens.find((t) => 'key' in t && UNSAFE_KEYS.has(t.key));
  if (unsafe) return `"${pathText}": "${(unsafe as { key: string }).key}" is not a spec field`;

  let value: Json = '';
  if (valueText.trim() !== '') {
    const doc = parseDocument(valueText, { prettyErrors: false, uniqueKeys: true });
    const err = doc.errors[0];
    if (err && /maximum call stack/i.test(err.message))
      return `the value is nested too deeply (a spec value nests at most ${MAX_NESTING} levels)`;
    if (err) return `the value is not valid YAML: ${err.message}`;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      return `the value is not valid YAML: ${(e as Error).message}`;
    }
  }
  return { tokens, value };
}

/**
 * Applies one --set to `root` in place. Returns the path it wrote, or an error: a
 * string when the expression itself is malformed, `{path, error}` when the path cannot
 * be followed. Missing (or null) intermediate mappings are created; an index must name
 * an existing list item.
 */
function applySet(
  root: Record<string, Json>,
  expression: string,
): string | { path: Path; error?: string } {
  const parsed = parseSetExpression(expression);
  if (typeof parsed === 'string') return parsed;
  const path: Path = [];
  let container: Json = root;
  for (let t = 0; t < parsed.tokens.length; t++) {
    const token = parsed.tokens[t] as SetToken;
    const last = t === parsed.tokens.length - 1;
    const where = formatPath(path) || 'the top level';
    let seg: Segment;
    if (Array.isArray(container)) {
      if ('key' in token) return { path, error: `${where} is a list: index it with a number` };
      const index = 'index' in token ? token.index : Number(token.numeric);
      if (index >= container.length) {
        return {
          path: [...path, index],
          error: `${where} has ${container.length} item(s): index ${index} is beyond its end`,
        };
      }
      seg = index;
    } else if (isPlainObject(container)) {
      if ('index' in token)
        return {
          path,
          error: `${where} is a mapping, not a list: [${token.index}] cannot index it`,
        };
      seg = 'key' in token ? token.key : token.numeric;
    } else {
      return { path, error: `${where} is ${describeValue(container)}, which cannot be indexed` };
    }
    path.push(seg);
    const holder = container as Record<string | number, Json>;
    if (last) {
      // A recursive alias (`x=&a [*a]`) has no finite value, and a deep one overflows the
      // walks after this: refused at the path it was meant for, before anything walks it.
      const unsound = shapeProblem(parsed.value, path);
      if (unsound) return { path: unsound.path, error: unsound.message };
      holder[seg] = parsed.value;
      break;
    }
    const next = Object.hasOwn(holder, seg) ? holder[seg] : undefined;
    if (next === undefined || next === null) {
      const following = parsed.tokens[t + 1] as SetToken;
      if ('index' in following)
        return { path, error: `${formatPath(path)} does not exist, so it cannot be indexed` };
      holder[seg] = {};
    }
    container = holder[seg];
  }
  return { path };
}
