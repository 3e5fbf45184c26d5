/**
 * evaluation.json of a stoker_fire.evaluate output directory: what ran (the engine after
 * `--backend auto`, the teacher's, the device). The report shows it as its "Engines" line.
 */
import { z } from 'zod';
import { readRegularFileSync } from '../../common/regular-file.js';

/** The part of evaluation.json the report shows; other fields are kept as they are. */
export const EvaluationRunSchema = z.looseObject({
  engine: z.string(),
  teacherEngine: z.string().nullish(),
  device: z.string().nullish(),
});
export type EvaluationRun = z.infer<typeof EvaluationRunSchema>;

/** The file's run; an Error naming the file and what is wrong otherwise. */
export function readEvaluationRun(file: string, maxBytes: number): EvaluationRun {
  let data: unknown;
  try {
    // Non-blocking and a regular file only, like every report input.
    data = JSON.parse(readRegularFileSync(file, maxBytes));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  const parsed = EvaluationRunSchema.safeParse(data);
  if (!parsed.success)
    throw new Error(
      `${file}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

/** `tiny (device cpu)`, `hf, teacher tiny (device cuda)`. */
export function engineText(run: EvaluationRun): string {
  const teacher =
    run.teacherEngine && run.teacherEngine !== run.engine ? `, teacher ${run.teacherEngine}` : '';
  return `${run.engine}${teacher} (device ${run.device ?? 'default'})`;
}
