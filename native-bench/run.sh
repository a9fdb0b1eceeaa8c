#!/usr/bin/env bash
# native-bench/run.sh: forwarded packets per second of 64-byte UDP through Sluice on one core,
# side by side in one run with the kernel's own IP forwarding and a C libpcap reference
# forwarder. Writes native-bench/results/latest.json and prints a table. Needs root.
# See native-bench/README.md for what is measured and how to read it.
#
# Environment (all optional):
#   BENCH_QUICK=1        1 s warm-up + 3 s window instead of 2 s + 8 s
#   BENCH_WARMUP=S       warm-up seconds before the window (default 2)
#   BENCH_WINDOW=S       measurement window seconds (default 8)
#   BENCH_REPEAT=N       measure every case N times, report the median (default 1)
#   BENCH_CASES="..."    subset/order of: kernel cref sluice sluiceCap (default: all four)
#   BENCH_RATE=PPS       generator rate limit, 0 = as fast as it can (default 0)
#   BENCH_FLOWS=N        distinct UDP source ports (flows) the generator cycles over (default 1024)
#   BENCH_GEN_BATCH=N    frames per sendmmsg call (default 64)
#   BENCH_OUT=FILE       where to write the JSON (default native-bench/results/latest.json)
#   BENCH_ID=ID          lab id, [0-9a-z]{1,8} (default: random)
#   BENCH_KEEP=1         keep the run directory (logs, configs, raw samples) under /tmp
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
CASES=${BENCH_CASES:-"kernel cref sluice sluiceCap"}
RATE=${BENCH_RATE:-0}
FLOWS=${BENCH_FLOWS:-1024}
GEN_BATCH=${BENCH_GEN_BATCH:-64}
OUT=${BENCH_OUT:-"$HERE/results/latest.json"}
LAB_ID=${BENCH_ID:-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
# Capture settings shared by the C reference and Sluice's defaults (src/config/types.ts).
SNAPLEN=10240
BUFFER_MIB=32

[[ "$WARMUP" =~ ^[0-9]+$ && "$WINDOW" =~ ^[1-9][0-9]*$ ]] || die "BENCH_WARMUP/BENCH_WINDOW must be whole seconds, window >= 1"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be >= 1"
[[ "$RATE" =~ ^[0-9]+$ ]] || die "BENCH_RATE must be a whole number of pps (0 = max)"
[[ "$LAB_ID" =~ ^[0-9a-z]{1,8}$ ]] || die "BENCH_ID must be 1-8 characters of [0-9a-z]"
for c in $CASES; do
  case "$c" in kernel|cref|sluice|sluiceCap) ;; *) die "unknown case '$c' in BENCH_CASES" ;; esac
done
(( WARMUP + WINDOW <= 600 )) || die "warm-up + window must be <= 600 s"

# Generator bounds: it stops after GEN_SECONDS or GEN_COUNT frames, whichever comes first.
GEN_SECONDS=$(( WARMUP + WINDOW + 1 ))
GEN_COUNT=$(( GEN_SECONDS * 5000000 ))

# ---- preconditions ----------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
for tool in ip ethtool taskset setsid cc node; do
  command -v "$tool" >/dev/null || die "'$tool' not found"
done
NPROC=$(nproc)
if (( NPROC >= 2 )); then GEN_CPU=0; FWD_CPU=1; else GEN_CPU=0; FWD_CPU=0; log "only 1 CPU: generator and forwarder share CPU0"; fi

# ---- build the C tools ------------------------------------------------------------------
mkdir -p "$BUILD" "$(dirname "$OUT")"
CFLAGS=${CFLAGS:-"-O2 -Wall -Wextra"}
# shellcheck disable=SC2086
cc $CFLAGS -o "$BUILD/gen" "$HERE/c/gen.c" || die "building gen failed"
# shellcheck disable=SC2086
cc $CFLAGS -o "$BUILD/ref-fwd" "$HERE/c/ref-fwd.c" -lpcap \
  || die "building ref-fwd failed (needs libpcap-dev: pcap/pcap.h and libpcap.so)"

# ---- run directory, cleanup -------------------------------------------------------------
RUN="/tmp/sl-bn$LAB_ID"
mkdir -p "$RUN/raw"
HOLDERS=()      # one idle process per namespace, to read its /proc/PID/net counters
FWD_PGID=""     # process group of the forwarder under test (setsid)

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
  local pgid=$FWD_PGID i
  FWD_PGID=""
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    alive "$pgid" || break
    sleep 0.1
  done
  if ! alive "$pgid"; then
    wait "$pgid" 2>/dev/null || true
    for (( ; i < 50; i++ )); do
      kill -0 -- "-$pgid" 2>/dev/null || return 0
      sleep 0.1
    done
  fi
  log "forwarder group $pgid still alive 5 s after SIGTERM: SIGKILL"
  kill -KILL -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
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
log "lab $LAB_ID up: $LAB_G -> $LAB_F -> $LAB_S"
HOLD_SECONDS=$(( 600 + ($(echo "$CASES" | wc -w) * REPEAT) * (GEN_SECONDS + READY_TIMEOUT + 15) ))
ip netns exec "$LAB_G" sleep "$HOLD_SECONDS" & G_PID=$!; HOLDERS+=("$G_PID")
ip netns exec "$LAB_F" sleep "$HOLD_SECONDS" & F_PID=$!; HOLDERS+=("$F_PID")
ip netns exec "$LAB_S" sleep "$HOLD_SECONDS" & S_PID=$!; HOLDERS+=("$S_PID")

# ---- counters (read through /proc/PID/net of each namespace's holder: no process spawned) --
# Frames the sink's IP stack took as UDP to a local address: InDatagrams + NoPorts + InErrors.
# They only count frames with the sink's MAC, a valid IPv4 header and the VIP (or the sink's
# address) as destination, so a forwarder that rewrites badly scores zero.
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

snapshot() { # -> one JSON object
  local t=$EPOCHREALTIME
  local udp; udp=$(sink_udp)
  local -a s g fin fout
  read -r -a s <<< "$(if_counters "$S_PID" "$LAB_S_IF")"
  read -r -a g <<< "$(if_counters "$G_PID" "$LAB_G_IF")"
  read -r -a fin <<< "$(if_counters "$F_PID" "$LAB_FI_IF")"
  read -r -a fout <<< "$(if_counters "$F_PID" "$LAB_FE_IF")"
  local t2=$EPOCHREALTIME
  printf '{"t":%s,"tEnd":%s,"sinkUdp":%s,"sinkRx":%s,"genTx":%s,"genTxDrop":%s,"fwdInRx":%s,"fwdInRxDrop":%s,"fwdOutTx":%s,"fwdOutTxDrop":%s}' \
    "$t" "$t2" "$udp" "${s[0]}" "${g[2]}" "${g[3]}" "${fin[0]}" "${fin[1]}" "${fout[2]}" "${fout[3]}"
}

# ---- traffic ----------------------------------------------------------------------------
gen_cmd() { # COUNT SECONDS RATE
  echo ip netns exec "$LAB_G" taskset -c "$GEN_CPU" "$BUILD/gen" -i "$LAB_G_IF" -d "$LAB_FI_MAC" \
    -S "$LAB_G_IP" -D "$LAB_VIP" -p 53 -f "$FLOWS" -b "$GEN_BATCH" -n "$1" -t "$2" -r "$3"
}

# A short, slow burst; succeeds if at least half of it reached the sink.
probe() {
  local before after
  before=$(sink_udp)
  $(gen_cmd 2000 1 20000) >/dev/null
  sleep 0.2
  after=$(sink_udp)
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

# Measures one run of one case while its forwarder is up; writes $RUN/raw/CASE.R.json.
measure() { # CASE R FORWARDER_JSON_FILE(optional, filled after stop)
  local name=$1 r=$2 genout="$RUN/gen.$1.$2.json"
  $(gen_cmd "$GEN_COUNT" "$GEN_SECONDS" "$RATE") > "$genout" &
  local gpid=$!
  sleep "$WARMUP"
  local a b
  a=$(snapshot)
  sleep "$WINDOW"
  b=$(snapshot)
  wait "$gpid" || log "generator exited non-zero in $name"
  MEASURE_JSON="\"start\":$a,\"end\":$b,\"generator\":$(cat "$genout" 2>/dev/null || echo null)"
}

write_raw() { # CASE R BODY
  printf '{"case":"%s","repeat":%s,%s}\n' "$1" "$2" "$3" > "$RUN/raw/$1.$2.json"
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
  local logf="$RUN/cref.$1.log" outf="$RUN/cref.$1.json"
  setsid ip netns exec "$LAB_F" taskset -c "$FWD_CPU" "$BUILD/ref-fwd" -i "$LAB_FI_IF" -o "$LAB_FE_IF" \
    -m "$LAB_S_MAC" -v "$LAB_VIP" -B "$BUFFER_MIB" -s "$SNAPLEN" -t $(( GEN_SECONDS + READY_TIMEOUT + 30 )) \
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

run_sluice() { # CASE R ENGINE
  local name=$1 r=$2 engine=$3
  local logf="$RUN/$name.$r.log" conf="$RUN/$name.json"
  if [[ ! -f "$ROOT/dist/src/cli.js" ]]; then
    write_raw "$name" "$r" "\"error\":\"dist/src/cli.js not found: Sluice is not built (npm run build)\""
    return 0
  fi
  cat > "$conf" <<EOF
{
  "interface": "$LAB_FI_IF",
  "egressInterface": "$LAB_FE_IF",
  "services": [
    {
      "name": "bench",
      "vip": "$LAB_VIP",
      "port": 53,
      "protocol": "udp",
      "forwarding": "dsr-l2",
      "backends": [{ "address": "$LAB_S_IP", "weight": 1 }]
    }
  ],
  "capture": { "engine": "$engine", "bufferMiB": $BUFFER_MIB },
  "metrics": { "listen": "127.0.0.1:9180" },
  "admin": { "socket": "$RUN/admin.sock" },
  "log": { "level": "warn" }
}
EOF
  rm -f "$RUN/admin.sock"
  (cd "$ROOT" && exec setsid ip netns exec "$LAB_F" taskset -c "$FWD_CPU" node dist/src/cli.js run --config "$conf") \
    > "$logf" 2>&1 &
  FWD_PGID=$!
  local pid=$FWD_PGID why
  if why=$(wait_forwarding "$pid" "$logf"); then
    measure "$name" "$r"
    if alive "$pid"; then
      stop_forwarder
      write_raw "$name" "$r" "$MEASURE_JSON"
    else
      stop_forwarder
      write_raw "$name" "$r" "$MEASURE_JSON,\"warning\":\"Sluice exited during the measurement: $(json_str "$(tail -n 5 "$logf")")\""
    fi
  else
    stop_forwarder
    write_raw "$name" "$r" "\"error\":\"$(json_str "$why")\""
  fi
}

for (( r = 1; r <= REPEAT; r++ )); do
  for c in $CASES; do
    log "case $c (run $r/$REPEAT): ${WARMUP} s warm-up + ${WINDOW} s window"
    case "$c" in
      kernel) run_kernel "$r" ;;
      cref) run_cref "$r" ;;
      sluice) run_sluice sluice "$r" batch ;;
      sluiceCap) run_sluice sluiceCap "$r" cap ;;
    esac
  done
done

# ---- report -----------------------------------------------------------------------------
cat > "$RUN/settings.json" <<EOF
{
  "warmupSeconds": $WARMUP, "windowSeconds": $WINDOW, "repeat": $REPEAT,
  "cases": "$CASES", "generatorRateLimit": $RATE, "flows": $FLOWS, "generatorBatch": $GEN_BATCH,
  "frameBytes": 60, "frameBytesWithFcs": 64,
  "generatorCpu": $GEN_CPU, "forwarderCpu": $FWD_CPU,
  "capture": { "snaplen": $SNAPLEN, "bufferMiB": $BUFFER_MIB, "immediate": true, "filter": "udp and dst host $LAB_VIP" },
  "lab": { "id": "$LAB_ID", "topology": "split: $LAB_G_IF -> $LAB_FI_IF | $LAB_FE_IF -> $LAB_S_IF", "vip": "$LAB_VIP" }
}
EOF
node "$HERE/report.mjs" "$RUN" "$OUT"
