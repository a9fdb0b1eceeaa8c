// Minimal typings for the parts of `raw-socket` Sluice uses (the package ships none).
declare module 'raw-socket' {
  import { EventEmitter } from 'node:events';

  export interface SocketOptions {
    /** IP protocol number placed in the kernel-built IP header (raw.Protocol). */
    protocol?: number;
    /** raw.AddressFamily.IPv4 (default) or raw.AddressFamily.IPv6. */
    addressFamily?: number;
    /** Receive buffer size in bytes, default 4096. */
    bufferSize?: number;
  }

  export class Socket extends EventEmitter {
    readonly recvPaused: boolean;
    readonly sendPaused: boolean;
    send(
      buffer: Buffer,
      offset: number,
      length: number,
      address: string,
      afterCallback: (error: Error | null, bytes: number) => void,
    ): this;
    close(): this;
    pauseRecv(): this;
    resumeRecv(): this;
    pauseSend(): this;
    resumeSend(): this;
    setOption(level: number, option: number, value: number | Buffer, length?: number): void;
    /** IPv4: the buffer starts with the IP header; IPv6: with the ICMPv6/transport header. */
    on(event: 'message', listener: (buffer: Buffer, source: string) => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    on(event: 'close', listener: () => void): this;
  }

  export function createSocket(options?: SocketOptions): Socket;
  export function createChecksum(...parts: (Buffer | { buffer: Buffer; offset: number; length: number })[]): number;
  export function writeChecksum(buffer: Buffer, offset: number, checksum: number): Buffer;

  export const AddressFamily: { readonly IPv4: 1; readonly IPv6: 2 };
  export const Protocol: { readonly None: 0; readonly ICMP: 1; readonly TCP: 6; readonly UDP: 17; readonly ICMPv6: 58 };
  export const SocketLevel: Readonly<Record<string, number>>;
  export const SocketOption: Readonly<Record<string, number>>;
}
