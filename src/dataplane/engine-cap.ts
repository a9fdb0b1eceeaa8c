import { createRequire } from 'node:module';
import type { Cap as CapType } from 'cap';
import { Drop } from '../packet/drop-reasons.js';
import { G } from './contract/counters.js';
import type { CaptureEngine, CaptureStats, EngineOptions } from './engine.js';

const require = createRequire(import.meta.url);

/**
 * The stock `cap` package: one JS callback per packet and one pcap_sendpacket per packet. It reads
 * until the ring is empty inside one callback, so under overload this process's event loop
 * stalls (the control process is apart and keeps answering). It cannot report libpcap's drops.
 */
export class CapEngine implements CaptureEngine {
  readonly name = 'cap' as const;
  /** libpcap does not pass TP_STATUS_CSUMNOTREADY on: partial checksums leave as they came. */
  readonly seesChecksumStatus = false;
  readonly #opts: EngineOptions;
  readonly #rx: CapType;
  readonly #tx: CapType;
  readonly #rxBuf = Buffer.alloc(65536);
  readonly #txBuf = Buffer.alloc(65536 + 128);
  #received = 0;

  constructor(opts: EngineOptions) {
    this.#opts = opts;
    const { Cap } = require('cap') as { Cap: new () => CapType };
    this.#rx = new Cap();
    const linkType = this.#rx.open(opts.interface, opts.filter, opts.bufferBytes, this.#rxBuf);
    if (linkType !== 'ETHERNET') {
      this.#rx.close();
      throw new Error(`capture interface ${opts.interface} has link type ${linkType}; Sluice needs Ethernet`);
    }
    if (opts.egressInterface === opts.interface) {
      this.#tx = this.#rx;
    } else {
      this.#tx = new Cap();
      // Transmit-only handle: a filter that matches nothing.
      this.#tx.open(opts.egressInterface, 'less 1', 1024 * 1024, Buffer.alloc(2048));
    }
  }

  start(): void {
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const rxBuf = this.#rxBuf;
    const txBuf = this.#txBuf;
    const tx = this.#tx;
    this.#rx.on('packet', (nbytes: number, truncated: boolean) => {
      this.#received++;
      if (truncated) {
        c[G.rxFrames]++;
        fwd.countDrop(Drop.capture_truncated);
        return;
      }
      c[G.csumUnverifiable]++;
      const out = fwd.forward(rxBuf, nbytes, txBuf, Date.now());
      if (out === 0) return;
      try {
        tx.send(txBuf, out);
        c[G.txFrames]++;
        c[G.txBytes] += out;
      } catch {
        c[G.txErrors]++;
        fwd.countDrop(Drop.tx_error);
      }
    });
  }

  setFilter(_filter: string): void {
    throw new Error('the cap engine cannot change its filter while running; restart Sluice to capture new VIPs');
  }

  stats(): CaptureStats {
    return { received: this.#received, dropped: 0, ifDropped: 0 };
  }

  sendFrame(buf: Buffer, len: number): boolean {
    try {
      this.#tx.send(buf, len);
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    this.#rx.close();
    if (this.#tx !== this.#rx) this.#tx.close();
  }
}
