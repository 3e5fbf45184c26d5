/**
 * Property tests of spec loading (fast-check, fixed seeds, a budget of runs): whatever the
 * YAML and the `--set` expressions, parseSpec returns a spec that JSON can hold, or throws
 * a SpecError whose every issue points somewhere. It never throws anything else (a
 * RangeError from a recursive alias, a TypeError from a circular value), and every run
 * finishes: the test's timeout bounds them all.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Document, isMap, isSeq, visit } from 'yaml';
import type { YAMLMap, YAMLSeq } from 'yaml';
import { SpecError } from '../../common/errors.js';
import type { SpecIssue } from '../../common/errors.js';
import { parseSpec } from '../../common/spec/index.js';

type Outcome = { ok: true } | { ok: false; issues: SpecIssue[] };

/** parseSpec's outcome; anything thrown but a SpecError fails the property. */
function load(text: string, sets: string[] = []): Outcome {
  try {
    const spec = parseSpec(text, { sets });
    // What `stoker validate --json` prints: must not be circular.
    JSON.stringify(spec);
    return { ok: true };
  } catch (err) {
    if (err instanceof SpecError) return { ok: false, issues: err.issues };
    throw err;
  }
}

/** A valid Pipeline, the base that mutations start from. */
const base = () => ({
  apiVersion: 'stoker/v1',
  kind: 'Pipeline',
  metadata: { name: 'prop' },
  spec: {
    params: { steps: 10 },
    defaults: { resources: { memory: '1Gi' }, terminationGracePeriod: '30s' },
    stages: [
      { name: 'a', kind: 'train', payload: { command: ['python3', 'a.py'] } },
      {
        name: 'b',
        kind: 'generate',
        dependsOn: ['a'],
        payload: { command: ['python3', 'b.py'] },
        input: { file: 'in.jsonl', shardSize: 5 },
        pool: { name: 'gen', maxReplicas: 2 },
        shardParams: { temperature: 0 },
      },
    ],
  },
});

/** Paths a mutation may write at (as lists of keys and indices), and fields below them. */
const PATHS: Array<Array<string | number>> = [
  ['spec', 'defaults', 'terminationGracePeriod'],
  ['spec', 'defaults', 'stallTimeout'],
  ['spec', 'defaults', 'resources', 'memory'],
  ['spec', 'defaults', 'resources', 'cpu'],
  ['spec', 'defaults', 'retry'],
  ['spec', 'stages', 0, 'resources'],
  ['spec', 'stages', 0, 'resources', 'nodes'],
  ['spec', 'stages', 0, 'resources', 'gpus'],
  ['spec', 'stages', 0, 'budget'],
  ['spec', 'stages', 0, 'payload'],
  ['spec', 'stages', 0, 'payload', 'env'],
  ['spec', 'stages', 0, 'kubernetes'],
  ['spec', 'stages', 1, 'pool', 'maxReplicas'],
  ['spec', 'stages', 1, 'pool', 'replicas'],
  ['spec', 'stages', 1, 'shardParams'],
  ['spec', 'stages', 1, 'dependsOn'],
  ['spec', 'stages'],
  ['spec', 'params'],
  ['metadata'],
  ['kind'],
  [],
];

/** Values that have broken loaders: bounds, zeros, huge numbers, odd types. */
const tricky = fc.constantFrom<unknown>(
  0,
  '0',
  '0Gi',
  -1,
  1e308,
  1e9,
  10_000,
  10_001,
  '30d',
  '7d',
  '1e308s',
  `${'9'.repeat(400)}s`,
  '',
  null,
  true,
  [],
  {},
  'python train.py',
  '${stages.zz.outputs.x}',
  '__proto__',
);

const leaf = fc.oneof(
  tricky,
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { maxDepth: 4 },
    leaf,
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('memory', 'delay', 'name')),
      tie('v'),
      { maxKeys: 4 },
    ),
  ),
})).v;

const mutation = fc.record({ path: fc.constantFrom(...PATHS), key: fc.string(), value });

/** Writes `v` at `path` (the last step under `key` when the path ends at a mapping). */
function mutate(
  doc: Record<string, unknown>,
  path: Array<string | number>,
  key: string,
  v: unknown,
) {
  let node: unknown = doc;
  for (const seg of path.slice(0, -1)) {
    if (typeof node !== 'object' || node === null) return;
    node = (node as Record<string | number, unknown>)[seg];
  }
  if (typeof node !== 'object' || node === null) return;
  const last = path[path.length - 1];
  if (last === undefined) (node as Record<string, unknown>)[key || 'extra'] = v;
  else (node as Record<string | number, unknown>)[last] = v;
}

/**
 * The document as YAML; with `loop`, one mapping or list made to contain an alias of
 * itself (`&a [..., *a]`), the recursive alias that once overflowed the stack.
 */
function toYaml(obj: unknown, loop: number | null): string {
  const doc = new Document(obj);
  if (loop !== null) {
    const collections: Array<YAMLMap | YAMLSeq> = [];
    visit(doc, {
      Map: (_k, n) => void collections.push(n),
      Seq: (_k, n) => void collections.push(n),
    });
    const target = collections[loop % collections.length];
    if (target) {
      const alias = doc.createAlias(target);
      if (isSeq(target)) target.add(alias);
      else if (isMap(target)) target.set('loop', alias);
    }
  }
  return doc.toString();
}

/** Every issue names a non-empty path (a mapping at the top: nothing is at the root). */
function expectPaths(outcome: Outcome, context: string): void {
  if (outcome.ok) return;
  expect(outcome.issues.length, context).toBeGreaterThan(0);
  for (const issue of outcome.issues) {
    expect(typeof issue.message, context).toBe('string');
    expect(issue.path, `${context}\n${JSON.stringify(issue)}`).not.toBe('');
  }
}

describe('parseSpec: properties', () => {
  it('mutated specs, some with a recursive alias: a spec or a SpecError with a path per issue', () => {
    let recursiveSeen = 0;
    fc.assert(
      fc.property(
        fc.array(mutation, { maxLength: 4 }),
        fc.option(fc.nat(), { nil: null }),
        (mutations, loop) => {
          const doc = base() as Record<string, unknown>;
          for (const m of mutations) mutate(doc, m.path, m.key, m.value);
          const text = toYaml(doc, loop);
          const outcome = load(text);
          expectPaths(outcome, text);
          if (loop !== null) {
            expect(outcome.ok, `a recursive alias was accepted:\n${text}`).toBe(false);
            if (!outcome.ok && outcome.issues.some((i) => /recursive alias/.test(i.message)))
              recursiveSeen++;
          }
        },
      ),
      { seed: 20261207, numRuns: 400 },
    );
    // The generator did make recursive aliases, and they were named as such.
    expect(recursiveSeen).toBeGreaterThan(50);
  }, 60_000);

  const SET_PATHS = [
    'spec.defaults.terminationGracePeriod',
    'spec.defaults.resources.memory',
    'spec.stages[0].resources.nodes',
    'spec.stages[0].payload.env.SEED',
    'spec.stages[1].pool.maxReplicas',
    'spec.stages[1].shardParams.x',
    'spec.stages[5].name',
    'spec.stages.0.retry.backoff.delay',
    'metadata.labels["a.b/c"]',
    'spec.params.steps',
    'kind',
  ];
  const SET_VALUES = [
    '&a [*a]',
    '&a {b: [1, *a]}',
    '[&a {x: 1}, *a, *a]',
    `${'['.repeat(3000)}${']'.repeat(3000)}`,
    `${'['.repeat(80)}${']'.repeat(80)}`,
    '30d',
    '1e308',
    '"0"',
    '0',
    '1e9',
    '*undefined',
    '{',
    '!!binary x',
    '',
  ];
  const setExpression = fc.oneof(
    fc
      .tuple(fc.constantFrom(...SET_PATHS), fc.constantFrom(...SET_VALUES))
      .map(([p, v]) => `${p}=${v}`),
    fc.tuple(fc.constantFrom(...SET_PATHS), fc.string()).map(([p, v]) => `${p}=${v}`),
    fc.string({ maxLength: 30 }),
    fc.stringMatching(/^[a-z.[\]0-9"]{0,20}=[a-z&*[\]{}:, 0-9]{0,20}$/).map((s) => s),
  );

  it('random --set expressions: a spec or a SpecError; each issue has a path or names its --set', () => {
    const text = toYaml(base(), null);
    fc.assert(
      fc.property(fc.array(setExpression, { minLength: 1, maxLength: 4 }), (sets) => {
        const outcome = load(text, sets);
        if (outcome.ok) return;
        for (const issue of outcome.issues) {
          // A malformed expression (no "=", an empty path) has no path to name: it names
          // the expression instead.
          const names = issue.path !== '' || /^--set /.test(issue.message);
          expect(names, JSON.stringify({ sets, issue })).toBe(true);
        }
      }),
      { seed: 7, numRuns: 500 },
    );
  }, 60_000);

  it('YAML-ish text: only ever a SpecError, each issue with a path or a line (or about the whole file)', () => {
    const header = 'apiVersion: stoker/v1\nkind: Pipeline\nmetadata: {name: prop}\n';
    const yamlish = fc
      .array(
        fc.constantFrom(
          '{',
          '}',
          '[',
          ']',
          ':',
          ', ',
          '&a ',
          '*a',
          '&b ',
          '*b',
          '- ',
          '\n',
          '\n  ',
          '  ',
          '#',
          '!!str ',
          '!x ',
          '"',
          "'",
          '|',
          '>',
          '<<: ',
          'spec',
          'stages',
          'name: s',
          'kind: train',
          'payload',
          'command',
          '30d',
          '0',
          '1e308',
          'memory',
          '?',
          '---',
          '%',
        ),
        { maxLength: 40 },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.boolean(), yamlish, (withHeader, body) => {
        const text = withHeader ? header + body : body;
        const outcome = load(text);
        if (outcome.ok) return;
        for (const issue of outcome.issues) {
          const points =
            issue.path !== '' ||
            issue.line !== undefined ||
            /the file is empty|YAML bomb/.test(issue.message);
          expect(points, JSON.stringify({ text, issue })).toBe(true);
        }
      }),
      { seed: 11, numRuns: 1000 },
    );
  }, 60_000);
});
