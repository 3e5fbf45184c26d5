/**
 * Line charts with uPlot (canvas; fast at the 1,000-10,000 points per series the server
 * sends after downsampling). A chart's container says what it drew, for people reading
 * the page and for the browser test: data-points (points drawn) and data-series.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { h } from './dom.js';

export interface Line {
  name: string;
  x: number[];
  y: Array<number | null>;
}

const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2'];

export interface Chart {
  el: HTMLElement;
  /** The series' names, in order: a chart is updated in place only with the same ones. */
  names: string;
  update(lines: Line[]): void;
  destroy(): void;
}

function aligned(lines: Line[]): uPlot.AlignedData {
  return lines.length === 1
    ? ([lines[0]!.x, lines[0]!.y] as uPlot.AlignedData)
    : uPlot.join(lines.map((l) => [l.x, l.y] as uPlot.AlignedData));
}

function describe(el: HTMLElement, lines: Line[]): void {
  el.dataset.points = String(lines.reduce((n, l) => n + l.y.length, 0));
  el.dataset.series = lines.map((l) => l.name).join(',');
}

/** A chart of one or more lines over a shared numeric x axis. */
export function lineChart(
  title: string,
  lines: Line[],
  opts: { xLabel: string; height?: number; yRange?: [number, number]; integerX?: boolean },
): Chart {
  const el = h('div', { class: 'chart', 'data-title': title });
  const data = aligned(lines);
  describe(el, lines);
  const plot = new uPlot(
    {
      title,
      width: 480,
      height: opts.height ?? 220,
      scales: { x: { time: false }, ...(opts.yRange ? { y: { range: opts.yRange } } : {}) },
      axes: [
        { label: opts.xLabel, ...(opts.integerX ? { incrs: [1, 2, 5, 10, 20, 50, 100] } : {}) },
        { size: 60 },
      ],
      series: [
        { label: opts.xLabel },
        ...lines.map((l, i) => ({
          label: l.name,
          stroke: COLOURS[i % COLOURS.length] as string,
          width: 1.5,
          spanGaps: true,
          points: { show: l.y.length <= 60 },
        })),
      ],
      legend: { show: true },
    },
    data,
    el,
  );
  // As wide as its container, on every change of width.
  const fit = () => {
    const w = Math.max(240, Math.floor(el.clientWidth));
    if (w !== plot.width) plot.setSize({ width: w, height: opts.height ?? 220 });
  };
  const ro = new ResizeObserver(fit);
  ro.observe(el);
  requestAnimationFrame(fit);
  return {
    el,
    names: lines.map((l) => l.name).join(','),
    update(next) {
      describe(el, next);
      plot.setData(aligned(next));
    },
    destroy() {
      ro.disconnect();
      plot.destroy();
    },
  };
}

/** Which chart a metric goes on: the usual groups first, the rest one chart each. */
export function chartGroup(metric: string): string {
  if (/loss/i.test(metric)) return 'loss';
  if (/^(lr|learning_rate)$|_lr$|^lr_/i.test(metric)) return 'learning rate';
  if (/per_?sec|persec|_per_second|throughput/i.test(metric)) return 'throughput';
  return metric;
}
