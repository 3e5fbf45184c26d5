/**
 * RunSpecDocument: the one schema a spec is parsed with. The structure of each kind
 * (schema.ts's RunSpecShape) and, as a refinement of it, the graph checks (graph.ts),
 * whose issues are zod issues like the others: `custom`, at the path of the value they
 * are about, with `params.graph` set (and `params.atKey` where the key is at fault).
 *
 * The refinement runs even when the structure failed somewhere (zod's `when`: by default
 * a refinement is skipped after a failure), on the document as zod left it; graph.ts
 * types the parts it needs field by field with the same schemas, and skips what does not
 * type. So a typo in one stage and a cycle across three are reported together.
 */
import type { z } from 'zod';
import { graphIssues } from './graph.js';
import { RunSpecShape } from './schema.js';

export const RunSpecDocument = RunSpecShape.superRefine(
  (value: unknown, ctx) => {
    for (const issue of graphIssues(value)) {
      ctx.addIssue({
        code: 'custom',
        path: issue.path,
        message: issue.message,
        params: { graph: true, ...(issue.atKey ? { atKey: true } : {}) },
      });
    }
  },
  { when: () => true },
);
export type RunSpecDocument = z.output<typeof RunSpecDocument>;

/** An issue of the graph checks (the rest is the structure's). */
export const isGraphIssue = (issue: z.core.$ZodIssue): boolean =>
  issue.code === 'custom' && issue.params?.['graph'] === true;
