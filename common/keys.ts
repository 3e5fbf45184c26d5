/**
 * The Redis layout (DESIGN.md section 4). Every key stoker writes goes through this
 * module, under one prefix (`stoker:` by default; STOKER_PREFIX or --prefix changes it,
 * which is how tests isolate themselves on one server).
 *
 * Writers (one per record):
 *   runs, run:*, run:*:stages          controller (CLI writes only run:*:cancel and submit:*)
 *   task:* (status hash)               dispatcher / controller
 *   task:*:progress, :events, :logs    the worker running the task
 *   unit:*                             the backend that launched it, then the worker
 *   controller:lock, controller:alive  the controller
 *
 * BullMQ queues live under `${prefix}bull` (BullMQ's own `prefix` option), so one
 * `stoker:` prefix covers everything.
 */
export interface Keys {
  readonly prefix: string;
  readonly bullPrefix: string;
  runIndex(): string;
  run(runId: string): string;
  runStages(runId: string): string;
  runCancel(runId: string): string;
  task(taskId: string): string;
  taskProgress(taskId: string): string;
  taskEvents(taskId: string): string;
  taskLogs(taskId: string): string;
  unit(unitName: string): string;
  controllerLock(): string;
  controllerAlive(): string;
  wakeChannel(): string;
}

export const DEFAULT_PREFIX = 'stoker:';

export function makeKeys(prefix: string = DEFAULT_PREFIX): Keys {
  const p = prefix.endsWith(':') ? prefix : `${prefix}:`;
  return {
    prefix: p,
    bullPrefix: `${p}bull`,
    runIndex: () => `${p}runs`,
    run: (id) => `${p}run:${id}`,
    runStages: (id) => `${p}run:${id}:stages`,
    runCancel: (id) => `${p}run:${id}:cancel`,
    task: (id) => `${p}task:${id}`,
    taskProgress: (id) => `${p}task:${id}:progress`,
    taskEvents: (id) => `${p}task:${id}:events`,
    taskLogs: (id) => `${p}task:${id}:logs`,
    unit: (name) => `${p}unit:${name}`,
    controllerLock: () => `${p}controller:lock`,
    controllerAlive: () => `${p}controller:alive`,
    wakeChannel: () => `${p}wake`,
  };
}

/** Queue names. Dispatched stages go to `train` (the GPU budget) or `steps` (CPU steps). */
export const QUEUES = { train: 'train', steps: 'steps' } as const;
export type DispatchQueue = (typeof QUEUES)[keyof typeof QUEUES];

/** How many log lines per task are kept in Redis (the full log is in a file). */
export const LOG_TAIL_LINES = 200;
/** Approximate cap of a task's event stream. */
export const EVENTS_MAXLEN = 2000;
