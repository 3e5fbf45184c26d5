/**
 * Training views of raw FIRE records (docs/fire.md, section 2), as LLaVA
 * conversation records {id, image?, conversations: [{from, value}]}, loss on gpt turns.
 * Built with prompts.ts, the twin of worker/python/src/stoker_fire/prompts.py, so the student and
 * the teacher are trained on exactly the prompts self-play gives them.
 *
 * student   one per dialogue, id = the dialogue's id:
 *             human `<image>\n{question}` -> gpt response 1
 *             -> human feedback text of round 1 (score stripped: parsing.feedbackText)
 *             -> gpt response 2 -> ... -> gpt the last response.
 *           The last teacher turn has no response after it and is not included. This is
 *           studentMessages(question, responses[:-1], feedbacks[:-1]) + gpt(last response).
 * teacher   one per round r (1-based), id `{id}#t{r}`, no image (the teacher does not see
 *           it): teacherMessages(question, groundtruth, response r) + gpt(teacher turn r,
 *           verbatim, score line included).
 * answers   one per dialogue whose last (parsed) score is >= satisfied (8): human
 *           `<image>\n{question}` -> gpt the last student response: correct answers in
 *           the student format, to train a baseline that never saw feedback.
 * Turn texts are used verbatim (the FIRE data's trailing newlines included), except
 * feedback given to the student, which is parsing.feedbackText's stripped text.
 *
 * buildViews() writes OUT/student.jsonl, OUT/teacher.jsonl, OUT/answers.jsonl (compact
 * JSON, one record a line, UTF-8), each under a temporary name renamed into place when
 * every record was written: a failed run leaves earlier outputs as they were.
 * A bad record (any validate error; images checked only with imagesDir) fails the run
 * with its line and reason, or is skipped and counted with skipBad. maxLength bounds a
 * view record's text: the sum of its message values' lengths in characters (Unicode
 * code points, as Python's len()); a longer record fails the run, or with skipBad is
 * left out of that view only (the dialogue's other view records are still written).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { feedbackText } from '../parsing.js';
import { AtomicFile } from './jsonl.js';
import {
  gpt,
  human,
  IMAGE_TOKEN,
  studentMessages,
  teacherMessages,
  type Message,
} from './prompts.js';
import { BadRecordError, badRecordReason, SATISFIED, type Dialogue } from './record.js';
import { checkLines } from './validate.js';

export const VIEW_NAMES = ['student', 'teacher', 'answers'] as const;
export type ViewName = (typeof VIEW_NAMES)[number];

/** Teacher view ids: `${dialogueId}${TEACHER_ID_SEPARATOR}${round}`, e.g. `gqa-1#t2`. */
export const TEACHER_ID_SEPARATOR = '#t';

export interface ViewRecord {
  id: string;
  image?: string;
  conversations: Message[];
}

export function studentView(d: Dialogue): ViewRecord {
  const n = d.responses.length;
  const feedbacks = d.teacherTurns.slice(0, n - 1).map(feedbackText);
  const conversations = [
    ...studentMessages(d.question, d.responses.slice(0, n - 1), feedbacks),
    gpt(d.responses[n - 1] as string),
  ];
  return { id: d.id, image: d.image, conversations };
}

export function teacherViews(d: Dialogue): ViewRecord[] {
  return d.teacherTurns.map((turn, i) => ({
    id: `${d.id}${TEACHER_ID_SEPARATOR}${i + 1}`,
    conversations: [
      ...teacherMessages(d.question, d.groundtruth, d.responses[i] as string),
      gpt(turn),
    ],
  }));
}

export function answersView(d: Dialogue, satisfied = SATISFIED): ViewRecord | null {
  const last = d.scores[d.scores.length - 1];
  if (last === undefined || last < satisfied) return null;
  return {
    id: d.id,
    image: d.image,
    conversations: [
      human(`${IMAGE_TOKEN}\n${d.question}`),
      gpt(d.responses[d.responses.length - 1] as string),
    ],
  };
}

export function viewsOf(d: Dialogue, view: ViewName, satisfied = SATISFIED): ViewRecord[] {
  switch (view) {
    case 'student':
      return [studentView(d)];
    case 'teacher':
      return teacherViews(d);
    case 'answers': {
      const a = answersView(d, satisfied);
      return a ? [a] : [];
    }
  }
}

/** Characters (Unicode code points) of a string. */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** A view record's text length: its message values together, in characters. */
export const viewLength = (v: ViewRecord): number =>
  v.conversations.reduce((sum, m) => sum + charCount(m.value), 0);

export interface ViewsOptions {
  outDir: string;
  views: readonly ViewName[];
  imagesDir?: string;
  skipBad?: boolean;
  maxLength?: number;
  satisfied?: number;
}

export interface ViewsReport {
  file: string;
  outDir: string;
  views: ViewName[];
  /** Non-blank input lines. */
  records: number;
  /** Dialogues the views were built from. */
  dialogues: number;
  /** Bad records skipped (--skip-bad). */
  skippedBad: number;
  /** View records left out for --max-length (--skip-bad), per view. */
  skippedTooLong: Partial<Record<ViewName, number>>;
  /** View records written, per view. */
  written: Partial<Record<ViewName, number>>;
  files: Partial<Record<ViewName, string>>;
  /** The first skipped records, with why (at most 20). */
  skipped: Array<{ line: number; reason: string }>;
  seconds: number;
}

const LISTED_SKIPS = 20;

export async function buildViews(file: string, opts: ViewsOptions): Promise<ViewsReport> {
  const t0 = performance.now();
  const satisfied = opts.satisfied ?? SATISFIED;
  const views = VIEW_NAMES.filter((v) => opts.views.includes(v));
  await mkdir(opts.outDir, { recursive: true });
  const writers = new Map<ViewName, AtomicFile>();
  const report: ViewsReport = {
    file,
    outDir: opts.outDir,
    views,
    records: 0,
    dialogues: 0,
    skippedBad: 0,
    skippedTooLong: {},
    written: Object.fromEntries(views.map((v) => [v, 0])),
    files: Object.fromEntries(views.map((v) => [v, join(opts.outDir, `${v}.jsonl`)])),
    skipped: [],
    seconds: 0,
  };
  const skip = (line: number, reason: string) => {
    if (report.skipped.length < LISTED_SKIPS) report.skipped.push({ line, reason });
  };
  try {
    for (const v of views) writers.set(v, await AtomicFile.create(join(opts.outDir, `${v}.jsonl`)));
    for await (const r of checkLines(file, {
      duplicates: true,
      satisfied,
      ...(opts.imagesDir ? { imagesDir: opts.imagesDir } : {}),
    })) {
      report.records++;
      const dialogue = r.checked?.dialogue;
      if (!r.ok || !dialogue) {
        const reason = badRecordReason(r.issues);
        if (!opts.skipBad)
          throw new BadRecordError(
            `${file}:${r.line}: ${reason} (--skip-bad skips bad records; stoker data validate lists them all)`,
          );
        report.skippedBad++;
        skip(r.line, reason);
        continue;
      }
      report.dialogues++;
      for (const v of views) {
        for (const rec of viewsOf(dialogue, v, satisfied)) {
          if (opts.maxLength !== undefined) {
            const n = viewLength(rec);
            if (n > opts.maxLength) {
              const reason = `${v} view ${JSON.stringify(rec.id)} is ${n} characters, over --max-length ${opts.maxLength}`;
              if (!opts.skipBad)
                throw new BadRecordError(
                  `${file}:${r.line}: ${reason} (--skip-bad leaves such records out)`,
                );
              report.skippedTooLong[v] = (report.skippedTooLong[v] ?? 0) + 1;
              skip(r.line, reason);
              continue;
            }
          }
          await (writers.get(v) as AtomicFile).write(`${JSON.stringify(rec)}\n`);
          report.written[v] = (report.written[v] ?? 0) + 1;
        }
      }
    }
    for (const w of writers.values()) await w.commit();
  } catch (err) {
    for (const w of writers.values()) await w.abort();
    throw err;
  }
  report.seconds = Math.round((performance.now() - t0) / 10) / 100;
  return report;
}
