// Minimal typings for the parts of `cap` Sluice uses (the package ships none).
declare module 'cap' {
  import { EventEmitter } from 'node:events';
  export class Cap extends EventEmitter {
    open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
    send(buffer: Buffer, length?: number): void;
    close(): boolean;
    on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): this;
  }
  const _default: { Cap: typeof Cap };
  export default _default;
}
