/**
 * NetworkPolicy (networking.k8s.io/v1) as a network plugin enforces it, for the flows a
 * test names: a connection from a pod to a pod or an address on a port is allowed when
 * the source's egress allows it (no policy of type Egress selects the source, or one of
 * those that do has a rule admitting it) and the destination's ingress does likewise.
 * Only the policies' namespace is governed: a destination in another namespace (kube-dns)
 * or outside the cluster is judged by the source's egress alone.
 *
 *   const net = networkPolicies(objects, 'stoker');
 *   net.allows(pod(workerLabels), pod(redisLabels), 6379)               -> true
 *   net.allows(pod(workerLabels), address('52.216.0.1'), 443)           -> false
 *
 * What the manifests use is supported: podSelector and namespaceSelector with
 * matchLabels (and matchExpressions In/Exists), ipBlock with except, ports by number and
 * protocol (TCP by default). Named ports and endPort are refused.
 */
export interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

interface Peer {
  podSelector?: Selector;
  namespaceSelector?: Selector;
  ipBlock?: { cidr: string; except?: string[] };
}

interface Rule {
  from?: Peer[];
  to?: Peer[];
  ports?: { port?: number | string; protocol?: string; endPort?: number }[];
}

export interface NetworkPolicyObject {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec: {
    podSelector: Selector;
    policyTypes?: string[];
    ingress?: Rule[];
    egress?: Rule[];
  };
}

/** A pod (in a namespace with labels), or an address outside every pod network. */
export type Endpoint =
  | { pod: Record<string, string>; namespace: string; namespaceLabels: Record<string, string> }
  | { ip: string };

export const podIn = (
  namespace: string,
  labels: Record<string, string>,
  namespaceLabels: Record<string, string> = {},
): Endpoint => ({
  pod: labels,
  namespace,
  namespaceLabels: { 'kubernetes.io/metadata.name': namespace, ...namespaceLabels },
});
export const address = (ip: string): Endpoint => ({ ip });

export function selects(sel: Selector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  const byLabels = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpressions = (sel.matchExpressions ?? []).every((e) => {
    switch (e.operator) {
      case 'In':
        return e.values?.includes(labels[e.key] ?? '\0') ?? false;
      case 'NotIn':
        return !(e.values ?? []).includes(labels[e.key] ?? '\0');
      case 'Exists':
        return e.key in labels;
      case 'DoesNotExist':
        return !(e.key in labels);
      default:
        throw new Error(`selector operator ${e.operator}`);
    }
  });
  return byLabels && byExpressions;
}

const ipv4 = (ip: string): number => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);

export function inCidr(ip: string, cidr: string): boolean {
  const [base = '', bits = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipv4(base) / size) * size;
  const n = ipv4(ip);
  return n >= start && n < start + size;
}

export class NetworkPolicies {
  constructor(
    readonly policies: NetworkPolicyObject[],
    readonly namespace: string,
  ) {
    for (const p of policies)
      for (const r of [...(p.spec.ingress ?? []), ...(p.spec.egress ?? [])])
        for (const port of r.ports ?? [])
          if (typeof port.port === 'string' || port.endPort !== undefined)
            throw new Error(`${p.metadata?.name}: named ports and endPort are not supported here`);
  }

  /** Whether a connection from `from` to `to` on `port`/`protocol` is allowed. */
  allows(from: Endpoint, to: Endpoint, port: number, protocol = 'TCP'): boolean {
    return (
      this.admits('Egress', from, to, port, protocol) &&
      this.admits('Ingress', to, from, port, protocol)
    );
  }

  /** Whether `self`'s policies of `type` admit `peer` (true when none selects `self`). */
  private admits(
    type: 'Ingress' | 'Egress',
    self: Endpoint,
    peer: Endpoint,
    port: number,
    protocol: string,
  ): boolean {
    if (!('pod' in self) || self.namespace !== this.namespace) return true;
    const governing = this.policies.filter(
      (p) => selects(p.spec.podSelector, self.pod) && this.types(p).includes(type),
    );
    if (governing.length === 0) return true;
    return governing.some((p) =>
      ((type === 'Ingress' ? p.spec.ingress : p.spec.egress) ?? []).some(
        (r) =>
          this.portMatches(r, port, protocol) &&
          this.peerMatches(type === 'Ingress' ? r.from : r.to, peer),
      ),
    );
  }

  private types(p: NetworkPolicyObject): string[] {
    // Unset policyTypes: Ingress, plus Egress when the policy has egress rules.
    return p.spec.policyTypes ?? ['Ingress', ...(p.spec.egress ? ['Egress'] : [])];
  }

  private portMatches(r: Rule, port: number, protocol: string): boolean {
    if (!r.ports?.length) return true;
    return r.ports.some(
      (p) => (p.port === undefined || p.port === port) && (p.protocol ?? 'TCP') === protocol,
    );
  }

  private peerMatches(peers: Peer[] | undefined, peer: Endpoint): boolean {
    if (!peers?.length) return true;
    return peers.some((p) => {
      if (p.ipBlock) {
        if (!('ip' in peer)) return false;
        const { cidr, except = [] } = p.ipBlock;
        return inCidr(peer.ip, cidr) && !except.some((e) => inCidr(peer.ip, e));
      }
      if (!('pod' in peer)) return false;
      // A podSelector alone selects pods in the policy's namespace.
      const nsOk = p.namespaceSelector
        ? selects(p.namespaceSelector, peer.namespaceLabels)
        : peer.namespace === this.namespace;
      return nsOk && selects(p.podSelector, peer.pod);
    });
  }
}

export const networkPolicies = (
  objects: readonly Record<string, unknown>[],
  namespace: string,
): NetworkPolicies =>
  new NetworkPolicies(
    objects.filter((o) => o['kind'] === 'NetworkPolicy') as unknown as NetworkPolicyObject[],
    namespace,
  );
