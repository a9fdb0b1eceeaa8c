/**
 * The status page (GET / on the metrics listener): the status view (status-view.ts) as one
 * self-contained HTML document. No script, no external asset: it reads the same with JavaScript
 * off, behind an air gap, or on a phone, and refreshes itself with a meta refresh. Every value
 * that came from a config, a peer or the data plane is HTML-escaped.
 */
import type { BackendHealthReport } from './admin-api.js';
import type { Rates, StatusBackendView, StatusView } from './status-view.js';

/** Seconds between the page's own reloads. */
export const STATUS_REFRESH_SECONDS = 5;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

/** 1234567 -> "1.23 M": rates and counters at a glance. */
function si(n: number): string {
  const units = ['', ' k', ' M', ' G', ' T'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? String(Math.round(v * 10) / 10) : v.toFixed(2)}${units[i]}`;
}

/** CSS class of a backend's status: green when it takes new flows, amber when leaving, red when out. */
function statusClass(status: string): string {
  if (status === 'serving' || status === 'spare-serving') return 'ok';
  if (status === 'draining' || status === 'spare-standby') return 'warn';
  return 'bad';
}

function healthCell(h: BackendHealthReport | null): string {
  if (!h) return '<span class="muted">no check</span>';
  const parts = [`<span class="${h.state === 'down' ? 'bad' : h.state === 'up' ? 'ok' : 'muted'}">${escapeHtml(h.check)} ${escapeHtml(h.state)}</span>`];
  if (h.lastCheck) parts.push(`last check ${escapeHtml(h.lastCheck)}`);
  if (h.latencyMs !== undefined && h.latencyMs !== null) parts.push(`${escapeHtml(h.latencyMs.toFixed(1))} ms`);
  // The last failure stays after a recovery (what happened), so it is named "last error".
  if (h.lastError) parts.push(`<span class="${h.state === 'down' ? 'bad' : 'muted'}">last error: ${escapeHtml(h.lastError)}</span>`);
  if (h.lastChange) parts.push(`changed ${escapeHtml(h.lastChange)}`);
  return parts.join('<br>');
}

function rateCells(r: Rates | null): string {
  if (!r) return '<td data-label="pps">-</td><td data-label="bit/s">-</td><td data-label="new flows/s">-</td>';
  return `<td data-label="pps">${si(r.packetsPerSecond)}</td><td data-label="bit/s">${si(r.bitsPerSecond)}</td><td data-label="new flows/s">${si(r.newFlowsPerSecond)}</td>`;
}

function backendRow(b: StatusBackendView): string {
  const notes = [b.role === 'spare' ? 'spare' : '', b.overridden ? 'operator override' : '', b.problem ?? ''].filter((s) => s !== '');
  return (
    `<tr data-backend="${escapeHtml(b.address)}" data-status="${escapeHtml(b.status)}">` +
    `<td data-label="backend"><b>${escapeHtml(b.address)}</b>${notes.length ? `<br><span class="muted">${escapeHtml(notes.join(', '))}</span>` : ''}</td>` +
    `<td data-label="status"><span class="badge ${statusClass(b.status)}">${escapeHtml(b.status)}</span></td>` +
    `<td data-label="health">${healthCell(b.health)}</td>` +
    `<td data-label="weight">${escapeHtml(b.weight)}</td>` +
    `<td data-label="active flows">${escapeHtml(b.activeFlows)}</td>` +
    rateCells(b.rates) +
    `<td data-label="packets">${si(b.packets)}</td><td data-label="bytes">${si(b.bytes)}</td>` +
    '</tr>'
  );
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:0.5rem 1rem;color:#111;background:#fafafa}
h1{font-size:1.3rem;margin:0.3rem 0}h2{font-size:1.1rem;margin:1.2rem 0 0.3rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:0.25rem 0.4rem;text-align:left;vertical-align:top}
th{background:#eee}.muted{color:#666}.ok{color:#075e07}.warn{color:#8a5a00}.bad{color:#a00}
.badge{font-weight:bold}.badge.ok{color:#fff;background:#197a19}.badge.warn{color:#000;background:#f0c040}
.badge.bad{color:#fff;background:#b00}.badge{padding:0 0.4rem;border-radius:0.3rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0.1rem 1rem;margin:0}dt{font-weight:bold}
@media (max-width:700px){thead{display:none}table,tbody,tr,td{display:block;width:auto}
tr{margin-bottom:0.6rem;border:1px solid #ccc}td{border:none;border-bottom:1px solid #eee}
td[data-label]::before{content:attr(data-label) ": ";font-weight:bold}}
`;

function serviceSection(s: StatusView['services'][number]): string {
  return (
    `<section class="service" data-service="${escapeHtml(s.name)}">` +
    `<h2>${escapeHtml(s.name)} <span class="muted">${escapeHtml(s.vip)}:${escapeHtml(s.port)} ${escapeHtml(s.protocol)} ${escapeHtml(s.forwarding)}</span></h2>` +
    '<table><thead><tr><th>backend</th><th>status</th><th>health</th><th>weight</th><th>active flows</th>' +
    '<th>pps</th><th>bit/s</th><th>new flows/s</th><th>packets</th><th>bytes</th></tr></thead><tbody>' +
    s.backends.map(backendRow).join('') +
    '</tbody></table></section>'
  );
}

function definitions(rows: Array<[string, string]>): string {
  return `<dl>${rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

function clusterSection(v: StatusView): string {
  if (!v.cluster) return '<h2>Cluster</h2><p class="muted">no cluster section: a single instance</p>';
  const rows = v.cluster.peers
    .map(
      (p) =>
        `<tr data-peer="${escapeHtml(p.id)}"><td>${escapeHtml(p.id)}</td><td>${escapeHtml(p.address)}</td>` +
        `<td class="${p.up ? 'ok' : 'bad'}">${p.up ? 'up' : 'down'}</td><td>${escapeHtml(p.generation ?? '-')}</td>` +
        `<td class="${p.generationMismatch ? 'bad' : 'ok'}">${p.generationMismatch ? 'mismatch' : 'same'}</td>` +
        `<td>${p.lastHeartbeatAgeMs === null ? '-' : escapeHtml(p.lastHeartbeatAgeMs)}</td></tr>`,
    )
    .join('');
  return (
    `<h2>Cluster</h2><p>instance <b>${escapeHtml(v.cluster.instanceId)}</b>, generation ${escapeHtml(v.cluster.generation)}</p>` +
    '<table><thead><tr><th>peer</th><th>address</th><th>state</th><th>generation</th><th>backend set</th><th>heartbeat age ms</th></tr></thead>' +
    `<tbody>${rows || '<tr><td colspan="6" class="muted">no peers</td></tr>'}</tbody></table>`
  );
}

function announceSection(v: StatusView): string {
  const a = v.announce;
  if (!a) return '<h2>Announcement</h2><p class="muted">no announce section: routes to the VIPs are not Sluice\'s</p>';
  const vips = a.vips.map((x) => `<tr><td>${escapeHtml(x.vip)}</td><td class="${x.announced ? 'ok' : 'bad'}">${x.announced ? 'announced' : 'withdrawn'}</td><td>${escapeHtml(x.verdict)}</td><td>${escapeHtml(x.servingBackends)}</td></tr>`).join('');
  const sessions = a.sessions.map((s) => `${escapeHtml(s.peer)}: <span class="${s.established ? 'ok' : 'bad'}">${escapeHtml(s.state)}</span>`).join('<br>');
  return (
    '<h2>Announcement</h2>' +
    definitions([
      ['speaker', `${escapeHtml(a.speaker)} ${a.speakerUp ? '<span class="ok">up</span>' : '<span class="bad">down</span>'}`],
      ['instance', a.drained ? '<span class="warn">drained</span>' : 'in service'],
      ['sessions', sessions || '<span class="muted">none</span>'],
      ['last error', a.lastError ? `<span class="bad">${escapeHtml(a.lastError)}</span>` : '-'],
    ]) +
    `<table><thead><tr><th>VIP</th><th>state</th><th>verdict</th><th>serving backends</th></tr></thead><tbody>${vips}</tbody></table>`
  );
}

/** The whole page. */
export function renderStatusPage(v: StatusView): string {
  const dp = v.dataplane;
  const r = v.rates;
  const drops = Object.entries(v.drops);
  const overview = definitions([
    ['version', escapeHtml(v.version)],
    ['config', `${escapeHtml(v.config)}, generation ${escapeHtml(v.generation)}`],
    ['data plane', `<span class="${dp.up ? 'ok' : 'bad'}">${dp.up ? 'up' : 'down'}</span>, engine ${escapeHtml(dp.engine)}, pid ${escapeHtml(dp.pid ?? '-')}, restarts ${escapeHtml(dp.restarts)}, generation ${escapeHtml(dp.generation)}`],
    ['last reload', v.lastReload ? `<span class="${v.lastReload.ok ? 'ok' : 'bad'}">${v.lastReload.ok ? 'ok' : 'failed'}</span> ${escapeHtml(v.lastReload.at)}: ${escapeHtml(v.lastReload.message)}` : 'none'],
    ['flows', `${escapeHtml(v.flows.active)} active of ${escapeHtml(v.flows.capacity)}`],
    ['rates', r ? `${si(r.packetsPerSecond)} pps, ${si(r.bitsPerSecond)}bit/s, ${si(r.newFlowsPerSecond)} new flows/s over ${escapeHtml(v.rateIntervalSeconds?.toFixed(1))} s` : '<span class="muted">after the next refresh</span>'],
    ['capture drops', `<span class="${v.captureDropped > 0 ? 'bad' : ''}">${escapeHtml(v.captureDropped)}</span>`],
    ['started', escapeHtml(v.startedAt)],
  ]);
  const dropTable = drops.length
    ? `<table><thead><tr><th>reason</th><th>packets</th></tr></thead><tbody>${drops.map(([k, n]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(n)}</td></tr>`).join('')}</tbody></table>`
    : '<p class="muted">no drops</p>';
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width,initial-scale=1">' +
    `<meta http-equiv="refresh" content="${STATUS_REFRESH_SECONDS}">` +
    `<title>Sluice status</title><style>${STYLE}</style></head><body>` +
    `<h1>Sluice <span class="muted">${escapeHtml(v.generatedAt)}</span></h1>` +
    overview +
    '<h2>Services</h2>' +
    (v.services.map(serviceSection).join('') || '<p class="muted">no services</p>') +
    '<h2>Drops by reason</h2>' +
    dropTable +
    clusterSection(v) +
    announceSection(v) +
    `<p class="muted">Read-only. Refreshes every ${STATUS_REFRESH_SECONDS} s. Same data as <a href="/status.json">/status.json</a>; counters at <a href="/metrics">/metrics</a>.</p>` +
    '</body></html>'
  );
}
