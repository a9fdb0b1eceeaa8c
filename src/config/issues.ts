/**
 * The one shape of every config problem: a JSON path, a short rule name and a message saying what
 * to change. JSON syntax, the JSON Schema, the rules a schema cannot express, the cluster section
 * and health checks all report in it, so `sluice check`, a reload and start-up print one dialect.
 *
 * A hostile or broken file can hold millions of problems; nobody reads past the first screen. An
 * IssueList keeps the first MAX_REPORTED_ISSUES (without exact repeats) and only counts the rest,
 * so memory stays bounded and the report ends with "and N more".
 */

export interface ConfigIssue {
  /** JSON path of the offending value, e.g. `$.services[0].backends[1].address`. */
  path: string;
  /** Short rule name, e.g. "required", "additionalProperties", "type", "prime", "unique-vip-port". */
  rule: string;
  message: string;
}

/** How many issues a report keeps and shows; the rest are counted. */
export const MAX_REPORTED_ISSUES = 100;

export type Segment = string | number;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `['services', 0, 'vip']` -> `$.services[0].vip`; odd keys are quoted: `$["a b"]`. */
export function jsonPath(segments: readonly Segment[]): string {
  let out = '$';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENTIFIER.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** A JSON path one step below `path`. */
export function childPath(path: string, seg: Segment): string {
  if (typeof seg === 'number') return `${path}[${seg}]`;
  return IDENTIFIER.test(seg) ? `${path}.${seg}` : `${path}[${JSON.stringify(seg)}]`;
}

/** A JSON object (not an array, not null), as the finders of issues walk parsed files. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as a short quoted excerpt for messages; never stringifies a large object. */
export function show(value: unknown): string {
  if (typeof value === 'string') {
    const text = JSON.stringify(value.length > 40 ? value.slice(0, 37) : value);
    return value.length > 40 ? `${text.slice(0, -1)}..."` : text;
  }
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : String(value);
}

export function formatIssue(issue: ConfigIssue): string {
  return `${issue.path}: ${issue.message} (rule: ${issue.rule})`;
}

/** Collects issues in the order found: keeps the first `limit` distinct ones, counts all. */
export class IssueList {
  readonly kept: ConfigIssue[] = [];
  readonly limit: number;
  #total = 0;
  #seen = new Set<string>();
  #paths = new Set<string>();

  constructor(limit = MAX_REPORTED_ISSUES) {
    this.limit = limit;
  }

  /** Every issue found, kept or only counted. */
  get total(): number {
    return this.#total;
  }

  /** False once the list is full: a caller may then skip building a costly message and count(). */
  get accepting(): boolean {
    return this.kept.length < this.limit;
  }

  add(issue: ConfigIssue): void {
    if (!this.accepting) {
      this.#total++;
      return;
    }
    const key = `${issue.path}\u0000${issue.rule}\u0000${issue.message}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#paths.add(issue.path);
    this.kept.push(issue);
    this.#total++;
  }

  addAll(issues: Iterable<ConfigIssue>): void {
    for (const issue of issues) this.add(issue);
  }

  /** Counts issues that are not kept (found after the list was full). */
  count(n = 1): void {
    this.#total += n;
  }

  /** Whether a kept issue names exactly this path (so a second opinion on it can be left out). */
  hasPath(path: string): boolean {
    return this.#paths.has(path);
  }
}

/** A config that cannot be used: the issues kept (at most MAX_REPORTED_ISSUES) and how many there were. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  /** All issues found, including those past the kept ones. */
  readonly total: number;
  readonly sourceName: string;

  constructor(issues: readonly ConfigIssue[] | IssueList, sourceName = '<config>') {
    const list = issues instanceof IssueList ? issues : collect(issues);
    const n = list.total;
    super(`${sourceName}: invalid config (${n} issue${n === 1 ? '' : 's'})\n${formatIssueLines(list.kept, n)}`);
    this.name = 'ConfigError';
    this.issues = list.kept;
    this.total = n;
    this.sourceName = sourceName;
  }
}

function collect(issues: readonly ConfigIssue[]): IssueList {
  const list = new IssueList();
  // A plain loop: a spread or push(...issues) of a million entries overflows the stack.
  for (let i = 0; i < issues.length; i++) list.add(issues[i]);
  return list;
}

/** One issue per line, then "... and N more" when `total` exceeds what is listed. */
export function formatIssueLines(issues: readonly ConfigIssue[], total = issues.length): string {
  const lines = issues.map(formatIssue);
  if (total > issues.length) lines.push(`... and ${total - issues.length} more issue${total - issues.length === 1 ? '' : 's'} (the first ${issues.length} are shown)`);
  return lines.join('\n');
}

/** The issues of a ConfigError, one per line, in the order found, capped with "and N more". */
export function formatIssues(e: ConfigError): string {
  return formatIssueLines(e.issues, e.total);
}
