/**
 * The per-VIP fact the Announcer needs from a generation: how many backends take new flows,
 * summed over every service on that VIP. A VIP carries several services (ports, protocols) on
 * one host route, so it stays announced while any of them can serve; a service with no serving
 * backend on an otherwise healthy VIP is the services' problem (counted drops), not routing's.
 */
export interface ServingInputs {
  /** The config's services (name and VIP text). */
  services: readonly { name: string; vip: string }[];
  /** The generation's services (id and name) and backends (service id, in the Maglev table). */
  spec: { services: readonly { id: number; name: string }[]; backends: readonly { serviceId: number; serving: boolean }[] };
}

/** VIP -> serving backends; every VIP of the config is present, 0 when nothing serves it. */
export function servingByVip({ services, spec }: ServingInputs): Map<string, number> {
  const vipOfName = new Map(services.map((s) => [s.name, s.vip]));
  const vipOfId = new Map<number, string>();
  for (const s of spec.services) {
    const vip = vipOfName.get(s.name);
    if (vip !== undefined) vipOfId.set(s.id, vip);
  }
  const out = new Map<string, number>();
  for (const s of services) out.set(s.vip, 0);
  for (const b of spec.backends) {
    if (!b.serving) continue;
    const vip = vipOfId.get(b.serviceId);
    if (vip !== undefined) out.set(vip, (out.get(vip) ?? 0) + 1);
  }
  return out;
}
