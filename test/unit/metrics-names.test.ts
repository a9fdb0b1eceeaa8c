/**
 * The shipped alert rules (examples/prometheus/sluice-alerts.yml) and Grafana dashboard
 * (examples/grafana/sluice-dashboard.json) name only metrics that /metrics serves: the listener
 * is scraped over HTTP (fake sources with a serving, a down and a draining backend) and every
 * sluice_* name in a rule or panel query must be in the scrape. `promtool check rules` must pass
 * (promtool comes from Debian's prometheus package, installed by scripts/setup.sh).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsListener, type RunningListener } from '../fixtures/metrics-listener.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RULES = join(ROOT, 'examples', 'prometheus', 'sluice-alerts.yml');
const DASHBOARD = join(ROOT, 'examples', 'grafana', 'sluice-dashboard.json');

/** Every sluice_* metric name in a PromQL text. */
function namesIn(expr: string): string[] {
  return [...expr.matchAll(/\bsluice_[a-z0-9_]+/g)].map((m) => m[0]);
}

interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
}

function dashboardQueries(): Array<{ where: string; expr: string }> {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; query?: unknown }> } };
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of d.panels) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
  for (const v of d.templating.list) if (typeof v.query === 'string') out.push({ where: `variable $${v.name}`, expr: v.query });
  return out;
}

function ruleQueries(): Array<{ where: string; expr: string }> {
  // The rules file keeps one `alert:` and one `expr:` line per rule, so no YAML parser is needed.
  const out: Array<{ where: string; expr: string }> = [];
  let alert = '';
  for (const line of readFileSync(RULES, 'utf8').split('\n')) {
    const a = /^\s*- alert:\s*(\S+)/.exec(line);
    if (a) alert = a[1];
    const e = /^\s*expr:\s*(.+)$/.exec(line);
    if (e) out.push({ where: `alert ${alert}`, expr: e[1] });
  }
  return out;
}

/** Metric families in a Prometheus text scrape (from its TYPE lines), and those with a sample. */
function families(scrape: string): { declared: Set<string>; sampled: Set<string> } {
  const declared = new Set<string>();
  const sampled = new Set<string>();
  for (const line of scrape.split('\n')) {
    const t = /^# TYPE (\S+) /.exec(line);
    if (t) declared.add(t[1]);
    const s = /^([a-z_][a-z0-9_]*)[{ ]/.exec(line);
    if (s) sampled.add(s[1].replace(/_(bucket|sum|count)$/, ''));
  }
  return { declared, sampled };
}

/**
 * Families with no sample in this scrape, though declared: the cluster gauges need a cluster
 * section (the fake has none), health transitions a first transition (shown in its own case).
 */
const NO_SAMPLE_YET = new Set(['sluice_cluster_peer_up', 'sluice_cluster_generation_mismatch', 'sluice_health_transitions_total']);

describe('alert rules and dashboard name served metrics', () => {
  let l: RunningListener;
  let scrape: string;
  beforeAll(async () => {
    l = await startMetricsListener();
    const res = await fetch(`${l.base}/metrics`);
    expect(res.status).toBe(200);
    scrape = await res.text();
  });
  afterAll(async () => {
    await l.close();
  });

  it('the rules and the dashboard have queries to check', () => {
    expect(ruleQueries().length).toBeGreaterThanOrEqual(6);
    expect(dashboardQueries().length).toBeGreaterThanOrEqual(20);
  });

  it('every sluice_* metric in a rule or dashboard query is in the scrape', () => {
    const { declared, sampled } = families(scrape);
    const missing: string[] = [];
    const unsampled: string[] = [];
    for (const { where, expr } of [...ruleQueries(), ...dashboardQueries()]) {
      for (const name of namesIn(expr)) {
        if (!declared.has(name)) missing.push(`${where}: ${name}`);
        else if (!sampled.has(name) && !NO_SAMPLE_YET.has(name)) unsampled.push(`${where}: ${name}`);
      }
    }
    console.log(`checked ${ruleQueries().length} rules and ${dashboardQueries().length} dashboard queries against ${declared.size} served families; missing ${missing.length}, unsampled ${unsampled.length}`);
    expect(missing).toEqual([]);
    expect(unsampled).toEqual([]);
  });

  it('a name that is not served is caught (the check can fail)', () => {
    const { declared } = families(scrape);
    expect(namesIn('sluice_backend_up_typo == 0').filter((n) => !declared.has(n))).toEqual(['sluice_backend_up_typo']);
  });

  const series: Array<{ line: string }> = [
    { line: 'sluice_backend_up{service="web",backend="10.1.0.11"} 1' },
    { line: 'sluice_backend_up{service="web",backend="10.1.0.12"} 0' },
    { line: 'sluice_backend_up{service="web",backend="10.1.0.13"} 0' },
    { line: 'sluice_backend_health{service="web",backend="10.1.0.11"} 1' },
    { line: 'sluice_backend_health{service="web",backend="10.1.0.12"} 0' },
    { line: 'sluice_backend_health{service="web",backend="10.1.0.13"} -1' },
    { line: 'sluice_backend_health{service="x-svc",backend="10.1.0.21"} -1' },
    { line: 'sluice_backend_weight{service="web",backend="10.1.0.11"} 2' },
    { line: 'sluice_backend_active_flows{service="web",backend="10.1.0.11"} 4' },
    { line: 'sluice_backend_active_flows{service="web",backend="10.1.0.13"} 1' },
    { line: 'sluice_backend_status{service="web",backend="10.1.0.13",status="draining"} 1' },
    { line: 'sluice_backend_status{service="web",backend="10.1.0.13",status="serving"} 0' },
    { line: 'sluice_backend_status{service="web",backend="10.1.0.12",status="down"} 1' },
    { line: 'sluice_capture_dropped_total 4' },
    { line: 'sluice_config_reloads_total{result="failed"} 0' },
  ];
  it.each(series)('per-backend state is served: $line', ({ line }) => {
    expect(scrape.split('\n')).toContain(line);
  });

  it('sluice_build_info names the version, the commit and the Node version', () => {
    expect(scrape).toMatch(new RegExp(`^sluice_build_info\\{version="[^"]+",commit="[^"]+",node="${process.versions.node.replace(/\./g, '\\.')}"\\} 1$`, 'm'));
  });

  it('health transitions are labelled by service, backend and the state entered', () => {
    expect(scrape).toContain('# TYPE sluice_health_transitions_total counter');
    const l2 = startMetricsListener();
    return l2.then(async (other) => {
      other.fake.sources.metrics.healthTransitions.inc({ service: 'web', backend: '10.1.0.12', to: 'down' });
      const text = await (await fetch(`${other.base}/metrics`)).text();
      await other.close();
      expect(text).toContain('sluice_health_transitions_total{service="web",backend="10.1.0.12",to="down"} 1');
    });
  });
});

describe('promtool', () => {
  it('`promtool check rules` accepts the shipped alert rules', () => {
    const out = execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    console.log(out.trim());
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('promtool rejects a broken rule (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-rules-'));
    const broken = join(dir, 'broken.yml');
    writeFileSync(broken, 'groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sluice_backend_up ==\n');
    let failed = false;
    try {
      execFileSync('promtool', ['check', 'rules', broken], { stdio: 'pipe' });
    } catch {
      failed = true;
    }
    rmSync(dir, { recursive: true, force: true });
    expect(failed).toBe(true);
  });
});
