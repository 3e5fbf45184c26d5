/**
 * Chat templates: LLaVA conversations ({from, value} lists, prompts.ts) rendered to the text a
 * model sees, by the model's Jinja chat template: the TypeScript twin of
 * worker/python/src/stoker_fire/chat_template.py, which renders training and self-play
 * prompts. Here it renders `stoker data render` (what a view record looks like to a model).
 * test/fixtures/fire-chat-template-vectors.json pins both sides
 * (test/unit/fire-chat-template.test.ts, worker/python/tests/fire/test_chat_template.py).
 *
 *   const tpl = new ChatTemplate(builtinTemplate('llama3-llava-next'), { bos_token: '<s>' });
 *   tpl.prompt([human('<image>\nWhat color?')])   // generation prompt
 *   tpl.segments(record.conversations)            // [[text, isTarget], ...] for training
 *
 * chatMessages(): human -> role user, gpt -> role assistant; consecutive messages of one
 * role become one message, values joined by '\n'; the message holding the `<image>` mark
 * gets content [{type: 'image'}, {type: 'text', text}] (the mark and one newline after it
 * taken out), others [{type: 'text', text}].
 * Rendering: @huggingface/jinja (Hugging Face's JavaScript Jinja, which applies
 * trim_blocks and lstrip_blocks and defines raise_exception, strftime_now and the
 * `generation` tag as transformers does), given messages, tools null, documents null,
 * add_generation_prompt and the special tokens. Assistant spans: the text from
 * render(messages[:i], add_generation_prompt) to render(messages[:i+1]).
 * Templates stoker ships: common/chat-templates.json (Python reads it too).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { packageRoot } from '../../common/paths.js';
import { IMAGE_TOKEN, type Message } from './prompts.js';

export type ChatContent = { type: 'image' } | { type: 'text'; text: string };
export interface ChatMessage {
  role: 'user' | 'assistant';
  content: ChatContent[];
}
/** A piece of a rendered conversation and whether it is an assistant turn (a training target). */
export type Segment = [text: string, target: boolean];

export const ROLES = { human: 'user', gpt: 'assistant' } as const;
const PROBE = '\u0000stoker-probe\u0000';

/** A template that does not compile, raises, or cannot mark the assistant turns. */
export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

export interface BuiltinTemplate {
  source: string;
  template: string;
}

let builtins: Record<string, BuiltinTemplate> | undefined;

/** name -> {source, template} of common/chat-templates.json. */
export function builtinTemplates(): Record<string, BuiltinTemplate> {
  builtins ??= (
    JSON.parse(readFileSync(join(packageRoot(), 'common', 'chat-templates.json'), 'utf8')) as {
      templates: Record<string, BuiltinTemplate>;
    }
  ).templates;
  return builtins;
}

/** The text of a template stoker ships; a RangeError naming the known ones. */
export function builtinTemplate(name: string): string {
  const entry = builtinTemplates()[name];
  if (!entry)
    throw new RangeError(
      `unknown chat template ${JSON.stringify(name)}; known: ${Object.keys(builtinTemplates()).sort().join(', ')}`,
    );
  return entry.template;
}

function content(value: string): ChatContent[] {
  if (!value.includes(IMAGE_TOKEN)) return [{ type: 'text', text: value }];
  const text = value.startsWith(`${IMAGE_TOKEN}\n`)
    ? value.slice(IMAGE_TOKEN.length + 1)
    : value.replace(IMAGE_TOKEN, '');
  if (text.includes(IMAGE_TOKEN))
    throw new RangeError(
      `a message holds more than one ${IMAGE_TOKEN} mark: ${JSON.stringify(value.slice(0, 80))}`,
    );
  return [{ type: 'image' }, { type: 'text', text }];
}

/** The chat messages ({role, content}) of a LLaVA conversation (see the header). */
export function chatMessages(conversation: readonly Message[]): ChatMessage[] {
  const merged: Array<{ from: Message['from']; value: string }> = [];
  conversation.forEach((m, i) => {
    if (m.from !== 'human' && m.from !== 'gpt')
      throw new RangeError(
        `conversation[${i}].from: must be 'human' or 'gpt', got ${JSON.stringify(m.from)}`,
      );
    if (typeof m.value !== 'string')
      throw new RangeError(`conversation[${i}].value: must be a string, got ${typeof m.value}`);
    const last = merged[merged.length - 1];
    if (last && last.from === m.from) last.value += `\n${m.value}`;
    else merged.push({ from: m.from, value: m.value });
  });
  return merged.map((m) => ({ role: ROLES[m.from], content: content(m.value) }));
}

/** A Jinja chat template with its tokenizer's special tokens (bos_token, eos_token, ...). */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    readonly tokens: Readonly<Record<string, unknown>> = {},
    readonly name = 'the chat template',
  ) {
    if (!source.trim()) throw new ChatTemplateError(`${name} is empty`);
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ChatTemplateError(`${name} does not compile: ${(err as Error).message}`);
    }
  }

  render(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    try {
      return this.template.render({
        messages,
        tools: null,
        documents: null,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
        ...this.tokens,
      });
    } catch (err) {
      throw new ChatTemplateError(`${this.name} failed: ${(err as Error).message}`);
    }
  }

  /** The generation prompt of a conversation that ends with a human message. */
  prompt(conversation: readonly Message[]): string {
    if (conversation[conversation.length - 1]?.from !== 'human')
      throw new RangeError('a generation prompt must end with a human message');
    return this.render(chatMessages(conversation), { addGenerationPrompt: true });
  }

  /** Non-empty pieces that join into the whole rendering; targets are the assistant turns. */
  segments(conversation: readonly Message[]): Segment[] {
    const messages = chatMessages(conversation);
    const whole = this.render(messages);
    const pieces: Segment[] = [];
    let at = 0;
    messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      const before = this.render(messages.slice(0, i), { addGenerationPrompt: true });
      const through = this.render(messages.slice(0, i + 1));
      if (!(whole.startsWith(through) && through.startsWith(before) && before.length >= at))
        throw new ChatTemplateError(
          `${this.name} does not render the start of a conversation as a prefix of the whole ` +
            `(at message ${i}), so the assistant turns cannot be marked for training`,
        );
      pieces.push(
        [whole.slice(at, before.length), false],
        [whole.slice(before.length, through.length), true],
      );
      at = through.length;
    });
    pieces.push([whole.slice(at), false]);
    return pieces.filter(([text]) => text !== '');
  }

  /** What the template writes right after an assistant message's text ('' when nothing). */
  endOfTurn(): string {
    const probe = this.render(
      chatMessages([
        { from: 'human', value: 'x' },
        { from: 'gpt', value: PROBE },
      ]),
    );
    const at = probe.indexOf(PROBE);
    return at >= 0 ? probe.slice(at + PROBE.length) : '';
  }
}

export interface LoadedTemplate {
  template: ChatTemplate;
  /** Where it came from: a shipped template's name, or the file read. */
  from: string;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch (err) {
    throw new ChatTemplateError(`${file}: not readable JSON (${(err as Error).message})`);
  }
}

/** The `chat_template` of a chat_template.json: a string, or [{name, template}] (its "default"). */
function templateField(file: string): string {
  const value = (readJson(file) as { chat_template?: unknown } | null)?.chat_template;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find(
      (t: { name?: unknown; template?: unknown }) =>
        t.name === 'default' && typeof t.template === 'string',
    ) as { template: string } | undefined;
    if (named) return named.template;
  }
  throw new ChatTemplateError(`${file}: has no chat_template string`);
}

/** special_tokens_map.json's tokens (strings or {content}), as the tokenizer gives them. */
function specialTokensOf(file: string): Record<string, unknown> {
  const raw = readJson(file);
  const out: Record<string, unknown> = {};
  const text = (t: unknown): unknown =>
    t && typeof t === 'object' && 'content' in t ? (t as { content: unknown }).content : t;
  for (const [name, value] of Object.entries((raw ?? {}) as Record<string, unknown>))
    out[name] = Array.isArray(value) ? value.map(text) : text(value);
  return out;
}

/**
 * A template by name (common/chat-templates.json), a model directory (its processor's
 * chat_template.jinja or chat_template.json, and special_tokens_map.json), a .json file
 * with `chat_template`, or a Jinja file. ChatTemplateError naming what is missing.
 */
export function loadTemplate(spec: string): LoadedTemplate {
  if (builtinTemplates()[spec])
    return { template: new ChatTemplate(builtinTemplate(spec), {}, spec), from: spec };
  let st;
  try {
    st = statSync(spec);
  } catch {
    throw new ChatTemplateError(
      `${spec}: neither a chat template stoker ships (${Object.keys(builtinTemplates()).join(', ')}) nor a file or directory`,
    );
  }
  if (st.isDirectory()) {
    const jinja = join(spec, 'chat_template.jinja');
    const json = join(spec, 'chat_template.json');
    const map = join(spec, 'special_tokens_map.json');
    const tokens = existsSync(map) ? specialTokensOf(map) : {};
    if (existsSync(jinja))
      return {
        template: new ChatTemplate(readFileSync(jinja, 'utf8'), tokens, jinja),
        from: jinja,
      };
    if (existsSync(json))
      return { template: new ChatTemplate(templateField(json), tokens, json), from: json };
    throw new ChatTemplateError(
      `${spec}: a model directory without chat_template.jinja or chat_template.json (python3 -m stoker_fire.chat_template --write NAME DIR writes one)`,
    );
  }
  const source = spec.endsWith('.json') ? templateField(spec) : readFileSync(spec, 'utf8');
  return { template: new ChatTemplate(source, {}, spec), from: spec };
}
