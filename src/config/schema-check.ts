/**
 * Checks a parsed config against schema/sluice.schema.json, reporting every error, in time and
 * memory linear in the file.
 *
 * Why not one `validate(doc)` with allErrors: ajv gathers the errors of a `$ref`'d schema with
 * `errors.concat(...)` once per referenced item, so a file with many bad services costs time
 * quadratic in its error count, and a single call holds every error object at once. Instead the
 * schema is split where an array's items are a `$ref` to a `$defs` entry (services, a service's
 * backends): each part is compiled with those items left open, and the items are validated one
 * by one, each call's errors becoming issues (or, once the IssueList is full, only a count).
 * The walk uses an explicit stack; its depth follows the schema, never the file.
 *
 * The `cluster` section is described fully in the schema (for editors and readers) but checked
 * by src/control/cluster-config.ts, which the ControlPlane also uses on its own and which gives
 * cluster-specific advice; a unit test keeps the two in agreement.
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import schema from '../../schema/sluice.schema.json' with { type: 'json' };
import { isRecord, type IssueList, type Segment } from './issues.js';
import { schemaIssue } from './schema-issues.js';

type Json = Record<string, unknown>;

/** One compiled piece of the schema and the arrays under it whose items are checked separately. */
interface Part {
  validate: ValidateFunction;
  /** Property path from this part's value to the array, and the part its items are. */
  arrays: { at: string[]; item: Part }[];
}

const DEF_PREFIX = '#/$defs/';

function compileParts(): Part {
  const root = structuredClone(schema) as Json;
  const defs = root.$defs as Record<string, Json>;
  (root.properties as Json).cluster = true;
  const ajv = new Ajv2020({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true });
  // Annotation only: a human description of what a "pattern" accepts, used in error messages.
  ajv.addKeyword({ keyword: 'patternHint', schemaType: 'string' });

  const made = new Map<string, Part>();
  const part = (node: Json, asDef: boolean): Part => {
    const arrays: { at: string[]; item: Part }[] = [];
    const visit = (n: Json, at: string[]): void => {
      const props = isRecord(n.properties) ? n.properties : {};
      for (const [key, sub] of Object.entries(props)) {
        if (!isRecord(sub)) continue;
        const items = sub.items;
        if (isRecord(items) && typeof items.$ref === 'string' && items.$ref.startsWith(DEF_PREFIX)) {
          const name = items.$ref.slice(DEF_PREFIX.length);
          sub.items = true;
          let item = made.get(name);
          if (item === undefined) {
            item = part(defs[name], true);
            made.set(name, item);
          }
          arrays.push({ at: [...at, key], item });
        }
        visit(sub, [...at, key]);
      }
    };
    visit(node, []);
    // A def is compiled as its own root, with the (already opened) defs beside it for other refs.
    const validate = ajv.compile(asDef ? { ...node, $defs: defs } : node);
    return { validate, arrays };
  };
  return part(root, false);
}

let rootPart: Part | undefined;

/** Adds the schema's findings on `doc` to `issues`; returns whether there were none. */
export function checkSchema(doc: unknown, issues: IssueList): boolean {
  rootPart ??= compileParts();
  let ok = true;
  const stack: { part: Part; data: unknown; at: Segment[] }[] = [{ part: rootPart, data: doc, at: [] }];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const { part, data, at } = next;
    if (!part.validate(data)) {
      ok = false;
      for (const e of part.validate.errors ?? []) {
        if (issues.accepting) issues.add(schemaIssue(e, at));
        else issues.count();
      }
    }
    // Pushed in reverse, so items are checked in file order.
    for (let a = part.arrays.length - 1; a >= 0; a--) {
      const { at: where, item } = part.arrays[a];
      let v: unknown = data;
      for (const key of where) v = isRecord(v) ? v[key] : undefined;
      if (!Array.isArray(v)) continue;
      for (let j = v.length - 1; j >= 0; j--) stack.push({ part: item, data: v[j], at: [...at, ...where, j] });
    }
  }
  return ok;
}
