/**
 * The Kubernetes Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
 * levels `baseline` and `restricted` as of Kubernetes 1.30 ("latest"), checked on a pod's
 * metadata and spec the way the PodSecurity admission controller does: every control of
 * the level, over containers, initContainers and ephemeralContainers alike. Written from
 * the published rules, so that a test can say "this pod would be admitted in a namespace
 * that enforces restricted" without a cluster.
 *
 *   podSecurityViolations({ metadata, spec }, 'restricted')
 *     -> ['containers[0].securityContext.allowPrivilegeEscalation must be false', ...]
 *
 * The empty list means admitted. Each message names the field, as the admission
 * controller's own do.
 */
import type { V1Container, V1ObjectMeta, V1PodSpec, V1Volume } from '@kubernetes/client-node';

export type PodSecurityLevel = 'baseline' | 'restricted';

export interface PodLike {
  metadata?: Pick<V1ObjectMeta, 'annotations'> | undefined;
  spec: V1PodSpec;
}

/** Capabilities baseline lets a container add (Docker's defaults, minus NET_RAW). */
const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);

/** Sysctls baseline allows: namespaced and isolated from the node. */
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);

const SELINUX_TYPES = new Set([
  '',
  'container_t',
  'container_init_t',
  'container_kvm_t',
  'container_engine_t',
]);

/** Volume sources restricted allows: nothing that reaches the node's own storage. */
const RESTRICTED_VOLUME_SOURCES = new Set([
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
]);

const SECCOMP_CONFINED = new Set(['RuntimeDefault', 'Localhost']);

type Named = { where: string; c: V1Container };

function allContainers(spec: V1PodSpec): Named[] {
  return [
    ...(spec.initContainers ?? []).map((c, i) => ({ where: `initContainers[${i}]`, c })),
    ...spec.containers.map((c, i) => ({ where: `containers[${i}]`, c })),
    ...(spec.ephemeralContainers ?? []).map((c, i) => ({
      where: `ephemeralContainers[${i}]`,
      c: c as V1Container,
    })),
  ];
}

function baseline(pod: PodLike): string[] {
  const { spec } = pod;
  const out: string[] = [];
  const psc = spec.securityContext ?? {};
  const containers = allContainers(spec);

  // HostProcess
  if (psc.windowsOptions?.hostProcess) out.push('securityContext.windowsOptions.hostProcess');
  // Host namespaces
  for (const ns of ['hostNetwork', 'hostPID', 'hostIPC'] as const)
    if (spec[ns]) out.push(`${ns} must not be true`);
  // Host path volumes
  for (const v of spec.volumes ?? [])
    if (v.hostPath) out.push(`volumes[${v.name}]: hostPath is not allowed`);
  // Sysctls
  for (const s of psc.sysctls ?? [])
    if (!SAFE_SYSCTLS.has(s.name)) out.push(`securityContext.sysctls: ${s.name} is not safe`);
  // AppArmor (annotations, and the field since 1.30)
  for (const [key, value] of Object.entries(pod.metadata?.annotations ?? {}))
    if (
      key.startsWith('container.apparmor.security.beta.kubernetes.io/') &&
      value !== 'runtime/default' &&
      !value.startsWith('localhost/')
    )
      out.push(`annotation ${key}=${value}: AppArmor must be runtime/default or localhost/*`);
  const appArmorOk = (t: string | undefined) => t === undefined || SECCOMP_CONFINED.has(t);
  if (!appArmorOk(psc.appArmorProfile?.type))
    out.push('securityContext.appArmorProfile.type must be RuntimeDefault or Localhost');
  // SELinux
  const seLinux = (where: string, o: { type?: string; user?: string; role?: string } = {}) => {
    if (o.type !== undefined && !SELINUX_TYPES.has(o.type))
      out.push(`${where}.seLinuxOptions.type ${o.type} is not allowed`);
    if (o.user) out.push(`${where}.seLinuxOptions.user must not be set`);
    if (o.role) out.push(`${where}.seLinuxOptions.role must not be set`);
  };
  seLinux('securityContext', psc.seLinuxOptions);
  // Seccomp: never Unconfined
  if (psc.seccompProfile?.type === 'Unconfined')
    out.push('securityContext.seccompProfile.type must not be Unconfined');

  for (const { where, c } of containers) {
    const sc = c.securityContext ?? {};
    if (sc.windowsOptions?.hostProcess)
      out.push(`${where}.securityContext.windowsOptions.hostProcess`);
    if (sc.privileged) out.push(`${where}.securityContext.privileged must not be true`);
    for (const cap of sc.capabilities?.add ?? [])
      if (!BASELINE_CAPABILITIES.has(cap))
        out.push(`${where}.securityContext.capabilities.add: ${cap} is not allowed`);
    for (const [i, p] of (c.ports ?? []).entries())
      if (p.hostPort) out.push(`${where}.ports[${i}].hostPort must not be set`);
    if (!appArmorOk(sc.appArmorProfile?.type))
      out.push(`${where}.securityContext.appArmorProfile.type must be RuntimeDefault or Localhost`);
    seLinux(`${where}.securityContext`, sc.seLinuxOptions);
    if (sc.procMount !== undefined && sc.procMount !== 'Default')
      out.push(`${where}.securityContext.procMount must be Default`);
    if (sc.seccompProfile?.type === 'Unconfined')
      out.push(`${where}.securityContext.seccompProfile.type must not be Unconfined`);
  }
  return out;
}

function volumeSources(v: V1Volume): string[] {
  return Object.entries(v).flatMap(([k, value]) => (k !== 'name' && value != null ? [k] : []));
}

function restricted(pod: PodLike): string[] {
  const { spec } = pod;
  const out: string[] = [];
  const psc = spec.securityContext ?? {};
  const containers = allContainers(spec);

  // Volume types
  for (const v of spec.volumes ?? [])
    for (const source of volumeSources(v))
      if (!RESTRICTED_VOLUME_SOURCES.has(source))
        out.push(`volumes[${v.name}]: ${source} volumes are not allowed`);

  // Running as non-root: the pod says so, or every container does; none says false.
  const podNonRoot = psc.runAsNonRoot === true;
  if (psc.runAsUser === 0) out.push('securityContext.runAsUser must not be 0');
  for (const { where, c } of containers) {
    const sc = c.securityContext ?? {};
    // Privilege escalation: explicitly false.
    if (sc.allowPrivilegeEscalation !== false)
      out.push(`${where}.securityContext.allowPrivilegeEscalation must be false`);
    if (sc.runAsNonRoot === false)
      out.push(`${where}.securityContext.runAsNonRoot must not be false`);
    else if (!podNonRoot && sc.runAsNonRoot !== true)
      out.push(`${where}: runAsNonRoot must be true (in the pod or the container)`);
    if (sc.runAsUser === 0) out.push(`${where}.securityContext.runAsUser must not be 0`);
    // Seccomp: RuntimeDefault or Localhost, from the pod or the container.
    const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
    if (seccomp === undefined || !SECCOMP_CONFINED.has(seccomp))
      out.push(`${where}: seccompProfile.type must be RuntimeDefault or Localhost`);
    // Capabilities: drop ALL, add at most NET_BIND_SERVICE.
    if (!(sc.capabilities?.drop ?? []).includes('ALL'))
      out.push(`${where}.securityContext.capabilities.drop must include ALL`);
    for (const cap of sc.capabilities?.add ?? [])
      if (cap !== 'NET_BIND_SERVICE')
        out.push(`${where}.securityContext.capabilities.add: only NET_BIND_SERVICE (${cap})`);
  }
  return out;
}

/** What keeps `pod` out of a namespace that enforces `level` (empty: admitted). */
export function podSecurityViolations(pod: PodLike, level: PodSecurityLevel): string[] {
  return level === 'baseline' ? baseline(pod) : [...baseline(pod), ...restricted(pod)];
}
