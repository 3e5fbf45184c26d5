/**
 * How the fake API server writes an answer: JSON (text for logs and health checks) with
 * the headers the real server sends, errors as their meta/v1 Status with its code. It
 * also carries the `dropAnswer` fault: a response marked with dropAnswer() is served as
 * usual (the write happens) but its socket is destroyed instead of answered, so the
 * client never hears that it succeeded; and `replaceAnswer`: served, but answered with
 * another Status (replaceAnswer()).
 */
import type { ServerResponse } from 'node:http';
import type { KubeStatus } from '../objects/meta.js';

export class Responder {
  /** Responses an interceptor asked to drop after serving (dropAnswer). */
  private readonly answerDropped = new WeakSet<ServerResponse>();

  /** Responses an interceptor asked to answer with another Status after serving. */
  private readonly answerReplaced = new WeakMap<ServerResponse, KubeStatus>();

  dropAnswer(res: ServerResponse): void {
    this.answerDropped.add(res);
  }

  replaceAnswer(res: ServerResponse, s: KubeStatus): void {
    this.answerReplaced.set(res, s);
  }

  send(
    res: ServerResponse,
    code: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    if (res.headersSent || res.destroyed) return;
    if (this.answerDropped.has(res)) {
      res.socket?.destroy();
      return;
    }
    // Only an answer of success is replaced: a write that failed answers its own error.
    const replaced = code < 300 ? this.answerReplaced.get(res) : undefined;
    if (replaced) {
      this.answerReplaced.delete(res);
      return this.send(res, replaced.code, replaced);
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(code, {
      'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json',
      'Cache-Control': 'no-cache, private',
      ...headers,
    });
    res.end(text);
  }

  sendStatus(res: ServerResponse, s: KubeStatus, headers: Record<string, string> = {}): void {
    this.send(res, s.code, s, headers);
  }
}
