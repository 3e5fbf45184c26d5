/**
 * A Job's podFailurePolicy applied to one finished pod, as the real Job controller reads
 * it: the rules in order, the first that matches decides. A rule matches on the exit
 * codes of the pod's containers (operator In / NotIn; exit code 0 never matches) or on
 * its conditions (e.g. DisruptionTarget for an evicted or preempted pod). Its action:
 * FailJob fails the Job (with the real message naming the pod, the container and the
 * rule), Ignore neither counts the failure nor holds back a replacement, Count (and
 * FailIndex, counted here like Count) counts it against backoffLimit. A failed pod that
 * no rule matches is counted; a pod that succeeded is a success.
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IPod } from 'kubernetes-models/v1/Pod';

export type Outcome =
  | { kind: 'succeeded' }
  | { kind: 'failed' }
  | { kind: 'ignored' }
  | { kind: 'failJob'; message: string };

export function classify(job: IJob, pod: IPod): Outcome {
  if (pod.status?.phase === 'Succeeded') return { kind: 'succeeded' };
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const rules = job.spec?.podFailurePolicy?.rules ?? [];
  for (const [i, rule] of rules.entries()) {
    let matched: string | undefined;
    if (rule.onExitCodes) {
      const { containerName, operator, values } = rule.onExitCodes;
      for (const cs of pod.status?.containerStatuses ?? []) {
        if (containerName && cs.name !== containerName) continue;
        const code = cs.state?.terminated?.exitCode;
        if (code === undefined || code === 0) continue;
        const inValues = values.includes(code);
        if ((operator === 'In' && inValues) || (operator === 'NotIn' && !inValues)) {
          matched = `Container ${cs.name} for pod ${ns}/${name} failed with exit code ${code} matching ${rule.action} rule at index ${i}`;
          break;
        }
      }
    } else if (rule.onPodConditions) {
      for (const pat of rule.onPodConditions) {
        const c = (pod.status?.conditions ?? []).find(
          (x) => x.type === pat.type && x.status === (pat.status ?? 'True'),
        );
        if (c) {
          matched = `Pod ${ns}/${name} has condition ${pat.type} matching ${rule.action} rule at index ${i}`;
          break;
        }
      }
    }
    if (matched === undefined) continue;
    if (rule.action === 'Ignore') return { kind: 'ignored' };
    if (rule.action === 'FailJob') return { kind: 'failJob', message: matched };
    return { kind: 'failed' };
  }
  return { kind: 'failed' };
}
