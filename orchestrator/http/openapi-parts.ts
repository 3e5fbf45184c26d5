/** Pieces of the OpenAPI document (openapi.ts) shared by its path groups. */

export const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
export const json = (schema: unknown) => ({ 'application/json': { schema } });
export const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [
      String(c),
      { description: ERROR_TEXT[c] ?? 'Error', content: json(ref('Error')) },
    ]),
  );
const ERROR_TEXT: Record<number, string> = {
  400: 'A malformed query or body; the message names the field',
  401: 'No token, or an unknown one',
  403: 'The read-only token on a write',
  404: 'No such run, pool or route',
  409: 'A conflict: a cancel of a run that has ended; a resume of a run that has not ended Failed or Cancelled, or is being resumed',
  413: 'The body is over the size limit',
  415: 'A content type other than YAML or JSON',
  422: 'An invalid spec (with issues) or a value out of bounds',
};
export const runParam = {
  name: 'run',
  in: 'path',
  required: true,
  description: 'A run id, an id prefix, or a name (the newest run of that name)',
  schema: { type: 'string' },
};
export const poolParam = { name: 'pool', in: 'path', required: true, schema: { type: 'string' } };
