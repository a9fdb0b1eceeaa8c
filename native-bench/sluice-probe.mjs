// Sluice's metrics endpoint for run.sh, from inside the forwarder namespace. Bounded in time.
//   node sluice-probe.mjs ready URL TIMEOUT_S   exit 0 once /metrics says sluice_dataplane_up 1
//   node sluice-probe.mjs metrics URL           one JSON line: the non-zero sluice_* samples
//                                               (not the sluice_control_ process metrics)
//   node sluice-probe.mjs drained URL TIMEOUT_S exit 0 once the frames the capture took stop
//                                               changing (the ring's backlog is forwarded)
const [cmd, url, timeoutArg] = process.argv.slice(2);

async function scrape() {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  return res.text();
}

if (cmd === 'ready') {
  const deadline = Date.now() + Math.min(120, Number(timeoutArg) || 30) * 1000;
  for (;;) {
    try {
      if (/^sluice_dataplane_up 1$/m.test(await scrape())) process.exit(0);
    } catch {
      // not listening yet
    }
    if (Date.now() >= deadline) process.exit(1);
    await new Promise((r) => setTimeout(r, 100));
  }
} else if (cmd === 'drained') {
  // Frames taken from the ring plus frames the kernel dropped: unchanged over two reads 300 ms
  // apart means nothing is left to forward from what the generator sent.
  const deadline = Date.now() + Math.min(60, Number(timeoutArg) || 10) * 1000;
  const count = (text) => {
    let n = 0;
    for (const m of text.matchAll(/^sluice_(?:rx_frames|capture_dropped)_total (\S+)$/gm)) n += Number(m[1]);
    return n;
  };
  let last = -1;
  let same = 0;
  for (;;) {
    let n = -1;
    try {
      n = count(await scrape());
    } catch {
      // busy: try again
    }
    same = n >= 0 && n === last ? same + 1 : 0;
    last = n;
    if (same >= 2) process.exit(0);
    if (Date.now() >= deadline) process.exit(1);
    await new Promise((r) => setTimeout(r, 300));
  }
} else if (cmd === 'metrics') {
  const out = {};
  for (const line of (await scrape()).split('\n')) {
    const m = /^(sluice_[A-Za-z0-9_]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m && !m[1].startsWith('sluice_control_') && Number(m[2]) !== 0) out[m[1]] = Number(m[2]);
  }
  console.log(JSON.stringify(out));
} else {
  console.error('usage: node sluice-probe.mjs ready URL TIMEOUT_S | metrics URL | drained URL TIMEOUT_S');
  process.exit(2);
}
