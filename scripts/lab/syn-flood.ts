/**
 * The lab's spoofed SYN flood: hping3 (Debian package hping3, installed by scripts/setup.sh) in a
 * lab namespace sends TCP SYNs to one address and port, each from a random IPv4 source, as a SYN
 * flood from many hosts looks to a balancer. Bounded twice: by a packet count and by a kill
 * timeout. The interval is a floor only: on a loaded machine hping3 sends more slowly.
 */
import { CommandError, nsRun } from './netns.js';

export interface SynFloodOptions {
  /** IPv4 address the SYNs go to (a VIP). */
  target: string;
  port: number;
  /** SYNs to send. */
  count: number;
  /** At least this many microseconds between SYNs. */
  intervalUs: number;
  /** hping3 is killed after this many ms (then the flood counts as failed). */
  timeoutMs: number;
}

export interface SynFloodResult {
  /** SYNs hping3 reports as sent. */
  sent: number;
  /** Wall time of the flood. */
  ms: number;
}

const TRANSMITTED = /(\d+) packets transmitted/;

/** Run the flood in namespace `ns` and wait for it to end. */
export async function synFlood(ns: string, o: SynFloodOptions): Promise<SynFloodResult> {
  if (!Number.isInteger(o.count) || o.count < 1) throw new RangeError(`synFlood: count ${o.count} must be a positive integer`);
  const argv = ['hping3', '-q', '-S', '--rand-source', '-p', String(o.port), '-c', String(o.count), '-i', `u${Math.max(1, Math.floor(o.intervalUs))}`, o.target];
  const t0 = Date.now();
  let out: string;
  try {
    const r = await nsRun(ns, argv, { timeoutMs: o.timeoutMs });
    out = r.stdout + r.stderr;
  } catch (e) {
    // hping3 exits 1 when nothing answered, which is the rule here: spoofed sources get no replies.
    if (!(e instanceof CommandError) || e.code !== 1) throw e;
    out = e.stdout + e.stderr;
  }
  const m = TRANSMITTED.exec(out);
  if (!m) throw new Error(`synFlood: hping3 did not report what it sent:\n${out.trim()}`);
  return { sent: Number(m[1]), ms: Date.now() - t0 };
}
