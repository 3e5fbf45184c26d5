/**
 * A spec's files reach its pods (spec.files; orchestrator/backends/kubernetes/run-files.ts),
 * on the simulated cluster through the real @kubernetes/client-node: the Job gets a
 * ConfigMap of the listed files, owned by it, mounted read-only at /stoker/files, and
 * the payload runs there and reads its options by the relative path it had beside the
 * spec file, from the ConfigMap's volume (not from the run's copy under its folder, which
 * the local backend uses); a file beside the spec that is not listed is not there.
 */
import { mkdirSync, mkdtempSync, realpathSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1ConfigMap, V1Job } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { RUN_FILES_MOUNT } from '../../orchestrator/backends/kubernetes/run-files.js';
import { specFrom } from '../util/system.js';
import { NS, startK8sCluster, type K8sHarness } from './harness.js';

let k: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await k?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  k = undefined;
  dir = undefined;
});

/** Reads conf/options.json and notes.txt by relative paths; says where it ran and what it saw. */
const PAYLOAD = [
  "const fs = require('node:fs');",
  "const path = require('node:path');",
  "const options = JSON.parse(fs.readFileSync('conf/options.json', 'utf8'));",
  'const out = {',
  '  cwd: process.cwd(),',
  '  options,',
  "  notes: fs.readFileSync('notes.txt', 'utf8'),",
  "  unlisted: fs.existsSync('unlisted.txt'),",
  '};',
  "fs.writeFileSync(path.join(process.env.STOKER_OUTPUT_DIR, 'seen.json'), JSON.stringify(out));",
].join('\n');

describe("a spec's files in the pods of the kubernetes backend", () => {
  it('the payload reads its config by a relative path from the ConfigMap mounted where it runs', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-files-'));
    const specDir = join(dir, 'recipe');
    mkdirSync(join(specDir, 'conf'), { recursive: true });
    writeFileSync(join(specDir, 'conf', 'options.json'), JSON.stringify({ lr: 0.0002, r: 64 }));
    writeFileSync(join(specDir, 'notes.txt'), 'héllo\n');
    writeFileSync(join(specDir, 'unlisted.txt'), 'not carried\n');
    k = await startK8sCluster({ kubelet: { extraEnv: { STOKER_HOME: join(dir, 'home') } } });
    const s = await k.system();
    const spec = specFrom(
      {
        apiVersion: 'stoker/v1',
        kind: 'TrainingRun',
        metadata: { name: 'files' },
        spec: {
          files: ['conf/options.json', 'notes.txt'],
          payload: { command: [process.execPath, '-e', PAYLOAD] },
        },
      },
      specDir,
    );
    const runId = await s.submit(spec);
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 60_000);
    expect(view.phase, `${view.stages[0]?.tasks[0]?.message ?? ''}\n${k.dump()}`).toBe('Succeeded');

    // The Job mounts its ConfigMap read-only, and the ConfigMap is owned by the Job.
    const { store } = k.cluster;
    const job = store.list<V1Job>('jobs', { namespace: NS })[0];
    const jobName = job?.metadata?.name ?? '';
    const pod = job?.spec?.template.spec;
    const volume = pod?.volumes?.find((v) => v.configMap);
    expect(volume?.configMap?.name).toBe(`${jobName}-files`);
    expect(volume?.configMap?.items?.map((i) => i.path)).toEqual([
      'conf/options.json',
      'notes.txt',
    ]);
    expect(pod?.containers[0]?.volumeMounts).toContainEqual({
      name: volume?.name,
      mountPath: RUN_FILES_MOUNT,
      readOnly: true,
    });
    const cm = store.get('configmaps', NS, `${jobName}-files`) as V1ConfigMap | undefined;
    expect(cm?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Job',
      name: jobName,
      uid: job?.metadata?.uid,
    });

    // The payload ran in the ConfigMap's volume (the simulated kubelet's directory for
    // it), not in the run's copy, and saw exactly the listed files.
    const seen = JSON.parse(
      readFileSync(join(view.runDir, 'stages', 'train', 'seen.json'), 'utf8'),
    ) as { cwd: string; options: unknown; notes: string; unlisted: boolean };
    expect(seen.options).toEqual({ lr: 0.0002, r: 64 });
    expect(seen.notes).toBe('héllo\n');
    expect(seen.unlisted).toBe(false);
    expect(realpathSync(seen.cwd)).not.toBe(realpathSync(join(view.runDir, 'files')));
    expect(seen.cwd).toContain(join('volumes', volume?.name ?? ''));
  });
});
