/**
 * The dashboard's calls to API v1, with the login cookie (same origin). An error answer
 * (JSON {error: {code, message}}) becomes an ApiError; a 401 shows the login form.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => undefined;

/** What to do when a call finds no valid login (main.ts: show the login form). */
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`/api/v1${path}`, {
    credentials: 'same-origin',
    ...init,
    headers: {
      accept: 'application/json',
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.headers ?? {}),
    },
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, err?.code ?? 'Error', err?.message ?? `HTTP ${res.status}`);
  }
  return body as T;
}

/** A POST with a JSON body. */
export const post = <T>(path: string, body: unknown = {}): Promise<T> =>
  api<T>(path, { method: 'POST', body: JSON.stringify(body) });

export type Role = 'admin' | 'read';
let role: Role | null = null;

/** The login's role (GET /whoami), asked once. */
export async function myRole(): Promise<Role | null> {
  if (role) return role;
  try {
    role = (await api<{ role: Role }>('/whoami')).role;
  } catch {
    role = null;
  }
  return role;
}

export const isAdmin = (): boolean => role === 'admin';
