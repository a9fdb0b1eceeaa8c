import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';

export type Handler = (req: IncomingMessage, url: URL, res: ServerResponse) => Promise<void> | void;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** An HTTP server whose handler errors become 500s instead of crashes. */
export function jsonServer(handler: Handler): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sluice');
    Promise.resolve()
      .then(() => handler(req, url, res))
      .catch((e: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: e instanceof Error ? e.message : String(e) });
        else res.destroy();
      });
  });
}

/** "host:port" or "[v6]:port" -> listen arguments. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(listen) ?? /^([^:]+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`bad listen address ${JSON.stringify(listen)}: expected host:port or [v6]:port`);
  return { host: m[1], port: Number(m[2]) };
}

export function listenTcp(server: Server, listen: string): Promise<void> {
  const { host, port } = parseListen(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function listenUnix(server: Server, path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  if (existsSync(path)) unlinkSync(path);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
