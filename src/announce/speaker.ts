/**
 * What Sluice needs from a BGP speaker. Sluice never speaks BGP itself: a speaker process
 * (BIRD 2 today, src/announce/bird.ts) holds the sessions to the routers, and Sluice only tells
 * it which VIP host routes to announce. Another speaker (GoBGP, FRR, ExaBGP) follows by
 * implementing this interface and adding its name to SPEAKERS in config.ts.
 *
 * Contract every implementation keeps:
 * - apply() is declarative and idempotent: it makes the speaker announce exactly `announced`
 *   among `known`, whatever it announced before; a failed call is simply retried by the next.
 * - The speaker's routes must not outlive Sluice: when the Sluice process dies, the speaker's
 *   sessions must go down with it (BIRD: it is our child and gets SIGKILL when we die), so a
 *   router withdraws an instance whose control process is gone at once, not at hold-time expiry.
 */

export interface PeerSession {
  /** The peer's address as configured. */
  peer: string;
  /** True once the BGP session is Established. */
  established: boolean;
  /** The speaker's own words for the state, e.g. "Established", "Active", "Connect". */
  state: string;
}

export interface Speaker {
  /** Short name for logs and status, e.g. "bird2". */
  readonly kind: string;
  /** Start the speaker process with nothing announced. Rejects with a readable message if it cannot. */
  start(): Promise<void>;
  /** Announce exactly `announced` (a subset of `known`); withdraw every other VIP. */
  apply(known: readonly string[], announced: ReadonlySet<string>): Promise<void>;
  /** The sessions to the configured peers. */
  sessions(): Promise<PeerSession[]>;
  /** Withdraw everything, end the sessions and the process. */
  stop(): Promise<void>;
  /** Called once if the speaker process ends while it should be running. */
  onExit(listener: (reason: string) => void): void;
}
