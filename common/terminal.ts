/**
 * Text for a terminal. What stoker prints includes text it does not control: names and
 * messages from specs, a payload's output and failure messages. Raw control characters
 * in them (ESC starting an escape sequence, BEL, a carriage return that rewrites the
 * line, C1 controls) could recolour, retitle or scramble the user's terminal, or hide
 * what comes before them. printable() shows each as a visible escape (`\x1b`) instead;
 * newlines and tabs stay.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
