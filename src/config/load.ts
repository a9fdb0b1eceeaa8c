/**
 * Turns a config file into a SluiceConfig: strict JSON syntax (with line and column), the JSON
 * Schema in schema/sluice.schema.json (every error, not just the first), then the checks a
 * schema cannot express (IP syntax and canonical form, address families, prime table sizes,
 * unique services and backends). Every problem becomes a ConfigIssue naming the JSON path and
 * the rule, and all of them are reported at once.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import schema from '../../schema/sluice.schema.json' with { type: 'json' };
import { resolveCheck, type HealthCheckInput } from '../health/types.js';
import { validateClusterConfig } from '../control/cluster-config.js';
import type {
  AffinityConfig,
  BackendConfig,
  CaptureEngine,
  Forwarding,
  Protocol,
  ServiceConfig,
  SluiceConfig,
} from './types.js';

export interface ConfigIssue {
  /** JSON path of the offending value, e.g. `$.services[0].backends[1].address`. */
  path: string;
  /** Short rule name, e.g. "required", "additionalProperties", "type", "prime", "unique-vip-port". */
  rule: string;
  message: string;
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  readonly sourceName: string;

  constructor(issues: ConfigIssue[], sourceName = '<config>') {
    const n = issues.length;
    super(`${sourceName}: invalid config (${n} issue${n === 1 ? '' : 's'})\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
    this.sourceName = sourceName;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  return `${issue.path}: ${issue.message} (rule: ${issue.rule})`;
}

/** One issue per line, in the order found. */
export function formatIssues(e: ConfigError): string {
  return e.issues.map(formatIssue).join('\n');
}

/** Values used when the file leaves a key out; schema/sluice.schema.json states the same defaults. */
export const CONFIG_DEFAULTS = {
  hashSeed: 0,
  tableSize: 65537,
  weight: 1,
  flowTable: { capacity: 1048576, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10 },
  capture: { engine: 'batch' as CaptureEngine, bufferMiB: 32, batchSize: 256 },
  safety: { allowHostForwarding: false, allowLocalVip: false },
  metrics: { listen: '127.0.0.1:9180' },
  admin: { socket: '/run/sluice/admin.sock' },
  log: { level: 'info' as SluiceConfig['log']['level'] },
} as const;

const MAX_TABLE_SIZE = 1000003;

// ---------------------------------------------------------------------------------------------
// Entry points

export function parseConfig(text: string, sourceName = '<config>'): SluiceConfig {
  // Editors on some systems prepend a byte-order mark; it is not JSON but carries no meaning.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const scan = scanJson(body);
  if (scan.syntax) {
    throw new ConfigError([scan.syntax], sourceName);
  }
  const issues: ConfigIssue[] = [...scan.duplicates];
  const doc: unknown = JSON.parse(body);
  const validate = getValidator();
  const schemaOk = validate(doc);
  if (!schemaOk) {
    issues.push(...schemaIssues(validate.errors ?? []));
  }
  issues.push(...semanticIssues(doc));
  if (issues.length > 0 || !schemaOk) {
    throw new ConfigError(dedupe(issues), sourceName);
  }
  return buildConfig(doc as RawConfig);
}

/** Reads and parses a file; the text is returned too so a watcher can tell whether it changed. */
export function readConfigFile(path: string): { config: SluiceConfig; text: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError(path, err);
  }
  return { config: parseConfig(text, path), text };
}

export function loadConfigFile(path: string): SluiceConfig {
  return readConfigFile(path).config;
}

/** A ConfigError (rule "file") for a config file that could not be read. */
export function fileError(path: string, err: unknown): ConfigError {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  const reason = err instanceof Error ? err.message : String(err);
  const hint =
    code === 'ENOENT'
      ? 'check the path; `sluice check <file>` validates a file'
      : code === 'EACCES'
        ? 'make the file readable by the user running sluice'
        : code === 'EISDIR'
          ? 'give the path of the JSON file, not of its directory'
          : 'check the path and permissions';
  return new ConfigError([{ path: '$', rule: 'file', message: `cannot read ${path}: ${reason}; ${hint}` }], path);
}

/**
 * Advice that does not make a config invalid: a Maglev table with fewer than 10 slots per
 * backend cannot follow the weights closely and moves more flows when backends change.
 */
export function configWarnings(config: SluiceConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  config.services.forEach((s, i) => {
    if (s.tableSize < 10 * s.backends.length) {
      out.push({
        path: `$.services[${i}].tableSize`,
        rule: 'table-size-small',
        message: `${s.tableSize} slots for ${s.backends.length} backends is under 10 per backend; use a prime near ${100 * s.backends.length} or more`,
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Paths

type Segment = string | number;

function jsonPath(segments: readonly Segment[]): string {
  let out = '$';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function pointerSegments(pointer: string): Segment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^(0|[1-9][0-9]*)$/.test(seg) ? Number(seg) : seg));
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// JSON syntax: a strict scanner that reports where the text stops being JSON and which object
// keys repeat (JSON.parse silently keeps the last of two equal keys).

interface ScanResult {
  syntax?: ConfigIssue;
  duplicates: ConfigIssue[];
}

class SyntaxFailure extends Error {
  constructor(
    readonly offset: number,
    readonly path: Segment[],
    readonly detail: string,
  ) {
    super(detail);
  }
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function scanJson(text: string): ScanResult {
  const duplicates: ConfigIssue[] = [];
  let i = 0;

  const describeHere = (): string => {
    if (i >= text.length) return 'the end of the file';
    const c = text[i];
    if (c === '/') return '"/" (comments are not allowed in JSON)';
    if (c === "'") return `"'" (JSON strings use double quotes)`;
    return JSON.stringify(c);
  };
  const fail = (path: Segment[], expected: string): never => {
    throw new SyntaxFailure(i, path, `expected ${expected}, found ${describeHere()}`);
  };
  const skipWhitespace = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const scanString = (path: Segment[]): string => {
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) {
        i = start;
        throw new SyntaxFailure(start, path, 'string is not closed; add the closing double quote');
      }
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return JSON.parse(text.slice(start, i)) as string;
      }
      if (c < 0x20) {
        throw new SyntaxFailure(i, path, 'raw control character (line break or tab) inside a string; write it as \\n or \\t');
      }
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            throw new SyntaxFailure(i, path, 'bad \\u escape; write four hex digits, e.g. \\u00e9');
          }
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          throw new SyntaxFailure(i, path, `bad escape "\\${e ?? ''}" in string; valid escapes are \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX`);
        }
        continue;
      }
      i++;
    }
  };
  const numberPattern = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const scanValue = (path: Segment[]): void => {
    skipWhitespace();
    const c = text[i];
    if (c === '{') return scanObject(path);
    if (c === '[') return scanArray(path);
    if (c === '"') {
      scanString(path);
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    numberPattern.lastIndex = i;
    const m = numberPattern.exec(text);
    if (m) {
      i += m[0].length;
      return;
    }
    fail(path, 'a value (object, array, string, number, true, false or null)');
  };
  const scanObject = (path: Segment[]): void => {
    i++; // {
    const seen = new Map<string, number>();
    skipWhitespace();
    if (text[i] === '}') {
      i++;
      return;
    }
    for (;;) {
      skipWhitespace();
      if (text[i] !== '"') {
        if (text[i] === '}') {
          throw new SyntaxFailure(i, path, 'trailing comma before "}"; remove the last ","');
        }
        fail(path, 'a double-quoted key');
      }
      const keyOffset = i;
      const key = scanString(path);
      const first = seen.get(key);
      if (first !== undefined) {
        const a = lineColumn(text, first);
        const b = lineColumn(text, keyOffset);
        duplicates.push({
          path: jsonPath([...path, key]),
          rule: 'duplicate-key',
          message: `key appears twice (line ${a.line} column ${a.column}, line ${b.line} column ${b.column}); JSON would keep only the last, remove one`,
        });
      } else {
        seen.set(key, keyOffset);
      }
      skipWhitespace();
      if (text[i] !== ':') fail(path, `":" after the key ${JSON.stringify(key)}`);
      i++;
      scanValue([...path, key]);
      skipWhitespace();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return;
      }
      fail(path, '"," or "}" after the value');
    }
  };
  const scanArray = (path: Segment[]): void => {
    i++; // [
    skipWhitespace();
    if (text[i] === ']') {
      i++;
      return;
    }
    for (let index = 0; ; index++) {
      skipWhitespace();
      if (text[i] === ']') {
        throw new SyntaxFailure(i, path, 'trailing comma before "]"; remove the last ","');
      }
      scanValue([...path, index]);
      skipWhitespace();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === ']') {
        i++;
        return;
      }
      fail(path, '"," or "]" after the array element');
    }
  };

  try {
    skipWhitespace();
    if (i >= text.length) {
      throw new SyntaxFailure(i, [], 'the file is empty; it must hold one JSON object');
    }
    scanValue([]);
    skipWhitespace();
    if (i < text.length) {
      throw new SyntaxFailure(i, [], `unexpected ${describeHere()} after the end of the JSON value`);
    }
  } catch (err) {
    if (err instanceof SyntaxFailure) {
      const { line, column } = lineColumn(text, err.offset);
      return {
        syntax: { path: jsonPath(err.path), rule: 'json-syntax', message: `invalid JSON at line ${line}, column ${column}: ${err.detail}` },
        duplicates,
      };
    }
    if (err instanceof RangeError) {
      return { syntax: { path: '$', rule: 'json-syntax', message: 'invalid JSON: nested too deeply' }, duplicates };
    }
    throw err;
  }
  return { duplicates };
}

// ---------------------------------------------------------------------------------------------
// Schema

/** The file as the schema describes it (before defaults). */
interface RawBackend {
  address: string;
  weight?: number;
  state?: 'active' | 'draining';
  role?: 'primary' | 'spare';
}
interface RawService {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: Protocol;
  forwarding: Forwarding;
  tableSize?: number;
  backends: RawBackend[];
  mptcp?: boolean;
  mptcpUnknownJoin?: 'drop' | 'hash';
  minPrimaries?: number;
  healthCheck?: HealthCheckInput;
  affinity?: Partial<AffinityConfig> & { mode: 'source-ip' };
}
interface RawConfig {
  interface: string;
  egressInterface?: string;
  encap?: { source4?: string; source6?: string };
  hashSeed?: number;
  services: RawService[];
  flowTable?: Partial<SluiceConfig['flowTable']>;
  capture?: Partial<SluiceConfig['capture']>;
  safety?: Partial<SluiceConfig['safety']>;
  metrics?: { listen?: string };
  admin?: { socket?: string };
  log?: { level?: SluiceConfig['log']['level'] };
  cluster?: unknown;
}

let validator: ReturnType<typeof compileSchema> | undefined;

function compileSchema() {
  const ajv = new Ajv2020({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true });
  // Annotation only: a human description of what a "pattern" accepts, used in error messages.
  ajv.addKeyword({ keyword: 'patternHint', schemaType: 'string' });
  return ajv.compile<RawConfig>(schema);
}

function getValidator(): ReturnType<typeof compileSchema> {
  validator ??= compileSchema();
  return validator;
}

/** The first sentence of a schema description ("e.g." and "i.e." do not end one). */
function firstSentence(text: string): string {
  const m = /^(.*?(?<!\be\.g|\bi\.e))\.(\s|$)/.exec(text);
  return (m ? m[1] : text).trim();
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

function typeOfJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  if (typeof v === 'string') return `the string ${show(v)}`;
  if (typeof v === 'boolean') return String(v);
  return 'an object';
}

/** Closest allowed key by edit distance, for "did you mean" hints. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

function schemaIssue(e: ErrorObject): ConfigIssue {
  const base = pointerSegments(e.instancePath);
  const parent: Record<string, unknown> = isRecord(e.parentSchema) ? e.parentSchema : {};
  const params: Record<string, unknown> = e.params;
  switch (e.keyword) {
    case 'required': {
      const key = String(params.missingProperty);
      const props = isRecord(parent.properties) ? parent.properties : {};
      const sub = props[key];
      const about = isRecord(sub) && typeof sub.description === 'string' ? `: ${firstSentence(sub.description)}` : '';
      return { path: jsonPath([...base, key]), rule: 'required', message: `is required; add it${about}` };
    }
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys(isRecord(parent.properties) ? parent.properties : {});
      const guess = closest(key, allowed);
      return {
        path: jsonPath([...base, key]),
        rule: 'additionalProperties',
        message: `unknown key ${JSON.stringify(key)}${guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ''}; allowed keys here: ${allowed.join(', ')}`,
      };
    }
    case 'type': {
      const types = Array.isArray(params.type) ? params.type.map(String) : String(params.type).split(',');
      const want = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
      return { path: jsonPath(base), rule: 'type', message: `must be ${want}, got ${typeOfJson(e.data)}` };
    }
    case 'minimum':
      return { path: jsonPath(base), rule: 'minimum', message: `must be >= ${String(params.limit)}` };
    case 'maximum':
      return { path: jsonPath(base), rule: 'maximum', message: `must be <= ${String(params.limit)}` };
    case 'minItems':
      return { path: jsonPath(base), rule: 'minItems', message: `must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}` };
    case 'maxItems':
      return { path: jsonPath(base), rule: 'maxItems', message: `must have at most ${String(params.limit)} items` };
    case 'minLength':
      return { path: jsonPath(base), rule: 'minLength', message: `must be at least ${String(params.limit)} characters long` };
    case 'maxLength':
      return { path: jsonPath(base), rule: 'maxLength', message: `must be at most ${String(params.limit)} characters long` };
    case 'pattern': {
      const want = typeof parent.patternHint === 'string' ? parent.patternHint : `a string matching ${String(params.pattern)}`;
      return { path: jsonPath(base), rule: 'pattern', message: `must be ${want}, got ${show(e.data)}` };
    }
    case 'enum': {
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues.map((v) => JSON.stringify(v)).join(', ') : '';
      return { path: jsonPath(base), rule: 'enum', message: `must be one of ${allowed}, got ${show(e.data)}` };
    }
    default:
      return { path: jsonPath(base), rule: e.keyword, message: e.message ?? 'is invalid' };
  }
}

function schemaIssues(errors: ErrorObject[]): ConfigIssue[] {
  return errors.map(schemaIssue);
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((x) => {
    const key = `${x.path}\u0000${x.rule}\u0000${x.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Addresses

function ipv6Groups(text: string): number[] {
  let s = text.toLowerCase();
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number);
    s = `${s.slice(0, lastColon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  if (rest === undefined) return headGroups.map((g) => parseInt(g, 16));
  const restGroups = rest === '' ? [] : rest.split(':');
  const zeros = new Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  return [...headGroups, ...zeros, ...restGroups].map((g) => parseInt(g, 16));
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run (>= 2) of zero groups as "::". */
function formatIpv6(groups: number[]): string {
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * Canonical text of an IPv4 or IPv6 address (IPv6 per RFC 5952), or undefined if `text` is not
 * an address. Zone indexes ("fe80::1%eth0") are not addresses here.
 */
export function normalizeAddress(text: string): string | undefined {
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  if (family === 4) return text;
  if (family === 6) return formatIpv6(ipv6Groups(text));
  return undefined;
}

type AddressCheck =
  | { ok: true; address: string; family: 4 | 6 }
  | { ok: false; rule: string; message: string };

function ipv4Octets(address: string): number[] {
  return address.split('.').map(Number);
}

/** Why an address cannot be a VIP, backend or encap source, or undefined if it is unicast. */
function nonUnicastReason(address: string, family: 4 | 6): string | undefined {
  if (family === 4) {
    const [a, b, c, d] = ipv4Octets(address);
    if (a === 0) return 'is in 0.0.0.0/8 ("this network")';
    if (a === 127) return 'is a loopback address';
    if (a >= 224 && a <= 239) return 'is a multicast address';
    if (a === 255 && b === 255 && c === 255 && d === 255) return 'is the broadcast address';
    return undefined;
  }
  const g = ipv6Groups(address);
  if (g.every((x) => x === 0)) return 'is the unspecified address';
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return 'is the loopback address';
  if (g[0] >> 8 === 0xff) return 'is a multicast address';
  return undefined;
}

function checkAddress(value: string): AddressCheck {
  if (value.includes('%')) {
    return { ok: false, rule: 'ip-address', message: `${show(value)} has a zone index; write the address without "%..."` };
  }
  const family = isIP(value);
  if (family === 0) {
    const hint = /^[0-9.]+$/.test(value)
      ? ' (IPv4: four decimal octets 0..255 without leading zeros)'
      : value.includes(':')
        ? ' (IPv6: up to 8 hex groups, at most one "::")'
        : '';
    return { ok: false, rule: 'ip-address', message: `${show(value)} is not a valid IPv4 or IPv6 address${hint}` };
  }
  const address = normalizeAddress(value) as string;
  if (family === 6) {
    const g = ipv6Groups(value);
    if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
      const v4 = `${g[6] >> 8}.${g[6] & 0xff}.${g[7] >> 8}.${g[7] & 0xff}`;
      return { ok: false, rule: 'ipv4-mapped', message: `IPv4-mapped IPv6 address ${show(value)} is not accepted; write the IPv4 address "${v4}"` };
    }
  }
  const reason = nonUnicastReason(address, family === 4 ? 4 : 6);
  if (reason) {
    return { ok: false, rule: 'unicast', message: `${show(value)} ${reason}; use a unicast address` };
  }
  return { ok: true, address, family: family === 4 ? 4 : 6 };
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Problem with a "host:port" / "[v6]:port" listen address, or undefined if it is fine. */
function listenProblem(value: string): string | undefined {
  const usage = 'write "host:port" or "[ipv6]:port", e.g. "127.0.0.1:9180" or "[::1]:9180"';
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(value);
  if (bracketed) {
    host = bracketed[1];
    port = bracketed[2];
    if (isIP(host) !== 6 || host.includes('%')) return `${show(host)} in brackets is not an IPv6 address; ${usage}`;
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return `has no port; ${usage}`;
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
    if (host.includes(':')) return `an IPv6 host must be in brackets; ${usage}`;
    if (/^[0-9.]+$/.test(host) ? isIP(host) !== 4 : !HOSTNAME.test(host)) {
      return `${show(host)} is not an IPv4 address or host name; ${usage}`;
    }
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `port ${show(port)} must be 1..65535; ${usage}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Checks a schema cannot express. They run even when the schema failed, and skip any value
// whose type is already wrong, so one run reports everything.

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

function primeNeighbours(n: number): string {
  let below = n - 1;
  while (below >= 3 && !isPrime(below)) below--;
  let above = n + 1;
  while (!isPrime(above)) above++;
  const options = [...(below >= 3 ? [below] : []), ...(above <= MAX_TABLE_SIZE ? [above] : [])];
  return options.join(' or ');
}

function portValue(v: unknown): number | undefined {
  if (v === 'all') return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return v;
  return undefined;
}

function semanticIssues(doc: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (!isRecord(doc)) return issues;

  if (doc.cluster !== undefined) {
    const c = validateClusterConfig(doc.cluster, '$.cluster');
    if (!c.ok) for (const i of c.issues) issues.push({ path: i.path, rule: 'cluster', message: i.message });
  }

  if (isRecord(doc.encap)) {
    for (const [key, family] of [['source4', 4], ['source6', 6]] as const) {
      const v = doc.encap[key];
      if (typeof v !== 'string') continue;
      const path = jsonPath(['encap', key]);
      const r = checkAddress(v);
      if (!r.ok) issues.push({ path, rule: r.rule, message: r.message });
      else if (r.family !== family) {
        issues.push({ path, rule: 'family', message: `must be an IPv${family} address, got IPv${r.family} ${show(v)}` });
      }
    }
  }

  if (isRecord(doc.metrics) && typeof doc.metrics.listen === 'string') {
    const problem = listenProblem(doc.metrics.listen);
    if (problem) issues.push({ path: '$.metrics.listen', rule: 'listen-address', message: problem });
  }

  if (isRecord(doc.admin) && typeof doc.admin.socket === 'string' && Buffer.byteLength(doc.admin.socket) > 107) {
    issues.push({ path: '$.admin.socket', rule: 'maxLength', message: 'must be at most 107 bytes (Unix socket path limit)' });
  }

  if (!Array.isArray(doc.services)) return issues;
  const names = new Map<string, number>();
  const endpoints = new Map<string, number>(); // vip|protocol|port -> service index
  const allPorts = new Map<string, number>(); // vip|protocol -> index of its "all"-ports service
  const singlePorts = new Map<string, number>(); // vip|protocol -> index of a single-port service

  doc.services.forEach((svc: unknown, i: number) => {
    if (!isRecord(svc)) return;
    const at = (...rest: Segment[]): string => jsonPath(['services', i, ...rest]);

    if (typeof svc.name === 'string') {
      const first = names.get(svc.name);
      if (first !== undefined) {
        issues.push({ path: at('name'), rule: 'unique-name', message: `service name ${show(svc.name)} is already used by services[${first}]; rename one` });
      } else {
        names.set(svc.name, i);
      }
    }

    let vip: { address: string; family: 4 | 6 } | undefined;
    if (typeof svc.vip === 'string') {
      const r = checkAddress(svc.vip);
      if (r.ok) vip = r;
      else issues.push({ path: at('vip'), rule: r.rule, message: r.message });
    }

    const port = portValue(svc.port);
    const protocol = svc.protocol === 'tcp' || svc.protocol === 'udp' ? svc.protocol : undefined;
    if (vip && port !== undefined && protocol) {
      const endpoint = `${vip.address}|${protocol}|${port}`;
      const group = `${vip.address}|${protocol}`;
      const portText = port === 0 ? 'all ports' : `port ${port}`;
      const same = endpoints.get(endpoint);
      if (same !== undefined) {
        issues.push({
          path: at(),
          rule: 'unique-vip-port',
          message: `${vip.address} ${protocol} ${portText} is already served by services[${same}]; merge the two or change vip, protocol or port`,
        });
      } else {
        endpoints.set(endpoint, i);
        const other = port === 0 ? singlePorts.get(group) : allPorts.get(group);
        if (other !== undefined) {
          issues.push({
            path: at(),
            rule: 'port-overlap',
            message: `${portText} on ${vip.address} ${protocol} overlaps services[${other}] (one of them matches all ports, so the match is ambiguous); remove the "all" service or give it another vip`,
          });
        }
        if (port === 0) allPorts.set(group, i);
        else if (!singlePorts.has(group)) singlePorts.set(group, i);
      }
    }

    const hc = svc.healthCheck;
    if (isRecord(hc) && typeof hc.type === 'string') {
      try {
        resolveCheck(hc as unknown as HealthCheckInput, `services[${i}].healthCheck`);
      } catch (e) {
        const m = /^services\[\d+\]\.healthCheck\.(\w+): (.*)$/.exec((e as Error).message);
        issues.push({ path: at('healthCheck', ...(m ? [m[1]] : [])), rule: 'health-check', message: m ? m[2] : (e as Error).message });
      }
      if (svc.port === 'all' && hc.type !== 'icmp' && hc.port === undefined) {
        issues.push({ path: at('healthCheck', 'port'), rule: 'required', message: 'a service on all ports needs a health check port; add "port": N' });
      }
    }

    const backends = Array.isArray(svc.backends) ? svc.backends : [];
    const tableSize = svc.tableSize;
    if (typeof tableSize === 'number' && Number.isInteger(tableSize) && tableSize >= 3 && tableSize <= MAX_TABLE_SIZE) {
      if (!isPrime(tableSize)) {
        issues.push({ path: at('tableSize'), rule: 'prime', message: `${tableSize} is not prime; Maglev needs a prime table size, e.g. ${primeNeighbours(tableSize)}` });
      }
      if (tableSize < backends.length) {
        issues.push({
          path: at('tableSize'),
          rule: 'table-size',
          message: `${tableSize} slots cannot hold ${backends.length} backends; use a prime >= ${backends.length} (about ${100 * backends.length} spreads weights evenly)`,
        });
      }
    }

    const seen = new Map<string, number>();
    backends.forEach((b: unknown, j: number) => {
      if (!isRecord(b) || typeof b.address !== 'string') return;
      const path = at('backends', j, 'address');
      const r = checkAddress(b.address);
      if (!r.ok) {
        issues.push({ path, rule: r.rule, message: r.message });
        return;
      }
      const first = seen.get(r.address);
      if (first !== undefined) {
        issues.push({ path, rule: 'unique-backend', message: `backend ${r.address} is already listed as backends[${first}]; remove one` });
      } else {
        seen.set(r.address, j);
      }
      if (svc.forwarding === 'dsr-l2' && vip && r.family !== vip.family) {
        issues.push({
          path,
          rule: 'family',
          message: `dsr-l2 forwards the VIP's own packet, so an IPv${vip.family} VIP needs IPv${vip.family} backends, got ${r.address}; use "forwarding": "ipip" to mix families`,
        });
      }
    });
  });
  return issues;
}

// ---------------------------------------------------------------------------------------------
// Defaults and canonical form

function buildService(s: RawService): ServiceConfig {
  const vip = checkAddress(s.vip);
  if (!vip.ok) throw new Error(`unreachable: vip ${s.vip} passed validation`);
  const backends: BackendConfig[] = s.backends.map((b) => ({
    address: normalizeAddress(b.address) as string,
    weight: b.weight ?? CONFIG_DEFAULTS.weight,
    state: b.state ?? 'active',
    role: b.role ?? 'primary',
  }));
  return {
    name: s.name,
    vip: vip.address,
    family: vip.family,
    port: s.port === 'all' ? 0 : s.port,
    protocol: s.protocol,
    forwarding: s.forwarding,
    tableSize: s.tableSize ?? CONFIG_DEFAULTS.tableSize,
    backends,
    mptcp: s.protocol === 'tcp' && (s.mptcp ?? true),
    mptcpUnknownJoin: s.mptcpUnknownJoin ?? 'drop',
    minPrimaries: s.minPrimaries ?? 1,
    ...(s.healthCheck ? { healthCheck: resolveCheck(s.healthCheck) } : {}),
    ...(s.affinity
      ? { affinity: { mode: s.affinity.mode, timeoutS: s.affinity.timeoutS ?? 300, ipv4Prefix: s.affinity.ipv4Prefix ?? 32, ipv6Prefix: s.affinity.ipv6Prefix ?? 64 } }
      : {}),
  };
}

function buildConfig(raw: RawConfig): SluiceConfig {
  const d = CONFIG_DEFAULTS;
  const config: SluiceConfig = {
    interface: raw.interface,
    egressInterface: raw.egressInterface ?? raw.interface,
    hashSeed: raw.hashSeed ?? d.hashSeed,
    services: raw.services.map(buildService),
    flowTable: { ...d.flowTable, ...raw.flowTable },
    capture: { ...d.capture, ...raw.capture },
    safety: { ...d.safety, ...raw.safety },
    metrics: { ...d.metrics, ...raw.metrics },
    admin: { ...d.admin, ...raw.admin },
    log: { ...d.log, ...raw.log },
  };
  if (raw.cluster !== undefined) {
    const c = validateClusterConfig(raw.cluster, '$.cluster');
    if (c.ok) config.cluster = c.config;
  }
  if (raw.encap?.source4 !== undefined) config.encapSource4 = normalizeAddress(raw.encap.source4);
  if (raw.encap?.source6 !== undefined) config.encapSource6 = normalizeAddress(raw.encap.source6);
  return config;
}
