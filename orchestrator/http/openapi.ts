/**
 * The OpenAPI 3.1 document of API v1 (GET /api/v1/openapi.json), built from the same zod
 * schemas the CLI's JSON output and the spec loader use (zod 4's JSON Schema output, draft
 * 2020-12, which OpenAPI 3.1 takes as is), so the document cannot drift from what the
 * routes send. The paths are written here, beside the routes (routes.ts).
 */
import { z } from 'zod';
import { RunSpecDocument } from '../../common/spec/document.js';
import { PoolView } from '../pools.js';
import { PoolBacklog } from './backlog.js';
import { QueueRow } from '../queue-counts.js';
import { QueueRetryResult } from '../queue-retry.js';
import { MetricHistoryView } from '../metric-history.js';
import { dashboardPaths, historyPaths } from './openapi-history.js';
import { FireReportView } from './report.js';
import { LogChunk } from './logs.js';
import { errors, json, poolParam, ref, runParam } from './openapi-parts.js';
import { queuePaths } from './openapi-queues.js';
import { ResumeAccepted } from '../resume.js';
import { RunSummary, RunView, TaskDetail } from '../views.js';

const SpecIssue = z.object({
  path: z.string(),
  message: z.string(),
  line: z.number().int().optional(),
  column: z.number().int().optional(),
});

const ApiError = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    issues: z.array(SpecIssue).optional(),
  }),
});

function componentSchemas(): Record<string, unknown> {
  const reg = z.registry<{ id: string }>();
  reg.add(RunView, { id: 'RunView' });
  reg.add(TaskDetail, { id: 'TaskDetail' });
  reg.add(RunSummary, { id: 'RunSummary' });
  reg.add(PoolView, { id: 'PoolView' });
  reg.add(PoolBacklog, { id: 'PoolBacklog' });
  reg.add(QueueRow, { id: 'QueueRow' });
  reg.add(LogChunk, { id: 'LogChunk' });
  reg.add(ResumeAccepted, { id: 'ResumeAccepted' });
  reg.add(QueueRetryResult, { id: 'QueueRetryResult' });
  reg.add(MetricHistoryView, { id: 'MetricHistory' });
  reg.add(FireReportView, { id: 'FireReport' });
  reg.add(SpecIssue, { id: 'SpecIssue' });
  reg.add(ApiError, { id: 'Error' });
  const { schemas } = z.toJSONSchema(reg, {
    uri: (id) => `#/components/schemas/${id}`,
    target: 'draft-2020-12',
    unrepresentable: 'any',
  });
  const spec = z.toJSONSchema(RunSpecDocument, {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'any',
  });
  const out: Record<string, unknown> = {};
  for (const [id, s] of Object.entries({ ...schemas, RunSpec: spec })) {
    const { $schema: _s, $id: _i, ...rest } = s as Record<string, unknown>;
    out[id] = rest;
  }
  return out;
}

function paths() {
  return {
    ...listAndSubmit(),
    ...oneRun(),
    ...runLogs(),
    ...historyPaths(),
    ...dashboardPaths(),
    ...poolPaths(),
    ...queuePaths(),
    ...eventsPath(),
  };
}

const LIST_PARAMS = [
  {
    name: 'phase',
    in: 'query',
    schema: { type: 'string', enum: [...RunView.shape.phase.options] },
  },
  { name: 'name', in: 'query', schema: { type: 'string' } },
  {
    name: 'limit',
    in: 'query',
    schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
  },
  {
    name: 'cursor',
    in: 'query',
    description: '`next` of the previous page',
    schema: { type: 'integer', minimum: 0 },
  },
];

function listAndSubmit() {
  return {
    '/runs': {
      get: {
        operationId: 'listRuns',
        summary: 'Runs, newest first, with filters and paging',
        parameters: LIST_PARAMS,
        responses: {
          '200': {
            description: 'A page of runs',
            content: json({
              type: 'object',
              properties: {
                runs: { type: 'array', items: ref('RunSummary') },
                next: { type: ['integer', 'null'] },
              },
              required: ['runs', 'next'],
            }),
          },
          ...errors(400, 401),
        },
      },
      post: {
        operationId: 'submitRun',
        summary: 'Submit a spec (admin)',
        parameters: [
          {
            name: 'set',
            in: 'query',
            description: 'path=value overrides, as `--set`',
            schema: { type: 'array', items: { type: 'string' } },
          },
          {
            name: 'workDir',
            in: 'query',
            description: 'Absolute directory that relative paths resolve against',
            schema: { type: 'string' },
          },
          {
            name: 'takeOverPools',
            in: 'query',
            description:
              "As --take-over-pools: a pool the spec declares with other settings than the live pool's takes the spec's (without it, such a spec is refused with a 422 naming each difference)",
            schema: { type: 'string', enum: ['true', 'false'] },
          },
        ],
        requestBody: {
          required: true,
          content: {
            'application/yaml': { schema: { type: 'string' } },
            'application/json': { schema: ref('RunSpec') },
          },
        },
        responses: {
          '201': {
            description: 'The run was created',
            content: json({
              type: 'object',
              properties: {
                id: { type: 'string' },
                name: { type: 'string' },
                phase: { type: 'string' },
              },
              required: ['id', 'name', 'phase'],
            }),
          },
          ...errors(400, 401, 403, 413, 415, 422),
        },
      },
    },
  };
}

function oneRun() {
  return {
    '/runs/{run}': {
      get: {
        operationId: 'getRun',
        summary: 'One run with its stages and tasks',
        parameters: [runParam],
        responses: {
          '200': { description: 'The run', content: json(ref('RunView')) },
          ...errors(401, 404),
        },
      },
    },
    '/runs/{run}/cancel': {
      post: {
        operationId: 'cancelRun',
        summary: 'Cancel a run (admin)',
        parameters: [runParam],
        responses: {
          '202': {
            description: 'The cancel was requested',
            content: json({
              type: 'object',
              properties: { id: { type: 'string' }, cancelRequested: { type: 'boolean' } },
              required: ['id', 'cancelRequested'],
            }),
          },
          ...errors(401, 403, 404, 409),
        },
      },
    },
    '/runs/{run}/resume': {
      post: {
        operationId: 'resumeRun',
        summary:
          'Run a run that ended Failed or Cancelled again from where it stopped: succeeded stages kept, tasks from their last checkpoints (admin)',
        parameters: [runParam],
        responses: {
          '202': { description: 'The resume was requested', content: json(ref('ResumeAccepted')) },
          ...errors(401, 403, 404, 409),
        },
      },
    },
  };
}

function runLogs() {
  return {
    '/runs/{run}/logs': {
      get: {
        operationId: 'runLogs',
        summary: "A task attempt's log, a chunk at a time (call again from `next` until `done`)",
        parameters: [
          runParam,
          {
            name: 'task',
            in: 'query',
            description: 'A task id or a stage name',
            schema: { type: 'string' },
          },
          { name: 'attempt', in: 'query', schema: { type: 'integer', minimum: 1 } },
          {
            name: 'node',
            in: 'query',
            description: "A multi-node task's node (0: the leader)",
            schema: { type: 'integer', minimum: 0, default: 0 },
          },
          { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
          {
            name: 'raw',
            in: 'query',
            description: 'Keep protocol lines',
            schema: { type: 'string', enum: ['0', '1', 'true', 'false'] },
          },
        ],
        responses: {
          '200': { description: 'A chunk', content: json(ref('LogChunk')) },
          ...errors(400, 401, 404),
        },
      },
    },
  };
}

function poolPaths() {
  return {
    '/pools': {
      get: {
        operationId: 'listPools',
        summary: 'Every pool',
        responses: {
          '200': {
            description: 'The pools',
            content: json({
              type: 'object',
              properties: { pools: { type: 'array', items: ref('PoolView') } },
              required: ['pools'],
            }),
          },
          ...errors(401),
        },
      },
    },
    '/pools/{pool}': {
      get: {
        operationId: 'getPool',
        summary: 'One pool',
        parameters: [poolParam],
        responses: {
          '200': { description: 'The pool', content: json(ref('PoolView')) },
          ...errors(401, 404),
        },
      },
    },
    '/pools/{pool}/backlog': {
      get: {
        operationId: 'getPoolBacklog',
        summary:
          "A pool's backlog as one number (waiting + prioritized + delayed + active shards; a paused queue: active only), for KEDA's metrics-api scaler (valueLocation: backlog)",
        parameters: [poolParam],
        responses: {
          '200': { description: 'The backlog', content: json(ref('PoolBacklog')) },
          ...errors(401, 404),
        },
      },
    },
    '/pools/{pool}/scale': {
      post: {
        operationId: 'scalePool',
        summary:
          'Pin a pool at a number of workers within its bounds, for a while or until auto; or end its pin with {auto: true} (admin)',
        parameters: [poolParam],
        requestBody: {
          required: true,
          content: json({
            description:
              'A pin: {replicas, for?}; the end of a pin: {auto: true}. Exactly one of replicas and auto.',
            type: 'object',
            properties: {
              replicas: { type: 'integer', minimum: 0 },
              for: {
                description: 'How long the pin holds: seconds, or a duration such as "30m"',
                oneOf: [{ type: 'number', minimum: 0 }, { type: 'string' }],
              },
              auto: { const: true },
            },
            additionalProperties: false,
          }),
        },
        responses: {
          '200': { description: 'The pool after the change', content: json(ref('PoolView')) },
          ...errors(400, 401, 403, 404, 422),
        },
      },
    },
  };
}

function eventsPath() {
  return {
    '/events': {
      get: {
        operationId: 'events',
        summary:
          'Server-sent events: `run` (a RunSummary) when a run, a stage or a task changes; `pool` (a PoolView) when a pool is pinned, or the controller changes its size or the reason of its decision',
        responses: {
          '200': {
            description: 'The stream',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...errors(401),
        },
      },
    },
  };
}

let cached: Record<string, unknown> | null = null;

/** The document, built once. */
export function openApiDocument(): Record<string, unknown> {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'Stoker API',
      version: 'v1',
      description:
        'Runs, pools and queues of a running stoker. Every route needs a bearer token: the read token for GETs, the admin token for writes.',
    },
    servers: [{ url: '/api/v1' }],
    security: [{ bearer: [] }],
    paths: paths(),
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: componentSchemas(),
    },
  };
  return cached;
}
