/**
 * The announcement's Prometheus series, scraped from a registry the way /metrics does, with a
 * fake speaker behind the Announcer.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { Announcer } from '../../src/announce/announcer.js';
import { registerAnnounceMetrics } from '../../src/announce/metrics.js';
import { FakeSpeaker } from '../fixtures/fake-speaker.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('announce metrics', () => {
  it('per-VIP announced state, session state, drained, speaker restarts', async () => {
    const sp = new FakeSpeaker();
    const a = new Announcer({ speaker: sp, log: quiet, retryMs: 10, maxRestartMs: 10 });
    const registry = new Registry();
    registerAnnounceMetrics(registry, a);
    await a.start();
    a.setDataPlane(true);
    a.setServing(new Map([['198.51.100.10', 2], ['2001:db8:100::10', 0]]));
    await a.settled();
    let text = await registry.metrics();
    expect(text).toContain('sluice_vip_announced{vip="198.51.100.10"} 1');
    expect(text).toContain('sluice_vip_announced{vip="2001:db8:100::10"} 0');
    expect(text).toContain('sluice_bgp_session_up{peer="10.99.0.1"} 1');
    expect(text).toContain('sluice_instance_drained 0');
    expect(text).toContain('sluice_bgp_speaker_restarts_total 0');
    a.drain();
    await a.settled();
    sp.die();
    text = await registry.metrics();
    expect(text).toContain('sluice_vip_announced{vip="198.51.100.10"} 0');
    expect(text).toContain('sluice_instance_drained 1');
    expect(text).toContain('sluice_bgp_speaker_restarts_total 1');
    await a.stop();
  });
});
