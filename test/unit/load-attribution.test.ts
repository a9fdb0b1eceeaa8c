import { describe, expect, it } from 'vitest';
import { backendOfDatagram, backendOfGreeting, backendOfHttp, describeAttribution, parseAttribution } from '../../scripts/lib/attribution.js';

describe('load --attribute parsing', () => {
  const good: { text: string; described: string }[] = [
    { text: 'auto', described: 'auto' },
    { text: 'none', described: 'none' },
    { text: 'flows', described: 'flows' },
    { text: 'header', described: 'header:x-backend' },
    { text: 'header:X-Served-By', described: 'header:x-served-by' },
    { text: 'body:server (\\w+)', described: 'body:server (\\w+)' },
  ];
  for (const c of good) it(`accepts ${c.text}`, () => expect(describeAttribution(parseAttribution(c.text))).toBe(c.described));

  const bad: { text: string; why: RegExp }[] = [
    { text: 'cookie', why: /expected auto, header/ },
    { text: 'header:bad name', why: /not an HTTP header name/ },
    { text: 'body:', why: /needs a regular expression/ },
    { text: 'body:(unclosed', why: /body:\(unclosed/ },
  ];
  for (const c of bad) it(`refuses ${c.text}`, () => expect(() => parseAttribution(c.text)).toThrow(c.why));
});

describe('load: which backend an HTTP response names', () => {
  const cases: { name: string; how: string; headers: Record<string, string>; body: string; want: string | null }[] = [
    { name: 'auto: the lab header', how: 'auto', headers: { 'x-backend': 'b2' }, body: '', want: 'b2' },
    { name: 'auto: the lab JSON body', how: 'auto', headers: {}, body: '{"backend":"b3","n":1}', want: 'b3' },
    { name: 'auto: a plain server (python http.server) names none', how: 'auto', headers: { server: 'SimpleHTTP/0.6 Python/3.11' }, body: '<html>Directory listing</html>', want: null },
    { name: 'header: a chosen header', how: 'header:x-served-by', headers: { 'x-served-by': ' web-7 ' }, body: '', want: 'web-7' },
    { name: 'header: absent', how: 'header:x-served-by', headers: { 'x-backend': 'b1' }, body: '{"backend":"b1"}', want: null },
    { name: 'body: the capture group', how: 'body:served by (\\S+)<', headers: {}, body: '<p>served by 10.0.0.12</p>', want: '10.0.0.12' },
    { name: 'body: the whole match without a group', how: 'body:b\\d+', headers: {}, body: 'hello from b7!', want: 'b7' },
    { name: 'body: no match', how: 'body:b\\d+', headers: {}, body: 'hello', want: null },
    { name: 'none', how: 'none', headers: { 'x-backend': 'b1' }, body: '', want: null },
    { name: 'flows: decided by the flow table, not the response', how: 'flows', headers: { 'x-backend': 'b1' }, body: '', want: null },
  ];
  for (const c of cases) it(c.name, () => expect(backendOfHttp(parseAttribution(c.how), c.headers, c.body)).toBe(c.want));
});

describe('load: which backend a datagram or a greeting names', () => {
  const datagrams: { name: string; how: string; reply: string; sent: string; want: string | null }[] = [
    { name: 'auto: the lab reply "NAME SEQ"', how: 'auto', reply: 'b2 4', sent: 'f 1 4', want: 'b2' },
    { name: 'auto: a pure echo names none', how: 'auto', reply: 'f 1 4', sent: 'f 1 4', want: null },
    { name: 'auto: free text names none', how: 'auto', reply: 'pong from somewhere', sent: 'f 1 1', want: null },
    { name: 'body: a regex over the reply', how: 'body:^(\\w+):', reply: 'dns3: ok', sent: 'f 1 1', want: 'dns3' },
  ];
  for (const c of datagrams) it(c.name, () => expect(backendOfDatagram(parseAttribution(c.how), c.reply, c.sent)).toBe(c.want));

  const greetings: { name: string; how: string; line: string; want: string | null }[] = [
    { name: 'auto: the lab greeting', how: 'auto', line: 'hello b1', want: 'b1' },
    { name: 'auto: an echoed line is not a greeting', how: 'auto', line: 'm 1 1', want: null },
    { name: 'body: an SMTP-like banner', how: 'body:^220 (\\S+)', line: '220 mx2.example ESMTP', want: 'mx2.example' },
  ];
  for (const c of greetings) it(c.name, () => expect(backendOfGreeting(parseAttribution(c.how), c.line)).toBe(c.want));
});
