/**
 * Lineage as the controller records it (the descriptions themselves: orchestrator/lineage.ts).
 *
 *   consumed    a stage starts: what it reads from upstream stages, by content
 *   produced    a stage just succeeded: its outputs, by content
 *   writeFile   `<runDir>/lineage.json`: every stage's lineage, for payloads (a report
 *               stage) that cannot read the run store, and the run's resumes (what
 *               each resumed stage started from: RunRecord.resumes); rewritten only when
 *               its text changed
 *
 * None of these fails a stage or a pass: a path that cannot be described is listed under
 * the stage's lineage problems, and a lineage.json that cannot be written is logged.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { StageStatus } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import type { NormalizedStage } from '../../common/spec/schema.js';
import { LineageRecorder } from '../lineage.js';

export type Lineage = NonNullable<StageStatus['lineage']>;

export class RunLineage {
  private readonly recorder = new LineageRecorder();
  /** The last lineage.json text written per run. */
  private readonly written = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  /** What a starting stage reads from upstream stages, by content (never fails the stage). */
  async consumed(
    stage: NormalizedStage,
    upstream: Record<string, { outputs: Record<string, string> }>,
    roots: readonly string[],
  ): Promise<Lineage> {
    const { entries, problems } = await this.recorder.consumed(stage, upstream, roots);
    if (problems.length > 0)
      this.log.warn({ stage: stage.name, problems }, 'cannot describe some inputs');
    return { consumed: entries, produced: [], problems };
  }

  /** A stage that just succeeded, with its outputs described by content. */
  async withProduced(stage: StageStatus, roots: readonly string[]): Promise<StageStatus> {
    const { entries, problems } = await this.recorder.produced(stage.outputs, roots);
    const prev = stage.lineage ?? { consumed: [], produced: [], problems: [] };
    return {
      ...stage,
      lineage: {
        consumed: prev.consumed,
        produced: entries,
        problems: [...prev.problems, ...problems],
      },
    };
  }

  /** Write `<runDir>/lineage.json` when its text changed; a write failure is logged only. */
  writeFile(run: RunRecord, stages: Record<string, Lineage>): void {
    if (Object.keys(stages).length === 0) return;
    const resumes = run.resumes?.length ? { resumes: run.resumes } : {};
    const text = `${JSON.stringify({ run: run.id, name: run.name, stages, ...resumes }, null, 2)}\n`;
    if (this.written.get(run.id) === text) return;
    const path = join(run.runDir, 'lineage.json');
    try {
      mkdirSync(run.runDir, { recursive: true, mode: 0o700 });
      writeFileSync(`${path}.tmp`, text);
      renameSync(`${path}.tmp`, path);
      this.written.set(run.id, text);
    } catch (err) {
      this.log.warn({ err, runId: run.id, path }, 'cannot write lineage.json');
    }
  }

  /** A finished run: nothing more to write for it. */
  forget(runId: string): void {
    this.written.delete(runId);
  }
}
