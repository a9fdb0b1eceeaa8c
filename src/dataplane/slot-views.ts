/**
 * Fixed-size frame slots over one backing buffer (capture and transmit batches, held frames): one
 * view per slot, made once at set-up, so the packet path indexes an array and never slices.
 * Set-up only: allocates, and throws a RangeError when the buffer is too small for the slots.
 */
export function slotViews(backing: Buffer, slots: number, slotBytes: number): Buffer[] {
  if (!Number.isInteger(slots) || slots < 0 || !Number.isInteger(slotBytes) || slotBytes < 1) {
    throw new RangeError(`slot views: ${slots} slots of ${slotBytes} bytes is not a layout`);
  }
  if (slots * slotBytes > backing.length) {
    throw new RangeError(`slot views: ${slots} slots of ${slotBytes} bytes need ${slots * slotBytes} bytes; the buffer has ${backing.length}`);
  }
  const views: Buffer[] = new Array<Buffer>(slots);
  for (let i = 0; i < slots; i++) views[i] = backing.subarray(i * slotBytes, (i + 1) * slotBytes);
  return views;
}
