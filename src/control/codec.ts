/**
 * The control plane's wire codec, one import path for every caller:
 *   codec-layout.ts  the datagram and body layout (drawn there), constants, types, entry checks
 *   codec-write.ts   body writers, PublishBodyWriter, sealing (header + MAC)
 *   codec-read.ts    the bounds-checked Reader and decodeDatagram(), which never throws
 * The parts import codec-layout.ts, never this file, so the module graph has no cycle.
 */
export * from './codec-layout.js';
export * from './codec-write.js';
export * from './codec-read.js';
