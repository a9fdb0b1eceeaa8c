// Measures how the control side of Sluice answers while its data plane is flooded: every
// intervalMs for durationS, GET /metrics (TCP) and GET /status (admin unix socket), and a
// timer's lateness in this probe. Bounded in count and time; prints one JSON line.
//   node isolation-probe.mjs METRICS_URL ADMIN_SOCKET DURATION_S [INTERVAL_MS]
import { request } from 'node:http';

const [url, socketPath, durationArg, intervalArg] = process.argv.slice(2);
const durationMs = Math.min(120, Number(durationArg)) * 1000;
const intervalMs = Math.max(20, Number(intervalArg ?? 100));
const maxProbes = Math.ceil(durationMs / intervalMs) + 1;

function get(opts) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = request({ ...opts, method: 'GET', timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: res.statusCode === 200, ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ok: false, ms: performance.now() - t0 }));
    req.end();
  });
}

function summary(samples) {
  const ok = samples.filter((s) => s.ok).map((s) => s.ms).sort((a, b) => a - b);
  const q = (p) => (ok.length === 0 ? null : Number(ok[Math.min(ok.length - 1, Math.floor(p * ok.length))].toFixed(2)));
  return { probes: samples.length, failed: samples.length - ok.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: ok.length ? Number(ok[ok.length - 1].toFixed(2)) : null, over200Ms: ok.filter((m) => m > 200).length };
}

const u = new URL(url);
const metrics = [];
const admin = [];
const start = performance.now();
let lateMax = 0;
for (let i = 0; i < maxProbes && performance.now() - start < durationMs; i++) {
  const due = start + i * intervalMs;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  lateMax = Math.max(lateMax, performance.now() - due);
  const [m, a] = await Promise.all([get({ host: u.hostname, port: u.port, path: u.pathname }), get({ socketPath, path: '/status' })]);
  metrics.push(m);
  admin.push(a);
}
console.log(JSON.stringify({ intervalMs, metrics: summary(metrics), admin: summary(admin), probeTimerLateMaxMs: Number(lateMax.toFixed(2)) }));
