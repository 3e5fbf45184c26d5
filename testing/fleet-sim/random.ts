/**
 * Seeded randomness for the fleet model: the same seed gives the same run, on any machine.
 *
 *   stream(seed)            a generator of uniforms in [0, 1) (mulberry32)
 *   logNormal(r, spec)      a draw with the given median and log-space sigma
 */

export type Random = () => number;

/** mulberry32: small, fast, and good enough for a simulation's delays. */
export function stream(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed derived from a seed and a label, so that each stream of a run is independent. */
export function derive(seed: number, label: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A standard normal draw (Box-Muller; one of the pair is dropped). */
export function normal(r: Random): number {
  const u = 1 - r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

/** A positive duration: median x e^(sigma x N(0,1)); its mean is median x e^(sigma^2 / 2). */
export interface LogNormal {
  median: number;
  sigma: number;
}

export const logNormal = (r: Random, d: LogNormal): number =>
  d.median * Math.exp(d.sigma * normal(r));

export const meanOf = (d: LogNormal): number => d.median * Math.exp((d.sigma * d.sigma) / 2);

/** A Poisson draw (Knuth for small means, a rounded normal beyond). */
export function poisson(r: Random, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 50) return Math.max(0, Math.round(mean + Math.sqrt(mean) * normal(r)));
  const l = Math.exp(-mean);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= r();
  } while (p > l);
  return k - 1;
}
