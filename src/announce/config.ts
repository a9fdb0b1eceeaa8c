/**
 * The "announce" section of the config: which BGP speaker Sluice drives, this instance's ASN,
 * its BGP peers (the routers), the next hop and the path attributes it gives its VIP routes, and
 * the liveness timers (BFD, hold time) that let routers drop a crashed instance by themselves.
 *
 * validateAnnounceConfig() checks the raw JSON and returns issues shaped {path, rule, message},
 * the way src/config/load.ts reports every other part of the file. It never throws.
 */
import { isIP } from 'node:net';

export type SpeakerKind = 'bird2';
export const SPEAKERS: readonly SpeakerKind[] = ['bird2'];

export interface AnnouncePeer {
  /** The router's address on the shared link (a directly connected eBGP or iBGP neighbour). */
  address: string;
  asn: number;
  /** TCP MD5 (RFC 2385) password of the session; the speaker's config file is written mode 0600. */
  password?: string;
}

export interface BfdConfig {
  enabled: boolean;
  /** Desired transmit and required receive interval. Default 100 ms. */
  intervalMs: number;
  /** Missed packets before the session is down: detection time = intervalMs x multiplier. Default 3. */
  multiplier: number;
}

export interface AnnounceConfig {
  speaker: SpeakerKind;
  localAsn: number;
  /** BGP identifier (an IPv4 address); default: the speaker picks one of the host's IPv4 addresses. */
  routerId?: string;
  peers: AnnouncePeer[];
  /** Next hop given to the VIP routes per family; absent: the speaker's own address on the session. */
  nextHop: { ipv4?: string; ipv6?: string };
  /** Standard ("65000:100") or large ("65000:1:2") communities added to every VIP route. */
  communities: string[];
  /** MULTI_EXIT_DISC of the VIP routes; a higher MED makes this instance a backup. Absent: none sent. */
  med?: number;
  /** Extra copies of localAsn prepended to the AS path (0..8); > 0 makes this instance a backup. Default 0. */
  asPathPrepend: number;
  bfd: BfdConfig;
  /** BGP hold time in seconds (3..65535); keepalives every third of it. Default 9. */
  holdTimeS: number;
  /** Where the speaker's generated config, control socket and log live; default next to the admin socket. */
  runDir?: string;
}

export interface AnnounceConfigIssue {
  path: string;
  rule: string;
  message: string;
}

export type AnnounceConfigResult = { ok: true; config: AnnounceConfig; issues: [] } | { ok: false; issues: AnnounceConfigIssue[] };

export const ANNOUNCE_DEFAULTS = { bfdIntervalMs: 100, bfdMultiplier: 3, holdTimeS: 9, asPathPrepend: 0 } as const;
export const MAX_ANNOUNCE_PEERS = 16;
export const MAX_PREPEND = 8;
const MAX_ASN = 4_294_967_295;
const KNOWN = ['speaker', 'localAsn', 'routerId', 'peers', 'nextHop', 'communities', 'med', 'asPathPrepend', 'bfd', 'holdTimeS', 'runDir'];
const PEER_KNOWN = ['address', 'asn', 'password'];
const BFD_KNOWN = ['enabled', 'intervalMs', 'multiplier'];
const NEXT_HOP_KNOWN = ['ipv4', 'ipv6'];
const STANDARD_COMMUNITY = /^(\d{1,5}):(\d{1,5})$/;
const LARGE_COMMUNITY = /^(\d{1,10}):(\d{1,10}):(\d{1,10})$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownKeys(raw: Record<string, unknown>, known: readonly string[], path: string, issues: AnnounceConfigIssue[]): void {
  for (const k of Object.keys(raw)) {
    if (!known.includes(k)) issues.push({ path: `${path}.${k}`, rule: 'additionalProperties', message: `unknown key ${JSON.stringify(k)}; allowed keys here: ${known.join(', ')}` });
  }
}

function intIn(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function intField(raw: Record<string, unknown>, name: string, path: string, def: number, min: number, max: number, issues: AnnounceConfigIssue[]): number {
  const v = raw[name];
  if (v === undefined) return def;
  if (!intIn(v, min, max)) {
    issues.push({ path: `${path}.${name}`, rule: 'range', message: `${JSON.stringify(v)}: expected an integer ${min}..${max} (default ${def})` });
    return def;
  }
  return v;
}

/** An address of the given family (4, 6, or either), or an issue. Zone indexes are refused: BGP peers here are on a shared link with global addresses. */
function addressField(v: unknown, path: string, family: 0 | 4 | 6, issues: AnnounceConfigIssue[]): string | undefined {
  if (typeof v !== 'string' || v.includes('%') || isIP(v) === 0) {
    issues.push({ path, rule: 'ip-address', message: `${JSON.stringify(v)} is not an IP address${family ? ` (expected IPv${family})` : ''}` });
    return undefined;
  }
  if (family !== 0 && isIP(v) !== family) {
    issues.push({ path, rule: 'family', message: `${JSON.stringify(v)} is IPv${isIP(v)}; expected an IPv${family} address` });
    return undefined;
  }
  return v;
}

function communityProblem(c: string): string | undefined {
  const s = STANDARD_COMMUNITY.exec(c);
  if (s) return Number(s[1]) > 65535 || Number(s[2]) > 65535 ? 'each part of a standard community is 0..65535' : undefined;
  const l = LARGE_COMMUNITY.exec(c);
  if (l) return [l[1], l[2], l[3]].some((p) => Number(p) > MAX_ASN) ? 'each part of a large community is 0..4294967295' : undefined;
  return 'expected "ASN:value" (standard, RFC 1997) or "ASN:value1:value2" (large, RFC 8092)';
}

/** Check the raw "announce" object (parsed JSON). `path` is that object's JSON path. Never throws. */
export function validateAnnounceConfig(raw: unknown, path = '$.announce'): AnnounceConfigResult {
  const issues: AnnounceConfigIssue[] = [];
  if (!isRecord(raw)) return { ok: false, issues: [{ path, rule: 'type', message: 'expected an object with speaker, localAsn and peers' }] };
  unknownKeys(raw, KNOWN, path, issues);

  if (!SPEAKERS.includes(raw.speaker as SpeakerKind)) {
    issues.push({ path: `${path}.speaker`, rule: 'enum', message: `${JSON.stringify(raw.speaker)}: expected one of ${SPEAKERS.map((s) => JSON.stringify(s)).join(', ')}` });
  }
  if (!intIn(raw.localAsn, 1, MAX_ASN)) {
    issues.push({ path: `${path}.localAsn`, rule: 'asn', message: `${JSON.stringify(raw.localAsn)}: expected an AS number 1..${MAX_ASN}` });
  }
  let routerId: string | undefined;
  if (raw.routerId !== undefined) routerId = addressField(raw.routerId, `${path}.routerId`, 4, issues);

  const peers: AnnouncePeer[] = [];
  if (!Array.isArray(raw.peers) || raw.peers.length === 0) {
    issues.push({ path: `${path}.peers`, rule: 'required', message: 'expected a non-empty array of { "address": ..., "asn": ... }: the routers this instance announces its VIPs to' });
  } else if (raw.peers.length > MAX_ANNOUNCE_PEERS) {
    issues.push({ path: `${path}.peers`, rule: 'maxItems', message: `${raw.peers.length} peers: at most ${MAX_ANNOUNCE_PEERS}` });
  } else {
    const seen = new Map<string, number>();
    raw.peers.forEach((p: unknown, i: number) => {
      const pp = `${path}.peers[${i}]`;
      if (!isRecord(p)) {
        issues.push({ path: pp, rule: 'type', message: 'expected { "address": ..., "asn": ..., "password"?: ... }' });
        return;
      }
      unknownKeys(p, PEER_KNOWN, pp, issues);
      const address = addressField(p.address, `${pp}.address`, 0, issues);
      if (address !== undefined) {
        const first = seen.get(address);
        if (first !== undefined) issues.push({ path: `${pp}.address`, rule: 'unique-peer', message: `${address} is already peers[${first}]; remove one` });
        seen.set(address, i);
      }
      const asnOk = intIn(p.asn, 1, MAX_ASN);
      if (!asnOk) issues.push({ path: `${pp}.asn`, rule: 'asn', message: `${JSON.stringify(p.asn)}: expected an AS number 1..${MAX_ASN}` });
      let password: string | undefined;
      if (p.password !== undefined) {
        // The speaker's config quotes it: no quote, backslash or control characters, 1..80 bytes (TCP MD5 key limit).
        if (typeof p.password !== 'string' || !/^[\x20-\x7e]{1,80}$/.test(p.password) || /["\\]/.test(p.password)) {
          issues.push({ path: `${pp}.password`, rule: 'password', message: 'expected 1..80 printable ASCII characters without " or \\' });
        } else password = p.password;
      }
      if (address !== undefined && asnOk) peers.push({ address, asn: p.asn as number, ...(password !== undefined ? { password } : {}) });
    });
  }

  const nextHop: AnnounceConfig['nextHop'] = {};
  if (raw.nextHop !== undefined) {
    if (!isRecord(raw.nextHop)) issues.push({ path: `${path}.nextHop`, rule: 'type', message: 'expected { "ipv4"?: ..., "ipv6"?: ... }' });
    else {
      unknownKeys(raw.nextHop, NEXT_HOP_KNOWN, `${path}.nextHop`, issues);
      if (raw.nextHop.ipv4 !== undefined) nextHop.ipv4 = addressField(raw.nextHop.ipv4, `${path}.nextHop.ipv4`, 4, issues);
      if (raw.nextHop.ipv6 !== undefined) nextHop.ipv6 = addressField(raw.nextHop.ipv6, `${path}.nextHop.ipv6`, 6, issues);
    }
  }

  const communities: string[] = [];
  if (raw.communities !== undefined) {
    if (!Array.isArray(raw.communities)) issues.push({ path: `${path}.communities`, rule: 'type', message: 'expected an array of "ASN:value" strings' });
    else
      raw.communities.forEach((c: unknown, i: number) => {
        const problem = typeof c === 'string' ? communityProblem(c) : 'expected a string';
        if (problem) issues.push({ path: `${path}.communities[${i}]`, rule: 'community', message: `${JSON.stringify(c)}: ${problem}` });
        else communities.push(c as string);
      });
  }

  let med: number | undefined;
  if (raw.med !== undefined) med = intField(raw, 'med', path, 0, 0, MAX_ASN, issues);
  const asPathPrepend = intField(raw, 'asPathPrepend', path, ANNOUNCE_DEFAULTS.asPathPrepend, 0, MAX_PREPEND, issues);
  const holdTimeS = intField(raw, 'holdTimeS', path, ANNOUNCE_DEFAULTS.holdTimeS, 3, 65535, issues);

  const bfd: BfdConfig = { enabled: true, intervalMs: ANNOUNCE_DEFAULTS.bfdIntervalMs, multiplier: ANNOUNCE_DEFAULTS.bfdMultiplier };
  if (raw.bfd !== undefined) {
    if (!isRecord(raw.bfd)) issues.push({ path: `${path}.bfd`, rule: 'type', message: 'expected { "enabled"?: true, "intervalMs"?: 100, "multiplier"?: 3 }' });
    else {
      unknownKeys(raw.bfd, BFD_KNOWN, `${path}.bfd`, issues);
      if (raw.bfd.enabled !== undefined && typeof raw.bfd.enabled !== 'boolean') issues.push({ path: `${path}.bfd.enabled`, rule: 'type', message: 'expected true or false' });
      else if (raw.bfd.enabled === false) bfd.enabled = false;
      bfd.intervalMs = intField(raw.bfd, 'intervalMs', `${path}.bfd`, ANNOUNCE_DEFAULTS.bfdIntervalMs, 10, 60_000, issues);
      bfd.multiplier = intField(raw.bfd, 'multiplier', `${path}.bfd`, ANNOUNCE_DEFAULTS.bfdMultiplier, 1, 255, issues);
    }
  }

  let runDir: string | undefined;
  if (raw.runDir !== undefined) {
    // The control socket lives in it: keep room under the 107-byte Unix socket path limit.
    if (typeof raw.runDir !== 'string' || !raw.runDir.startsWith('/') || raw.runDir.length > 90) {
      issues.push({ path: `${path}.runDir`, rule: 'path', message: 'expected an absolute directory path of at most 90 characters' });
    } else runDir = raw.runDir;
  }

  if (issues.length > 0) return { ok: false, issues };
  const config: AnnounceConfig = {
    speaker: raw.speaker as SpeakerKind,
    localAsn: raw.localAsn as number,
    peers,
    nextHop,
    communities,
    asPathPrepend,
    bfd,
    holdTimeS,
  };
  if (routerId !== undefined) config.routerId = routerId;
  if (med !== undefined) config.med = med;
  if (runDir !== undefined) config.runDir = runDir;
  return { ok: true, config, issues: [] };
}
