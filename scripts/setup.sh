#!/usr/bin/env bash
# Prepares a fresh Debian machine to build, test and demo Sluice: system packages, then npm
# dependencies (which build the cap and raw-socket addons) and Sluice's own capture addon.
# Idempotent; run as root (or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo bash scripts/setup.sh): it installs Debian packages" >&2
  exit 1
fi

packages=(
  libpcap-dev        # capture (cap and Sluice's batching addon link against libpcap)
  build-essential    # node-gyp builds the native addons; native-bench builds its C tools
  python3            # node-gyp; the lab's IPIP decapsulator and MPTCP peers
  iproute2           # ip netns/link/route/neigh/mptcp: the lab and next-hop resolution
  nftables           # tests drop chosen packets with nft rules
  ethtool            # the benchmark lab turns GRO/GSO off on the libpcap forwarders' interfaces; tests read offload settings
  iputils-ping
  procps             # sysctl
  tcpdump
  curl
  mptcpd             # mptcpize: real MPTCP peers for tests
  ca-certificates
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "setup.sh: Node.js >= 18 is required (found $(node --version))" >&2
  exit 1
fi

# Not `npm ci`: the registry this project installs from does not serve every platform variant of
# rollup's optional packages, so the lockfile cannot list them and `npm ci` refuses the lock.
# `npm install` follows the committed lock for everything it does list.
npm install --no-audit --no-fund
npm run build
echo "setup.sh: ready (node $(node --version), $(tcpdump --version 2>&1 | grep -m1 libpcap))"
