/**
 * Keeping a payload's secrets (the values of its `secretEnv` variables) out of everything
 * stoker records: log files, Redis (progress, events, logs), status and the API.
 *
 * Two passes, because a marker line is JSON and JSON escapes:
 *   raw lines   every line is searched for each secret in every form a JSON encoder
 *               writes it: as is, JSON-escaped (`"` -> `\"`, `\` -> `\\`, control
 *               characters), and with non-ASCII as \uXXXX (Python's json.dumps with
 *               ensure_ascii, what stoker_payload's reporter sends) (secretForms);
 *   decoded     a marker's decoded event is searched again, every string and every key
 *               at any depth (redactDeep): a payload can escape any character
 *               (`\u0041` for `A`), which no list of forms foresees. When a decoded
 *               value had a secret, the line recorded is the marker re-encoded from the
 *               redacted event, so the log file does not keep the escaped original.
 */
import { MARKER, type PayloadEvent } from '../common/events.js';

export const REDACTED = '[redacted]';

/** JSON's escape of a string, without the quotes; `ascii`: non-ASCII as \uXXXX too. */
function jsonEscaped(s: string, ascii: boolean): string {
  const body = JSON.stringify(s).slice(1, -1);
  return ascii
    ? body.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    : body;
}

/** Every form of each secret to search raw lines for: longest first, no duplicates. */
export function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (!s) continue;
    forms.add(s);
    forms.add(jsonEscaped(s, false));
    forms.add(jsonEscaped(s, true));
    // Python's json.dumps writes \uXXXX in lower case; some encoders use upper case.
    forms.add(
      jsonEscaped(s, true).replace(/\\u([0-9a-f]{4})/g, (_m, h: string) => `\\u${h.toUpperCase()}`),
    );
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/** Replace every secret form in `line`. `forms` longest first (secretForms). */
export function redact(line: string, forms: readonly string[]): string {
  let out = line;
  for (const s of forms) if (s && out.includes(s)) out = out.split(s).join(REDACTED);
  return out;
}

/** `value` with every secret in its strings and keys replaced, and whether any was. */
export function redactDeep<T>(value: T, forms: readonly string[]): { value: T; changed: boolean } {
  let changed = false;
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') {
      const r = redact(v, forms);
      if (r !== v) changed = true;
      return r;
    }
    if (depth > 64 || v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const key = redact(k, forms);
      if (key !== k) changed = true;
      out[key] = walk(x, depth + 1);
    }
    return out;
  };
  const out = walk(value, 0) as T;
  return { value: changed ? out : value, changed };
}

/**
 * A parsed marker line's event with its secrets redacted, and the line to record: the
 * line itself when its decoded values had no secret, else its prefix (a launcher's
 * `[default0]:`) and the marker re-encoded from the redacted event.
 */
export function redactEvent(
  line: string,
  ev: PayloadEvent,
  forms: readonly string[],
): { event: PayloadEvent; line: string } {
  if (forms.length === 0) return { event: ev, line };
  const r = redactDeep(ev, forms);
  if (!r.changed) return { event: ev, line };
  const at = line.indexOf(MARKER);
  return {
    event: r.value,
    line: `${line.slice(0, Math.max(0, at))}${MARKER} ${JSON.stringify(r.value)}`,
  };
}
