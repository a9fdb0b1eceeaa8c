/** Named bounds of the data plane. Every table and array is sized from these, never grown per packet. */
export const MAX_SERVICES = 4096;
export const MAX_BACKENDS = 65536;
/** Bytes reserved per frame slot in capture and transmit rings (jumbo frames fit). */
export const FRAME_SLOT_BYTES = 10240;
/** How often the data plane publishes a counter snapshot to the control process. */
export const COUNTER_PUBLISH_MS = 100;
/**
 * Flow-table expiry work per sweep tick, in slots: about 1.4 M slots a second, a 1M-flow table
 * every 0.8 s, in slices small enough (tens of microseconds) that a frame arriving during one
 * waits no longer than that. The same rate in 65536-slot slices every 50 ms held frames for up
 * to a millisecond behind a slice: the latency tail at low rates.
 */
export const SWEEP_SLOTS_PER_TICK = 8192;
export const SWEEP_INTERVAL_MS = 6;
/** MPTCP token table slots (a power of two); one default for both processes. */
export const DEFAULT_TOKEN_CAPACITY = 1 << 18;
/** Client-affinity table slots. */
export const DEFAULT_AFFINITY_CAPACITY = 1 << 18;
/** Frames held per pending owner query when the cluster config does not say. */
export const DEFAULT_HOLD_PACKETS = 8;
