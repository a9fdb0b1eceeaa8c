/** Parsing `host:port` / `[v6]:port` targets and normalising socket addresses. */
import { isIP } from 'node:net';

export interface Target {
  host: string;
  port: number;
  family: 4 | 6;
}

export function parseTarget(text: string): Target {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`target "${text}": expected HOST:PORT or [IPV6]:PORT`);
  const host = m[1] ?? '';
  const port = Number(m[2]);
  const fam = isIP(host);
  if (fam === 0) throw new Error(`target "${text}": host must be an IPv4 or IPv6 address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`target "${text}": port must be 1..65535`);
  return { host, port, family: fam === 6 ? 6 : 4 };
}

/** `::ffff:10.0.0.1` -> `10.0.0.1` (dual-stack sockets report IPv4 peers mapped). */
export function unmapAddress(addr: string | undefined): string {
  if (!addr) return '?';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** `addr:port`, with brackets around IPv6 addresses. */
export function formatEndpoint(addr: string | undefined, port: number | undefined): string {
  const a = unmapAddress(addr);
  return a.includes(':') ? `[${a}]:${port ?? 0}` : `${a}:${port ?? 0}`;
}
