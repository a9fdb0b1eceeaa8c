/**
 * The flow table in a file mapped MAP_SHARED (native/sluice_shm.c), so that it outlives the
 * data-plane process: a restarted or upgraded data plane attaches to the bytes its predecessor
 * left (after the predecessor stopped writing: handover in contract/messages.ts), with every
 * flow's backend and MPTCP token. Config time only.
 *
 * A file this build cannot read (another layout version, another magic, another capacity or
 * hash seed) is refused with flow-layout.ts's message, never misread: it is renamed aside
 * ("<file>.refused") for a human to look at, and the data plane starts with a new, empty table.
 */
import { existsSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ADDON_BUILD_COMMAND, addonPath } from './capture-batch.js';
import { FlowTable, type FlowTimeouts } from './flow-table.js';
import type { FlowTableOrigin } from './contract/handover.js';

interface ShmAddon {
  mapFile(path: string, bytes: number): ArrayBuffer;
}

let addon: ShmAddon | null = null;

function shm(): ShmAddon {
  if (addon) return addon;
  const path = addonPath();
  if (!existsSync(path)) throw new Error(`the Sluice addon is not built (${path} is missing): run \`${ADDON_BUILD_COMMAND}\``);
  const mod = createRequire(import.meta.url)(path) as Partial<ShmAddon>;
  if (typeof mod.mapFile !== 'function') throw new Error(`the Sluice addon at ${path} is older than this build (no mapFile): run \`${ADDON_BUILD_COMMAND}\``);
  addon = mod as ShmAddon;
  return addon;
}

export interface SharedFlowTableOptions {
  path: string;
  /** Take over the table in the file if there is one (else the file is replaced by a new table). */
  attach: boolean;
  capacity: number;
  timeouts: FlowTimeouts;
  hashSeed: number;
  /** flowTable.floodProtection (default on): an attached table runs with the setting of the data plane that attached it. */
  floodProtection?: boolean;
  nowMs: number;
}

export interface SharedFlowTable {
  flows: FlowTable;
  origin: FlowTableOrigin;
}

/** Map the file and attach to its table, or format a new one; throws only when the file cannot be mapped at all. */
export function openSharedFlowTable(o: SharedFlowTableOptions): SharedFlowTable {
  let note = o.attach ? 'no table file yet' : 'a new table was asked for';
  if (o.attach && existsSync(o.path) && statSync(o.path).size > 0) {
    try {
      const buffer = shm().mapFile(o.path, 0);
      const flows = new FlowTable(o.capacity, o.timeouts, { attach: buffer, hashSeed: o.hashSeed, epochMs: o.nowMs, floodProtection: o.floodProtection });
      return { flows, origin: { attached: true, flows: flows.size, tokens: 0, note: 'attached' } };
    } catch (e) {
      note = `refused ${o.path}: ${(e as Error).message}`;
      renameSync(o.path, `${o.path}.refused`);
    }
  }
  // A new file reads as zeros, as a new table's arrays must be.
  if (existsSync(o.path)) unlinkSync(o.path);
  const buffer = shm().mapFile(o.path, FlowTable.bytesFor(o.capacity));
  // A new file's pages read as zero until written: not erasing them keeps a 1M-flow table (58 MiB) from being touched at start.
  const flows = new FlowTable(o.capacity, o.timeouts, { buffer, bufferZeroed: true, hashSeed: o.hashSeed, epochMs: o.nowMs, floodProtection: o.floodProtection });
  return { flows, origin: { attached: false, flows: 0, tokens: 0, note } };
}
