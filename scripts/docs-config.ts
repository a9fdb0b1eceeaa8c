/**
 * Rewrites the README's configuration reference from the JSON Schema:
 *   npm run docs:config
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './lib/repo.js';
import { loadSchema, referenceMarkdown, spliceReference } from './lib/config-reference.js';

const root = repoRoot();
const file = join(root, 'README.md');
const before = readFileSync(file, 'utf8');
const after = spliceReference(before, referenceMarkdown(loadSchema(root)));
if (after !== before) writeFileSync(file, after);
console.log(after === before ? 'README.md: configuration reference already up to date' : 'README.md: configuration reference rewritten');
