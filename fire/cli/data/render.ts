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
import { positive } from './flags.js';
import type { RenderFlags } from './render-action.js';

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
    .action(async (file: string, o: RenderFlags) =>
      (await import('./render-action.js')).renderAction(file, o),
    );
}
