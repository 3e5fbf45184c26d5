/**
 * `stoker data render FILE [--template NAME|DIR|FILE] [--line N] [--limit N] [--prompt] [--json]`:
 * print view records (LLaVA conversation JSONL, as `stoker data views` writes them) as the
 * model sees them, rendered by a chat template (fire/data/chat-template.ts; the hf backend
 * renders training and self-play prompts the same way, test/fixtures/fire-chat-template-vectors.json
 * pins both). Default template: llama3-llava-next, the FIRE recipe model's.
 *
 * Text: per record a line `== ID (line N)` and the rendered text, the assistant turns (the
 * training targets) between `[[target]]` and `[[/target]]` marks; with --prompt, the
 * generation prompt of the record's last assistant turn instead (what self-play asks with).
 * --json: {template, records: [{line, id, text, segments: [[text, isTarget]...]}]} (with
 * --prompt, text only).
 *
 * Exit codes: 0 printed; 1 a record that is not a LLaVA conversation or that the template
 * rejects, named as FILE:LINE; 2 a missing file, an unknown template, a bad flag.
 */
import type { Command } from 'commander';
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
import { positive, requireFile } from './flags.js';

interface RenderFlags {
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

export function registerRender(data: Command): void {
  data
    .command('render')
    .description(
      'print view records (LLaVA conversation JSONL) as a model sees them, through a chat template',
    )
    .argument('<file>', 'view records (stoker data views output)')
    .option(
      '--template <name|dir|file>',
      'a template stoker ships, a model directory (chat_template.jinja/.json), or a template file',
      'llama3-llava-next',
    )
    .option('--line <n>', 'only the record on this line', positive)
    .option('--limit <n>', 'records to print at most', positive, 1)
    .option('--prompt', "the generation prompt of the record's last assistant turn")
    .option('--json', 'print JSON')
    .action(renderAction);
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

async function renderAction(file: string, o: RenderFlags): Promise<void> {
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
