/** Tiny HTTP client over a UNIX socket (backend stats sockets, Sluice's admin socket). */
import { request } from 'node:http';

export interface UnixHttpResponse {
  status: number;
  body: string;
}

export function unixHttp(socketPath: string, method: string, path: string, body?: string, timeoutMs = 5000): Promise<UnixHttpResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method, path, timeout: timeoutMs, headers: body ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} on ${socketPath}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export async function unixGetJson<T>(socketPath: string, path: string): Promise<T> {
  const res = await unixHttp(socketPath, 'GET', path);
  if (res.status !== 200) throw new Error(`GET ${path} on ${socketPath}: HTTP ${res.status}: ${res.body.trim()}`);
  return JSON.parse(res.body) as T;
}
