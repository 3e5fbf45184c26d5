/**
 * `stoker data render` as a user runs it (bin/stoker.js in a child process): view records
 * written by `stoker data views`, printed through the recipe model's chat template, a model
 * directory's template, and the errors (exit 1 for a bad record, 2 for a bad template).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinTemplate, ChatTemplate, type Segment } from '../../fire/data/chat-template.js';
import type { ViewRecord } from '../../fire/data/views.js';
import { stoker } from '../util/cli.js';

let home: string;
const env = () => ({ home });
let views: string;

const DIALOGUE = {
  id: 'gqa-1',
  image: 'img.png',
  question: { role: 'user', value: 'Is the basket made of wicker?' },
  groundtruth: { role: 'user', value: 'Yes.' },
  conversations: [
    { role: 'student', type: 'response', value: 'Thought: plastic.\nAnswer: No.' },
    { role: 'teacher', type: 'feedback', value: 'Score: 3.\nFeedback: Look at the weave.' },
    { role: 'student', type: 'response', value: 'Thought: woven.\nAnswer: Yes.' },
    { role: 'teacher', type: 'feedback', value: 'Score: 9.\nFeedback: Right.' },
  ],
  score: [3, 9],
  round: 2,
  source: 'gqa',
  split: 'fire_1m',
};

const firstRecord = (name: string): ViewRecord =>
  JSON.parse(readFileSync(join(views, name), 'utf8').split('\n')[0] as string) as ViewRecord;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-data-render-'));
  writeFileSync(join(home, 'raw.jsonl'), `${JSON.stringify(DIALOGUE)}\n`);
  views = join(home, 'views');
  const r = await stoker(['data', 'views', join(home, 'raw.jsonl'), '--out', views], env());
  expect(r.exitCode, r.all).toBe(0);
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('stoker data render', () => {
  it('prints a student view as LLaVA-NeXT-8B sees it, the targets marked', async () => {
    const r = await stoker(['data', 'render', join(views, 'student.jsonl')], env());
    expect(r.exitCode, r.all).toBe(0);
    const tpl = new ChatTemplate(builtinTemplate('llama3-llava-next'));
    const marked = tpl
      .segments(firstRecord('student.jsonl').conversations)
      .map(([t, target]) => (target ? `[[target]]${t}[[/target]]` : t))
      .join('');
    expect(r.stdout).toBe(`== gqa-1 (line 1)\n${marked}`);
    expect(r.stdout).toContain(
      '<|start_header_id|>assistant<|end_header_id|>\n\n[[target]]\nThought: plastic.\nAnswer: No.<|eot_id|>[[/target]]',
    );
  });

  it('prints the teacher prompt self-play asks with, as JSON', async () => {
    const r = await stoker(
      ['data', 'render', join(views, 'teacher.jsonl'), '--line', '2', '--prompt', '--json'],
      env(),
    );
    expect(r.exitCode, r.all).toBe(0);
    const out = JSON.parse(r.stdout) as {
      template: string;
      records: Array<{ line: number; id: string; text: string; segments?: Segment[] }>;
    };
    const view = JSON.parse(
      readFileSync(join(views, 'teacher.jsonl'), 'utf8').split('\n')[1] as string,
    ) as ViewRecord;
    const tpl = new ChatTemplate(builtinTemplate('llama3-llava-next'));
    expect(out).toEqual({
      template: 'llama3-llava-next',
      records: [{ line: 2, id: 'gqa-1#t2', text: tpl.prompt(view.conversations.slice(0, -1)) }],
    });
    expect(out.records[0]?.text.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(
      true,
    );
  });

  it("reads a model directory's chat_template.json and special tokens", async () => {
    const model = join(home, 'model');
    mkdirSync(model);
    writeFileSync(
      join(model, 'chat_template.json'),
      JSON.stringify({
        chat_template:
          "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'][-1]['text'] + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
      }),
    );
    writeFileSync(
      join(model, 'special_tokens_map.json'),
      JSON.stringify({ bos_token: { content: '<s>' }, eos_token: '</s>' }),
    );
    const r = await stoker(
      ['data', 'render', join(views, 'answers.jsonl'), '--template', model, '--json'],
      env(),
    );
    expect(r.exitCode, r.all).toBe(0);
    const out = JSON.parse(r.stdout) as { template: string; records: Array<{ text: string }> };
    expect(out.template).toBe(join(model, 'chat_template.json'));
    expect(out.records[0]?.text).toBe(
      '<s>user: Is the basket made of wicker?</s>\nassistant: Thought: woven.\nAnswer: Yes.</s>\n',
    );
  });

  it('names a bad record (exit 1) and a bad template or line (exit 2)', async () => {
    const bad = join(home, 'bad.jsonl');
    writeFileSync(
      bad,
      `${JSON.stringify({ id: 1, conversations: [{ from: 'system', value: 'x' }] })}\n`,
    );
    const [record, template, line, dir] = await Promise.all([
      stoker(['data', 'render', bad], env()),
      stoker(['data', 'render', bad, '--template', 'vicuna'], env()),
      stoker(['data', 'render', join(views, 'student.jsonl'), '--line', '9'], env()),
      stoker(['data', 'render', bad, '--template', home], env()),
    ]);
    expect(record.exitCode).toBe(1);
    expect(record.stderr).toContain(`${bad}:1: conversation[0].from: must be 'human' or 'gpt'`);
    expect(template.exitCode).toBe(2);
    expect(template.stderr).toContain('--template vicuna: neither a chat template stoker ships');
    expect(line.exitCode).toBe(2);
    expect(line.stderr).toContain('no record on line 9');
    expect(dir.exitCode).toBe(2);
    expect(dir.stderr).toContain(
      'a model directory without chat_template.jinja or chat_template.json',
    );
  });
});
