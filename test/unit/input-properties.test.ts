/**
 * Property tests over what payloads and datasets send (fast-check, fixed seeds, a budget
 * of runs): a payload's stdout line (common/events.ts parseLine) and a dataset record
 * (fire/data/record.ts checkRecord) never throw, whatever they are; a rejection always
 * says what is wrong; nothing that is not a marker is taken for one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MARKER, MAX_MARKER_BYTES, parseLine } from '../../common/events.js';
import { checkRecord } from '../../fire/data/record.js';

const SEED = 20261207;

/** Marker lines as payloads, launchers and attackers write them. */
const markerLine = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.json().map((j) => `${MARKER} ${j}`),
  fc
    .tuple(
      fc.constantFrom('', '[default0]:', '0: '),
      fc.record(
        {
          type: fc.constantFrom(
            'progress',
            'metrics',
            'checkpoint',
            'artifact',
            'result',
            'log',
            'done',
            'failed',
            'ready',
            'nope',
          ),
          step: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
          totalSteps: fc.oneof(fc.integer(), fc.constant(-1), fc.constant(1e308)),
          loss: fc.oneof(fc.double(), fc.string()),
          path: fc.string(),
          name: fc.string(),
          message: fc.string(),
          id: fc.string(),
          items: fc.integer(),
          reason: fc.string(),
          __proto__: fc.constant({ polluted: true }),
        },
        { requiredKeys: ['type'] },
      ),
    )
    .map(([prefix, o]) => `${prefix}${MARKER} ${JSON.stringify(o)}`),
  fc.string({ maxLength: 50 }).map((s) => `${MARKER}${s}`),
);

describe('a payload line', () => {
  it('never throws: a log line, a valid event, or a malformed marker with its reason', () => {
    fc.assert(
      fc.property(markerLine, (line) => {
        const parsed = parseLine(line);
        if (!line.includes(MARKER)) expect(parsed).toEqual({ kind: 'log', line });
        if (parsed.kind === 'malformed') expect(parsed.error.length).toBeGreaterThan(0);
        if (parsed.kind === 'event') {
          expect(typeof parsed.event.type).toBe('string');
          expect(Object.prototype).not.toHaveProperty('polluted');
        }
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('refuses a marker longer than it parses, without parsing it', () => {
    const huge = `${MARKER} {"type":"log","message":"${'x'.repeat(MAX_MARKER_BYTES + 10)}"}`;
    expect(parseLine(huge)).toMatchObject({ kind: 'malformed' });
  });
});

describe('a dataset record', () => {
  it('never throws: a dialogue or issues, each with a code and a message', () => {
    const anyValue = fc.oneof(
      fc.jsonValue(),
      fc.record({
        id: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
        image: fc.oneof(fc.string(), fc.constant('../../etc/passwd'), fc.integer()),
        question: fc.oneof(fc.record({ role: fc.string(), value: fc.string() }), fc.string()),
        groundtruth: fc.oneof(fc.record({ role: fc.string(), value: fc.string() }), fc.jsonValue()),
        conversations: fc.array(
          fc.record({
            role: fc.string(),
            type: fc.string(),
            value: fc.oneof(fc.string(), fc.integer()),
          }),
          { maxLength: 12 },
        ),
        score: fc.array(fc.oneof(fc.integer(), fc.double(), fc.string()), { maxLength: 12 }),
        round: fc.oneof(fc.integer(), fc.string()),
      }),
    );
    fc.assert(
      fc.property(anyValue, (v) => {
        const checked = checkRecord(v);
        for (const i of checked.issues) {
          expect(typeof i.code).toBe('string');
          expect(i.message.length).toBeGreaterThan(0);
        }
        if (checked.issues.length === 0) expect(checked.dialogue).not.toBeNull();
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });
});
