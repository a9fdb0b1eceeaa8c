/**
 * Every reason a frame is not forwarded. Index = slot in the data plane's drop counter array;
 * the name is the `reason` label of sluice_dropped_packets_total. Append only: indexes are
 * stable across versions so counter snapshots stay comparable.
 */
export const DROP_REASONS = [
  'ok', // 0: not a drop; parse success
  // parse (src/packet/parse.ts)
  'truncated_ethernet',
  'truncated_vlan',
  'unsupported_ethertype',
  'truncated_ipv4',
  'bad_ip_version',
  'bad_ihl',
  'bad_total_length',
  'bad_ipv4_checksum',
  'ipv4_options',
  'ipv4_fragment',
  'truncated_ipv6',
  'bad_payload_length',
  'ipv6_extension_header',
  'ipv6_fragment',
  'unsupported_protocol',
  'truncated_tcp',
  'bad_tcp_data_offset',
  'truncated_udp',
  'bad_udp_length',
  'bad_tcp_options',
  // forwarder (src/dataplane/forwarder.ts)
  'no_service',
  'no_backend',
  'no_neighbor',
  'loop',
  'encap_too_big',
  'tx_error',
  'capture_truncated',
  'mptcp_join_unknown_token',
  // control plane (owner queries)
  'hold_overflow',
  // capture engines (src/dataplane/engine-ring.ts)
  'oversize_frame', // bigger than a slot and not a GSO frame that can be cut
  'gso_unsupported', // a GSO frame of a type or shape that cannot be cut (UFO, inconsistent headers)
  'bad_partial_checksum', // the kernel's checksum offsets do not fit the frame
  // parse, appended with IPv4 options, IPv6 extension headers, fragments and ICMP (src/packet/parse.ts)
  'bad_ipv4_options',
  'bad_ipv6_extension_header',
  'ipv6_extension_chain_too_long',
  'fragment_too_short',
  'truncated_icmp',
  'bad_icmp_quote',
  // ICMP for a VIP (src/dataplane/icmp-path.ts, icmp-steer.ts)
  'icmp_no_service', // an error quoting a packet of no configured service
  'icmp_echo_refused', // an echo request to a VIP whose service says icmpEcho: "drop"
  'icmp_unhandled_type', // ICMP to a VIP that is neither a routed error nor an echo request (echo reply, redirect, ...)
  'icmp_errors_off', // an error for a service that says icmpErrors: "drop"
  // forwarder: fragments (src/dataplane/fragment-table.ts, fragment-hold.ts) and VLAN egress
  'fragment_table_full', // a first fragment whose datagram finds no free entry: its later fragments could not follow
  'fragment_hold_full', // an early fragment (its first fragment not seen yet) with no hold slot free, or larger than a slot
  'fragment_unmatched', // an early fragment whose first fragment did not come within the hold time
] as const;

export type DropReasonName = (typeof DROP_REASONS)[number];

/** Name -> index, for code that wants `Drop.bad_ihl` rather than a magic number. */
export const Drop = Object.freeze(
  Object.fromEntries(DROP_REASONS.map((n, i) => [n, i])) as { [K in DropReasonName]: number },
);

export const DROP_REASON_COUNT = DROP_REASONS.length;
