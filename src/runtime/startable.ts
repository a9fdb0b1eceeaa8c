/**
 * A long-lived part of the control process (js-libp2p's `Startable`): the composition root
 * (daemon.ts) starts its parts in order and stops the started ones in reverse, so a part may
 * rely on every part before it for its whole life.
 */
export interface Startable {
  /** Name used in the start-up and shut-down log lines. */
  readonly name: string;
  start(): Promise<void> | void;
  /** Undo start(); must not throw, and must tolerate a start() that failed half way. */
  stop(): Promise<void> | void;
}
