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
/** MPTCP token table slots (a power of two); one default for both processes. */
export const DEFAULT_TOKEN_CAPACITY = 1 << 18;
/** Client-affinity table slots. */
export const DEFAULT_AFFINITY_CAPACITY = 1 << 18;
/** Frames held per pending owner query when the cluster config does not say. */
export const DEFAULT_HOLD_PACKETS = 8;
