/**
 * e2e (needs root: network namespaces, raw sockets): the status page in a real browser.
 *
 * A lab with 3 backends (scripts/lab/, mode "stick", one balancer): b1 serving, b2 down (its
 * server stopped, found by an HTTP health check), b3 drained through the admin API. Debian's
 * headless Chromium runs inside the balancer's namespace (the metrics listener is on its
 * 127.0.0.1:9180) and loads `/`: the DOM it built must show each backend's status, and a
 * screenshot at phone width is saved under test-results/status-page/ (a CI artifact).
 * It also loads a report written by `load --report` and checks its plots rendered (inline SVG
 * elements present) with no console message.
 *
 * Chromium gets only the flags the brief lists (no sandbox: it runs as root in a namespace).
 * Every wait is bounded; the lab is torn down in afterAll, also on failure.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type NsRole } from '../../scripts/lab/topology.js';
import type { HttpReport } from '../../scripts/lib/reports.js';
import type { BackendStatus } from '../../src/observe/admin-api.js';
import { REPO, admin, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e status page in a browser');

const CHROMIUM = '/usr/bin/chromium';
const OUT = join(REPO, 'test-results', 'status-page');
/** Quick enough to see b2 down within seconds, lenient enough that a busy 2-core runner does not flap b1 or b3. */
const CHECK = { intervalMs: 500, timeoutMs: 400, rise: 2, fall: 3 } as const;
const STATE_WAIT_MS = 8000;

interface Browser {
  dom: string;
  /** Lines Chromium logged for the page's console (messages, uncaught errors). */
  console: string[];
}

/** Load `url` in headless Chromium inside `role`'s namespace; the DOM after load, and console lines. */
async function chromium(lab: Lab, role: NsRole, url: string, extra: string[] = []): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'sl-chromium-'));
  try {
    const flags = [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
      '--enable-logging=stderr',
      '--v=0',
    ];
    const r = await lab.exec(role, [CHROMIUM, ...flags, ...extra, url], { timeoutMs: 60_000 });
    return { dom: r.stdout, console: r.stderr.split('\n').filter((l) => l.includes(':CONSOLE')) };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

async function waitBackends(s: RunningSluice, want: Record<string, string>): Promise<void> {
  const deadline = Date.now() + STATE_WAIT_MS;
  let last = '';
  while (Date.now() < deadline) {
    const rows = (await admin<{ backends: BackendStatus[] }>(s, 'GET', '/backends')).backends;
    last = JSON.stringify(rows.map((b) => [b.address, b.status]));
    if (Object.entries(want).every(([a, st]) => rows.find((b) => b.address === a)?.status === st)) return;
    await sleep(100);
  }
  throw new Error(`backends not ${JSON.stringify(want)} within ${STATE_WAIT_MS} ms; last ${last}`);
}

describe.skipIf(!enabled)('status page and load report in headless Chromium', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;
  let b1: string;
  let b2: string;
  let b3: string;

  beforeAll(async () => {
    ensureBuilt();
    mkdirSync(OUT, { recursive: true });
    lab = await Lab.create({ backends: 3, mode: 'stick', ipv6: false });
    [b1, b2, b3] = lab.backends().map((b) => b.ipv4);
    const file = lab.configFor([{ name: 'web', vip: VIP4, port: 80, protocol: 'tcp' }]);
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as { services: Array<Record<string, unknown>> };
    cfg.services[0].healthCheck = { type: 'http', port: 80, path: '/', ...CHECK };
    writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
    sluice = await startSluice(lab, file);
  }, 120_000);
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('shows b1 serving, b2 down (server stopped) and b3 draining, with health detail; screenshot saved', async () => {
    const s = sluice as RunningSluice;
    await lab.stopServer(2);
    await admin(s, 'POST', `/backends/drain?address=${b3}`);
    await waitBackends(s, { [b1]: 'serving', [b2]: 'down', [b3]: 'draining' });
    // Some traffic, so counters and rates are not all zero; the page is loaded twice so the
    // second load has rates (they need two snapshots at least 1 s apart).
    const load = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '40', '--concurrency', '4', '--duration', '20'])) as HttpReport;
    expect(load.ok, JSON.stringify(load)).toBe(40);
    await chromium(lab, 'lb1', 'http://127.0.0.1:9180/', ['--dump-dom']);
    await sleep(1100);
    const shot = join(OUT, 'status-page.png');
    const page = await chromium(lab, 'lb1', 'http://127.0.0.1:9180/', ['--dump-dom']);
    await chromium(lab, 'lb1', 'http://127.0.0.1:9180/', [`--screenshot=${shot}`, '--window-size=412,1600', '--hide-scrollbars']);
    console.log(`status page screenshot: ${shot}`);
    const statusOf = (address: string): string | null => {
      const m = new RegExp(`<tr data-backend="${address.replace(/\./g, '\\.')}" data-status="([a-z-]+)">(.*?)</tr>`).exec(page.dom);
      return m ? m[1] : null;
    };
    const rows = { [b1]: statusOf(b1), [b2]: statusOf(b2), [b3]: statusOf(b3) };
    console.log(`status page in Chromium: ${JSON.stringify(rows)}; console lines ${page.console.length}`);
    expect(rows).toEqual({ [b1]: 'serving', [b2]: 'down', [b3]: 'draining' });
    expect(page.dom).toContain('http down');
    expect(page.dom).toMatch(/last error: [^<]+/);
    expect(page.dom).toMatch(/pps, [^<]*bit\/s/);
    expect(page.console).toEqual([]);
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');

    // The same state in Prometheus' words, from the running instance.
    const m = await scrape(lab);
    const gauges = Object.fromEntries(
      [b1, b2, b3].map((b) => [b, ['up', 'health', 'weight'].map((g) => metric(m, `sluice_backend_${g}`, { service: 'web', backend: b }))]),
    );
    console.log(`per-backend gauges [up, health, weight]: ${JSON.stringify(gauges)}`);
    expect(gauges).toEqual({ [b1]: [1, 1, 1], [b2]: [0, 0, 1], [b3]: [0, 1, 1] });
    expect(metric(m, 'sluice_health_transitions_total', { service: 'web', backend: b2, to: 'down' })).toBe(1);
    expect(metric(m, 'sluice_backend_status', { backend: b3, status: 'draining' })).toBe(1);
    expect(metric(m, 'sluice_build_info')).toBe(1);
  }, 120_000);

  it('renders a `load --report` page: its plots are inline SVG and nothing logs to the console', async () => {
    const report = join(lab.describe().runDir, 'load-report.html');
    const r = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '60', '--concurrency', '4', '--duration', '20', '--report', report])) as HttpReport;
    expect(r.ok).toBeGreaterThan(0);
    const shot = join(OUT, 'load-report.png');
    const page = await chromium(lab, 'client', `file://${report}`, ['--dump-dom']);
    await chromium(lab, 'client', `file://${report}`, [`--screenshot=${shot}`, '--window-size=1000,2000', '--hide-scrollbars']);
    const svgs = page.dom.match(/<svg\b/g)?.length ?? 0;
    const marks = page.dom.match(/<path\b/g)?.length ?? 0;
    console.log(`load report in Chromium: ${svgs} svg elements, ${marks} paths, console lines ${page.console.length}; screenshot ${shot}`);
    expect(svgs).toBeGreaterThanOrEqual(3);
    expect(marks).toBeGreaterThan(10);
    expect(page.console).toEqual([]);
  }, 120_000);
});
