/** The metric history path of the OpenAPI document (openapi.ts; the route: history.ts). */
import { errors, json, ref, runParam } from './openapi-parts.js';

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
