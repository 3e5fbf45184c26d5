/**
 * `--simulate`: what the CLI needs from a simulated cluster (a fake API server and a
 * simulated kubelet that runs each pod's command as a local process), and where it is
 * found. The simulator is test support (testing/kube-sim/), not part of the product: it
 * is not shipped in the images, and nothing in the production tree imports it. The CLI
 * loads it at run time from the checkout it runs from, through this contract; an
 * installation without it says so instead of failing on a missing module.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError } from '../../../common/errors.js';
import { packageRoot } from '../../../common/paths.js';
import type { KubernetesSettings } from './settings.js';

export interface SimulatedCluster {
  /** One line for `stoker up`'s banner. */
  describe: string;
  kubeConfig: KubeConfig;
  settings: KubernetesSettings;
  /** A Secret in the simulated cluster (the worker pods' Redis URL). */
  putSecret(name: string, key: string, value: string): void;
  stop(): Promise<void>;
}

export interface ClusterSimulator {
  startSimulatedCluster(opts: {
    /** Extra environment of every worker pod (STOKER_PREFIX, STOKER_HOME). */
    workerEnv: Record<string, string>;
    /**
     * Seeded API-server faults from the start, as a spec string
     * (`seed=7,rate=0.2,conflictRate=0.5,watchRate=0.5`: testing/kube-sim/apiserver/
     * random-faults.ts): `STOKER_SIMULATE_FAULTS`.
     */
    faults?: string;
    /**
     * A file to append, one JSON line each, every Job and pod the simulated cluster
     * creates and every fault it injects (what a test counts): `STOKER_SIMULATE_RECORD`.
     */
    recordTo?: string;
  }): Promise<SimulatedCluster>;
}

/** testing/kube-sim/index.{ts,js} beside this build (sources through tsx, or dist/). */
export async function loadClusterSimulator(): Promise<ClusterSimulator> {
  const fromSources = import.meta.url.endsWith('.ts');
  const base = fromSources ? packageRoot() : join(packageRoot(), 'dist');
  const entry = join(base, 'testing', 'kube-sim', fromSources ? 'index.ts' : 'index.js');
  if (!existsSync(entry))
    throw new UsageError(
      `--simulate needs stoker's test support (testing/kube-sim), which this installation does not have: it is part of a checkout of the repository, not of the images`,
    );
  return (await import(pathToFileURL(entry).href)) as ClusterSimulator;
}
