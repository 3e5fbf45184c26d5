/**
 * `stoker render FILE [--set k=v]... [--run-id ID]`: every Kubernetes object a run of
 * the spec would create, as YAML documents (a dry run: nothing is created), built with
 * the settings of this environment (STOKER_K8S_*): Jobs, a gang's Services, and for a
 * spec that lists files, each Job's ConfigMap of them (mounted at /stoker/files).
 */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { buildAll } from '../../backends/kubernetes/objects.js';
import { settingsFromEnv } from '../../backends/kubernetes/settings.js';
import { makeRunId } from '../../store.js';
import { makeContext } from '../context.js';
import { globals } from '../options.js';
import { loadSpec, requireFile } from '../spec-input.js';

export interface RenderOptions {
  set?: string[];
  runId?: string;
}

export async function action(file: string, o: RenderOptions, cmd: Command): Promise<void> {
  requireFile(file);
  const ctx = makeContext(globals(cmd));
  const spec = await loadSpec(file, o.set);
  const objects = buildAll(spec, o.runId ?? makeRunId(spec.name), settingsFromEnv(ctx.env));
  process.stdout.write(
    objects
      .map((obj) =>
        // Literal blocks, unfolded: a ConfigMap's files read as they are in the repository.
        stringify(JSON.parse(JSON.stringify(obj)) as unknown, {
          blockQuote: 'literal',
          lineWidth: 0,
        }),
      )
      .join('---\n'),
  );
}
