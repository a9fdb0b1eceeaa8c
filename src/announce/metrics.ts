/**
 * Prometheus series of the announcement, registered on the daemon's registry. Kept beside the
 * Announcer so the exporter (src/observe/metrics.ts) does not need to know about routing.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Announcer } from './announcer.js';

export function registerAnnounceMetrics(registry: Registry, announcer: Announcer): void {
  const registers = [registry];
  new Gauge({
    name: 'sluice_vip_announced',
    help: '1 while this instance announces the VIP to its BGP peers (data plane up, a serving backend, not drained).',
    labelNames: ['vip'],
    registers,
    collect() {
      this.reset();
      for (const v of announcer.vips()) this.set({ vip: v.vip }, v.announced ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sluice_bgp_session_up',
    help: '1 while the BGP session to the peer is Established.',
    labelNames: ['peer'],
    registers,
    async collect() {
      this.reset();
      // The one series that asks the speaker (birdc): once per scrape.
      for (const s of (await announcer.status()).sessions) this.set({ peer: s.peer }, s.established ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sluice_instance_drained',
    help: '1 while an operator has drained this instance (every VIP withdrawn).',
    registers,
    collect() {
      this.set(announcer.drained ? 1 : 0);
    },
  });
  new Counter({
    name: 'sluice_bgp_speaker_restarts_total',
    help: 'Times the BGP speaker process died and was restarted.',
    registers,
    collect() {
      this.reset();
      this.inc(announcer.speakerRestarts);
    },
  });
}
