/**
 * The CLI through a stoker's HTTP API (orchestrator/http/) instead of Redis, as kubectl
 * talks to an API server. With STOKER_URL set (http://host:8080), `status`, `submit`,
 * `watch`, `logs`, `cancel`, `resume`, `pools`, `scale`, `queues` and `queues retry`
 * call the API; the token is STOKER_TOKEN, else the first line of
 * `$XDG_CONFIG_HOME/stoker/token` (default `~/.config/stoker/token`). Without STOKER_URL
 * they talk to Redis as before.
 *
 * The server's refusals become the CLI's own errors, so exit codes and messages match
 * the local path: an invalid spec (422 with issues) is the same SpecError `stoker
 * validate` prints (exit 2), another 400/422 is a usage error (exit 2), anything else
 * exits 1 with the server's message.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SpecError, StokerError, UsageError, type SpecIssue } from '../../common/errors.js';

export interface Remote {
  url: string;
  token: string;
}

/** A refusal or failure of the API that is not the user's input. */
export class ApiError extends StokerError {
  override name = 'ApiError';
}

export function remoteFrom(env: NodeJS.ProcessEnv): Remote | null {
  const url = env.STOKER_URL?.trim();
  if (!url) return null;
  if (!/^https?:\/\/[^/\s]+/.test(url))
    throw new UsageError(
      `STOKER_URL must be an http(s) URL such as http://127.0.0.1:8080, not "${url}"`,
    );
  const token = env.STOKER_TOKEN?.trim() || tokenFromFile(env);
  if (!token) {
    throw new UsageError(
      `STOKER_URL is set but no token: set STOKER_TOKEN, or write it to ${tokenFile(env)} (stoker up prints where the tokens are)`,
    );
  }
  return { url: url.replace(/\/+$/, ''), token };
}

function tokenFile(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'stoker', 'token');
}

function tokenFromFile(env: NodeJS.ProcessEnv): string | null {
  const file = tokenFile(env);
  if (!existsSync(file)) return null;
  return readFileSync(file, 'utf8').split('\n')[0]?.trim() || null;
}

/** What a command that works remotely says when it does not (yet). */
export function notRemote(command: string): never {
  throw new UsageError(
    `stoker ${command} does not work through the HTTP API yet: unset STOKER_URL to reach Redis directly`,
  );
}

interface ErrorBody {
  error?: { code?: string; message?: string; issues?: SpecIssue[] };
}

export class ApiClient {
  constructor(readonly remote: Remote) {}

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body?: string | object, contentType?: string): Promise<T> {
    return this.call<T>('POST', path, body, contentType);
  }

  private async call<T>(
    method: string,
    path: string,
    body?: string | object,
    contentType?: string,
  ): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.remote.token}` };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      headers['content-type'] =
        contentType ?? (typeof body === 'string' ? 'application/yaml' : 'application/json');
    }
    let res: Response;
    try {
      res = await fetch(`${this.remote.url}${path}`, {
        method,
        headers,
        body: payload,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const why =
        err instanceof Error
          ? ((err.cause as Error | undefined)?.message ?? err.message)
          : String(err);
      throw new ApiError(`cannot reach the stoker API at ${this.remote.url} (STOKER_URL): ${why}`);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: a proxy's page, say; reported below with the status.
    }
    if (res.ok) return json as T;
    const e = (json as ErrorBody | null)?.error;
    const message = e?.message ?? `HTTP ${res.status} ${res.statusText}`;
    if (res.status === 422 && e?.code === 'InvalidSpec' && e.issues) throw new SpecError(e.issues);
    if (res.status === 400 || res.status === 422) throw new UsageError(message);
    throw new ApiError(`${message} (HTTP ${res.status} from ${this.remote.url})`);
  }
}
