/**
 * Ajv's errors as ConfigIssues an operator can act on: the JSON path, the rule (the schema
 * keyword), and a message that says what is allowed ("did you mean" for a misspelt key, the
 * first sentence of the property's description for a missing one, the type words for a type).
 */
import type { ErrorObject } from 'ajv/dist/2020.js';
import { isRecord, jsonPath, show, type ConfigIssue, type Segment } from './issues.js';

/** "/services/0/vip" -> ['services', 0, 'vip']. */
function pointerSegments(pointer: string): Segment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^(0|[1-9][0-9]*)$/.test(seg) ? Number(seg) : seg));
}

/** The first sentence of a schema description ("e.g." and "i.e." do not end one). */
function firstSentence(text: string): string {
  const m = /^(.*?(?<!\be\.g|\bi\.e))\.(\s|$)/.exec(text);
  return (m ? m[1] : text).trim();
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

/** Longest key compared for "did you mean": edit distance is quadratic in the key's length. */
const MAX_GUESS_LENGTH = 64;

/** Closest allowed key by edit distance, for "did you mean" hints. */
function closest(word: string, candidates: string[]): string | undefined {
  if (word.length > MAX_GUESS_LENGTH) return undefined;
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

/** One ajv error (from `verbose: true`) as an issue; `base` is the path of the validated value. */
export function schemaIssue(e: ErrorObject, base: readonly Segment[] = []): ConfigIssue {
  const at = [...base, ...pointerSegments(e.instancePath)];
  const parent: Record<string, unknown> = isRecord(e.parentSchema) ? e.parentSchema : {};
  const params: Record<string, unknown> = e.params;
  switch (e.keyword) {
    case 'required': {
      const key = String(params.missingProperty);
      const props = isRecord(parent.properties) ? parent.properties : {};
      const sub = props[key];
      const about = isRecord(sub) && typeof sub.description === 'string' ? `: ${firstSentence(sub.description)}` : '';
      return { path: jsonPath([...at, key]), rule: 'required', message: `is required; add it${about}` };
    }
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys(isRecord(parent.properties) ? parent.properties : {});
      const guess = closest(key, allowed);
      return {
        path: jsonPath([...at, key]),
        rule: 'additionalProperties',
        message: `unknown key ${show(key)}${guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ''}; allowed keys here: ${allowed.join(', ')}`,
      };
    }
    case 'type': {
      const types = Array.isArray(params.type) ? params.type.map(String) : String(params.type).split(',');
      const want = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
      return { path: jsonPath(at), rule: 'type', message: `must be ${want}, got ${typeOfJson(e.data)}` };
    }
    case 'minimum':
      return { path: jsonPath(at), rule: 'minimum', message: `must be >= ${String(params.limit)}` };
    case 'maximum':
      return { path: jsonPath(at), rule: 'maximum', message: `must be <= ${String(params.limit)}` };
    case 'minItems':
      return { path: jsonPath(at), rule: 'minItems', message: `must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}` };
    case 'maxItems':
      return { path: jsonPath(at), rule: 'maxItems', message: `must have at most ${String(params.limit)} items` };
    case 'minLength':
      return { path: jsonPath(at), rule: 'minLength', message: `must be at least ${String(params.limit)} characters long` };
    case 'maxLength':
      return { path: jsonPath(at), rule: 'maxLength', message: `must be at most ${String(params.limit)} characters long` };
    case 'pattern': {
      const want = typeof parent.patternHint === 'string' ? parent.patternHint : `a string matching ${String(params.pattern)}`;
      return { path: jsonPath(at), rule: 'pattern', message: `must be ${want}, got ${show(e.data)}` };
    }
    case 'enum': {
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues.map((v) => JSON.stringify(v)).join(', ') : '';
      return { path: jsonPath(at), rule: 'enum', message: `must be one of ${allowed}, got ${show(e.data)}` };
    }
    default:
      return { path: jsonPath(at), rule: e.keyword, message: e.message ?? 'is invalid' };
  }
}
