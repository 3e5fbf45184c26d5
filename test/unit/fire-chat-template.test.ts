/**
 * Chat templates (fire/data/chat-template.ts, @huggingface/jinja) against
 * test/fixtures/fire-chat-template-vectors.json, the vectors Python renders with jinja2 too
 * (worker/python/tests/fire/test_chat_template.py): both languages turn a LLaVA conversation
 * into the same messages, the same text and the same training targets.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../common/paths.js';
import {
  builtinTemplate,
  builtinTemplates,
  ChatTemplate,
  ChatTemplateError,
  chatMessages,
  type ChatMessage,
  type Segment,
} from '../../fire/data/chat-template.js';
import { gpt, human, type Message } from '../../fire/data/prompts.js';

interface Vector {
  name: string;
  template: string;
  conversation: Message[];
  addGenerationPrompt: boolean;
  messages: ChatMessage[];
  text?: string;
  segments?: Segment[];
  error?: string;
  segmentsError?: string;
}
interface Fixture {
  specialTokens: Record<string, string>;
  templates: Record<string, string>;
  endOfTurn: Record<string, string>;
  vectors: Vector[];
}

const FIXTURE = JSON.parse(
  readFileSync(new URL('../fixtures/fire-chat-template-vectors.json', import.meta.url), 'utf8'),
) as Fixture;

const templateOf = (name: string): ChatTemplate => {
  const source = FIXTURE.templates[name];
  if (source === undefined) throw new Error(`no template ${name} in the fixture`);
  return new ChatTemplate(source, FIXTURE.specialTokens, name);
};

describe('chat templates: the shared vectors', () => {
  it('covers student and teacher turns, refinement, both generation-prompt settings, errors', () => {
    const names = FIXTURE.vectors.map((v) => v.name).join('\n');
    for (const word of ['student', 'teacher', 'refinement', 'image', 'raise_exception'])
      expect(names).toContain(word);
    const llama = FIXTURE.vectors.filter((v) => v.template === 'llama3-llava-next');
    expect(llama.some((v) => v.addGenerationPrompt)).toBe(true);
    expect(llama.some((v) => !v.addGenerationPrompt && v.segments)).toBe(true);
    expect(llama.some((v) => v.messages.some((m) => m.role === 'assistant'))).toBe(true);
    expect(FIXTURE.vectors.some((v) => v.error)).toBe(true);
    expect(FIXTURE.vectors.some((v) => v.segmentsError)).toBe(true);
  });

  it('ships the LLaVA-NeXT-8B template the vectors render', () => {
    expect(builtinTemplate('llama3-llava-next')).toBe(FIXTURE.templates['llama3-llava-next']);
    const shipped = JSON.parse(
      readFileSync(join(packageRoot(), 'common', 'chat-templates.json'), 'utf8'),
    ) as { templates: Record<string, { source: string }> };
    expect(shipped.templates['llama3-llava-next']?.source).toContain(
      'llava-hf/llama3-llava-next-8b-hf',
    );
    expect(Object.keys(builtinTemplates())).toEqual(['llama3-llava-next']);
  });

  it.each(FIXTURE.vectors.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    expect(chatMessages(v.conversation)).toEqual(v.messages);
    const tpl = templateOf(v.template);
    if (v.error !== undefined) {
      expect(() => tpl.render(v.messages)).toThrow(ChatTemplateError);
      expect(() => tpl.render(v.messages)).toThrow(v.error);
      return;
    }
    expect(tpl.render(v.messages, { addGenerationPrompt: v.addGenerationPrompt })).toBe(v.text);
    if (v.addGenerationPrompt && v.conversation.at(-1)?.from === 'human')
      expect(tpl.prompt(v.conversation)).toBe(v.text);
    if (v.segmentsError !== undefined) {
      expect(() => tpl.segments(v.conversation)).toThrow(v.segmentsError);
    } else if (v.segments !== undefined) {
      const segments = tpl.segments(v.conversation);
      expect(segments).toEqual(v.segments);
      expect(segments.map(([text]) => text).join('')).toBe(v.text);
      // One target per assistant message, each holding that message's text.
      const targets = segments.filter(([, target]) => target).map(([text]) => text);
      const answers = v.messages.filter((m) => m.role === 'assistant');
      expect(targets).toHaveLength(answers.length);
      answers.forEach((m, i) => {
        const text = m.content.find((c) => c.type === 'text');
        expect(targets[i]).toContain(text && 'text' in text ? text.text.trim() : '');
      });
    }
  });

  it('ends an assistant turn as each template does', () => {
    for (const [name, end] of Object.entries(FIXTURE.endOfTurn))
      expect(templateOf(name).endOfTurn()).toBe(end);
  });
});

describe('chat templates: bad input', () => {
  const llama = () => new ChatTemplate(builtinTemplate('llama3-llava-next'));

  it('names an unknown template and the known ones', () => {
    expect(() => builtinTemplate('vicuna')).toThrow(
      'unknown chat template "vicuna"; known: llama3-llava-next',
    );
  });

  it('rejects a template that does not compile, or is empty', () => {
    expect(() => new ChatTemplate('{% for m in messages %}', {}, 'model x')).toThrow(
      /model x does not compile/,
    );
    expect(() => new ChatTemplate('  ')).toThrow(ChatTemplateError);
  });

  it('names the message with a bad role or a second image mark', () => {
    expect(() =>
      chatMessages([human('q'), { from: 'system', value: 'x' } as unknown as Message]),
    ).toThrow("conversation[1].from: must be 'human' or 'gpt', got \"system\"");
    expect(() => chatMessages([human('<image>\n<image> twice')])).toThrow(
      'more than one <image> mark',
    );
  });

  it('asks for a generation prompt only after a human message', () => {
    expect(() => llama().prompt([human('q'), gpt('a')])).toThrow(
      'a generation prompt must end with a human message',
    );
    expect(() => llama().prompt([])).toThrow(RangeError);
  });
});
