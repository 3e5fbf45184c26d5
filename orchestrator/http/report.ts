/**
 * GET /api/v1/runs/RUN/report: the FIRE report of a run whose `report` stage succeeded
 * (`stoker report` wrote it: report.json, the stage's `json` output), as the dashboard
 * shows it: the headline table (AT normalised, AT, ADR, ATR, RR) and acc@t per model.
 *
 * The file is a payload's output, so it is read as untrusted: a regular file only (not
 * a FIFO or a device), at most MAX_REPORT_BYTES, and checked against the fields used
 * here; anything else is a 422 naming the stage, the file and what is wrong.
 */
import { closeSync, fstatSync, openSync, readSync, constants } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { formatPath } from '../../common/spec/values.js';
import { UsageError } from '../../common/errors.js';
import { buildRunView } from '../views.js';
import { type ApiSource, NotFoundError } from './source.js';

const MAX_REPORT_BYTES = 8 * 1024 * 1024;

const maybe = z.number().nullable();
const ModelRow = z.object({
  name: z.string(),
  atNormalised: maybe,
  free: z.object({
    dialogues: z.number(),
    accAt: z.array(maybe),
    rr: maybe,
    at: maybe,
    adr: maybe,
    atr: maybe,
  }),
});
const ReportFile = z.object({
  title: z.string(),
  baseline: z.string(),
  models: z.array(ModelRow).max(100),
});

export const FireReportView = z.object({
  run: z.string(),
  stage: z.string(),
  file: z.string(),
  title: z.string(),
  baseline: z.string(),
  models: z.array(
    z.object({
      name: z.string(),
      dialogues: z.number(),
      atNormalised: maybe,
      at: maybe,
      adr: maybe,
      atr: maybe,
      rr: maybe,
      accAt: z.array(maybe),
    }),
  ),
});
export type FireReportView = z.infer<typeof FireReportView>;

export async function readFireReport(src: ApiSource, runId: string): Promise<FireReportView> {
  const view = await buildRunView(src.store, src.redis, src.keys, runId);
  const stage = view.stages.find((s) => s.kind === 'report' && s.phase === 'Succeeded');
  if (!stage) throw new NotFoundError(`run ${view.id} has no succeeded report stage`);
  const out = stage.outputs.json;
  if (!out) throw new NotFoundError(`stage ${stage.name} of run ${view.id} has no "json" output`);
  const file = isAbsolute(out) ? out : join(view.runDir, out);
  const text = readRegularFile(file, `stage ${stage.name}'s json output ${file}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`stage ${stage.name}'s json output ${file}: ${(err as Error).message}`);
  }
  const r = ReportFile.safeParse(raw);
  if (!r.success) {
    const at = r.error.issues
      .slice(0, 3)
      .map(
        (i) =>
          `${formatPath(i.path.filter((p) => typeof p !== 'symbol')) || '<root>'}: ${i.message}`,
      );
    throw new UsageError(
      `stage ${stage.name}'s json output ${file} is not a FIRE report: ${at.join('; ')}`,
    );
  }
  return {
    run: view.id,
    stage: stage.name,
    file,
    title: r.data.title,
    baseline: r.data.baseline,
    models: r.data.models.map((m) => ({
      name: m.name,
      dialogues: m.free.dialogues,
      atNormalised: m.atNormalised,
      at: m.free.at,
      adr: m.free.adr,
      atr: m.free.atr,
      rr: m.free.rr,
      accAt: m.free.accAt,
    })),
  };
}

/** A regular file's text, at most MAX_REPORT_BYTES; never blocks on a FIFO. */
function readRegularFile(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new NotFoundError(`${what}: ${(err as NodeJS.ErrnoException).code ?? 'cannot open'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${what} is not a regular file`);
    if (st.size > MAX_REPORT_BYTES)
      throw new UsageError(`${what} is ${st.size} bytes, over the ${MAX_REPORT_BYTES} read here`);
    const buf = Buffer.alloc(st.size);
    const n = readSync(fd, buf, 0, st.size, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
