/**
 * A strict JSON scanner run before JSON.parse: it says where the text stops being JSON (line,
 * column and JSON path), which object keys repeat (JSON.parse silently keeps the last of two), and
 * whether the file is shaped like a config at all (nesting, keys per object, items per array).
 *
 * Bounded by design: one pass over the text with an explicit stack (no recursion, so no nesting
 * depth can overflow the call stack), a Map per object for repeats, line numbers from one lazily
 * built index of line starts (binary search), and messages built only while the IssueList still
 * keeps issues. Time is linear in the file size whatever the file holds.
 */
import { jsonPath, type ConfigIssue, type IssueList, type Segment } from './issues.js';

/** Shape limits: far above any real config (the schema's largest list has 4096 items, its widest object ~15 keys). */
export const SCAN_LIMITS = {
  /** Objects and arrays inside each other. */
  maxDepth: 64,
  /** Distinct keys in one object. */
  maxKeys: 1024,
  /** Items in one array (the schema's largest maxItems). */
  maxItems: 4096,
} as const;

export interface ScanResult {
  /** Set when the text is not JSON or nests too deeply: the only issue worth reporting then. */
  fatal?: ConfigIssue;
  /** Whether an object or array exceeded SCAN_LIMITS (issues added): the file is not checked further. */
  overLimits: boolean;
}

class ScanFailure extends Error {
  constructor(
    readonly offset: number,
    readonly rule: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** Offsets of line starts, built on first use; line and column of an offset in O(log lines). */
class LineIndex {
  #starts: number[] | undefined;
  constructor(private readonly text: string) {}

  at(offset: number): { line: number; column: number } {
    if (this.#starts === undefined) {
      const starts = [0];
      for (let i = this.text.indexOf('\n'); i >= 0; i = this.text.indexOf('\n', i + 1)) starts.push(i + 1);
      this.#starts = starts;
    }
    const starts = this.#starts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo] + 1 };
  }
}

const OBJECT = 0;
const ARRAY = 1;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

/** Scans `text`; repeated keys and shape-limit issues go to `issues`. */
export function scanJson(text: string, issues: IssueList): ScanResult {
  const lines = new LineIndex(text);
  /** Path of the value being scanned; inside a container between values, the container's path. */
  const path: Segment[] = [];
  const kinds: number[] = [];
  const counts: number[] = [];
  const seen: (Map<string, number> | undefined)[] = [];
  let overLimits = false;
  let i = 0;

  const describeHere = (): string => {
    if (i >= text.length) return 'the end of the file';
    const c = text[i];
    if (c === '/') return '"/" (comments are not allowed in JSON)';
    if (c === "'") return `"'" (JSON strings use double quotes)`;
    return JSON.stringify(c);
  };
  const fail = (expected: string): never => {
    throw new ScanFailure(i, 'json-syntax', `expected ${expected}, found ${describeHere()}`);
  };
  const skipWhitespace = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  /** Scans a string at i; returns its value only when asked (keys), else ''. */
  const scanString = (wantValue: boolean): string => {
    const start = i;
    let escaped = false;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) {
        i = start;
        throw new ScanFailure(start, 'json-syntax', 'string is not closed; add the closing double quote');
      }
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        if (!wantValue) return '';
        return escaped ? (JSON.parse(text.slice(start, i)) as string) : text.slice(start + 1, i - 1);
      }
      if (c < 0x20) {
        throw new ScanFailure(i, 'json-syntax', 'raw control character (line break or tab) inside a string; write it as \\n or \\t');
      }
      if (c === 0x5c) {
        escaped = true;
        const e = text[i + 1];
        if (e === 'u') {
          if (!HEX4.test(text.slice(i + 2, i + 6))) throw new ScanFailure(i, 'json-syntax', 'bad \\u escape; write four hex digits, e.g. \\u00e9');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          throw new ScanFailure(i, 'json-syntax', `bad escape "\\${e ?? ''}" in string; valid escapes are \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX`);
        }
        continue;
      }
      i++;
    }
  };
  const limit = (rule: string, message: string): void => {
    overLimits = true;
    if (issues.accepting) issues.add({ path: jsonPath(path), rule, message });
    else issues.count();
  };
  /** Reads one key of the object on top, with its ':'; records a repeat. Leaves i at the value. */
  const scanKey = (): void => {
    skipWhitespace();
    if (text[i] !== '"') fail('a double-quoted key');
    const keyOffset = i;
    const key = scanString(true);
    const keys = seen[seen.length - 1] as Map<string, number>;
    const first = keys.get(key);
    if (first !== undefined) {
      if (issues.accepting) {
        const a = lines.at(first);
        const b = lines.at(keyOffset);
        issues.add({
          path: jsonPath([...path, key]),
          rule: 'duplicate-key',
          message: `key appears twice (line ${a.line} column ${a.column}, line ${b.line} column ${b.column}); JSON would keep only the last, remove one`,
        });
      } else {
        issues.count();
      }
    } else {
      keys.set(key, keyOffset);
      if (keys.size === SCAN_LIMITS.maxKeys + 1) limit('maxProperties', `has more than ${SCAN_LIMITS.maxKeys} keys; no object in a Sluice config has that many`);
    }
    skipWhitespace();
    if (text[i] !== ':') fail(`":" after the key ${JSON.stringify(key)}`);
    i++;
    path.push(key);
  };
  const open = (kind: number): void => {
    if (kinds.length >= SCAN_LIMITS.maxDepth) {
      throw new ScanFailure(i, 'max-depth', `nested more than ${SCAN_LIMITS.maxDepth} levels deep; a Sluice config needs fewer than 10`);
    }
    kinds.push(kind);
    counts.push(0);
    seen.push(kind === OBJECT ? new Map<string, number>() : undefined);
    i++;
  };
  const close = (): void => {
    kinds.pop();
    counts.pop();
    seen.pop();
    i++;
  };

  try {
    skipWhitespace();
    if (i >= text.length) throw new ScanFailure(i, 'json-syntax', 'the file is empty; it must hold one JSON object');
    // Each turn scans one value at i (its path on top of `path`), then climbs out of every
    // container the value completes, stopping at the next value to scan or at the end.
    for (;;) {
      skipWhitespace();
      const c = text[i];
      let completed = true;
      if (c === '{') {
        open(OBJECT);
        skipWhitespace();
        if (text[i] === '}') close();
        else {
          scanKey();
          completed = false;
        }
      } else if (c === '[') {
        open(ARRAY);
        skipWhitespace();
        if (text[i] === ']') close();
        else {
          counts[counts.length - 1] = 1;
          path.push(0);
          completed = false;
        }
      } else if (c === '"') {
        scanString(false);
      } else if (text.startsWith('true', i)) {
        i += 4;
      } else if (text.startsWith('false', i)) {
        i += 5;
      } else if (text.startsWith('null', i)) {
        i += 4;
      } else {
        NUMBER.lastIndex = i;
        const m = NUMBER.exec(text);
        if (!m) fail('a value (object, array, string, number, true, false or null)');
        i += (m as RegExpExecArray)[0].length;
      }
      if (!completed) continue;
      // The value at `path` is complete; climb to the next value or the end.
      let next = false;
      while (kinds.length > 0 && !next) {
        path.pop();
        skipWhitespace();
        const top = kinds.length - 1;
        if (kinds[top] === OBJECT) {
          if (text[i] === ',') {
            i++;
            skipWhitespace();
            if (text[i] === '}') throw new ScanFailure(i, 'json-syntax', 'trailing comma before "}"; remove the last ","');
            scanKey();
            next = true;
          } else if (text[i] === '}') close();
          else fail('"," or "}" after the value');
        } else {
          if (text[i] === ',') {
            i++;
            skipWhitespace();
            if (text[i] === ']') throw new ScanFailure(i, 'json-syntax', 'trailing comma before "]"; remove the last ","');
            const n = counts[top]++;
            if (n === SCAN_LIMITS.maxItems) limit('maxItems', `has more than ${SCAN_LIMITS.maxItems} items; no list in a Sluice config may be longer`);
            path.push(n);
            next = true;
          } else if (text[i] === ']') close();
          else fail('"," or "]" after the array element');
        }
      }
      if (!next) break;
    }
    skipWhitespace();
    if (i < text.length) throw new ScanFailure(i, 'json-syntax', `unexpected ${describeHere()} after the end of the JSON value`);
  } catch (err) {
    if (!(err instanceof ScanFailure)) throw err;
    const { line, column } = lines.at(err.offset);
    return { fatal: { path: jsonPath(path), rule: err.rule, message: `invalid JSON at line ${line}, column ${column}: ${err.detail}` }, overLimits };
  }
  return { overLimits };
}
