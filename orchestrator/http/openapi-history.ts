/**
 * Paths of the OpenAPI document (openapi.ts) for what the dashboard reads beside the
 * runs: a task's metric history (history.ts), a FIRE run's report (report.ts), and the
 * caller's role.
 */
import { errors, json, ref, runParam } from './openapi-parts.js';

export function dashboardPaths() {
  return {
    '/tasks/{task}': {
      get: {
        operationId: 'getTask',
        summary: 'One task (a dispatched task or a shard), with its run and stage',
        parameters: [{ name: 'task', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'The task', content: json(ref('TaskDetail')) },
          ...errors(401, 404),
        },
      },
    },
    '/runs/{run}/report': {
      get: {
        operationId: 'runReport',
        summary: "A FIRE run's report: the headline metrics and acc@t of each model",
        parameters: [runParam],
        responses: {
          '200': { description: 'The report', content: json(ref('FireReport')) },
          ...errors(401, 404, 422),
        },
      },
    },
    '/whoami': {
      get: {
        operationId: 'whoami',
        summary: "The caller's role: admin (may act) or read",
        responses: {
          '200': {
            description: 'The role',
            content: json({
              type: 'object',
              properties: { role: { type: 'string', enum: ['admin', 'read'] } },
              required: ['role'],
            }),
          },
          ...errors(401),
        },
      },
    },
  };
}

export function historyPaths() {
  return {
    '/runs/{run}/metrics': {
      get: {
        operationId: 'runMetrics',
        summary: "A task attempt's metric history, each metric downsampled on the server",
        parameters: [
          runParam,
          {
            name: 'task',
            in: 'query',
            description: 'A task id or a stage name (may be left out when the run has one task)',
            schema: { type: 'string' },
          },
          {
            name: 'attempt',
            in: 'query',
            description: "Default: the task's latest",
            schema: { type: 'integer', minimum: 1 },
          },
          {
            name: 'points',
            in: 'query',
            description: 'At most this many points per series (min/max buckets; the last kept)',
            schema: { type: 'integer', minimum: 3, maximum: 10000, default: 1000 },
          },
          {
            name: 'metric',
            in: 'query',
            description: 'Only these metrics, comma-separated',
            schema: { type: 'string' },
          },
          {
            name: 'x',
            in: 'query',
            description: 'The x axis: steps, seconds since the first point, or auto',
            schema: { type: 'string', enum: ['step', 'time', 'auto'], default: 'auto' },
          },
        ],
        responses: {
          '200': { description: 'The series', content: json(ref('MetricHistory')) },
          ...errors(400, 401, 404),
        },
      },
    },
  };
}
