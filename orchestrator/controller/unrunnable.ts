/**
 * A run the backend cannot run (Backend.checkSpec: a namespace the kubernetes backend
 * does not manage, for one): while it is Pending, every stage that has not started fails
 * with reason InvalidSpec before anything starts. A stage's message lists the issues
 * under its own path in the spec; a stage with none of its own is "not run: <every
 * issue>". The run then fails through the planner, as with any failed stage.
 */
import type { SpecIssue } from '../../common/errors.js';
import { isTerminal } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import { stagePath } from '../../common/spec/rules.js';
import { formatPath } from '../../common/spec/values.js';
import { failStage, type ControllerContext } from './context.js';

export async function rejectIfUnrunnable(ctx: ControllerContext, run: RunRecord): Promise<void> {
  const spec = run.spec;
  const issues = ctx.backend?.checkSpec?.(spec) ?? [];
  if (issues.length === 0) return;
  const text = (i: SpecIssue) => `${i.path}: ${i.message}`;
  ctx.log.warn(
    { runId: run.id, backend: ctx.backend?.name, issues: issues.map(text) },
    'the backend cannot run this spec; failing the run',
  );
  /** Where a stage's fields are in the spec, as the backend's issues name them. */
  const pathOf = (name: string) =>
    `${formatPath(
      stagePath(
        spec.kind,
        spec.stages.findIndex((s) => s.name === name),
      ),
    )}.`;
  const stages = await ctx.store.getStages(run.id);
  for (const status of Object.values(stages)) {
    if (isTerminal(status.phase) || status.tasks.length > 0) continue;
    const own = issues.filter((i) => i.path.startsWith(pathOf(status.name)));
    const message = own.length
      ? own.map(text).join('; ')
      : `not run: ${issues.map(text).join('; ')}`;
    await failStage(ctx, run.id, status, 'InvalidSpec', message);
  }
}
