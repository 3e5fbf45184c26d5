/**
 * A small FIRE pipeline for the API and browser tests: an `evaluate` stage writes two
 * models' free dialogues (FIRE raw records with teacher scores), and a `report` stage
 * runs the real `stoker report` on them, as training-configs/fire/pipeline.yaml does.
 * The baseline never refines; the final model refines both wrong starts.
 */
import { stringify } from 'yaml';

const SCRIPT = `
const fs = require('node:fs');
const path = require('node:path');
const out = process.env.STOKER_OUTPUT_DIR;
const record = (id, scores) => JSON.stringify({
  id, image: id + '.png', question: { role: 'user', value: 'q?' },
  groundtruth: { role: 'user', value: 'gt' },
  conversations: scores.flatMap((s, i) => [
    { role: 'student', type: 'response', value: 'Thought: t' + i + '\\nAnswer: a' + i },
    { role: 'teacher', type: 'feedback', value: 'Score: ' + s + '.\\nFeedback: f' + i },
  ]),
  score: scores, round: scores.length, source: 'synthetic', split: 'fire_test',
});
const models = { base: [[9], [3, 3], [4, 4]], final: [[9], [3, 9], [4, 6, 8]] };
for (const [name, dialogues] of Object.entries(models)) {
  fs.mkdirSync(path.join(out, name), { recursive: true });
  fs.writeFileSync(path.join(out, name, 'free.jsonl'),
    dialogues.map((s, i) => record(name + i, s)).join('\\n') + '\\n');
}
`;

export function fireReportSpec(name: string): string {
  return stringify({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name },
    spec: {
      stages: [
        {
          name: 'evals',
          kind: 'evaluate',
          payload: { command: [process.execPath, '-e', SCRIPT] },
          outputs: { base: 'base', final: 'final' },
        },
        {
          name: 'report',
          kind: 'report',
          dependsOn: ['evals'],
          payload: {
            command: [
              'stoker',
              'report',
              '--title',
              'FIRE in miniature',
              '--model',
              'base=${stages.evals.outputs.base}',
              '--model',
              'final=${stages.evals.outputs.final}',
              '--baseline',
              'base',
              '--out',
              '${stage.outputDir}',
            ],
          },
          outputs: { report: 'report.md', json: 'report.json' },
        },
      ],
    },
  });
}
