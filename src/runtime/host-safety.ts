/**
 * The host checks a config must pass at start and on every reload: the kernel must neither
 * forward nor answer VIP traffic beside Sluice (dataplane/host.ts says what it reads).
 */
import type { SluiceConfig } from '../config/types.js';
import { safetyProblems } from '../dataplane/host.js';

/** Problems with running `config` on this host, each a sentence saying what to change; [] if none. */
export function hostSafetyProblems(config: SluiceConfig): Promise<string[]> {
  return safetyProblems({
    interface: config.interface,
    egressInterface: config.egressInterface,
    vips: config.services.map((s) => s.vip),
    allowHostForwarding: config.safety.allowHostForwarding,
    allowLocalVip: config.safety.allowLocalVip,
  });
}
