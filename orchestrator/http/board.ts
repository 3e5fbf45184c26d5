/**
 * Bull Board (@bull-board, the maintained BullMQ UI) at /queues: stoker's queues (train,
 * steps and every pool's) with their jobs, each job's data, progress (the dispatcher
 * mirrors a task's progress into its job: job-progress.ts), attempts and failures.
 *
 * The board shows what exists when a page or its queue list is loaded: a pool's queue is
 * added the first time it is seen. Who may do what is the server's (server.ts): GETs with
 * the read token, the board's actions (retry, clean, pause...) with the admin token;
 * a browser logs in once through /login?token=... (a cookie).
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { QueueReader } from '../queue-counts.js';

export const BOARD_PATH = '/queues';

export function mountBoard(app: FastifyInstance, queues: QueueReader): void {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'stoker queues' } },
  });
  const shown = new Set<string>();
  const refresh = async () => {
    for (const name of await queues.names()) {
      if (shown.has(name)) continue;
      shown.add(name);
      board.addQueue(new BullMQAdapter(queues.queue(name)));
    }
  };
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0] ?? '';
    // The page and its list of queues; not every static file.
    if (path === BOARD_PATH || path === `${BOARD_PATH}/` || path === `${BOARD_PATH}/api/queues`)
      await refresh();
  });
  void app.register(adapter.registerPlugin(), { prefix: BOARD_PATH });
}
