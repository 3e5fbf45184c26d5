/**
 * The action of `stoker data render` (fire/cli/data/render.ts): loaded when the command
 * runs, so the Jinja engine stays out of `stoker --help`.
 */
import { UsageError } from '../../../common/errors.js';
import {
  ChatTemplateError,
  loadTemplate,
  type ChatTemplate,
  type Segment,
} from '../../data/chat-template.js';
import { isTooLong, readLines } from '../../data/jsonl.js';
import type { Message } from '../../data/prompts.js';
import { BadRecordError } from '../../data/record.js';
import { print, printJson } from '../output.js';
import { requireFile } from './flags.js';

export interface RenderFlags {
  template: string;
  line?: number;
  limit: number;
  prompt?: boolean;
  json?: boolean;
}

interface Rendered {
  line: number;
  id: unknown;
  text: string;
  segments?: Segment[];
}

function conversationOf(
  file: string,
  line: number,
  text: string,
): { id: unknown; conversation: Message[] } {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (err) {
    throw new BadRecordError(`${file}:${line}: not JSON (${(err as Error).message})`);
  }
  const conversation = (record as { conversations?: unknown } | null)?.conversations;
  if (!Array.isArray(conversation) || conversation.length === 0)
    throw new BadRecordError(`${file}:${line}: conversations: must be a non-empty list`);
  return { id: (record as { id?: unknown }).id, conversation: conversation as Message[] };
}

function render(
  tpl: ChatTemplate,
  conversation: Message[],
  prompt: boolean,
): Omit<Rendered, 'line' | 'id'> {
  if (!prompt) {
    const segments = tpl.segments(conversation);
    return { text: segments.map(([t]) => t).join(''), segments };
  }
  const last = conversation.map((m) => m.from).lastIndexOf('gpt');
  return { text: tpl.prompt(last > 0 ? conversation.slice(0, last) : conversation) };
}

export async function renderAction(file: string, o: RenderFlags): Promise<void> {
  requireFile(file);
  let tpl: ChatTemplate;
  let from: string;
  try {
    ({ template: tpl, from } = loadTemplate(o.template));
  } catch (err) {
    if (err instanceof ChatTemplateError) throw new UsageError(`--template ${err.message}`);
    throw err;
  }
  const out: Rendered[] = [];
  for await (const item of readLines(file)) {
    if (out.length >= o.limit) break;
    if (o.line !== undefined && item.line !== o.line) continue;
    if (isTooLong(item)) throw new BadRecordError(`${file}:${item.line}: line too long`);
    if (!item.text.trim()) continue;
    const { id, conversation } = conversationOf(file, item.line, item.text);
    try {
      out.push({ line: item.line, id, ...render(tpl, conversation, o.prompt ?? false) });
    } catch (err) {
      if (err instanceof ChatTemplateError || err instanceof RangeError)
        throw new BadRecordError(`${file}:${item.line}: ${err.message}`);
      throw err;
    }
  }
  if (o.line !== undefined && out.length === 0)
    throw new UsageError(`${file}: no record on line ${o.line}`);
  if (o.json) {
    printJson({ template: from, records: out });
    return;
  }
  print(
    out
      .map((r) => {
        const body = r.segments
          ? r.segments.map(([t, target]) => (target ? `[[target]]${t}[[/target]]` : t)).join('')
          : r.text;
        return `== ${String(r.id)} (line ${r.line})\n${body}`;
      })
      .join('\n'),
  );
}
