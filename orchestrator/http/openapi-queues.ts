/** The queue routes of the OpenAPI document (openapi.ts). */
import { errors, json, ref } from './openapi-parts.js';

export function queuePaths() {
  return {
    '/queues': {
      get: {
        operationId: 'listQueues',
        summary: "BullMQ's counts per queue",
        responses: {
          '200': {
            description: 'The queues',
            content: json({
              type: 'object',
              properties: { queues: { type: 'array', items: ref('QueueRow') } },
              required: ['queues'],
            }),
          },
          ...errors(401),
        },
      },
    },
    '/queues/{queue}/pause': queueAction(
      'pauseQueue',
      'Pause a queue: nothing new starts from it (admin)',
    ),
    '/queues/{queue}/resume': queueAction('resumeQueue', 'Resume a paused queue (admin)'),
    '/queues/{queue}/retry': retryPath(),
    '/queues/{queue}/clean': {
      post: {
        operationId: 'cleanQueue',
        summary: "Remove finished jobs' records, completed or failed (admin)",
        parameters: [{ name: 'queue', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: {
          required: true,
          content: json({
            type: 'object',
            properties: {
              state: { type: 'string', enum: ['completed', 'failed'] },
              olderThanSeconds: { type: 'integer', minimum: 0, default: 0 },
              limit: { type: 'integer', minimum: 1, maximum: 100000, default: 1000 },
            },
            required: ['state'],
            additionalProperties: false,
          }),
        },
        responses: {
          '200': {
            description: 'How many were removed',
            content: json({
              type: 'object',
              properties: {
                queue: { type: 'string' },
                state: { type: 'string' },
                removed: { type: 'integer' },
              },
              required: ['queue', 'state', 'removed'],
            }),
          },
          ...errors(400, 401, 403, 404),
        },
      },
    },
  };
}

function queueAction(operationId: string, summary: string) {
  return {
    post: {
      operationId,
      summary,
      parameters: [{ name: 'queue', in: 'path', required: true, schema: { type: 'string' } }],
      responses: {
        '200': { description: 'The queue after it', content: json(ref('QueueRow')) },
        ...errors(401, 403, 404),
      },
    },
  };
}

function retryPath() {
  return {
    post: {
      operationId: 'retryQueue',
      summary:
        "Retry a queue's failed jobs as stoker's records allow: a run that ended is resumed, a shard of a running stage retried in place, anything else skipped with the reason (admin)",
      parameters: [{ name: 'queue', in: 'path', required: true, schema: { type: 'string' } }],
      requestBody: {
        required: false,
        content: json({
          type: 'object',
          properties: { limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 } },
          additionalProperties: false,
        }),
      },
      responses: {
        '200': {
          description: 'What was retried and what not',
          content: json(ref('QueueRetryResult')),
        },
        ...errors(400, 401, 403, 404),
      },
    },
  };
}
