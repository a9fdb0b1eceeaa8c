/**
 * One end of the control <-> data-plane channel: a unix stream socket carrying the messages of
 * messages.ts as frames of a 4-byte big-endian length and a v8-serialized value (the structured
 * clone Node's `advanced` IPC serialization uses, so typed arrays and Maps cross as they are).
 * A socket instead of a fork IPC channel lets the data plane outlive the control process, and a
 * new control process connect to it (adoption, supervisor.ts).
 *
 * A frame larger than MAX_FRAME_BYTES, or one that does not deserialize, ends the connection
 * (counted by the caller through onClose's reason); it never throws into the event loop.
 */
import type { Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';

/** Far above the largest message (a flows answer of 100k rows, a counters snapshot). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const HEADER_BYTES = 4;

export class SocketChannel<In, Out> {
  readonly #socket: Socket;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #closed = false;
  #onMessage: (m: In) => void = () => undefined;
  #onClose: (reason: string) => void = () => undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#data(chunk));
    socket.on('error', (e: Error) => this.#close(e.message));
    socket.on('close', () => this.#close('closed by the other end'));
  }

  get open(): boolean {
    return !this.#closed;
  }

  get socket(): Socket {
    return this.#socket;
  }

  onMessage(fn: (m: In) => void): void {
    this.#onMessage = fn;
  }

  onClose(fn: (reason: string) => void): void {
    this.#onClose = fn;
  }

  /** false when the channel is closed; `written` runs once the frame left this process's buffer. */
  send(msg: Out, written?: () => void): boolean {
    if (this.#closed) return false;
    const body = serialize(msg);
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    head.writeUInt32BE(body.length, 0);
    this.#socket.write(head);
    this.#socket.write(body, written ? () => written() : undefined);
    return true;
  }

  /** Close after the frames already written are flushed. */
  end(): void {
    if (this.#closed) return;
    this.#socket.end();
  }

  destroy(reason: string): void {
    this.#socket.destroy();
    this.#close(reason);
  }

  #data(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    while (!this.#closed && this.#pendingBytes >= HEADER_BYTES) {
      if (this.#pending[0].length < HEADER_BYTES) this.#pending = [Buffer.concat(this.#pending, this.#pendingBytes)];
      const len = this.#pending[0].readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) {
        this.destroy(`a frame of ${len} bytes is over the ${MAX_FRAME_BYTES}-byte limit`);
        return;
      }
      // Chunks of a large frame are joined once, when all of it is here.
      if (this.#pendingBytes < HEADER_BYTES + len) return;
      const buf = this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes);
      const rest = buf.subarray(HEADER_BYTES + len);
      this.#pending = rest.length > 0 ? [rest] : [];
      this.#pendingBytes = rest.length;
      let msg: In;
      try {
        msg = deserialize(buf.subarray(HEADER_BYTES, HEADER_BYTES + len)) as In;
      } catch (e) {
        this.destroy(`a frame did not deserialize: ${(e as Error).message}`);
        return;
      }
      this.#onMessage(msg);
    }
  }

  #close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#onClose(reason);
  }
}
