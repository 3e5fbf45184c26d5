/**
 * API v1 (under /api/v1; who may call what: server.ts). JSON in and out; the bodies are
 * the CLI's own JSON contracts (README, "JSON output"):
 *
 *   GET  /runs?phase=P&name=N&limit=L&cursor=C   {runs: [RunSummary], next: cursor|null},
 *                                                newest first; cursor: where the next
 *                                                page starts
 *   POST /runs?set=k=v&workDir=DIR&takeOverPools=true
 *                                                submit: the body is the spec, YAML or
 *                                                JSON; 201 {id}; an invalid spec is a 422
 *                                                with the same issues (path, line) as
 *                                                `stoker validate`
 *   GET  /runs/RUN                               RunView (an id, an id prefix or a name)
 *   POST /runs/RUN/cancel                        202 {id, cancelRequested: true}
 *   POST /runs/RUN/resume                        202 ResumeAccepted: a run that ended Failed
 *                                                or Cancelled runs again from where it
 *                                                stopped (../resume.ts); 409 otherwise
 *   GET  /runs/RUN/logs?task=&attempt=&offset=   a task attempt's log, a chunk at a time
 *                                                (logs.ts)
 *   GET  /runs/RUN/metrics?task=&attempt=&points= a task attempt's metric history, each
 *                                                metric downsampled (history.ts)
 *   GET  /runs/RUN/report                        a FIRE run's report (report.ts)
 *   GET  /tasks/TASK                             one task (a shard too): TaskView + runId, stage
 *   GET  /whoami                                 {role}: what this token may do
 *   GET  /pools, /pools/NAME                     PoolView(s)
 *   GET  /pools/NAME/backlog                     PoolBacklog: one number for KEDA (backlog.ts)
 *   POST /pools/NAME/scale {"replicas": N, "for": "30m"} | {"auto": true}
 *                                                pin the pool (for a while, or until
 *                                                auto), or end the pin: the PoolView
 *                                                after the change
 *   GET  /queues                                 BullMQ's counts per queue
 *   POST /queues/NAME/pause, /queues/NAME/resume the QueueRow after it (paused jobs stay
 *                                                queued; running ones finish)
 *   POST /queues/NAME/clean {state, olderThanSeconds, limit}
 *                                                remove finished jobs' records (completed
 *                                                or failed): {queue, state, removed}
 *   POST /queues/NAME/retry {limit}              retry failed jobs the way stoker's
 *                                                records allow (../queue-retry.ts): a
 *                                                QueueRetryResult
 *   GET  /events                                 server-sent events of run and pool changes
 *                                                (events.ts)
 *   GET  /openapi.json                           this API as an OpenAPI 3.1 document
 */
import { isAbsolute } from 'node:path';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { backlogRoutes } from './backlog.js';
import { z } from 'zod';
import { isTerminal, Phase } from '../../common/model.js';
import { parseSpec } from '../../common/spec/load.js';
import { kubernetesSpecRules } from '../backends/kubernetes/spec-rules.js';
import { TimerDuration } from '../../common/spec/schema.js';
import { buildPoolView, scalePool, unpinPool } from '../pools.js';
import { EventHub } from './events.js';
import { HistoryQuery, readHistory } from './history.js';
import { LogsQuery, readLogs } from './logs.js';
import { readFireReport } from './report.js';
import { type ApiSource, BadRequestError, NotFoundError } from './source.js';
import { openApiDocument } from './openapi.js';
import { QueueRetryBody, retryFailedJobs } from '../queue-retry.js';
import { requestResume } from '../resume.js';
import type { RunRecord } from '../run-record.js';
import { buildRunView, summarize, taskView } from '../views.js';

const RunsQuery = z.strictObject({
  phase: Phase.optional(),
  name: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  cursor: z.coerce.number().int().min(0).default(0),
});
const SubmitQuery = z.strictObject({
  set: z.union([z.string(), z.array(z.string())]).optional(),
  workDir: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  /** As --take-over-pools: a live pool the spec declares otherwise takes the spec's settings. */
  takeOverPools: z.enum(['true', 'false']).optional(),
});
/** A pin ({replicas, for?}: `for` a duration such as "30m" or seconds), or {auto: true}. */
const ScaleBody = z
  .strictObject({
    replicas: z.number().int().min(0).optional(),
    for: TimerDuration.optional(),
    auto: z.literal(true).optional(),
  })
  .superRefine((b, ctx) => {
    if ((b.replicas === undefined) === (b.auto === undefined))
      ctx.addIssue({ code: 'custom', message: 'give replicas (a pin) or auto: true, not both' });
    else if (b.auto && b.for !== undefined)
      ctx.addIssue({ code: 'custom', path: ['for'], message: 'for goes with replicas' });
  });
/** Only the records of finished jobs: stoker's tasks keep their own status and outcome. */
const CleanBody = z.strictObject({
  state: z.enum(['completed', 'failed']),
  olderThanSeconds: z.number().int().min(0).default(0),
  limit: z.number().int().min(1).max(100_000).default(1000),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    const at = i.path.length ? `${where}.${i.path.join('.')}` : where;
    return `${at}: ${i.message}`;
  });
  throw new BadRequestError(problems.join('; '));
}

export function apiRoutes(src: ApiSource): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    runRoutes(app, src);
    taskRoutes(app, src);
    poolRoutes(app, src);
    backlogRoutes(app, src);
    queueRoutes(app, src);
    const hub = new EventHub(src);
    // Before the server closes: an open stream would hold its close up.
    app.addHook('preClose', () => hub.close());
    app.get('/events', { config: { access: 'read' } }, async (req, reply) => {
      reply.hijack();
      await hub.attach(reply.raw);
    });
    app.get('/whoami', { config: { access: 'read' } }, (req) => ({ role: req.role }));
    app.get('/openapi.json', { config: { access: 'read' } }, () => openApiDocument());
  };
}

function runRoutes(app: FastifyInstance, src: ApiSource): void {
  const { store, redis, keys } = src;

  app.get('/runs', { config: { access: 'read' } }, async (req) => {
    const q = parse(RunsQuery, req.query, 'query');
    return listRuns(src, q);
  });

  app.post('/runs', { config: { access: 'admin' } }, async (req, reply) => {
    const q = parse(SubmitQuery, req.query, 'query');
    const text = specText(req.body);
    const sets = q.set === undefined ? [] : Array.isArray(q.set) ? q.set : [q.set];
    const spec = parseSpec(text, { file: 'body', sets, rules: [kubernetesSpecRules] });
    const run = await store.createRun(spec, {
      home: src.home,
      ...(q.workDir ? { workDir: q.workDir } : {}),
      takeOverPools: q.takeOverPools === 'true',
    });
    return reply.code(201).send({ id: run.id, name: run.name, phase: run.phase });
  });

  app.get<{ Params: { run: string } }>(
    '/runs/:run',
    { config: { access: 'read' } },
    async (req) => {
      const runId = await store.resolveRunId(req.params.run);
      return buildRunView(store, redis, keys, runId);
    },
  );

  app.post<{ Params: { run: string } }>(
    '/runs/:run/cancel',
    { config: { access: 'admin' } },
    async (req, reply) => {
      const runId = await store.resolveRunId(req.params.run);
      const run = await store.mustGetRun(runId);
      if (isTerminal(run.phase))
        return reply.code(409).send({
          error: { code: 'Conflict', message: `run ${runId} already ${run.phase}` },
        });
      await store.requestCancel(runId);
      return reply.code(202).send({ id: runId, cancelRequested: true });
    },
  );

  // The routes are admin-only: the resume is recorded as the admin token's.
  app.post<{ Params: { run: string } }>(
    '/runs/:run/resume',
    { config: { access: 'admin' } },
    async (req, reply) => {
      const runId = await store.resolveRunId(req.params.run);
      return reply.code(202).send(await requestResume(redis, keys, runId, 'api:admin'));
    },
  );
}

/** What the dashboard and `stoker logs` read of a run's tasks: logs, metric history, a task, the report. */
function taskRoutes(app: FastifyInstance, src: ApiSource): void {
  const { store, redis, keys } = src;
  app.get<{ Params: { run: string } }>(
    '/runs/:run/logs',
    { config: { access: 'read' } },
    async (req) => {
      const q = parse(LogsQuery, req.query, 'query');
      return readLogs(src, await store.resolveRunId(req.params.run), q);
    },
  );

  app.get<{ Params: { run: string } }>(
    '/runs/:run/metrics',
    { config: { access: 'read' } },
    async (req) => {
      const q = parse(HistoryQuery, req.query, 'query');
      return readHistory(src, await store.resolveRunId(req.params.run), q);
    },
  );

  app.get<{ Params: { task: string } }>(
    '/tasks/:task',
    { config: { access: 'read' } },
    async (req) => {
      const id = req.params.task;
      const status = (await store.getTaskStatuses([id]))[id];
      if (!status) throw new NotFoundError(`no task "${id}"`);
      return {
        ...(await taskView(redis, keys, id, status)),
        runId: status.runId,
        stage: status.stage,
      };
    },
  );

  app.get<{ Params: { run: string } }>(
    '/runs/:run/report',
    { config: { access: 'read' } },
    async (req) => readFireReport(src, await store.resolveRunId(req.params.run)),
  );
}

function poolRoutes(app: FastifyInstance, src: ApiSource): void {
  const { redis, keys, queues } = src;
  app.get('/pools', { config: { access: 'read' } }, async () => {
    const names = (await redis.smembers(keys.pools())).sort();
    const pools = [];
    for (const name of names) {
      const v = await buildPoolView(redis, keys, name, queues.poolCounts);
      if (v) pools.push(v);
    }
    return { pools };
  });

  app.get<{ Params: { pool: string } }>(
    '/pools/:pool',
    { config: { access: 'read' } },
    async (req) => {
      const v = await buildPoolView(redis, keys, req.params.pool, queues.poolCounts);
      if (!v) throw new NotFoundError(`no pool "${req.params.pool}"`);
      return v;
    },
  );

  app.post<{ Params: { pool: string } }>(
    '/pools/:pool/scale',
    { config: { access: 'admin' } },
    async (req) => {
      const body = parse(ScaleBody, req.body, 'body');
      if (!(await redis.sismember(keys.pools(), req.params.pool)))
        throw new NotFoundError(`no pool "${req.params.pool}"`);
      if (body.replicas === undefined) await unpinPool(redis, keys, req.params.pool);
      else
        await scalePool(redis, keys, req.params.pool, body.replicas, {
          ...(body.for === undefined ? {} : { forSeconds: body.for }),
          by: `api:${req.role}`,
        });
      return buildPoolView(redis, keys, req.params.pool, queues.poolCounts);
    },
  );
}

function queueRoutes(app: FastifyInstance, { queues, redis, keys, store }: ApiSource): void {
  app.get('/queues', { config: { access: 'read' } }, async () => {
    const out = [];
    for (const name of await queues.names()) out.push(await queues.counts(name));
    return { queues: out };
  });
  const known = async (name: string) => {
    if (!(await queues.names()).includes(name))
      throw new NotFoundError(`no queue "${name}" (GET /api/v1/queues lists them)`);
    return name;
  };
  app.post<{ Params: { queue: string } }>(
    '/queues/:queue/pause',
    { config: { access: 'admin' } },
    async (req) => {
      const name = await known(req.params.queue);
      await queues.queue(name).pause();
      return queues.counts(name);
    },
  );
  app.post<{ Params: { queue: string } }>(
    '/queues/:queue/clean',
    { config: { access: 'admin' } },
    async (req) => {
      const name = await known(req.params.queue);
      const { state, olderThanSeconds, limit } = parse(CleanBody, req.body, 'body');
      const removed = await queues.queue(name).clean(olderThanSeconds * 1000, limit, state);
      return { queue: name, state, removed: removed.length };
    },
  );
  app.post<{ Params: { queue: string } }>(
    '/queues/:queue/retry',
    { config: { access: 'admin' } },
    async (req) => {
      const name = await known(req.params.queue);
      const { limit } = parse(QueueRetryBody, req.body, 'body');
      const queue = queues.queue(name);
      return retryFailedJobs({ redis, keys, store, queue, by: 'api:admin' }, limit);
    },
  );
  app.post<{ Params: { queue: string } }>(
    '/queues/:queue/resume',
    { config: { access: 'admin' } },
    async (req) => {
      const name = await known(req.params.queue);
      await queues.queue(name).resume();
      return queues.counts(name);
    },
  );
}

/** The submitted spec as text: YAML as sent, or a JSON body (YAML is a superset of JSON). */
function specText(body: unknown): string {
  if (typeof body === 'string') {
    if (body.trim() === '') throw new BadRequestError('body: the spec is empty');
    return body;
  }
  if (body && typeof body === 'object' && !Array.isArray(body))
    return JSON.stringify(body, null, 2);
  throw new BadRequestError(
    'body: send the spec as YAML (Content-Type: application/yaml) or as a JSON object',
  );
}

async function listRuns(src: ApiSource, q: z.infer<typeof RunsQuery>) {
  const { store } = src;
  const runs: RunRecord[] = [];
  let cursor = q.cursor;
  const chunk = Math.max(q.limit, 100);
  for (;;) {
    const page = await store.listRunsAt(cursor, chunk);
    for (const [i, r] of page.entries()) {
      if (!r) continue;
      if (q.phase && r.phase !== q.phase) continue;
      if (q.name && r.name !== q.name) continue;
      runs.push(r);
      if (runs.length === q.limit) {
        const next = cursor + i + 1;
        const more = next < (await store.runCount());
        return { runs: await summarize(store, runs), next: more ? next : null };
      }
    }
    if (page.length < chunk) return { runs: await summarize(store, runs), next: null };
    cursor += chunk;
  }
}
