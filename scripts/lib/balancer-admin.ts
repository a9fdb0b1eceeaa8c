/**
 * What the load tool asks a running Sluice through its admin socket: the flow table (to tell
 * which backend each of its connections went to, without the server's help) and the configured
 * weights of the service behind the target (to judge fairness against them).
 */
import { unixGetJson } from './unix-http.js';
import { unmapAddress } from './target.js';

interface FlowRowJson {
  protocol: 'tcp' | 'udp';
  client: string;
  clientPort: number;
  vip: string;
  port: number;
  backend: string;
}

interface StatusJson {
  services: {
    name: string;
    vip: string;
    port: number | 'all';
    protocol: string;
    backends: { address: string; weight: number; status: string }[];
  }[];
}

/** As many rows as the admin API hands out at once. */
const FLOW_PAGE = 10_000;
/** Short-lived connections leave the table after their closing timeout: look often. */
export const FLOW_POLL_MS = 250;

const endpointKey = (addr: string, port: number): string => `${unmapAddress(addr)}|${port}`;

/**
 * Polls the balancer's flow table for the target VIP and remembers, for each client endpoint it
 * saw, the backend its flow went to. A port the client reuses later maps to its latest flow.
 */
export class FlowTableAttribution {
  readonly #socket: string;
  readonly #vip: string;
  readonly #port: number;
  readonly #protocol: 'tcp' | 'udp';
  readonly #seen = new Map<string, string>();
  #timer: NodeJS.Timeout | null = null;
  #polling: Promise<void> | null = null;
  /** The last failure (shown in the report when nothing could be attributed). */
  lastError: string | null = null;
  polls = 0;

  constructor(socket: string, vip: string, port: number, protocol: 'tcp' | 'udp') {
    this.#socket = socket;
    this.#vip = unmapAddress(vip);
    this.#port = port;
    this.#protocol = protocol;
  }

  /** First poll now (fails loudly if the socket does not answer), then every FLOW_POLL_MS. */
  async start(): Promise<void> {
    await this.#pollOnce(true);
    this.#timer = setInterval(() => {
      if (!this.#polling) this.#polling = this.#pollOnce(false).finally(() => (this.#polling = null));
    }, FLOW_POLL_MS);
    this.#timer.unref();
  }

  /** Stops polling after one last look at the table. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#polling) await this.#polling;
    await this.#pollOnce(false);
  }

  backendOf(addr: string, port: number): string | null {
    return this.#seen.get(endpointKey(addr, port)) ?? null;
  }

  async #pollOnce(throwOnError: boolean): Promise<void> {
    try {
      const q = new URLSearchParams({ vip: this.#vip, limit: String(FLOW_PAGE) });
      const r = await unixGetJson<{ rows: FlowRowJson[] }>(this.#socket, `/flows?${q.toString()}`);
      this.polls++;
      for (const row of r.rows) {
        if (row.protocol !== this.#protocol || (row.port !== this.#port && row.port !== 0)) continue;
        this.#seen.set(endpointKey(row.client, row.clientPort), row.backend);
      }
    } catch (err) {
      this.lastError = (err as Error).message;
      if (throwOnError) throw new Error(`--attribute flows: the admin socket ${this.#socket} did not answer: ${this.lastError}`);
    }
  }
}

/**
 * The weights Sluice gives the backends of the service behind vip:port, by backend address: the
 * effective weight of backends taking new flows, 0 for down, draining or standby ones.
 */
export async function weightsFromAdmin(socket: string, vip: string, port: number, protocol: 'tcp' | 'udp'): Promise<Map<string, number>> {
  const st = await unixGetJson<StatusJson>(socket, '/status');
  const want = unmapAddress(vip);
  const svc = st.services.find((s) => s.vip === want && s.protocol === protocol && (s.port === port || s.port === 'all'));
  if (!svc) throw new Error(`the balancer on ${socket} has no ${protocol} service for ${want}:${port}`);
  const out = new Map<string, number>();
  for (const b of svc.backends) out.set(b.address, b.status === 'serving' || b.status === 'spare-serving' ? b.weight : 0);
  return out;
}
