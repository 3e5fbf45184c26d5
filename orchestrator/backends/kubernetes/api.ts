/**
 * The kubernetes backend's requests to the API server, in its one namespace. Every
 * request goes through the backend's ApiGate (api-gate.ts: a token bucket, the API
 * server's Retry-After on 429, retries of transient failures), named `verb resource`
 * ('create jobs', 'list pods'...): BackendStats.requests counts them by that name, and
 * the tests and the reconcile benchmark check those counts.
 *
 * A create retried after its response was lost gets 409 AlreadyExists; a delete of what
 * is gone already gets 404. Which of those is success is said per method: deletes treat
 * 404 as done, createService and createConfigMap treat 409 as done, createJob leaves 409 to its caller (a
 * launch re-attaches, a pool worker reads the Job that is there).
 *
 * Each request carries the gate's abort signal (`opts(signal)`): a try the API server
 * leaves unanswered is aborted and its connection closed, then retried.
 */
import {
  BatchV1Api,
  type ConfigurationOptions,
  CoreV1Api,
  type CoreV1Event,
  type KubeConfig,
  Observable,
  type RequestContext,
  type ResponseContext,
  type V1Job,
  type V1Pod,
  type V1ConfigMap,
  type V1Service,
} from '@kubernetes/client-node';
import { isHttpStatus, type ApiGate } from './api-gate.js';
import type { ListResult } from './reflector.js';
import { FAILED_CREATE_SELECTOR, MANAGED_BY_SELECTOR } from './names.js';

export class ClusterApi {
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;

  constructor(
    kc: KubeConfig,
    readonly namespace: string,
    readonly gate: ApiGate,
  ) {
    this.batch = kc.makeApiClient(BatchV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** stoker's Jobs (label app.kubernetes.io/managed-by=stoker). */
  listJobs(): Promise<ListResult<V1Job>> {
    const { namespace } = this;
    return this.gate.call('list jobs', (signal) =>
      this.batch.listNamespacedJob({ namespace, labelSelector: MANAGED_BY_SELECTOR }, opts(signal)),
    );
  }

  /** stoker's pods. */
  listPods(): Promise<ListResult<V1Pod>> {
    const { namespace } = this;
    return this.gate.call('list pods', (signal) =>
      this.core.listNamespacedPod({ namespace, labelSelector: MANAGED_BY_SELECTOR }, opts(signal)),
    );
  }

  /** The Job controller's FailedCreate events. */
  listEvents(): Promise<ListResult<CoreV1Event>> {
    const { namespace } = this;
    return this.gate.call('list events', (signal) =>
      this.core.listNamespacedEvent(
        { namespace, fieldSelector: FAILED_CREATE_SELECTOR },
        opts(signal),
      ),
    );
  }

  /** stoker's Services (gangs' headless Services). */
  async listServices(): Promise<V1Service[]> {
    const { namespace } = this;
    const list = await this.gate.call('list services', (signal) =>
      this.core.listNamespacedService(
        { namespace, labelSelector: MANAGED_BY_SELECTOR },
        opts(signal),
      ),
    );
    return list.items;
  }

  /** Create a Job; the API server's answer. Throws on 409 (the caller decides). */
  createJob(body: V1Job): Promise<V1Job> {
    const { namespace } = this;
    return this.gate.call('create jobs', (signal) =>
      this.batch.createNamespacedJob({ namespace, body }, opts(signal)),
    );
  }

  /** One Job by name; undefined when there is none. */
  async readJob(name: string): Promise<V1Job | undefined> {
    try {
      return await this.gate.call('get jobs', (signal) =>
        this.batch.readNamespacedJob({ name, namespace: this.namespace }, opts(signal)),
      );
    } catch (err) {
      if (isHttpStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Delete a Job and (Background) its pods, with their grace period or `graceSeconds`. */
  async deleteJob(name: string, graceSeconds?: number): Promise<void> {
    try {
      await this.gate.call('delete jobs', (signal) =>
        this.batch.deleteNamespacedJob(
          {
            name,
            namespace: this.namespace,
            propagationPolicy: 'Background',
            ...(graceSeconds === undefined ? {} : { gracePeriodSeconds: graceSeconds }),
          },
          opts(signal),
        ),
      );
    } catch (err) {
      if (!isHttpStatus(err, 404)) throw err;
    }
  }

  /** Create a Service; one that exists already is fine. */
  async createService(body: V1Service): Promise<void> {
    try {
      await this.gate.call('create services', (signal) =>
        this.core.createNamespacedService({ namespace: this.namespace, body }, opts(signal)),
      );
    } catch (err) {
      if (!isHttpStatus(err, 409)) throw err;
    }
  }

  /** Create a ConfigMap (the run's files of a Job); one that exists already is fine. */
  async createConfigMap(body: V1ConfigMap): Promise<void> {
    try {
      await this.gate.call('create configmaps', (signal) =>
        this.core.createNamespacedConfigMap({ namespace: this.namespace, body }, opts(signal)),
      );
    } catch (err) {
      if (!isHttpStatus(err, 409)) throw err;
    }
  }

  async deleteService(name: string): Promise<void> {
    try {
      await this.gate.call('delete services', (signal) =>
        this.core.deleteNamespacedService(
          {
            name,
            namespace: this.namespace,
            propagationPolicy: 'Background',
          },
          opts(signal),
        ),
      );
    } catch (err) {
      if (!isHttpStatus(err, 404)) throw err;
    }
  }

  /** Delete a pod: with `gracePeriodSeconds` (0: killed at once), or Background. */
  async deletePod(
    name: string,
    how: { gracePeriodSeconds: number } | { propagationPolicy: 'Background' },
  ): Promise<void> {
    try {
      await this.gate.call('delete pods', (signal) =>
        this.core.deleteNamespacedPod({ name, namespace: this.namespace, ...how }, opts(signal)),
      );
    } catch (err) {
      if (!isHttpStatus(err, 404)) throw err;
    }
  }
}

/** Options that put `signal` on a request (client-node 1.x: a middleware sets it). */
function opts(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}
