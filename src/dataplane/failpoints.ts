/**
 * Test hooks for faults an end-to-end test cannot cause from outside the process (the data
 * plane's, or the control process's for token-publish-late). SLUICE_FAILPOINTS names them,
 * comma-separated; unset (production) every hook is off.
 *
 *  worker-crash          SIGUSR2 makes the last packet worker thread end abruptly, as an
 *                        uncaught error in it would (dataplane.workers > 1): the pool's restart
 *                        path runs exactly as for a real crash.
 *  worker-restart-empty  a restarted worker starts on a new, empty flow table instead of the one
 *                        it left (to show in a test what keeping the table buys).
 *  token-publish-late    the control process publishes the MPTCP tokens its data plane learned
 *                        60 ms late, as a loaded host's might (this lab has no netem to delay
 *                        them on the wire): a join then reaches another instance before its token
 *                        reaches the owners.
 */
export type Failpoint = 'worker-crash' | 'worker-restart-empty' | 'token-publish-late';

const KNOWN: readonly Failpoint[] = ['worker-crash', 'worker-restart-empty', 'token-publish-late'];

/** True when SLUICE_FAILPOINTS names `name` (read each call: tests set it per process). */
export function failpointOn(name: Failpoint): boolean {
  const v = process.env.SLUICE_FAILPOINTS;
  if (!v) return false;
  return v.split(',').some((s) => s.trim() === name);
}

/** Names in SLUICE_FAILPOINTS this build does not know (logged at start: a typo must not pass silently). */
export function unknownFailpoints(): string[] {
  const v = process.env.SLUICE_FAILPOINTS;
  if (!v) return [];
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && !(KNOWN as readonly string[]).includes(s));
}
