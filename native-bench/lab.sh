# shellcheck shell=bash
# The pps lab of native-bench: three network namespaces joined by two veth pairs.
# Sourced by run.sh; needs LAB_ID (short, [0-9a-z]) set before lab_up.
#
#   sl-bn<id>-g                sl-bn<id>-f                       sl-bn<id>-s
#   sl-bng 10.98.1.1 ---- sl-bni 10.98.1.2 | sl-bn0 10.98.0.1 ---- sl-bns 10.98.0.2
#   (generator)            (ingress)    forwarder  (egress)          (sink; VIP 198.51.100.10 on lo)
#
# Forwarding is off in the forwarder namespace unless a case turns it on, IPv6 is off, and every
# neighbour entry is static, so the only frames on the links are the generator's and their
# forwarded copies. Generator and sink keep the kernel's default offloads; on the forwarder's
# own two interfaces segmentation and receive offloads are off, as the README tells operators
# of libpcap-based forwarders (the C reference, Sluice's batch engine): GRO could merge frames
# beyond the MTU there, which pcap_sendpacket cannot send.

LAB_VIP=198.51.100.10
LAB_G_IP=10.98.1.1
LAB_FI_IP=10.98.1.2
LAB_FE_IP=10.98.0.1
LAB_S_IP=10.98.0.2
LAB_G_IF=sl-bng
LAB_FI_IF=sl-bni
LAB_FE_IF=sl-bn0
LAB_S_IF=sl-bns

lab_names() {
  LAB_G="sl-bn${LAB_ID}-g"
  LAB_F="sl-bn${LAB_ID}-f"
  LAB_S="sl-bn${LAB_ID}-s"
}

lab_mac() { # NS IF
  ip -n "$1" -br link show dev "$2" | awk '{print $3}'
}

lab_sysctl() { # NS key=value...
  local ns=$1; shift
  ip netns exec "$ns" sysctl -qw "$@" >/dev/null
}

lab_quiet_link() { # NS IF: the forwarder's interfaces: no GRO/GSO/TSO (see above); checksum offload stays
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || {
    echo "lab: ethtool -K $2 failed in $1" >&2; return 1; }
}

lab_up() {
  lab_names
  local ns
  for ns in "$LAB_G" "$LAB_F" "$LAB_S"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      echo "lab: namespace $ns already exists (another run with id $LAB_ID?)" >&2; return 1
    fi
  done
  for ns in "$LAB_G" "$LAB_F" "$LAB_S"; do
    ip netns add "$ns"
    LAB_CREATED+=("$ns")
    ip -n "$ns" link set lo up
    lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  # Links are created inside the namespaces: no name ever appears in the host namespace.
  ip -n "$LAB_F" link add "$LAB_FI_IF" type veth peer name "$LAB_G_IF" netns "$LAB_G"
  ip -n "$LAB_F" link add "$LAB_FE_IF" type veth peer name "$LAB_S_IF" netns "$LAB_S"

  ip -n "$LAB_G" addr add "$LAB_G_IP/24" dev "$LAB_G_IF"
  ip -n "$LAB_F" addr add "$LAB_FI_IP/24" dev "$LAB_FI_IF"
  ip -n "$LAB_F" addr add "$LAB_FE_IP/24" dev "$LAB_FE_IF"
  ip -n "$LAB_S" addr add "$LAB_S_IP/24" dev "$LAB_S_IF"
  ip -n "$LAB_S" addr add "$LAB_VIP/32" dev lo

  lab_quiet_link "$LAB_F" "$LAB_FI_IF"
  lab_quiet_link "$LAB_F" "$LAB_FE_IF"

  ip -n "$LAB_G" link set "$LAB_G_IF" up
  ip -n "$LAB_F" link set "$LAB_FI_IF" up
  ip -n "$LAB_F" link set "$LAB_FE_IF" up
  ip -n "$LAB_S" link set "$LAB_S_IF" up

  # The sink is a DSR backend: it owns the VIP on lo and never answers ARP for it.
  lab_sysctl "$LAB_S" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    "net.ipv4.conf.$LAB_S_IF.rp_filter=0"
  lab_sysctl "$LAB_F" net.ipv4.ip_forward=0 "net.ipv4.conf.$LAB_FI_IF.rp_filter=0" \
    "net.ipv4.conf.$LAB_FE_IF.rp_filter=0"

  LAB_G_MAC=$(lab_mac "$LAB_G" "$LAB_G_IF")
  LAB_FI_MAC=$(lab_mac "$LAB_F" "$LAB_FI_IF")
  LAB_FE_MAC=$(lab_mac "$LAB_F" "$LAB_FE_IF")
  LAB_S_MAC=$(lab_mac "$LAB_S" "$LAB_S_IF")

  ip -n "$LAB_G" neigh replace "$LAB_FI_IP" lladdr "$LAB_FI_MAC" dev "$LAB_G_IF" nud permanent
  ip -n "$LAB_F" neigh replace "$LAB_G_IP" lladdr "$LAB_G_MAC" dev "$LAB_FI_IF" nud permanent
  # Sluice resolves the backend's MAC from this entry.
  ip -n "$LAB_F" neigh replace "$LAB_S_IP" lladdr "$LAB_S_MAC" dev "$LAB_FE_IF" nud permanent
  ip -n "$LAB_S" neigh replace "$LAB_FE_IP" lladdr "$LAB_FE_MAC" dev "$LAB_S_IF" nud permanent
}

# Case "kernel": the forwarder namespace routes the VIP to the sink itself.
lab_kernel_forwarding_on() {
  lab_sysctl "$LAB_F" net.ipv4.ip_forward=1
  ip -n "$LAB_F" route replace "$LAB_VIP/32" via "$LAB_S_IP" dev "$LAB_FE_IF"
}

lab_kernel_forwarding_off() {
  ip -n "$LAB_F" route del "$LAB_VIP/32" 2>/dev/null || true
  lab_sysctl "$LAB_F" net.ipv4.ip_forward=0
}

# Idempotent; safe to call from a trap at any point of lab_up.
lab_down() {
  local ns
  for ns in "${LAB_CREATED[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  LAB_CREATED=()
}

LAB_CREATED=()
