#!/usr/bin/env bash
# Prepares a fresh Debian machine to build, test and demo Sluice: system packages, then npm
# dependencies exactly as package-lock.json lists them (which build the cap and raw-socket
# addons), Sluice's own build, and `sluice` on PATH (a symlink in /usr/local/bin to this
# checkout's CLI). Leaves the checkout's tracked files untouched. Idempotent; run as root.
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
  hping3             # the SYN flood e2e: spoofed SYNs from random sources
  curl
  mptcpd             # mptcpize: real MPTCP peers for tests
  bird2              # the BGP speaker Sluice drives for "announce" (birdc), and the lab router's BGP daemon
  util-linux         # setpriv: the speaker dies with Sluice (--pdeathsig)
  ca-certificates
  chromium           # headless browser: e2e tests load the status page and load reports
  prometheus         # promtool: CI checks the shipped alert rules (the server itself is not used)
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
  # Only promtool is wanted from the prometheus package: do not leave its server running on a
  # machine whose init system started it (containers have none).
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

# node-gyp builds the addons against Node's headers; with a packaged Node they are installed
# (/usr/include/node), and without this it would try to download them.
if [ -z "${npm_config_nodedir:-}" ] && [ "$(npm config get nodedir)" = "undefined" ] && [ -f /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi

# `npm ci`, not `npm install`: it installs exactly what package-lock.json lists and never rewrites
# it (npm install re-resolves and rewrites the lock, e.g. the optional platform packages of
# rollup and esbuild, which dirtied a fresh checkout). It fails if package.json and the lock
# disagree: run `npm install` by hand after changing a dependency, and commit the lock.
npm ci --no-audit --no-fund
npm run build

# `sluice` on PATH: a symlink to this checkout's CLI (node follows it to find its modules).
# A link left by a global npm install (into a node_modules folder) is left alone.
link=/usr/local/bin/sluice
cli="$PWD/dist/src/cli.js"
if [ -L "$link" ] && [[ "$(readlink "$link")" == */node_modules/* ]]; then
  echo "setup.sh: $link is a global npm install ($(readlink "$link")); leaving it"
elif [ -e "$link" ] && [ ! -L "$link" ]; then
  echo "setup.sh: $link exists and is not a symlink; leaving it (run $cli directly)" >&2
else
  ln -sfn "$cli" "$link"
fi
echo "setup.sh: ready: $(command -v sluice) -> sluice $(sluice --version) (node $(node --version), $(tcpdump --version 2>&1 | grep -m1 libpcap))"
