/**
 * The PATCH bodies the API server accepts: JSON merge patch (RFC 7386), strategic merge
 * patch (the subset the core types need: lists merged by key, `$patch` directives,
 * finalizers as a set) and JSON patch (RFC 6902). Server-side apply is not supported
 * (the store answers 415 for it). Each function returns a new document and leaves its
 * inputs as they were.
 */
import { apiError, clone, deepEqual, isPlainObject } from './meta.js';

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

/**
 * cur with body applied as the patch type contentType names; a JSON patch op that fails
 * is 422 Invalid, an unsupported type (server-side apply among them) 415.
 */
export function patchByContentType(cur: unknown, body: unknown, contentType: string): unknown {
  const ct = contentType.split(';')[0]!.trim().toLowerCase();
  if (ct === PATCH_TYPES.json) {
    try {
      return jsonPatch(cur, body);
    } catch (err) {
      throw apiError(422, (err as Error).message, 'Invalid');
    }
  }
  if (ct === PATCH_TYPES.merge) return mergePatch(cur, body);
  if (ct === PATCH_TYPES.strategic) return strategicMergePatch(cur, body);
  throw apiError(
    415,
    `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (fake apiserver: ${ct} not supported)`,
  );
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Lists merged by key under strategic merge patch (the common ones of the core types). */
function mergeKeyFor(field: string, parent: string): string | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'conditions':
      return 'type';
    case 'ownerReferences':
      return 'uid';
    case 'ports':
      return parent === 'containers' || parent === 'initContainers' ? 'containerPort' : 'port';
    default:
      return undefined;
  }
}

const PRIMITIVE_MERGE_LISTS = new Set(['finalizers']);

/**
 * Strategic merge patch, the subset that matters here: merge patch, plus lists of
 * containers/env/volumes/conditions/... merged by their key (with `$patch: delete`
 * elements), and `finalizers` merged as a set (`$deleteFromPrimitiveList/finalizers`).
 */
export function strategicMergePatch(target: unknown, patch: unknown, parent = ''): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  if (patch['$patch'] === 'replace') {
    const rest = { ...patch };
    delete rest['$patch'];
    return clone(rest);
  }
  const out: Record<string, unknown> = isPlainObject(target) ? clone(target) : {};
  const deletions: Record<string, unknown[]> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      deletions[k.slice('$deleteFromPrimitiveList/'.length)] = Array.isArray(v) ? v : [];
      continue;
    }
    if (k.startsWith('$')) continue;
    if (v === null) {
      delete out[k];
      continue;
    }
    const cur = out[k];
    const mk = mergeKeyFor(k, parent);
    if (Array.isArray(v) && mk && Array.isArray(cur)) {
      const merged: unknown[] = clone(cur);
      for (const el of v) {
        if (!isPlainObject(el)) continue;
        const idx = merged.findIndex((m) => isPlainObject(m) && m[mk] === el[mk]);
        if (el['$patch'] === 'delete') {
          if (idx >= 0) merged.splice(idx, 1);
        } else if (idx >= 0) merged[idx] = strategicMergePatch(merged[idx], el, k);
        else merged.push(strategicMergePatch(undefined, el, k));
      }
      out[k] = merged;
    } else if (Array.isArray(v) && PRIMITIVE_MERGE_LISTS.has(k) && Array.isArray(cur)) {
      out[k] = [...cur, ...v.filter((x) => !cur.includes(x))];
    } else if (Array.isArray(v)) {
      out[k] = v.map((el) => (isPlainObject(el) ? strategicMergePatch(undefined, el, k) : el));
    } else {
      out[k] = strategicMergePatch(cur, v, k);
    }
  }
  for (const [k, vals] of Object.entries(deletions)) {
    const cur = out[k];
    if (Array.isArray(cur)) out[k] = cur.filter((x) => !vals.includes(x));
  }
  return out;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(
  doc: unknown,
  tokens: string[],
  path: string,
): { container: unknown; key: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw new Error(`doc is missing path: "${path}"`);
  }
  return { container: cur, key: tokens[tokens.length - 1] ?? '' };
}

function readPointer(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const t of pointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw new Error(`doc is missing path: "${path}"`);
  }
  return cur;
}

/** RFC 6902 JSON patch; a failing op is an Error (the server answers 422). */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error('a JSON patch must be an array of operations');
  let out = clone(doc);
  for (const raw of ops) {
    if (!isPlainObject(raw) || typeof raw['op'] !== 'string' || typeof raw['path'] !== 'string')
      throw new Error(`invalid JSON patch operation: ${JSON.stringify(raw)}`);
    const op = raw as unknown as JsonPatchOp;
    const tokens = pointer(op.path);
    const add = (value: unknown): void => {
      if (tokens.length === 0) {
        out = clone(value);
        return;
      }
      const { container, key } = parentOf(out, tokens, op.path);
      if (Array.isArray(container)) {
        const i = key === '-' ? container.length : Number(key);
        if (!Number.isInteger(i) || i < 0 || i > container.length)
          throw new Error(`index out of bounds at "${op.path}"`);
        container.splice(i, 0, clone(value));
      } else if (isPlainObject(container)) container[key] = clone(value);
      else throw new Error(`doc is missing path: "${op.path}"`);
    };
    const remove = (path: string): unknown => {
      const t = pointer(path);
      const { container, key } = parentOf(out, t, path);
      if (Array.isArray(container)) {
        const i = Number(key);
        if (!Number.isInteger(i) || i < 0 || i >= container.length)
          throw new Error(`index out of bounds at "${path}"`);
        return container.splice(i, 1)[0];
      }
      if (isPlainObject(container) && key in container) {
        const v = container[key];
        delete container[key];
        return v;
      }
      throw new Error(`unable to remove nonexistent key: ${key}: missing value`);
    };
    switch (op.op) {
      case 'add':
        add(op.value);
        break;
      case 'remove':
        remove(op.path);
        break;
      case 'replace':
        remove(op.path);
        add(op.value);
        break;
      case 'move': {
        const v = remove(op.from ?? '');
        add(v);
        break;
      }
      case 'copy':
        add(readPointer(out, op.from ?? ''));
        break;
      case 'test':
        if (!deepEqual(readPointer(out, op.path), op.value))
          throw new Error(`testing value ${op.path} failed`);
        break;
      default:
        throw new Error(`unexpected JSON patch operation "${String(raw['op'])}"`);
    }
  }
  return out;
}
