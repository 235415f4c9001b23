#!/usr/bin/env bash
# Spool benchmark of edgelink: how fast a backlog spooled while the broker was down
# drains once it is back (with live data flowing at the same time), and what each fsync
# policy costs when everything goes to disk. See bench/README.md, "Spool benchmark".
#
#   bench/spool_bench.sh [BUILD_DIR]          (default /work/main/build)
#
# Environment (defaults in brackets):
#   BACKLOG        points sent while the broker is down [1000000]
#   LIVE_RATE      live points/s offered while the backlog drains [20000]
#   FILL_RATE      points/s at which the backlog is sent; 0: as fast as edgelink reads [0]
#   FILL_STALL     s without edgelink reading an app before the fill gives up [10]
#   APPS           apps = streams [4]
#   DRAIN_FSYNC    [spool] fsync of the drain phase's edgelink [batch]
#   DRAIN_TIMEOUT  s before the drain is given up [150]
#   STALL          s without a backlog point before the drain is given up [30]
#   FSYNC_POLICIES fsync policies measured with the broker down ["batch interval never"]
#   DURATION       s per fsync/memory relay run [6]
#   WARMUP         s of each run excluded from the rate [2]
#   SPOOL_MAX_BYTES   [spool] max_bytes [4294967296]: large enough that no run drops
#   MAX_MEMORY_BYTES  [spool] max_memory_bytes [16777216], as run_bench.sh (drain phase, memory run)
#   FSYNC_MAX_MEMORY  [spool] max_memory_bytes of the fsync runs [16777216], as a real gateway:
#                  the apps are paused while the disk writer is behind and resumed as it
#                  catches up (before 90ab60b they stayed paused; 1 GiB was the workaround)
#   PHASES         which parts to run ["drain fsync"]
#   NICE           e.g. -10 (root only): mosquitto, edgelink and relay_bench at that nice level
#   RELAY_BENCH, EDGELINK   other binaries [BUILD_DIR/relay_bench, BUILD_DIR/edgelink]
#   KEEP=1         keep the temp dir (configs, logs, status documents, raw results)
set -euo pipefail

BUILD=${1:-/work/main/build}
EDGELINK=${EDGELINK:-$BUILD/edgelink}
RELAY_BENCH=${RELAY_BENCH:-$BUILD/relay_bench}
BACKLOG=${BACKLOG:-1000000}
LIVE_RATE=${LIVE_RATE:-20000}
FILL_RATE=${FILL_RATE:-0}
FILL_STALL=${FILL_STALL:-10}
FSYNC_MAX_MEMORY=${FSYNC_MAX_MEMORY:-16777216}
APPS=${APPS:-4}
DRAIN_FSYNC=${DRAIN_FSYNC:-batch}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-150}
STALL=${STALL:-30}
FSYNC_POLICIES=${FSYNC_POLICIES:-batch interval never}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
SPOOL_MAX_BYTES=${SPOOL_MAX_BYTES:-4294967296}
MAX_MEMORY_BYTES=${MAX_MEMORY_BYTES:-16777216}
PHASES=${PHASES:-drain fsync}
NICE=${NICE:-0}
HERE=$(cd "$(dirname "$0")" && pwd)

for bin in "$EDGELINK" "$RELAY_BENCH"; do
  [[ -x $bin ]] || { echo "spool_bench: $bin is missing or not executable" >&2; exit 2; }
done
command -v mosquitto >/dev/null || { echo "spool_bench: mosquitto is not installed" >&2; exit 2; }

TMP=$(mktemp -d /tmp/edgelink-spool-bench.XXXXXX)
MOSQ_PID="" EDGELINK_PID="" BENCH_PID=""
stop_pid() {  # PID [seconds]: SIGTERM, wait, SIGKILL; prints how long the stop took
  local pid=$1 limit=${2:-10} t0 t1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || { echo 0; return; }
  t0=$(date +%s.%N)
  kill -CONT "$pid" 2>/dev/null || true  # a stopped edgelink (drain phase) must see SIGTERM
  kill "$pid" 2>/dev/null || true
  for _ in $(seq $((limit * 20))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "spool_bench: pid $pid did not stop within ${limit}s of SIGTERM; SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}
cleanup() {
  local pid
  for pid in $BENCH_PID $EDGELINK_PID $MOSQ_PID; do stop_pid "$pid" 5 >/dev/null; done
  if [[ ${KEEP:-0} == 1 ]]; then echo "spool_bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports: bound to port 0 together (so they differ), then released.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}
read -r -a PORTS <<<"$(free_ports $((APPS + 2)))"
BROKER_PORT=${PORTS[0]}
DEAD_PORT=${PORTS[1]}  # nothing listens here: the broker of the fsync runs
APP_PORTS=("${PORTS[@]:2}")
APP_PORT_LIST=$(IFS=,; echo "${APP_PORTS[*]}")

cat >"$TMP/mosquitto.conf" <<EOF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence false
max_queued_messages 100000
max_queued_bytes 0
log_dest file $TMP/mosquitto.log
user $(id -un)
log_type error
log_type warning
EOF

# edgelink_conf FILE STATE_DIR BROKER_PORT FSYNC [MAX_MEMORY_BYTES]
edgelink_conf() {
  {
    echo 'project_id = "bench"'
    echo 'device_id = "gw-bench"'
    echo "persistence_path = \"$2\""
    echo
    echo '[broker]'
    echo 'host = "127.0.0.1"'
    echo "port = $3"
    echo 'max_inflight = 100'
    echo 'reconnect_min = 1'  # the drain starts within a second of the broker's return
    echo 'reconnect_max = 1'
    for i in "${!APP_PORTS[@]}"; do
      echo
      echo "[tcpapps.a$i]"
      echo "port = ${APP_PORTS[$i]}"
    done
    for i in "${!APP_PORTS[@]}"; do
      echo
      echo "[streams.s$i]"
      echo 'batch_size = 100'
      echo 'flush_period = 1'
    done
    echo
    echo '[spool]'
    echo "max_bytes = $SPOOL_MAX_BYTES"
    echo "max_memory_bytes = ${5:-$MAX_MEMORY_BYTES}"
    echo "fsync = \"$4\""
    echo
    echo '[log]'
    echo 'level = "info"'
  } >"$1"
  "$EDGELINK" check -c "$1" >/dev/null
}

status() { "$EDGELINK" status -c "$1" --json 2>/dev/null; }
# json_get FILE|- EXPR: a Python expression over the status document `s`.
json_get() { python3 -c 'import json, sys; s = json.load(open(sys.argv[1]) if sys.argv[1] != "-" else sys.stdin); print(eval(sys.argv[2]))' "$@"; }
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

start_mosquitto() {
  nice -n "$NICE" mosquitto -c "$TMP/mosquitto.conf" &
  MOSQ_PID=$!
  python3 -c '
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)' "$BROKER_PORT" || { echo "spool_bench: mosquitto did not start" >&2; exit 1; }
}

# start_edgelink CONF LOG: waits until its status answers.
start_edgelink() {
  nice -n "$NICE" "$EDGELINK" run -c "$1" >"$2" 2>&1 &
  EDGELINK_PID=$!
  for _ in $(seq 100); do
    status "$1" >/dev/null && return 0
    kill -0 "$EDGELINK_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "spool_bench: edgelink did not start; its log:" >&2
  cat "$2" >&2
  exit 1
}

# wait_state CONF connected|down
wait_state() {
  for _ in $(seq 100); do
    local st
    st=$(status "$1" | json_get - 's["broker"]["state"]' 2>/dev/null || true)
    if [[ $2 == connected && $st == connected ]] || [[ $2 == down && -n $st && $st != connected ]]; then return 0; fi
    sleep 0.1
  done
  echo "spool_bench: edgelink's broker state did not become $2" >&2
  exit 1
}

bench() { nice -n "$NICE" "$RELAY_BENCH" --project bench --device gw-bench "$@"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)
ENV_ARGS=()

# ---- 1. backlog drain ----------------------------------------------------------------
if [[ " $PHASES " == *" drain "* ]]; then
  CONF=$TMP/drain.toml
  edgelink_conf "$CONF" "$TMP/drain-state" "$BROKER_PORT" "$DRAIN_FSYNC"
  start_mosquitto
  start_edgelink "$CONF" "$TMP/drain-edgelink.log"
  wait_state "$CONF" connected
  echo "drain: edgelink connected; stopping the broker" >&2
  stop_pid "$MOSQ_PID" >/dev/null
  MOSQ_PID=""
  wait_state "$CONF" down

  echo "drain: sending $BACKLOG points over $APPS apps with the broker down" >&2
  T_FILL=$(date +%s.%N)
  bench --mode fill --app-ports "$APP_PORT_LIST" --points "$BACKLOG" --rate "$FILL_RATE" --drain "$FILL_STALL" \
    | tee "$TMP/fill.out" || true
  FILL_SENT=$(awk '$1 == "result" && $2 == "fill_points_sent" { printf "%d", $3 }' "$TMP/fill.out")
  FILL_SENT=${FILL_SENT:-0}
  # Every app's points in batches of 100: that many records must be on disk.
  EXPECT_RECORDS=$(python3 -c 'import sys; n, a = int(sys.argv[1]), int(sys.argv[2]); print(sum(-(-(n // a + (i < n % a)) // 100) for i in range(a)))' "$BACKLOG" "$APPS")
  # Settled: every point counted, every batch on disk, nothing being written. Gives up
  # when nothing changed for 5 s (a stalled fill never settles).
  on_disk=0 prev="" same=0
  for _ in $(seq 1200); do
    status "$CONF" >"$TMP/status-filled.json" || true
    cur=$(json_get "$TMP/status-filled.json" '" ".join(str(v) for v in (sum(x["points"] for name, x in s["streams"].items()
      if name.startswith("s")), s["spool"]["records"], s["spool"]["backlog"], s["spool"]["writing"]))' 2>/dev/null || true)
    read -r pts recs backlog writing <<<"${cur:-0 0 0 1}"
    if [[ $pts == "$BACKLOG" && $recs == "$EXPECT_RECORDS" && $backlog == "$EXPECT_RECORDS" && $writing == 0 && $cur == "$prev" ]]; then
      on_disk=1
      break
    fi
    if [[ $cur == "$prev" ]]; then same=$((same + 1)); else same=0; fi
    [[ $same -ge 20 ]] && break
    prev=$cur
    sleep 0.25
  done
  T_ON_DISK=$(awk -v a="$T_FILL" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  if [[ $on_disk != 1 ]]; then
    echo "spool_bench: the backlog did not settle on disk (points, records, backlog, writing: $cur;" \
         "expected $BACKLOG points, $EXPECT_RECORDS records); outbox and apps:" >&2
    json_get "$TMP/status-filled.json" '(s["outbox"], [(name, a["points"], a["pauses"]) for name, a in s["apps"].items()])' >&2 || true
  fi
  # The drain waits for what the apps managed to send (all of it unless the fill stalled).
  DRAIN_BACKLOG=$FILL_SENT
  SPOOL_DU=$(du -sb "$TMP/drain-state/spool" | cut -f1)
  FILLED_RSS=$(kib "$EDGELINK_PID" VmRSS)
  FILLED_HWM=$(kib "$EDGELINK_PID" VmHWM)
  echo "drain: $cur (points, records, backlog, writing) after ${T_ON_DISK}s; spool dir $SPOOL_DU bytes;" \
       "edgelink VmRSS $FILLED_RSS KiB, VmHWM $FILLED_HWM KiB" >&2

  # edgelink is stopped while the broker starts and the subscriber attaches, so that it
  # cannot publish before anyone listens (QoS 0 subscriber, no persistence); relay_bench
  # resumes it (SIGCONT) as the live load starts.
  if [[ $DRAIN_BACKLOG == 0 ]]; then echo "spool_bench: no backlog was sent; no drain" >&2; exit 1; fi
  kill -STOP "$EDGELINK_PID"
  start_mosquitto
  echo "drain: broker back; live load $LIVE_RATE points/s; waiting for $BACKLOG backlog points" >&2
  set +e
  bench --mode drain --broker-port "$BROKER_PORT" --app-ports "$APP_PORT_LIST" --backlog "$DRAIN_BACKLOG" \
    --rate "$LIVE_RATE" --resume-pid "$EDGELINK_PID" --duration "$DRAIN_TIMEOUT" --warmup 0 --drain "$STALL" \
    --watch "edgelink=$EDGELINK_PID" --watch "mosquitto=$MOSQ_PID" >"$TMP/drain.out" &
  BENCH_PID=$!
  wait "$BENCH_PID"
  DRAIN_RC=$?
  BENCH_PID=""
  set -e
  kill -CONT "$EDGELINK_PID" 2>/dev/null || true
  cat "$TMP/drain.out"
  sleep 1
  status "$CONF" >"$TMP/status-drained.json" || true
  DRAIN_HWM=$(kib "$EDGELINK_PID" VmHWM)
  DRAIN_STOP_S=$(stop_pid "$EDGELINK_PID" 15)
  EDGELINK_PID=""
  stop_pid "$MOSQ_PID" >/dev/null
  MOSQ_PID=""
  grep -E ' (warn|error|WARN|ERROR)|spool|broker' "$TMP/drain-edgelink.log" | tail -n 12 >"$TMP/drain-log-tail.txt" || true
  ENV_ARGS+=("backlog=$BACKLOG" "fill_sent=$FILL_SENT" "fill_rate=$FILL_RATE" "live_rate=$LIVE_RATE" "drain_fsync=$DRAIN_FSYNC" "drain_rc=$DRAIN_RC"
             "on_disk=$on_disk" "on_disk_s=$T_ON_DISK" "expect_records=$EXPECT_RECORDS" "spool_du=$SPOOL_DU"
             "filled_rss=$FILLED_RSS" "filled_hwm=$FILLED_HWM" "drain_hwm=$DRAIN_HWM" "drain_stop_s=$DRAIN_STOP_S")
fi

# ---- 2. fsync policy cost --------------------------------------------------------------
if [[ " $PHASES " == *" fsync "* ]]; then
  for policy in $FSYNC_POLICIES; do
    CONF=$TMP/fsync-$policy.toml
    edgelink_conf "$CONF" "$TMP/fsync-$policy-state" "$DEAD_PORT" "$policy" "$FSYNC_MAX_MEMORY"
    start_edgelink "$CONF" "$TMP/fsync-$policy-edgelink.log"
    echo "fsync $policy: relay with the broker down, ${DURATION}s (first ${WARMUP}s excluded)" >&2
    bench --mode relay --no-subscriber --broker-port "$DEAD_PORT" --app-ports "$APP_PORT_LIST" \
      --duration "$DURATION" --warmup "$WARMUP" --drain 1 --watch "edgelink=$EDGELINK_PID" >"$TMP/fsync-$policy.out" &
    BENCH_PID=$!
    # The disk writer's own rate: batches written to the spool over the steady window.
    sleep "$WARMUP"
    status "$CONF" >"$TMP/status-fsync-$policy-w0.json" || true
    W0=$(date +%s.%N)
    sleep "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print d - w }')"
    status "$CONF" >"$TMP/status-fsync-$policy-w1.json" || true
    W1=$(date +%s.%N)
    wait "$BENCH_PID" || true
    BENCH_PID=""
    cat "$TMP/fsync-$policy.out"
    echo "result fsync_${policy}_window_s $(awk -v a="$W0" -v b="$W1" 'BEGIN { print b - a }')" >>"$TMP/fsync-$policy.out"
    sleep 1
    status "$CONF" >"$TMP/status-fsync-$policy.json" || true
    echo "result fsync_${policy}_vmhwm_kib $(kib "$EDGELINK_PID" VmHWM)" >>"$TMP/fsync-$policy.out"
    echo "result fsync_${policy}_stop_s $(stop_pid "$EDGELINK_PID" 30)" >>"$TMP/fsync-$policy.out"
    EDGELINK_PID=""
    rm -rf "$TMP/fsync-$policy-state"
  done

  CONF=$TMP/memory.toml
  edgelink_conf "$CONF" "$TMP/memory-state" "$BROKER_PORT" batch
  start_mosquitto
  start_edgelink "$CONF" "$TMP/memory-edgelink.log"
  wait_state "$CONF" connected
  echo "memory: relay with the broker up, ${DURATION}s (first ${WARMUP}s excluded)" >&2
  bench --mode relay --broker-port "$BROKER_PORT" --app-ports "$APP_PORT_LIST" --duration "$DURATION" \
    --warmup "$WARMUP" --watch "edgelink=$EDGELINK_PID" --watch "mosquitto=$MOSQ_PID" | tee "$TMP/memory.out"
  status "$CONF" >"$TMP/status-memory.json" || true
  echo "result memory_vmhwm_kib $(kib "$EDGELINK_PID" VmHWM)" >>"$TMP/memory.out"
  stop_pid "$EDGELINK_PID" >/dev/null
  EDGELINK_PID=""
  stop_pid "$MOSQ_PID" >/dev/null
  MOSQ_PID=""
  ENV_ARGS+=("fsync_policies=$FSYNC_POLICIES" "duration=$DURATION" "warmup=$WARMUP" "fsync_max_memory=$FSYNC_MAX_MEMORY")
fi

python3 "$HERE/summarize.py" spool "$TMP" "phases=$PHASES" "apps=$APPS" "nproc=$(nproc)" "nice=$NICE" \
  "load_start=$LOAD_START" "load_end=$(loadavg)" "max_memory=$MAX_MEMORY_BYTES" "${ENV_ARGS[@]}"
