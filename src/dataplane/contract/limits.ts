/** Named bounds of the data plane. Every table and array is sized from these, never grown per packet. */
export const MAX_SERVICES = 4096;
export const MAX_BACKENDS = 65536;
/** Bytes reserved per frame slot in capture and transmit rings (jumbo frames fit). */
export const FRAME_SLOT_BYTES = 10240;
/** How often the data plane publishes a counter snapshot to the control process. */
export const COUNTER_PUBLISH_MS = 100;
/** Flow-table expiry work per sweep tick, in slots. */
export const SWEEP_SLOTS_PER_TICK = 65536;
export const SWEEP_INTERVAL_MS = 50;
