/**
 * Which transmit path the engines use, from the environment (measurement switches, like
 * SLUICE_RING_TPACKET): SLUICE_TX=sendmmsg (default) or ring (a mapped PACKET_TX_RING), and
 * SLUICE_QDISC_BYPASS=1 (PACKET_QDISC_BYPASS on either path). Read once, at engine construction.
 */
export interface TxPath {
  txRing: boolean;
  qdiscBypass: boolean;
}

export function txPathFromEnv(env: NodeJS.ProcessEnv = process.env): TxPath {
  const tx = env.SLUICE_TX ?? '';
  if (tx !== '' && tx !== 'ring' && tx !== 'sendmmsg') {
    throw new Error(`SLUICE_TX must be "ring" or "sendmmsg", got "${tx}"`);
  }
  const bypass = env.SLUICE_QDISC_BYPASS ?? '';
  if (bypass !== '' && bypass !== '0' && bypass !== '1') {
    throw new Error(`SLUICE_QDISC_BYPASS must be 0 or 1, got "${bypass}"`);
  }
  return { txRing: tx === 'ring', qdiscBypass: bypass === '1' };
}
