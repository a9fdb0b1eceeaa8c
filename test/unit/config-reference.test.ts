import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BEGIN_MARKER, END_MARKER, loadSchema, referenceMarkdown, referenceRows, spliceReference, type SchemaNode } from '../../scripts/lib/config-reference.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const schema = loadSchema(root);

describe('README configuration reference', () => {
  it('is exactly what the schema generates (run `npm run docs:config` after changing the schema)', () => {
    expect(readme.includes(BEGIN_MARKER) && readme.includes(END_MARKER)).toBe(true);
    expect(spliceReference(readme, referenceMarkdown(schema))).toBe(readme);
  });

  it('names every key of the schema, each with a meaning', () => {
    const rows = referenceRows(schema);
    const section = readme.slice(readme.indexOf(BEGIN_MARKER), readme.indexOf(END_MARKER));
    for (const r of rows) {
      expect(section, `README lacks ${r.key}`).toContain(`| \`${r.key}\` |`);
      expect(r.meaning.length, `${r.key} has no description in the schema`).toBeGreaterThan(0);
    }
    for (const top of Object.keys(schema.properties ?? {})) expect(rows.some((r) => r.key === top || r.key.startsWith(`${top}.`) || r.key.startsWith(`${top}[]`))).toBe(true);
  });
});

describe('referenceRows', () => {
  const small: SchemaNode = {
    type: 'object',
    required: ['a'],
    properties: {
      a: { type: 'string', description: 'A string.' },
      b: { type: 'integer', default: 3, description: 'A number | with a bar.' },
      list: { type: 'array', description: 'Things.', items: { $ref: '#/$defs/thing' } },
      nested: { type: 'object', default: {}, properties: { deep: { type: 'boolean', default: false, description: 'Deep.' } } },
    },
    $defs: { thing: { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'Id.' } } } },
  };
  it.each([
    { name: 'a required key', key: 'a', default: 'required', meaning: 'A string.' },
    { name: 'a default, and a bar escaped', key: 'b', default: '`3`', meaning: 'A number \\| with a bar.' },
    { name: 'an array of objects', key: 'list', default: '-', meaning: 'Things.' },
    { name: 'a key inside the array items, through $ref', key: 'list[].id', default: 'required', meaning: 'Id.' },
    { name: 'a nested key', key: 'nested.deep', default: '`false`', meaning: 'Deep.' },
  ])('$name', ({ key, default: def, meaning }) => {
    expect(referenceRows(small).find((r) => r.key === key)).toEqual({ key, default: def, meaning });
  });

  it('an object without a description of its own gets no row, only its keys', () => {
    expect(referenceRows(small).map((r) => r.key)).toEqual(['a', 'b', 'list', 'list[].id', 'nested.deep']);
  });
});
