import { describe, expect, it } from 'vitest';
import { fairness } from '../../scripts/lib/fairness.js';
import { escapeHtml, renderReportHtml, reportCharts } from '../../scripts/lib/report-html.js';
import type { HttpReport, LongReport, UdpReport } from '../../scripts/lib/reports.js';
import { summarize } from '../../scripts/lib/stats.js';
import { bucketWidthFor, Timeline } from '../../scripts/lib/timeline.js';

/** A run of 3 s: steady for 2 s, then errors and slow answers. */
function timeline(): Timeline {
  const t = new Timeline(500);
  for (let ms = 0; ms < 3000; ms += 10) {
    if (ms < 2000) t.ok(ms, 2 + (ms % 50) / 10);
    else if (ms % 20 === 0) t.error(ms);
    else t.ok(ms, 40);
  }
  return t;
}

function httpReport(): HttpReport {
  const f = fairness(new Map([['b1', 500], ['b2', 240], ['b<3>', 260]]), { weights: new Map([['b1', 2], ['b2', 1], ['b<3>', 1]]) });
  return {
    mode: 'http',
    target: '198.51.100.10:80',
    startedAt: '2026-11-30T03:00:00.000Z',
    elapsedS: 3,
    stoppedBy: 'count',
    errors: 50,
    errorKinds: { ECONNRESET: 30, 'status-503': 20 },
    attribution: 'header:x-backend',
    unattributed: 0,
    backends: f.backends,
    fairOver: f.fairOver,
    fairness: { basis: f.basis, maxDeviationPct: f.maxDeviationPct },
    timeline: timeline().data(),
    requests: 1050,
    ok: 1000,
    failed: 50,
    throughputRps: 350,
    latencyMs: summarize([1, 2, 3, 40]),
    statusCodes: { '200': 1000, '503': 20 },
  };
}

const count = (html: string, re: RegExp): number => (html.match(re) ?? []).length;

describe('load timeline', () => {
  it('buckets operations, errors and latency percentiles by time', () => {
    const d = timeline().data();
    expect(d.bucketMs).toBe(500);
    expect(d.buckets.map((b) => b.t)).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    expect(d.buckets[0]).toMatchObject({ ok: 50, errors: 0, okPerS: 100, errorsPerS: 0 });
    expect(d.buckets[4]).toMatchObject({ ok: 25, errors: 25, okPerS: 50, errorsPerS: 50, p50: 40, p99: 40 });
    expect(d.buckets[0]?.p50).toBeLessThan(d.buckets[0]?.p99 ?? 0);
  });

  const widths: { durationS: number; want: number }[] = [
    { durationS: 1, want: 100 },
    { durationS: 10, want: 100 },
    { durationS: 60, want: 600 },
    { durationS: 600, want: 5000 },
  ];
  for (const w of widths) it(`a ${w.durationS} s run gets ${w.want} ms buckets`, () => expect(bucketWidthFor(w.durationS)).toBe(w.want));
});

describe('load --report HTML', () => {
  it('an HTTP run with errors gets four plots: throughput, latency, errors, shares against weights', () => {
    expect(reportCharts(httpReport()).map((c) => c.heading)).toEqual([
      'Throughput and errors over time',
      'Latency percentiles over time',
      'Errors by kind',
      'Per-backend shares against configured weights',
    ]);
  });

  it('a run without errors or attribution leaves those plots out', () => {
    const r = { ...httpReport(), errors: 0, errorKinds: {}, backends: {} };
    expect(reportCharts(r).map((c) => c.heading)).toEqual(['Throughput and errors over time', 'Latency percentiles over time']);
  });

  it('is one self-contained page: inline SVG plots with their marks, no script, no external reference', async () => {
    const html = await renderReportHtml(httpReport());
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(count(html, /<svg[\s>]/g)).toBe(4);
    // One line per series (ops/s and errors/s; p50, p90, p99), bars for errors and shares.
    expect(count(html, /class="mark-line role-mark/g)).toBe(5);
    expect(count(html, /class="mark-rect role-mark/g)).toBe(2);
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
    console.log(`load report: ${html.length} bytes, ${count(html, /<svg[\s>]/g)} SVG plots, ${count(html, /<path/g)} paths`);
  });

  it('shows each backend with its weight, share and expected share, and escapes names', async () => {
    const html = await renderReportHtml(httpReport());
    expect(html).toContain('<td>b1</td><td>500</td><td>2</td><td>50.0%</td><td>50.0%</td><td>+0.0%</td>');
    expect(html).toContain('<td>b&lt;3&gt;</td>');
    expect(html).not.toContain('<td>b<3></td>');
    expect(html).toMatch(/weights: largest deviation 4%/);
  });

  it('long and UDP runs render too', async () => {
    const base = httpReport();
    const { requests: _r, ok: _o, failed: _f, throughputRps: _t, statusCodes: _s, ...common } = base;
    const long: LongReport = {
      ...common,
      mode: 'long',
      protocol: 'echo',
      connections: 10,
      established: 10,
      messagesSent: 100,
      messagesOk: 100,
      broken: 0,
      stalled: 0,
      stallThresholdMs: 1000,
      maxStallMs: 12,
      latencyMs: summarize([1, 2]),
      perConnection: [],
    };
    const udp: UdpReport = {
      ...common,
      mode: 'udp',
      flows: 5,
      perFlow: 2,
      sent: 10,
      replies: 9,
      lost: 1,
      flowsComplete: 4,
      flowsSplit: 0,
      flowsNoReply: 0,
      latencyMs: summarize([1]),
      perFlowDetail: [],
    };
    for (const r of [long, udp]) expect(count(await renderReportHtml(r), /<svg[\s>]/g)).toBe(4);
  });

  it('escapeHtml escapes the five characters', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});
