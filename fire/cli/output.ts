/**
 * What the FIRE commands share to print: text (a newline added when missing), JSON
 * (indented by 2, one trailing newline), and counted nouns ("1 record", "2 records").
 */

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `n noun`, with an `s` unless n is 1: counted(2, 'record') is "2 records". */
export const counted = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;
