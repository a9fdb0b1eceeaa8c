/**
 * `load --report FILE.html`: one self-contained page (no script, no external asset, nothing
 * fetched) with the run's summary and its plots, rendered to inline SVG in Node by Vega-Lite
 * (compiles the chart descriptions) and Vega (lays them out and writes SVG, headless).
 */
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { LoadReport } from './reports.js';

type Row = Record<string, string | number>;

const WIDTH = 640;
const HEIGHT = 200;

/** Renders one Vega-Lite chart to an SVG string, offline. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Series names and their colours, in legend order (errors in red). */
type Palette = [string, string][];

function lineChart(title: string, rows: Row[], yTitle: string, palette: Palette): TopLevelSpec {
  return {
    title,
    width: WIDTH,
    height: HEIGHT,
    data: { values: rows },
    mark: { type: 'line', point: rows.length <= 30 },
    encoding: {
      x: { field: 't', type: 'quantitative', title: 'seconds since start' },
      y: { field: 'value', type: 'quantitative', title: yTitle },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: palette.map((p) => p[0]), range: palette.map((p) => p[1]) } },
    },
  };
}

function barChart(title: string, rows: Row[], xField: string, xTitle: string, yTitle: string, colorField?: string): TopLevelSpec {
  return {
    title,
    width: WIDTH,
    height: HEIGHT,
    data: { values: rows },
    mark: 'bar',
    encoding: {
      x: { field: xField, type: 'nominal', title: xTitle, sort: null },
      y: { field: 'value', type: 'quantitative', title: yTitle },
      ...(colorField ? { color: { field: colorField, type: 'nominal', title: null }, xOffset: { field: colorField, type: 'nominal' } } : {}),
    },
  };
}

/** The chart descriptions a report gets, by section heading (exported for tests). */
export function reportCharts(r: LoadReport): { heading: string; spec: TopLevelSpec }[] {
  const unit = r.mode === 'http' ? 'requests' : r.mode === 'long' ? 'messages' : 'replies';
  const buckets = r.timeline.buckets;
  const throughput: Row[] = [];
  const latency: Row[] = [];
  for (const b of buckets) {
    throughput.push({ t: b.t, series: `${unit}/s`, value: b.okPerS }, { t: b.t, series: 'errors/s', value: b.errorsPerS });
    if (b.ok > 0) latency.push({ t: b.t, series: 'p50', value: b.p50 }, { t: b.t, series: 'p90', value: b.p90 }, { t: b.t, series: 'p99', value: b.p99 });
  }
  const charts: { heading: string; spec: TopLevelSpec }[] = [
    {
      heading: 'Throughput and errors over time',
      spec: lineChart(`${unit} and errors per second`, throughput, 'per second', [
        [`${unit}/s`, '#4c78a8'],
        ['errors/s', '#e45756'],
      ]),
    },
    {
      heading: 'Latency percentiles over time',
      spec: lineChart('latency (ms)', latency, 'ms', [
        ['p50', '#4c78a8'],
        ['p90', '#f58518'],
        ['p99', '#e45756'],
      ]),
    },
  ];
  const errors = Object.entries(r.errorKinds).map(([kind, value]): Row => ({ kind, value }));
  if (errors.length > 0) charts.push({ heading: 'Errors by kind', spec: barChart('errors by kind', errors, 'kind', 'error', 'count') });
  const shares: Row[] = [];
  for (const [backend, b] of Object.entries(r.backends)) {
    shares.push({ backend, series: 'observed', value: Math.round(b.share * 1000) / 10 }, { backend, series: 'expected', value: Math.round(b.expectedShare * 1000) / 10 });
  }
  if (shares.length > 0) {
    charts.push({
      heading: `Per-backend shares against ${r.fairness.basis === 'weights' ? 'configured weights' : 'an equal split'}`,
      spec: barChart('share of traffic (%)', shares, 'backend', 'backend', '%', 'series'),
    });
  }
  return charts;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function summaryRows(r: LoadReport): [string, string][] {
  const rows: [string, string][] = [
    ['mode', r.mode === 'long' ? `long (${r.protocol})` : r.mode],
    ['target', r.target],
    ['started', r.startedAt],
    ['elapsed', `${r.elapsedS} s (stopped by ${r.stoppedBy})`],
    ['errors', String(r.errors)],
    ['attribution', `${r.attribution}${r.unattributed > 0 ? ` (${r.unattributed} unattributed)` : ''}`],
    ['fairness', `${r.fairness.basis}: largest deviation ${r.fairness.maxDeviationPct}%`],
  ];
  if (r.mode === 'http') {
    rows.push(['requests', `${r.requests} (ok ${r.ok}, failed ${r.failed}), ${r.throughputRps} req/s`]);
    rows.push(['latency ms', `p50 ${r.latencyMs.p50}, p90 ${r.latencyMs.p90}, p99 ${r.latencyMs.p99}, max ${r.latencyMs.max}`]);
  } else if (r.mode === 'long') {
    rows.push(['connections', `${r.connections}: established ${r.established}, broken ${r.broken}, stalled ${r.stalled} (> ${r.stallThresholdMs} ms)`]);
    rows.push(['messages', `sent ${r.messagesSent}, answered ${r.messagesOk}; longest stall ${r.maxStallMs} ms`]);
  } else {
    rows.push(['flows', `${r.flows} x ${r.perFlow}: sent ${r.sent}, replies ${r.replies}, lost ${r.lost}, split ${r.flowsSplit}`]);
    rows.push(['rtt ms', `p50 ${r.latencyMs.p50}, p90 ${r.latencyMs.p90}, p99 ${r.latencyMs.p99}, max ${r.latencyMs.max}`]);
  }
  return rows;
}

function backendTable(r: LoadReport): string {
  const entries = Object.entries(r.backends);
  if (entries.length === 0) return '<p>No per-backend attribution (see --attribute).</p>';
  const body = entries
    .map(([name, b]) => {
      const dev = b.unexpected ? 'unexpected' : `${b.deviationPct >= 0 ? '+' : ''}${b.deviationPct.toFixed(1)}%`;
      return `<tr><td>${escapeHtml(name)}</td><td>${b.count}</td><td>${b.weight}</td><td>${(b.share * 100).toFixed(1)}%</td><td>${(b.expectedShare * 100).toFixed(1)}%</td><td>${dev}</td></tr>`;
    })
    .join('\n');
  return `<table><thead><tr><th>backend</th><th>count</th><th>weight</th><th>share</th><th>expected</th><th>vs expected</th></tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const STYLE = `body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:60rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}figure{margin:0;overflow-x:auto}svg{max-width:100%;height:auto}`;

/** The whole page. */
export async function renderReportHtml(r: LoadReport): Promise<string> {
  const sections: string[] = [];
  for (const c of reportCharts(r)) sections.push(`<section><h2>${escapeHtml(c.heading)}</h2><figure>${await renderSvg(c.spec)}</figure></section>`);
  const summary = summaryRows(r)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice load report: ${escapeHtml(r.mode)} to ${escapeHtml(r.target)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Load report: ${escapeHtml(r.mode)} to ${escapeHtml(r.target)}</h1>
<table class="summary">
${summary}
</table>
<h2>Backends</h2>
${backendTable(r)}
${sections.join('\n')}
</body>
</html>
`;
}
