/**
 * The report's picture: acc@t against the turn t, one line per model (the paper's
 * figure of accuracy over dialogue turns), as a self-contained SVG file. SVG because it
 * is text (diffable, no image library), and Markdown viewers and browsers show it.
 */

export interface CurveSeries {
  name: string;
  /** acc@1 .. acc@Tmax, each in [0, 1]. */
  values: number[];
}

const COLOURS = ['#7f7f7f', '#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e'];

const escapeXml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A line chart of acc@t, t = 1..n, y from a rounded-down minimum to a rounded-up maximum. */
export function accCurveSvg(series: CurveSeries[], opts: { title?: string } = {}): string {
  const width = 560;
  const height = 360;
  const m = { left: 60, right: 150, top: 40, bottom: 50 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const turns = Math.max(1, ...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  // A y range that shows the differences, in steps of 0.1, always inside [0, 1].
  let lo = all.length ? Math.floor(Math.min(...all) * 10) / 10 : 0;
  let hi = all.length ? Math.ceil(Math.max(...all) * 10) / 10 : 1;
  if (hi - lo < 0.2) {
    lo = Math.max(0, lo - 0.1);
    hi = Math.min(1, hi + 0.1);
  }
  if (hi <= lo) hi = lo + 0.1;
  const x = (t: number): number =>
    m.left + (turns === 1 ? plotW / 2 : ((t - 1) / (turns - 1)) * plotW);
  const y = (v: number): number => m.top + (1 - (v - lo) / (hi - lo)) * plotH;
  const f = (n: number): string => n.toFixed(1);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.left + plotW / 2}" y="22" text-anchor="middle" font-size="14">${escapeXml(opts.title ?? 'Accuracy by turn (acc@t)')}</text>`,
  );
  // Grid and y ticks.
  const steps = Math.round((hi - lo) / 0.1);
  for (let i = 0; i <= steps; i++) {
    const v = lo + (i * (hi - lo)) / steps;
    parts.push(
      `<line x1="${m.left}" y1="${f(y(v))}" x2="${m.left + plotW}" y2="${f(y(v))}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 8}" y="${f(y(v) + 4)}" text-anchor="end">${v.toFixed(1)}</text>`,
    );
  }
  for (let t = 1; t <= turns; t++) {
    parts.push(`<text x="${f(x(t))}" y="${m.top + plotH + 18}" text-anchor="middle">${t}</text>`);
  }
  parts.push(
    `<line x1="${m.left}" y1="${m.top + plotH}" x2="${m.left + plotW}" y2="${m.top + plotH}" stroke="black"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + plotH}" stroke="black"/>`,
    `<text x="${m.left + plotW / 2}" y="${height - 12}" text-anchor="middle">turn t</text>`,
    `<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">acc@t</text>`,
  );
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length] as string;
    const points = s.values
      .map((v, j) => (Number.isFinite(v) ? `${f(x(j + 1))},${f(y(v))}` : null))
      .filter((p): p is string => p !== null);
    parts.push(
      `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.join(' ')}"/>`,
    );
    for (const p of points) {
      const [px, py] = p.split(',');
      parts.push(`<circle cx="${px}" cy="${py}" r="3.5" fill="${colour}"/>`);
    }
    const ly = m.top + 10 + i * 20;
    parts.push(
      `<line x1="${m.left + plotW + 15}" y1="${ly}" x2="${m.left + plotW + 35}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${m.left + plotW + 40}" y="${ly + 4}">${escapeXml(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
