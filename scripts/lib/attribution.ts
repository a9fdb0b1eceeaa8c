/**
 * Telling which backend served an operation, for servers that do not say so. The lab's servers
 * name themselves (an X-Backend header, a JSON body's "backend", a "hello NAME" line, a
 * "NAME SEQ" datagram); nginx or `python3 -m http.server` do not, so the operator picks:
 *   auto          the lab's conventions (the default)
 *   header:NAME   an HTTP response header
 *   body:REGEX    a regular expression over the response body, echoed line or datagram
 *                 (its first capture group, else the whole match)
 *   flows         the balancer's own flow table, through its admin socket (--admin-socket)
 *   none          no per-backend table
 */

export type Attribution =
  | { kind: 'auto' }
  | { kind: 'header'; name: string }
  | { kind: 'body'; pattern: RegExp }
  | { kind: 'flows' }
  | { kind: 'none' };

export function parseAttribution(text: string): Attribution {
  if (text === 'auto' || text === 'flows' || text === 'none') return { kind: text };
  if (text === 'header') return { kind: 'header', name: 'x-backend' };
  if (text.startsWith('header:')) {
    const name = text.slice('header:'.length).trim().toLowerCase();
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new Error(`--attribute ${text}: "${name}" is not an HTTP header name`);
    return { kind: 'header', name };
  }
  if (text.startsWith('body:')) {
    const source = text.slice('body:'.length);
    if (!source) throw new Error('--attribute body:REGEX needs a regular expression, e.g. body:"server (\\w+)"');
    try {
      return { kind: 'body', pattern: new RegExp(source) };
    } catch (err) {
      throw new Error(`--attribute ${text}: ${(err as Error).message}`);
    }
  }
  throw new Error(`--attribute "${text}": expected auto, header[:NAME], body:REGEX, flows or none`);
}

export function describeAttribution(a: Attribution): string {
  switch (a.kind) {
    case 'header':
      return `header:${a.name}`;
    case 'body':
      return `body:${a.pattern.source}`;
    default:
      return a.kind;
  }
}

/** The capture (or the match) of `pattern` in `text`, trimmed; null when it does not match. */
export function matchName(pattern: RegExp, text: string): string | null {
  const m = pattern.exec(text);
  if (!m) return null;
  const name = (m[1] ?? m[0]).trim();
  return name.length > 0 && name.length <= 200 ? name : null;
}

/** The backend an HTTP response names, or null (also for `flows` and `none`, which decide elsewhere). */
export function backendOfHttp(a: Attribution, headers: Readonly<Record<string, string | string[] | undefined>>, body: string): string | null {
  if (a.kind === 'header' || a.kind === 'auto') {
    const v = headers[a.kind === 'header' ? a.name : 'x-backend'];
    const value = Array.isArray(v) ? v[0] : v;
    if (value) return value.trim().slice(0, 200) || null;
    if (a.kind === 'header') return null;
    try {
      const json = JSON.parse(body) as { backend?: unknown };
      return typeof json.backend === 'string' ? json.backend : null;
    } catch {
      return null;
    }
  }
  if (a.kind === 'body') return matchName(a.pattern, body);
  return null;
}

/** The backend a UDP reply names: the lab's "NAME SEQ", or a body:REGEX match; a pure echo names none. */
export function backendOfDatagram(a: Attribution, reply: string, sent: string): string | null {
  if (a.kind === 'body') return matchName(a.pattern, reply);
  if (a.kind !== 'auto' || reply === sent) return null;
  const m = /^(\S+) \d+$/.exec(reply);
  return m ? (m[1] ?? null) : null;
}

/** The backend a long connection's greeting names: the lab's "hello NAME", or a body:REGEX match on the first line. */
export function backendOfGreeting(a: Attribution, line: string): string | null {
  if (a.kind === 'body') return matchName(a.pattern, line);
  if (a.kind !== 'auto') return null;
  const m = /^hello (\S+)$/.exec(line);
  return m ? (m[1] ?? null) : null;
}
