#!/usr/bin/env bash
# native-bench/run.sh: what Sluice's data plane costs, side by side in one run with the
# kernel's own IP forwarding and a C libpcap reference forwarder (issue 11's figures):
# saturation pps with 1 and 10k flows, CPU per packet at 100 kpps and at saturation, one-way
# latency at 10 kpps, memory for 1M flows, idle memory, new flows per second with a full
# table, 1 data-plane worker against 2. Writes native-bench/results/latest.json and prints
# the figures against the issue's goals. Needs root.
# See native-bench/README.md for what is measured and how to read it.
#
# Environment (all optional):
#   BENCH_QUICK=1        1 s warm-up + 3 s window instead of 2 s + 8 s, one fill cycle of the 1M flows
#   BENCH_WARMUP=S       warm-up seconds before the window (default 2)
#   BENCH_WINDOW=S       measurement window seconds (default 8)
#   BENCH_REPEAT=N       measure every case N times, report the median (default 1)
#   BENCH_PHASES="..."   subset/order of the phases (default: pps1 pps10k cpu100k lat10k mem1m):
#                          pps1     saturation, 1 flow
#                          pps10k   saturation, 10,000 flows (also the batch and cap engines)
#                          cpu100k  generator limited to BENCH_CPU_RATE (100,000 pps), 10,000 flows
#                          lat10k   BENCH_LAT_RATE (10,000 pps), one frame per send, stamped; lat-sink
#                          mem1m    Sluice only: memory for BENCH_MEM_FLOWS live flows, then
#                                   spoofed SYNs (every packet a new flow) into the full table
#                          custom   BENCH_CASES with BENCH_FLOWS / BENCH_RATE / BENCH_GEN_BATCH
#                                   (the only phase with BENCH_PROTO=tcp)
#   BENCH_CASES="..."    only these cases of each phase: kernel cref sluice sluiceRing sluiceRing2
#                        sluiceCap sluiceMem (and sluiceNoMptcp, custom phase only). Opt-in
#                        transmit-path cases, run only when named here (pps1 pps10k cpu100k
#                        lat10k custom): sluiceTxRing (SLUICE_TX=ring: the mapped TX ring),
#                        sluiceBypass (SLUICE_QDISC_BYPASS=1 on sendmmsg), sluiceTxRingBypass
#   BENCH_RATE=PPS       custom phase: generator rate limit, 0 = as fast as it can (default 0)
#   BENCH_FLOWS=N        custom phase: flows the generator cycles over (default 1024)
#   BENCH_GEN_BATCH=N    frames per sendmmsg call (default 64; lat10k always 1)
#   BENCH_CPU_RATE=PPS   offered load of cpu100k (default 100000)
#   BENCH_LAT_RATE=PPS   offered load of lat10k (default 10000)
#   BENCH_MEM_FLOWS=N    live flows of mem1m (default 1048576; 32 source addresses x N/32 ports)
#   BENCH_MEM_CAPACITY=N flowTable.capacity of mem1m (default 1048576)
#   BENCH_LAT_REPEAT=N   lat10k: runs per case, cases taking turns (default: BENCH_REPEAT, at least 3)
#   BENCH_IDLE_SETTLE=S  mem1m: seconds Sluice idles after start before its idle memory is read
#                        (default 60; the baseline of "memory for 1M flows" and the idle figure)
#   BENCH_MEM_RATE=PPS   fill rate of mem1m (default 2/3 of sluiceRing's pps10k saturation, >= 60000)
#   BENCH_SYN_RATE=PPS   SYN rate of mem1m (default 2/3 of sluiceRing's pps10k saturation pps)
#   BENCH_BUDGET=S       after S s (default 900) no more re-measuring of disturbed runs or quiet waits
#   BENCH_CONTROL_CPU=L  CPUs (taskset list) of Sluice's control process once started (default: with
#                        the data plane on the forwarder's CPU; the data plane stays there either way)
#   BENCH_WORKERS_CPUS=L CPUs (taskset list) of the 2-worker case (default: the forwarder's one CPU,
#                        so CPU per packet and the split compare with one worker on one core)
#   BENCH_OUT=FILE       where to write the JSON (default native-bench/results/latest.json)
#   BENCH_ID=ID          lab id, [0-9a-z]{1,8} (default: random)
#   BENCH_QUIET_WAIT=S   before each measurement wait up to S s for the machine to be idle (default 10)
#   BENCH_RETRIES=N      measure a run again if outside load took > 5% of the window (default 1)
#   BENCH_READY_TIMEOUT=S how long a forwarder may take to start forwarding (default 30)
#   BENCH_KEEP=1         keep the run directory (logs, configs, raw samples) under /tmp
#   BENCH_PLAIN=0        skip the in-process plain-path comparison (forwarder before/after issue 9) at the end
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD="$HERE/build"
# shellcheck source=native-bench/lab.sh
source "$HERE/lab.sh"

die() { echo "native-bench: $*" >&2; exit 1; }
log() { echo "native-bench: $*" >&2; }

# ---- settings ---------------------------------------------------------------------------
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then WARMUP_DEFAULT=1; WINDOW_DEFAULT=3; else WARMUP_DEFAULT=2; WINDOW_DEFAULT=8; fi
WARMUP=${BENCH_WARMUP:-$WARMUP_DEFAULT}
WINDOW=${BENCH_WINDOW:-$WINDOW_DEFAULT}
REPEAT=${BENCH_REPEAT:-1}
CASES_FILTER=${BENCH_CASES:-}
# udp (64-byte UDP to :53) or tcp (66-byte pure ACKs with timestamps to :80, the common
# mid-connection packet; with the case sluiceNoMptcp it measures what MPTCP steering costs).
PROTO=${BENCH_PROTO:-udp}
[[ $PROTO == udp || $PROTO == tcp ]] || { echo "BENCH_PROTO must be udp or tcp" >&2; exit 2; }
if [[ $PROTO == tcp ]]; then PORT=80; else PORT=53; fi
if [[ $PROTO == tcp ]]; then PHASES_DEFAULT=custom; else PHASES_DEFAULT="pps1 pps10k cpu100k lat10k mem1m"; fi
PHASES=${BENCH_PHASES:-$PHASES_DEFAULT}
CUSTOM_RATE=${BENCH_RATE:-0}
CUSTOM_FLOWS=${BENCH_FLOWS:-1024}
BATCH_DEFAULT=${BENCH_GEN_BATCH:-64}
CPU_RATE=${BENCH_CPU_RATE:-100000}
LAT_RATE=${BENCH_LAT_RATE:-10000}
MEM_FLOWS=${BENCH_MEM_FLOWS:-1048576}
MEM_CAPACITY=${BENCH_MEM_CAPACITY:-1048576}
MEM_ADDRS=32
BUDGET=${BENCH_BUDGET:-900}
WORKERS_CPUS=${BENCH_WORKERS_CPUS:-}
CONTROL_CPU=${BENCH_CONTROL_CPU:-}
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-60}
# The latency tail on a shared VM moves by 2-5x between runs of the same forwarder: lat10k
# measures every case at least 3 times, the cases taking turns, and reports the median.
LAT_REPEAT=${BENCH_LAT_REPEAT:-$(( REPEAT > 3 ? REPEAT : 3 ))}
# Per-phase generator settings (set_phase); the custom phase's are the BENCH_* ones.
RATE=$CUSTOM_RATE
FLOWS=$CUSTOM_FLOWS
GEN_BATCH=$BATCH_DEFAULT
GEN_ADDRS=1
GEN_SRC=""       # first source address; empty = the generator's own
GEN_MODE=udp     # udp | ack (TCP ACKs) | syn (TCP SYNs)
LATENCY=0        # 1: stamped frames, lat-sink in the sink namespace
if [[ $PROTO == tcp ]]; then GEN_MODE=ack; fi
OUT=${BENCH_OUT:-"$HERE/results/latest.json"}
LAB_ID=${BENCH_ID:-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
RETRIES=${BENCH_RETRIES:-1}
DISTURBED_PCT=5
# Capture settings shared by the C reference and Sluice's defaults (src/config/types.ts).
SNAPLEN=10240
BUFFER_MIB=${BENCH_BUFFER_MIB:-32}

[[ "$WARMUP" =~ ^[0-9]+$ && "$WINDOW" =~ ^[1-9][0-9]*$ ]] || die "BENCH_WARMUP/BENCH_WINDOW must be whole seconds, window >= 1"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ && "$LAT_REPEAT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT and BENCH_LAT_REPEAT must be >= 1"
[[ "$IDLE_SETTLE" =~ ^[0-9]+$ && "$QUIET_WAIT" =~ ^[0-9]+$ && "$RETRIES" =~ ^[0-9]+$ && "$READY_TIMEOUT" =~ ^[1-9][0-9]*$ ]] \
  || die "BENCH_IDLE_SETTLE, BENCH_QUIET_WAIT, BENCH_RETRIES and BENCH_READY_TIMEOUT must be whole numbers"
[[ "$CUSTOM_RATE" =~ ^[0-9]+$ ]] || die "BENCH_RATE must be a whole number of pps (0 = max)"
for v in CUSTOM_FLOWS CPU_RATE LAT_RATE MEM_FLOWS MEM_CAPACITY BUDGET BATCH_DEFAULT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v (BENCH_*) must be a whole number >= 1"
done
for v in BENCH_MEM_RATE BENCH_SYN_RATE; do
  [[ -z "${!v:-}" || "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number of pps >= 1"
done
(( MEM_FLOWS <= 4194304 )) || die "BENCH_MEM_FLOWS must be <= 4194304"
[[ "$LAB_ID" =~ ^[0-9a-z]{1,8}$ ]] || die "BENCH_ID must be 1-8 characters of [0-9a-z]"
[[ -z "$WORKERS_CPUS" || "$WORKERS_CPUS" =~ ^[0-9,-]+$ ]] || die "BENCH_WORKERS_CPUS must be a CPU list like 1 or 0-3"
for c in $CASES_FILTER; do
  case "$c" in kernel|cref|sluice|sluiceRing|sluiceRing2|sluiceCap|sluiceNoMptcp|sluiceMem|sluiceTxRing|sluiceBypass|sluiceTxRingBypass) ;; *) die "unknown case '$c' in BENCH_CASES" ;; esac
done
for ph in $PHASES; do
  case "$ph" in pps1|pps10k|cpu100k|lat10k|mem1m|custom) ;; *) die "unknown phase '$ph' in BENCH_PHASES" ;; esac
  if [[ $PROTO == tcp && $ph != custom ]]; then die "BENCH_PROTO=tcp runs only the custom phase"; fi
done
if [[ " $PHASES " == *" custom "* && -z "$CASES_FILTER" ]]; then CASES_FILTER="kernel cref sluice sluiceRing sluiceCap"; fi
(( WARMUP + WINDOW <= 600 )) || die "warm-up + window must be <= 600 s"

# Generator bounds: it stops after GEN_SECONDS or GEN_COUNT frames, whichever comes first.
GEN_SECONDS=$(( WARMUP + WINDOW + 1 ))
GEN_COUNT=$(( GEN_SECONDS * 5000000 ))
# mem1m fills the table this many times over (every flow seen twice: the second pass finds them).
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then MEM_CYCLES=1; else MEM_CYCLES=2; fi
# Longest one case can take; the C reference forwarder stops by itself after this.
CASE_BOUND=$(( READY_TIMEOUT + (RETRIES + 1) * (GEN_SECONDS + QUIET_WAIT + 2) + 30 ))

# ---- preconditions ----------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
for tool in ip ethtool taskset setsid cc node; do
  command -v "$tool" >/dev/null || die "'$tool' not found"
done
NPROC=$(nproc)
if (( NPROC >= 2 )); then GEN_CPU=0; FWD_CPU=1; else GEN_CPU=0; FWD_CPU=0; log "only 1 CPU: generator and forwarder share CPU0"; fi
WORKERS_CPUS=${WORKERS_CPUS:-$FWD_CPU}

# ---- build the C tools ------------------------------------------------------------------
mkdir -p "$BUILD" "$(dirname "$OUT")"
CFLAGS=${CFLAGS:-"-O2 -Wall -Wextra"}
# shellcheck disable=SC2086
cc $CFLAGS -o "$BUILD/gen" "$HERE/c/gen.c" || die "building gen failed"
# shellcheck disable=SC2086
cc $CFLAGS -o "$BUILD/lat-sink" "$HERE/c/lat-sink.c" || die "building lat-sink failed"
# shellcheck disable=SC2086
cc $CFLAGS -o "$BUILD/ref-fwd" "$HERE/c/ref-fwd.c" -lpcap \
  || die "building ref-fwd failed (needs libpcap-dev: pcap/pcap.h and libpcap.so)"

# ---- run directory, cleanup -------------------------------------------------------------
RUN="/tmp/sl-bn$LAB_ID"
mkdir -p "$RUN/raw"
HOLDERS=()      # one idle process per namespace, to read its /proc/PID/net counters
FWD_PGID=""     # process group of the forwarder under test (setsid)

# sleep that a trapped signal interrupts at once (bash runs traps only between commands).
NAP_PID=""
nap() { sleep "$1" & NAP_PID=$!; wait "$NAP_PID"; NAP_PID=""; }

# True while PID exists and is not a zombie (kill -0 succeeds on zombies).
alive() {
  local stat
  [[ -e "/proc/$1/stat" ]] || return 1
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# SIGTERM to the forwarder's whole process group (Sluice forks a data-plane child), SIGKILL
# to whatever is left after 5 s.
stop_forwarder() {
  [[ -n "$FWD_PGID" ]] || return 0
  local pgid=$FWD_PGID i p
  FWD_PGID=""
  # Its processes outside the group (Sluice's data plane, in a session of its own) are
  # stopped with it: the control process ends its data plane on SIGTERM, and whatever of them
  # is left afterwards gets SIGTERM, then SIGKILL, by pid.
  local -a tree=()
  mapfile -t tree < <(group_pids "$pgid")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    alive "$pgid" || break
    sleep 0.1
  done
  if alive "$pgid"; then
    log "forwarder group $pgid still alive 5 s after SIGTERM: SIGKILL"
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  wait "$pgid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    local left=0
    if kill -0 -- "-$pgid" 2>/dev/null; then left=1; fi
    for p in "${tree[@]}"; do
      if alive "$p"; then
        left=1
        if (( i == 20 )); then kill -TERM "$p" 2>/dev/null || true; fi
      fi
    done
    if (( left == 0 )); then return 0; fi
    sleep 0.1
  done
  log "forwarder processes of group $pgid still alive: SIGKILL"
  kill -KILL -- "-$pgid" 2>/dev/null || true
  for p in "${tree[@]}"; do
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  return 0
}

cleanup() {
  local rc=$?
  set +e # best effort: every step below must run
  trap - EXIT INT TERM
  [[ -n "${NAP_PID:-}" ]] && kill "$NAP_PID" 2>/dev/null
  [[ -n "${GEN_PID:-}" ]] && kill "$GEN_PID" 2>/dev/null
  stop_forwarder
  local pid
  for pid in "${HOLDERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${HOLDERS[@]}"; do wait "$pid" 2>/dev/null || true; done
  lab_down
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- lab --------------------------------------------------------------------------------
lab_up
if [[ $PROTO == tcp || " $PHASES " == *" mem1m "* ]]; then
  # The sink must not answer the generator's ACKs or SYNs: drop them before TCP sees them.
  # Forwarded frames are counted at the sink's interface instead (before netfilter).
  command -v nft >/dev/null || die "'nft' not found (TCP mode and the mem1m phase drop TCP at the sink with it)"
  ip netns exec "$LAB_S" nft -f - <<'NFT'
table ip sl_bench {
  chain pre { type filter hook prerouting priority -300; tcp dport 80 drop; }
}
NFT
fi
log "lab $LAB_ID up: $LAB_G -> $LAB_F -> $LAB_S"
HOLD_SECONDS=$(( 900 + ($(echo "$PHASES" | wc -w) * 6 * (REPEAT > LAT_REPEAT ? REPEAT : LAT_REPEAT)) * CASE_BOUND ))
ip netns exec "$LAB_G" sleep "$HOLD_SECONDS" & G_PID=$!; HOLDERS+=("$G_PID")
ip netns exec "$LAB_F" sleep "$HOLD_SECONDS" & F_PID=$!; HOLDERS+=("$F_PID")
ip netns exec "$LAB_S" sleep "$HOLD_SECONDS" & S_PID=$!; HOLDERS+=("$S_PID")

# ---- counters (read through /proc/PID/net of each namespace's holder: no process spawned) --
# Frames the sink's IP stack took as UDP to a local address: InDatagrams + NoPorts + InErrors.
# They only count frames with the sink's MAC, a valid IPv4 header and the VIP (or the sink's
# address) as destination, so a forwarder that rewrites badly scores zero.
# What reached the sink: UDP as above, or (tcp) frames received on the sink's interface.
sink_count() {
  if [[ $GEN_MODE != udp ]]; then
    local -a c; read -r -a c <<< "$(if_counters "$S_PID" "$LAB_S_IF")"; echo "${c[0]}"
  else
    sink_udp
  fi
}

sink_udp() {
  local -a lines; local hdr="" val="" line
  mapfile -t lines < "/proc/$S_PID/net/snmp"
  for line in "${lines[@]}"; do
    if [[ $line == Udp:* ]]; then
      if [[ -z $hdr ]]; then hdr=$line; else val=$line; fi
    fi
  done
  local -a h v; read -r -a h <<< "$hdr"; read -r -a v <<< "$val"
  local i sum=0
  for (( i = 1; i < ${#h[@]}; i++ )); do
    case "${h[$i]}" in InDatagrams|NoPorts|InErrors) sum=$(( sum + v[i] )) ;; esac
  done
  echo "$sum"
}

# "rx_packets rx_dropped tx_packets tx_dropped" of IF as seen in the namespace of PID.
if_counters() { # PID IF
  local -a lines; local line
  mapfile -t lines < "/proc/$1/net/dev"
  for line in "${lines[@]}"; do
    line=${line#"${line%%[![:space:]]*}"}
    if [[ $line == "$2:"* ]]; then
      local -a f; read -r -a f <<< "${line#*:}"
      echo "${f[1]} ${f[3]} ${f[9]} ${f[11]}"; return 0
    fi
  done
  echo "0 0 0 0"
}

# "cpu_ns runqueue_wait_ns" summed over every thread of the given processes. The wait is time
# a thread was runnable but something else ran on its CPU.
sched_sum() { # PID...
  local cpu=0 wait=0 p t a b c
  for p in "$@"; do
    for t in /proc/"$p"/task/*/schedstat; do
      [[ -e $t ]] || continue
      read -r a b c 2>/dev/null < "$t" || continue
      cpu=$(( cpu + a )); wait=$(( wait + b ))
    done
  done
  echo "$cpu $wait"
}

# "tid:cpu_ns:wait_ns:name ..." for every thread of the given processes (name: the thread's
# comm, characters other than [A-Za-z0-9_.-] replaced by _), so report.mjs can tell the
# data-plane workers apart.
sched_threads() { # PID...
  local p t a b c tid name out=""
  for p in "$@"; do
    for t in /proc/"$p"/task/*/schedstat; do
      [[ -e $t ]] || continue
      read -r a b c 2>/dev/null < "$t" || continue
      tid=${t%/schedstat}
      name=""; read -r name 2>/dev/null < "$tid/comm" || true
      name=${name//[^A-Za-z0-9_.-]/_}
      tid=${tid##*/}
      out+="$tid:$a:$b:${name:-_} "
    done
  done
  echo "${out% }"
}

# "rss_kib pss_kib processes threads" of the given processes: VmRSS counts pages shared
# between them (the data plane forks from the control process) once per process, Pss splits
# them.
group_mem() { # PID...
  local p rss=0 pss=0 procs=0 threads=0 k v _u
  for p in "$@"; do
    [[ -r /proc/$p/status ]] || continue
    while read -r k v _u; do
      case "$k" in VmRSS:) rss=$(( rss + v )) ;; Threads:) threads=$(( threads + v )) ;; esac
    done < "/proc/$p/status" 2>/dev/null || true
    while read -r k v _u; do
      [[ $k == Pss: ]] && pss=$(( pss + v ))
    done < "/proc/$p/smaps_rollup" 2>/dev/null || true
    procs=$(( procs + 1 ))
  done
  echo "$rss $pss $procs $threads"
}

group_mem_json() { # PGID
  local -a pids m
  mapfile -t pids < <(group_pids "$1")
  read -r -a m <<< "$(group_mem "${pids[@]}")"
  printf '{"rssKiB":%s,"pssKiB":%s,"processes":%s,"threads":%s}' "${m[0]}" "${m[1]}" "${m[2]}" "${m[3]}"
}

# Every process of process group PGID and every descendant of those: Sluice's data-plane
# child runs in a session (and process group) of its own, so the group alone misses it.
group_pids() { # PGID
  local f stat rest pid changed
  local -a fields
  local -A parent=() member=()
  for f in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null < "$f" || continue
    pid=${f//[^0-9]/}
    rest=${stat##*) }
    read -r -a fields <<< "$rest"
    parent[$pid]=${fields[1]}
    if [[ ${fields[2]} == "$1" ]]; then member[$pid]=1; fi
  done
  changed=1
  while (( changed )); do
    changed=0
    for pid in "${!parent[@]}"; do
      if [[ -z ${member[$pid]:-} && -n ${member[${parent[$pid]}]:-} ]]; then member[$pid]=1; changed=1; fi
    done
  done
  for pid in "${!member[@]}"; do echo "$pid"; done
  return 0
}

GEN_PID=""
FWD_PIDS=()
# Softirq work the kernel defers to these threads also delays the generator and forwarder;
# their CPU time is recorded so it can be told apart from other load on the machine.
KSOFTIRQD_PIDS=()
for f in /proc/[0-9]*/comm; do
  read -r comm 2>/dev/null < "$f" || continue
  case "$comm" in "ksoftirqd/$GEN_CPU") KSOFTIRQD_PIDS[0]=${f//[^0-9]/} ;; esac
  case "$comm" in "ksoftirqd/$FWD_CPU") KSOFTIRQD_PIDS[1]=${f//[^0-9]/} ;; esac
done

SNAP_KEYS=(t tEnd sinkUdp sinkRx genTx genTxDrop fwdInRx fwdInRxDrop fwdOutTx fwdOutTxDrop
  genCpuNs genWaitNs fwdCpuNs fwdWaitNs fwdProcesses ksoftirqdGenCpuNs ksoftirqdFwdCpuNs fwdThreads
  genCoreBusyTicks genCoreTotalTicks fwdCoreBusyTicks fwdCoreTotalTicks genCoreStealTicks fwdCoreStealTicks)

# "busy total steal" USER_HZ ticks of one CPU from /proc/stat (busy: user nice system irq softirq
# steal; total adds idle and iowait). Includes softirq work, which task times leave out. Steal:
# time the hypervisor ran something else while this vCPU had work (the latency tail's suspect).
core_ticks() { # CPU
  local -a lines f; local line
  mapfile -t lines < /proc/stat
  for line in "${lines[@]}"; do
    if [[ $line == "cpu$1 "* ]]; then
      read -r -a f <<< "$line"
      echo "$(( f[1] + f[2] + f[3] + f[6] + f[7] + f[8] )) $(( f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7] + f[8] )) $(( f[8] ))"
      return 0
    fi
  done
  echo "0 0 0"
}

# Fills the associative array named $1 with every counter, read as close together as it can.
snapshot() { # ARRAY_NAME
  local -n out=$1
  local -a gs fs k0 k1 s g fin fout
  out[t]=$EPOCHREALTIME
  read -r -a gs <<< "$(sched_sum $GEN_PID)"
  read -r -a fs <<< "$(sched_sum "${FWD_PIDS[@]}")"
  out[fwdThreads]=\"$(sched_threads "${FWD_PIDS[@]}")\"
  read -r -a k0 <<< "$(sched_sum "${KSOFTIRQD_PIDS[0]:-}")"
  read -r -a k1 <<< "$(sched_sum "${KSOFTIRQD_PIDS[1]:-}")"
  out[sinkUdp]=$(sink_count)
  read -r -a s <<< "$(if_counters "$S_PID" "$LAB_S_IF")"
  read -r -a g <<< "$(if_counters "$G_PID" "$LAB_G_IF")"
  read -r -a fin <<< "$(if_counters "$F_PID" "$LAB_FI_IF")"
  read -r -a fout <<< "$(if_counters "$F_PID" "$LAB_FE_IF")"
  local -a c0 c1
  read -r -a c0 <<< "$(core_ticks "$GEN_CPU")"
  read -r -a c1 <<< "$(core_ticks "$FWD_CPU")"
  out[tEnd]=$EPOCHREALTIME
  out[genCoreBusyTicks]=${c0[0]} out[genCoreTotalTicks]=${c0[1]}
  out[fwdCoreBusyTicks]=${c1[0]} out[fwdCoreTotalTicks]=${c1[1]}
  out[genCoreStealTicks]=${c0[2]} out[fwdCoreStealTicks]=${c1[2]}
  out[sinkRx]=${s[0]} out[genTx]=${g[2]} out[genTxDrop]=${g[3]}
  out[fwdInRx]=${fin[0]} out[fwdInRxDrop]=${fin[1]} out[fwdOutTx]=${fout[2]} out[fwdOutTxDrop]=${fout[3]}
  out[genCpuNs]=${gs[0]} out[genWaitNs]=${gs[1]} out[fwdCpuNs]=${fs[0]} out[fwdWaitNs]=${fs[1]}
  out[fwdProcesses]=${#FWD_PIDS[@]} out[ksoftirqdGenCpuNs]=${k0[0]} out[ksoftirqdFwdCpuNs]=${k1[0]}
}

snapshot_json() { # ARRAY_NAME
  local -n snap=$1
  local k sep=""
  printf '{'
  for k in "${SNAP_KEYS[@]}"; do printf '%s"%s":%s' "$sep" "$k" "${snap[$k]}"; sep=,; done
  printf '}'
}

# Percent of the window that load from outside the benchmark took from the generator or from
# the forwarder's busiest thread: time it was runnable but waited for its CPU, less what that
# CPU's ksoftirqd and (for the forwarder) the forwarder's own other threads ran meanwhile.
# A lower bound; report.mjs computes the same figure for the JSON.
outside_load_pct() { # START_ARRAY END_ARRAY
  local -n a0=$1 b0=$2
  local us=$(( ${b0[t]/./} - ${a0[t]/./} ))
  local g=$(( (b0[genWaitNs] - a0[genWaitNs]) - (b0[ksoftirqdGenCpuNs] - a0[ksoftirqdGenCpuNs]) ))
  local -A c0 w0
  local e tid cpu wait hot_cpu=-1 hot_wait=0 group_cpu=0
  for e in ${a0[fwdThreads]//\"/}; do IFS=: read -r tid cpu wait _ <<< "$e"; c0[$tid]=$cpu; w0[$tid]=$wait; done
  for e in ${b0[fwdThreads]//\"/}; do
    IFS=: read -r tid cpu wait _ <<< "$e"
    [[ -n ${c0[$tid]:-} ]] || continue
    cpu=$(( cpu - c0[$tid] )); wait=$(( wait - w0[$tid] ))
    group_cpu=$(( group_cpu + cpu ))
    if (( cpu > hot_cpu )); then hot_cpu=$cpu; hot_wait=$wait; fi
  done
  local f=0
  if (( hot_cpu >= 0 )); then
    f=$(( hot_wait - (group_cpu - hot_cpu) - (b0[ksoftirqdFwdCpuNs] - a0[ksoftirqdFwdCpuNs]) ))
  fi
  if (( f > g )); then g=$f; fi
  if (( g < 0 )); then g=0; fi
  echo $(( g / 10 / (us > 0 ? us : 1) ))
}

# ---- traffic ----------------------------------------------------------------------------
gen_cmd() { # COUNT SECONDS RATE
  local mode=""
  case "$GEN_MODE" in ack) mode=-T ;; syn) mode=-Y ;; udp) [[ $LATENCY == 1 ]] && mode=-L ;; esac
  echo ip netns exec "$LAB_G" taskset -c "$GEN_CPU" "$BUILD/gen" -i "$LAB_G_IF" -d "$LAB_FI_MAC" \
    -S "${GEN_SRC:-$LAB_G_IP}" -A "$GEN_ADDRS" -D "$LAB_VIP" -p "$PORT" $mode -f "$FLOWS" -b "$GEN_BATCH" -n "$1" -t "$2" -r "$3"
}

# A short, slow burst; succeeds if at least half of it reached the sink.
probe() {
  local before after
  before=$(sink_count)
  $(gen_cmd 2000 1 20000) >/dev/null
  sleep 0.2
  after=$(sink_count)
  (( after - before >= 1000 ))
}

# Waits until traffic flows through the forwarder (PID) or it dies or time runs out.
# Prints the reason on failure.
wait_forwarding() { # PID LOGFILE
  local pid=$1 logf=$2 deadline=$(( SECONDS + READY_TIMEOUT ))
  while (( SECONDS < deadline )); do
    if [[ -n "$pid" ]] && ! alive "$pid"; then
      echo "exited before forwarding: $(tail -n 5 "$logf" 2>/dev/null | tr '\n"\\' '   ' | cut -c1-600)"
      return 1
    fi
    if probe; then return 0; fi
    sleep 0.3
  done
  echo "no probe traffic reached the sink within ${READY_TIMEOUT} s: $(tail -n 5 "$logf" 2>/dev/null | tr '\n"\\' '   ' | cut -c1-600)"
  return 1
}

# Busy percent of the whole machine over 0.5 s, from /proc/stat.
machine_busy_pct() {
  local -a a b
  read -r -a a < /proc/stat; sleep 0.5; read -r -a b < /proc/stat
  local i tot=0 idle=0
  for (( i = 1; i < ${#a[@]} && i <= 8; i++ )); do tot=$(( tot + b[i] - a[i] )); done
  idle=$(( b[4] - a[4] + b[5] - a[5] ))
  echo $(( tot > 0 ? 100 - idle * 100 / tot : 0 ))
}

# Waits up to QUIET_WAIT s for the machine to be mostly idle (other people's builds and tests
# on a shared box skew a run badly).
wait_quiet() {
  (( SECONDS < BUDGET )) || return 0
  local deadline=$(( SECONDS + QUIET_WAIT )) busy
  while :; do
    busy=$(machine_busy_pct)
    (( busy <= 10 )) && return 0
    if (( SECONDS >= deadline )); then log "machine still ${busy}% busy; measuring anyway"; return 0; fi
  done
}

# Measures one run of one case while its forwarder is up; sets MEASURE_JSON. A run during
# which outside load took more than DISTURBED_PCT of the window from the generator or the
# forwarder is measured again, up to RETRIES times; the last attempt is kept either way.
# LAST_PPS: what reached the sink per second in the last window (mem1m derives its rates
# from sluiceRing's saturation figure).
LAST_PPS=0
measure() { # CASE R
  local name=$1 r=$2 genout="$RUN/gen.$PHASE.$1.$2.json" latout="$RUN/lat.$PHASE.$1.$2.json" attempt load
  local sink_pid="" retries=$RETRIES
  declare -gA SNAP_A SNAP_B
  (( SECONDS < BUDGET )) || retries=0
  for (( attempt = 0; attempt <= retries; attempt++ )); do
    wait_quiet
    if [[ $LATENCY == 1 ]]; then
      # On the generator's CPU: at 10 kpps it is mostly idle there, and the kernel stamps
      # frames on receive, so this process's own scheduling is not in the figure.
      ip netns exec "$LAB_S" taskset -c "$GEN_CPU" "$BUILD/lat-sink" -a "$LAB_VIP" -p "$PORT" \
        -w "$WARMUP" -t $(( WARMUP + WINDOW )) > "$latout" 2> "$RUN/lat-sink.log" &
      sink_pid=$!
      sleep 0.2
    fi
    $(gen_cmd "$GEN_COUNT" "$GEN_SECONDS" "$RATE") > "$genout" &
    GEN_PID=$!
    FWD_PIDS=()
    if [[ -n "$FWD_PGID" ]]; then mapfile -t FWD_PIDS < <(group_pids "$FWD_PGID"); fi
    nap "$WARMUP"
    SNAP_A=(); snapshot SNAP_A
    nap "$WINDOW"
    SNAP_B=(); snapshot SNAP_B
    wait "$GEN_PID" || log "generator exited non-zero in $name"
    GEN_PID=""
    if [[ -n $sink_pid ]]; then wait "$sink_pid" || log "lat-sink exited non-zero in $name"; sink_pid=""; fi
    load=$(outside_load_pct SNAP_A SNAP_B)
    (( load <= DISTURBED_PCT )) && break
    (( attempt < retries )) && log "$name: outside load took ${load}% of the window; measuring again"
  done
  local us=$(( ${SNAP_B[t]/./} - ${SNAP_A[t]/./} ))
  LAST_PPS=$(( (SNAP_B[sinkUdp] - SNAP_A[sinkUdp]) * 1000000 / (us > 0 ? us : 1) ))
  local lat=null
  if [[ $LATENCY == 1 ]]; then lat=$(grep '^{' "$latout" 2>/dev/null || echo null); fi
  MEASURE_JSON="\"attempts\":$(( attempt > retries ? attempt : attempt + 1 )),\"start\":$(snapshot_json SNAP_A),\"end\":$(snapshot_json SNAP_B),\"generator\":$(grep "^{" "$genout" 2>/dev/null || echo null),\"latency\":$lat"
}

write_raw() { # CASE R BODY
  printf '{"phase":"%s","phaseSettings":{"flows":%s,"rateLimit":%s,"generatorBatch":%s,"latency":%s},"case":"%s","repeat":%s,%s}\n' \
    "$PHASE" "$FLOWS" "$RATE" "$GEN_BATCH" "$([[ $LATENCY == 1 ]] && echo true || echo false)" "$1" "$2" "$3" \
    > "$RUN/raw/$PHASE.$1.$2.json"
}

json_str() { printf '%s' "$1" | tr '\n"\\' '   '; }

# ---- cases ------------------------------------------------------------------------------
run_kernel() { # R
  lab_kernel_forwarding_on
  local why
  if why=$(wait_forwarding "" /dev/null); then
    measure kernel "$1"
    write_raw kernel "$1" "$MEASURE_JSON"
  else
    write_raw kernel "$1" "\"error\":\"$(json_str "$why")\""
  fi
  lab_kernel_forwarding_off
}

run_cref() { # R
  local logf="$RUN/$PHASE.cref.$1.log" outf="$RUN/$PHASE.cref.$1.json"
  setsid ip netns exec "$LAB_F" taskset -c "$FWD_CPU" "$BUILD/ref-fwd" -i "$LAB_FI_IF" -o "$LAB_FE_IF" \
    -m "$LAB_S_MAC" -v "$LAB_VIP" -B "$BUFFER_MIB" -s "$SNAPLEN" -t "$CASE_BOUND" \
    > "$outf" 2> "$logf" &
  FWD_PGID=$!
  local pid=$FWD_PGID why
  if why=$(wait_forwarding "$pid" "$logf"); then
    measure cref "$1"
    stop_forwarder
    write_raw cref "$1" "$MEASURE_JSON,\"forwarder\":$(head -n 1 "$outf" 2>/dev/null | grep '^{' || echo null)"
  else
    stop_forwarder
    write_raw cref "$1" "\"error\":\"$(json_str "$why")\""
  fi
}

# Sluice's own counters (non-zero sluice_* samples, not the process metrics) as JSON, or null.
METRICS_URL=http://127.0.0.1:9180/metrics
scrape_sluice_metrics() {
  ip netns exec "$LAB_F" timeout 5 node "$HERE/sluice-probe.mjs" metrics "$METRICS_URL" 2>/dev/null | grep '^{' || echo null
}

# Waits (at most 15 s) until Sluice has taken every frame the generator sent from its ring.
wait_drained() {
  ip netns exec "$LAB_F" node "$HERE/sluice-probe.mjs" drained "$METRICS_URL" 15 \
    || log "Sluice still forwarding a backlog 15 s after the generator stopped"
}

# Writes Sluice's config for one case to FILE.
sluice_config() { # FILE ENGINE MPTCP WORKERS CAPACITY
  local conf=$1 engine=$2 mptcp=$3 workers=$4 capacity=$5 syn_service=""
  if [[ $capacity != default ]]; then
    # mem1m: a TCP service on the same VIP takes the spoofed SYNs once the UDP flows fill the table.
    syn_service=',
    { "name": "syn", "vip": "'"$LAB_VIP"'", "port": 80, "protocol": "tcp", "forwarding": "dsr-l2",
      "backends": [{ "address": "'"$LAB_S_IP"'", "weight": 1 }] }'
  fi
  cat > "$conf" <<CONF
{
  "interface": "$LAB_FI_IF",
  "egressInterface": "$LAB_FE_IF",
  "services": [
    {
      "name": "bench",
      "vip": "$LAB_VIP",
      "port": $PORT,
      "protocol": "$PROTO",
$([[ $PROTO == tcp ]] && echo "      \"mptcp\": $mptcp,")
      "forwarding": "dsr-l2",
      "backends": [{ "address": "$LAB_S_IP", "weight": 1 }]
    }$syn_service
  ],
$([[ $capacity != default ]] && echo "  \"flowTable\": { \"capacity\": $capacity },")
$([[ $workers != 1 ]] && echo "  \"dataplane\": { \"workers\": $workers },")
  "capture": { "engine": "$engine", "bufferMiB": $BUFFER_MIB },
  "metrics": { "listen": "127.0.0.1:9180" },
  "admin": { "socket": "$RUN/admin.sock" },
  "log": { "level": "warn" }
}
CONF
}

# Starts Sluice with CONF in the forwarder namespace (FWD_PGID), waits until its data plane is
# up and records its idle memory in IDLE_MEM_JSON (before any traffic: the probe comes after).
# Prints why on failure.
start_sluice() { # CONF LOGFILE [CPUS]
  rm -f "$RUN/admin.sock"
  (cd "$ROOT" && exec setsid ip netns exec "$LAB_F" taskset -c "${3:-$FWD_CPU}" node dist/src/cli.js run --config "$1") \
    > "$2" 2>&1 &
  FWD_PGID=$!
  IDLE_MEM_JSON=null
  if ! ip netns exec "$LAB_F" node "$HERE/sluice-probe.mjs" ready "$METRICS_URL" "$READY_TIMEOUT"; then
    echo "data plane not up within ${READY_TIMEOUT} s: $(tail -n 5 "$2" 2>/dev/null | tr '\n"\\' '   ' | cut -c1-600)"
    return 1
  fi
  sleep 1 # let start-up allocations settle
  # The control process (the pid started above; its data plane, spawned at start, keeps the
  # forwarder's CPUs) may run elsewhere, as an operator gives the data plane a core of its own.
  if [[ -n "$CONTROL_CPU" ]]; then taskset -a -p -c "$CONTROL_CPU" "$FWD_PGID" > /dev/null; fi
  IDLE_MEM_JSON=$(group_mem_json "$FWD_PGID")
}

# "skipped" body for write_raw when `sluice check` rejects CONF (e.g. a key this tree does not
# know yet), or nothing when it accepts it.
sluice_check() { # CONF
  local out
  # In the forwarder namespace, where the config's interfaces exist.
  if out=$(cd "$ROOT" && ip netns exec "$LAB_F" node dist/src/cli.js check "$1" 2>&1); then return 0; fi
  echo "\"skipped\":\"config rejected: $(json_str "$out" | cut -c1-400)\""
}

run_sluice() { # CASE R ENGINE [MPTCP] [WORKERS]
  local name=$1 r=$2 engine=$3 mptcp=${4:-true} workers=${5:-1}
  local logf="$RUN/$PHASE.$name.$r.log" conf="$RUN/$name.json"
  if [[ ! -f "$ROOT/dist/src/cli.js" ]]; then
    write_raw "$name" "$r" "\"error\":\"dist/src/cli.js not found: Sluice is not built (npm run build)\""
    return 0
  fi
  sluice_config "$conf" "$engine" "$mptcp" "$workers" default
  local skipped; skipped=$(sluice_check "$conf")
  if [[ -n $skipped ]]; then
    log "$name: ${skipped:0:200}"
    write_raw "$name" "$r" "$skipped"
    return 0
  fi
  local why
  # start_sluice runs in this shell (it sets FWD_PGID and IDLE_MEM_JSON); its reason goes to a file.
  local cpus=$FWD_CPU
  if [[ $workers != 1 ]]; then cpus=$WORKERS_CPUS; fi
  if ! start_sluice "$conf" "$logf" "$cpus" > "$RUN/why"; then
    why=$(cat "$RUN/why")
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"$(json_str "$why")\""
    return 0
  fi
  local pid=$FWD_PGID idle=$IDLE_MEM_JSON
  if why=$(wait_forwarding "$pid" "$logf"); then
    # Isolation: /metrics and the admin API keep answering while the data plane is flooded.
    local probef="$RUN/$PHASE.$name.$r.isolation.json"
    ip netns exec "$LAB_F" timeout $(( WARMUP + WINDOW + 15 )) node "$HERE/isolation-probe.mjs" \
      "$METRICS_URL" "$RUN/admin.sock" $(( WARMUP + WINDOW )) 100 > "$probef" 2>/dev/null &
    local probe_pid=$!
    measure "$name" "$r"
    wait "$probe_pid" 2>/dev/null || true
    if [[ $name == sluiceRing && $PHASE == pps10k ]]; then SAT_RING_PPS=$LAST_PPS; fi
    local isolation; isolation=$(grep '^{' "$probef" 2>/dev/null || echo null)
    if alive "$pid"; then
      local metrics mem; metrics=$(scrape_sluice_metrics); mem=$(group_mem_json "$pid")
      stop_forwarder
      write_raw "$name" "$r" "$MEASURE_JSON,\"sluiceMetrics\":$metrics,\"isolation\":$isolation,\"memory\":{\"idle\":$idle,\"afterWindow\":$mem},\"workers\":$workers"
    else
      stop_forwarder
      write_raw "$name" "$r" "$MEASURE_JSON,\"warning\":\"Sluice exited during the measurement: $(json_str "$(tail -n 5 "$logf")")\",\"memory\":{\"idle\":$idle},\"workers\":$workers"
    fi
  else
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"$(json_str "$why")\",\"memory\":{\"idle\":$idle}"
  fi
}

# mem1m, one Sluice: idle memory; then MEM_FLOWS distinct UDP 5-tuples (MEM_ADDRS source
# addresses x MEM_FLOWS/MEM_ADDRS ports), MEM_CYCLES times over, below saturation so that
# capture drops do not hide flows: memory over idle, live flows, evictions; then, with that
# table full, spoofed TCP SYNs from 64 x 55,000 source address/port pairs (every packet a new
# flow) at SYN_RATE: capture drops and flows created per second.
SAT_RING_PPS=0
run_sluice_mem() { # R
  local name=sluiceMem r=$1 logf="$RUN/$PHASE.sluiceMem.$1.log" conf="$RUN/sluiceMem.json"
  if [[ ! -f "$ROOT/dist/src/cli.js" ]]; then
    write_raw "$name" "$r" "\"error\":\"dist/src/cli.js not found: Sluice is not built (npm run build)\""
    return 0
  fi
  local two_thirds=$(( SAT_RING_PPS * 2 / 3 ))
  local mem_rate=${BENCH_MEM_RATE:-$(( two_thirds > 60000 ? two_thirds : 60000 ))}
  local syn_rate=${BENCH_SYN_RATE:-$(( two_thirds > 0 ? two_thirds : 100000 ))}
  local rate_from="2/3 of sluiceRing pps10k ($SAT_RING_PPS pps)"
  (( two_thirds > 0 )) || rate_from="default: no sluiceRing pps10k figure in this run"
  [[ -z ${BENCH_SYN_RATE:-} ]] || rate_from="BENCH_SYN_RATE"
  sluice_config "$conf" ring true 1 "$MEM_CAPACITY"
  local why
  if ! start_sluice "$conf" "$logf" > "$RUN/why"; then
    why=$(cat "$RUN/why")
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"$(json_str "$why")\""
    return 0
  fi
  local pid=$FWD_PGID at_start=$IDLE_MEM_JSON idle
  # Idle memory is what the processes hold once start-up work (module compile, the optimizing
  # compiler's first passes) is over, not 1 s after start: measured at start, idle grew for about
  # a minute. The fill's "over idle" is taken against this settled figure.
  log "$name: idle for ${IDLE_SETTLE} s before measuring idle memory"
  nap "$IDLE_SETTLE"
  idle=$(group_mem_json "$pid")
  idle="${idle%\}},\"settledSeconds\":$IDLE_SETTLE,\"atStart\":$at_start}"
  FLOWS=$MEM_FLOWS GEN_ADDRS=$MEM_ADDRS GEN_SRC=10.98.1.64
  if ! why=$(wait_forwarding "$pid" "$logf"); then
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"$(json_str "$why")\",\"memory\":{\"idle\":$idle}"
    GEN_SRC="" GEN_ADDRS=1
    return 0
  fi
  # Fill: every flow MEM_CYCLES times; bounded by count and by 90 s.
  local fill_count=$(( MEM_FLOWS * MEM_CYCLES )) fill_s
  fill_s=$(( fill_count / mem_rate + 2 )); (( fill_s <= 90 )) || fill_s=90
  log "$name: $MEM_FLOWS flows x $MEM_CYCLES at $mem_rate pps (${fill_s} s at most)"
  local m0 m1 fillgen; m0=$(scrape_sluice_metrics)
  fillgen=$($(gen_cmd "$fill_count" "$fill_s" "$mem_rate")) || fillgen=null
  # A Sluice behind the generator still forwards the ring's backlog: read the table after it.
  wait_drained
  m1=$(scrape_sluice_metrics)
  # Frames dropped at capture while filling (the first pass makes every frame a new flow, the
  # forwarder's dearest work) leave flows uncreated, and a table with fewer flows does not
  # measure the figure. The whole set goes again at half the rate, at most twice, until 99% of
  # the flows are live; the passes are recorded (fill.topUps).
  local topups=0 live topup_rate=$(( mem_rate / 2 )) topup_s
  topup_s=$(( MEM_FLOWS / topup_rate + 2 )); (( topup_s <= 60 )) || topup_s=60
  live=$(node -e 'const m = JSON.parse(process.argv[1] || "null"); console.log(Math.floor(m?.sluice_flows_active ?? 0))' "$m1")
  while (( live * 100 < MEM_FLOWS * 99 && topups < 2 )); do
    topups=$(( topups + 1 ))
    log "$name: $live of $MEM_FLOWS flows live after the fill; sending them again at $topup_rate pps (pass $topups)"
    $(gen_cmd "$MEM_FLOWS" "$topup_s" "$topup_rate") >/dev/null || true
    wait_drained
    m1=$(scrape_sluice_metrics)
    live=$(node -e 'const m = JSON.parse(process.argv[1] || "null"); console.log(Math.floor(m?.sluice_flows_active ?? 0))' "$m1")
  done
  local full; full=$(group_mem_json "$pid")
  # New flows into the full table: spoofed SYNs, measured like any other window.
  local save_port=$PORT save_mode=$GEN_MODE save_rate=$RATE
  PORT=80 GEN_MODE=syn FLOWS=3520000 GEN_ADDRS=64 GEN_SRC=10.98.1.128 RATE=$syn_rate
  log "$name: SYNs at $syn_rate pps into the full table"
  # One attempt only: a second would find the table already churned by the first, and the
  # counters read around the window would hold both attempts' frames against one's SYNs sent.
  local s0 s1 save_retries=$RETRIES; s0=$(scrape_sluice_metrics)
  RETRIES=0 measure "$name" "$r"
  RETRIES=$save_retries
  wait_drained
  s1=$(scrape_sluice_metrics)
  if alive "$pid"; then
    local after; after=$(group_mem_json "$pid")
    stop_forwarder
    write_raw "$name" "$r" "$MEASURE_JSON,\"memory\":{\"idle\":$idle,\"full\":$full,\"afterSyn\":$after},\"fill\":{\"flows\":$MEM_FLOWS,\"addresses\":$MEM_ADDRS,\"cycles\":$MEM_CYCLES,\"capacity\":$MEM_CAPACITY,\"rate\":$mem_rate,\"topUps\":$topups,\"topUpRate\":$topup_rate,\"generator\":$fillgen,\"metricsBefore\":$m0,\"metricsAfter\":$m1},\"syn\":{\"rate\":$syn_rate,\"rateFrom\":\"$rate_from\",\"metricsBefore\":$s0,\"metricsAfter\":$s1}"
  else
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"Sluice exited during mem1m: $(json_str "$(tail -n 5 "$logf")")\",\"memory\":{\"idle\":$idle,\"full\":$full}"
  fi
  # write_raw recorded the SYN window's generator settings; back to the phase's.
  PORT=$save_port GEN_MODE=$save_mode RATE=$save_rate FLOWS=$MEM_FLOWS GEN_SRC="" GEN_ADDRS=1
}

# Generator settings and cases of one phase (see the header).
set_phase() { # PHASE
  PHASE=$1 RATE=0 GEN_BATCH=$BATCH_DEFAULT GEN_ADDRS=1 GEN_SRC="" LATENCY=0
  case "$1" in
    pps1) FLOWS=1 PHASE_CASES="kernel cref sluiceRing sluiceRing2" ;;
    pps10k) FLOWS=10000 PHASE_CASES="kernel cref sluice sluiceRing sluiceRing2 sluiceCap" ;;
    cpu100k) FLOWS=10000 RATE=$CPU_RATE PHASE_CASES="kernel cref sluiceRing sluiceRing2" ;;
    # One frame per send, so each is stamped when it leaves and none queues behind a batch.
    lat10k) FLOWS=1024 RATE=$LAT_RATE GEN_BATCH=1 LATENCY=1 PHASE_CASES="kernel cref sluiceRing sluiceRing2" ;;
    mem1m) FLOWS=$MEM_FLOWS PHASE_CASES="sluiceMem" ;;
    custom) FLOWS=$CUSTOM_FLOWS RATE=$CUSTOM_RATE PHASE_CASES=$CASES_FILTER ;;
  esac
  if [[ -n $CASES_FILTER && $1 != custom ]]; then
    local c keep=""
    for c in $PHASE_CASES; do
      if [[ " $CASES_FILTER " == *" $c "* ]]; then keep+="$c "; fi
    done
    # The transmit-path cases are in no default list: they run where BENCH_CASES names them.
    if [[ $1 != mem1m ]]; then
      for c in sluiceTxRing sluiceBypass sluiceTxRingBypass; do
        if [[ " $CASES_FILTER " == *" $c "* ]]; then keep+="$c "; fi
      done
    fi
    PHASE_CASES=${keep% }
  fi
}

ALL_CASES=""
for ph in $PHASES; do
  set_phase "$ph"
  ALL_CASES+="$ph:${PHASE_CASES// /,} "
  reps=$REPEAT
  [[ $ph == lat10k ]] && reps=$LAT_REPEAT
  for (( r = 1; r <= reps; r++ )); do
    for c in $PHASE_CASES; do
      log "phase $ph, case $c (run $r/$reps, ${SECONDS} s into the run): ${WARMUP} s warm-up + ${WINDOW} s window"
      case "$c" in
        kernel) run_kernel "$r" ;;
        cref) run_cref "$r" ;;
        sluice) run_sluice sluice "$r" batch ;;
        sluiceRing) run_sluice sluiceRing "$r" ring ;;
        sluiceRing2) run_sluice sluiceRing2 "$r" ring true 2 ;;
        sluiceCap) run_sluice sluiceCap "$r" cap ;;
        # The engine reads these switches at start (src/dataplane/tx-path.ts).
        sluiceTxRing) SLUICE_TX=ring run_sluice sluiceTxRing "$r" ring ;;
        sluiceBypass) SLUICE_QDISC_BYPASS=1 run_sluice sluiceBypass "$r" ring ;;
        sluiceTxRingBypass) SLUICE_TX=ring SLUICE_QDISC_BYPASS=1 run_sluice sluiceTxRingBypass "$r" ring ;;
        sluiceNoMptcp) run_sluice sluiceNoMptcp "$r" batch false ;;
        sluiceMem) run_sluice_mem "$r" ;;
      esac
    done
  done
done

# ---- report -----------------------------------------------------------------------------
cat > "$RUN/settings.json" <<EOF
{
  "warmupSeconds": $WARMUP, "windowSeconds": $WINDOW, "repeat": $REPEAT, "latencyRepeat": $LAT_REPEAT,
  "phases": "$PHASES", "cases": "${ALL_CASES% }", "protocol": "$PROTO", "generatorBatch": $BATCH_DEFAULT,
  "cpuRate": $CPU_RATE, "latencyRate": $LAT_RATE, "memFlows": $MEM_FLOWS, "memCapacity": $MEM_CAPACITY,
  "wallSeconds": $SECONDS, "userHz": $(getconf CLK_TCK), "workersCpus": "$WORKERS_CPUS",
  "frameBytes": 60, "frameBytesWithFcs": 64,
  "generatorCpu": $GEN_CPU, "forwarderCpu": $FWD_CPU,
  "capture": { "snaplen": $SNAPLEN, "bufferMiB": $BUFFER_MIB, "immediate": true, "filter": "udp and dst host $LAB_VIP" },
  "lab": { "id": "$LAB_ID", "topology": "split: $LAB_G_IF -> $LAB_FI_IF | $LAB_FE_IF -> $LAB_S_IF", "vip": "$LAB_VIP" }
}
EOF
node "$HERE/report.mjs" "$RUN" "$OUT"

# ---- plain path before/after issue 9 (in-process, no lab; bounded: about 6 rounds x 4 variants x 1 s) ----
# The forwarder of older main-line commits and of this tree on the same plain UDP frames, in
# one run (native-bench/plain-path.bench.ts); BENCH_PLAIN=0 skips it.
if [[ "${BENCH_PLAIN:-1}" == 1 ]]; then
  log "plain path: forwarder before/after issue 9 (native-bench/results/plain-path.json)"
  (cd "$ROOT" && PLAIN_BENCH_ROUNDS=$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 3 || echo 6) timeout 300 node dist/native-bench/plain-path.bench.js) || log "plain path bench failed (the pps figures above stand)"
fi
