/**
 * The status page (GET /) and its JSON twin (GET /status.json) on the metrics listener, over a
 * fake AdminSources with a serving, a down and a draining backend. No root, no network beyond
 * loopback, no data plane.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderStatusPage, escapeHtml } from '../../src/observe/status-page.js';
import { MIN_RATE_INTERVAL_MS, RateBase, statusView, type StatusView } from '../../src/observe/status-view.js';
import { startMetricsListener, type RunningListener } from '../fixtures/metrics-listener.js';
import { CAPTURE_DROPPED, HOSTILE, countersAt, fakeStatusSources } from '../fixtures/status-sources.js';

/** The table row of one backend (the page marks each with data-backend and data-status). */
function rowOf(html: string, address: string): string {
  const m = new RegExp(`<tr data-backend="${address.replace(/\./g, '\\.')}"[^>]*>.*?</tr>`).exec(html);
  if (!m) throw new Error(`no row for ${address}`);
  return m[0];
}

describe('status page over HTTP (observe/admin.ts routeMetricsListener)', () => {
  let l: RunningListener;
  beforeAll(async () => {
    l = await startMetricsListener();
  });
  afterAll(async () => {
    await l.close();
  });

  it('GET / is a self-contained HTML page: viewport, refresh, no script, no external asset', async () => {
    const res = await fetch(`${l.base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain('<meta name="viewport" content="width=device-width,initial-scale=1">');
    expect(html).toContain('<meta http-equiv="refresh" content="5">');
    expect(html).not.toMatch(/<script/i);
    // Links only to this listener's own paths; nothing from elsewhere.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
  });

  const cases: Array<{ address: string; status: string; shows: string[] }> = [
    { address: '10.1.0.11', status: 'serving', shows: ['http up', 'last check 2026-01-02T03:09:58.000Z', '1.3 ms', '<td data-label="weight">2</td>', '<td data-label="active flows">4</td>'] },
    { address: '10.1.0.12', status: 'down', shows: ['http down', 'last error: connect ECONNREFUSED 10.1.0.12:80', '0.4 ms', '<td data-label="active flows">0</td>'] },
    { address: '10.1.0.13', status: 'draining', shows: ['http unknown', 'operator override', '<td data-label="active flows">1</td>'] },
    { address: '10.1.0.21', status: 'unresolved', shows: ['no check'] },
  ];
  it.each(cases)('backend $address shows status $status, its health, weight and flows', async ({ address, status, shows }) => {
    const html = await (await fetch(`${l.base}/`)).text();
    const row = rowOf(html, address);
    expect(row).toContain(`data-status="${status}"`);
    expect(row).toContain(`>${status}</span>`);
    for (const s of shows) expect(row).toContain(s);
  });

  it('shows the data plane, drops by reason, capture drops and the last reload', async () => {
    const html = await (await fetch(`${l.base}/`)).text();
    expect(html).toContain('engine ring, pid 4242, restarts 1, generation 3');
    expect(html).toContain('<td>truncated_ipv4</td><td>7</td>');
    expect(html).toContain(`<span class="bad">${CAPTURE_DROPPED}</span>`);
    expect(html).toContain('no cluster section');
    expect(html).toContain('no announce section');
  });

  it('escapes everything it did not write itself (a hostile backend problem and reload message)', async () => {
    const html = await (await fetch(`${l.base}/`)).text();
    expect(html).not.toContain(HOSTILE);
    expect(html).toContain(escapeHtml(HOSTILE));
    expect(html.split('&lt;script&gt;').length - 1).toBe(2);
  });

  it('GET /status.json carries the same view: rates null on the first load, numbers after', async () => {
    const first = (await (await fetch(`${l.base}/status.json`)).json()) as StatusView;
    expect(first.services.map((s) => s.backends.map((b) => [b.address, b.status]))).toEqual([
      [['10.1.0.11', 'serving'], ['10.1.0.12', 'down'], ['10.1.0.13', 'draining']],
      [['10.1.0.21', 'unresolved']],
    ]);
    expect(first.services[0].backends[1].health?.lastError).toBe('connect ECONNREFUSED 10.1.0.12:80');
    expect(first.drops).toEqual({ truncated_ipv4: 7 });
  });

  it('is read-only: POST, PUT and DELETE get 405 and no action reaches the sources', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      for (const path of ['/', '/status.json', '/metrics', '/backends/drain?address=10.1.0.11']) {
        const res = await fetch(`${l.base}${path}`, { method });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.get('allow')).toBe('GET, HEAD');
      }
    }
    // The fake's operate/reload/instance throw: a 200 page after this shows none was called.
    expect((await fetch(`${l.base}/`)).status).toBe(200);
  });

  it('an unknown path is 404 naming the three paths', async () => {
    const res = await fetch(`${l.base}/backends`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('/status.json');
  });
});

describe('status view rates (observe/status-view.ts)', () => {
  const rateCases: Array<{ name: string; loads: Array<[number, number]>; pps: number | null }> = [
    { name: 'first load: no rates yet', loads: [[0, 0]], pps: null },
    { name: 'two loads 2 s apart at 1000 pps', loads: [[0, 0], [2000, 2]], pps: 1000 },
    { name: 'a reload inside MIN_RATE_INTERVAL_MS keeps the older base', loads: [[0, 0], [2000, 2], [2500, 2.5]], pps: 1000 },
    { name: 'a data-plane restart (counters back to 0) shows 0, not a negative rate', loads: [[0, 0], [2000, 10], [4000, 0]], pps: 0 },
  ];
  it.each(rateCases)('$name', ({ loads, pps }) => {
    const { sources } = fakeStatusSources();
    const base = new RateBase();
    let view: StatusView | null = null;
    for (const [at, seconds] of loads) {
      const c = countersAt(seconds);
      view = statusView(sources, c, new Map(), null, base.advance(c, at), new Date(at));
    }
    expect(view?.rates?.packetsPerSecond ?? null).toBe(pps);
    if (pps !== null) {
      expect(view?.rates?.bitsPerSecond).toBe(pps * 800);
      expect(view?.services[0].backends[0].rates?.newFlowsPerSecond).toBe(pps / 10);
      // A backend without traffic has rates of 0, one without counters (id -1) none.
      expect(view?.services[0].backends[1].rates?.packetsPerSecond).toBe(0);
      expect(view?.services[1].backends[0].rates).toBeNull();
      expect(renderStatusPage(view as StatusView)).toContain(`${pps === 1000 ? '1.00 k' : '0'} pps`);
    }
    expect(MIN_RATE_INTERVAL_MS).toBe(1000);
  });
});
