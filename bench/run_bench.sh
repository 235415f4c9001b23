#!/usr/bin/env bash
# End-to-end benchmark of edgelink: relay throughput, the plain-Paho ceiling, action
# round trip, CPU and memory. See bench/README.md.
#
#   bench/run_bench.sh [BUILD_DIR]          (default /work/main/build)
#
# Environment: DURATION (s, default 10), WARMUP (s, default 3), ROUNDS (relay/ceiling
# pairs, interleaved, default 2), ACTIONS (default 1000), APPS (default 4), IDLE_WAIT
# (s before reading idle RSS, default 3), MEMORY (max_memory_bytes, default 16777216 =
# edgelink's default), PRIORITIZE_LIVE (true: prioritize_live_data = true, the live-first
# policy that spills past the memory budget while connected; default false, in order),
# NICE (e.g. -10, needs root: runs mosquitto, edgelink and relay_bench at that nice
# level, so other work on a shared machine disturbs the figures less), RELAY_BENCH (path of relay_bench, default BUILD_DIR/relay_bench), KEEP=1 keeps the
# temp dir (configs, logs) for inspection. SCRAPE=1: edgelink also serves [http], and
# every round runs the relay twice, once as usual and once while wrk scrapes /metrics
# as fast as it can (one connection, keep-alive), to show what scraping costs the relay.
set -euo pipefail

BUILD=${1:-/work/main/build}
EDGELINK=${EDGELINK:-$BUILD/edgelink}
RELAY_BENCH=${RELAY_BENCH:-$BUILD/relay_bench}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ACTIONS=${ACTIONS:-1000}
APPS=${APPS:-4}
ROUNDS=${ROUNDS:-2}
IDLE_WAIT=${IDLE_WAIT:-3}
MEMORY=${MEMORY:-16777216}
PRIORITIZE_LIVE=${PRIORITIZE_LIVE:-false}
NICE=${NICE:-0}
SCRAPE=${SCRAPE:-0}

for bin in "$EDGELINK" "$RELAY_BENCH"; do
  [[ -x $bin ]] || { echo "run_bench: $bin is missing or not executable" >&2; exit 2; }
done
command -v mosquitto >/dev/null || { echo "run_bench: mosquitto is not installed" >&2; exit 2; }
[[ $SCRAPE != 1 ]] || command -v wrk >/dev/null || { echo "run_bench: SCRAPE=1 needs wrk (apt-get install wrk)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/edgelink-bench.XXXXXX)
MOSQ_PID="" EDGELINK_PID=""
cleanup() {
  local pid
  for pid in $EDGELINK_PID $MOSQ_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [[ ${KEEP:-0} == 1 ]]; then echo "run_bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports: bound to port 0 together (so they differ), then released.
read -r -a PORTS <<<"$(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' $((APPS + 2)))"
BROKER_PORT=${PORTS[0]}
HTTP_PORT=${PORTS[1]}
APP_PORTS=("${PORTS[@]:2}")
APP_PORT_LIST=$(IFS=,; echo "${APP_PORTS[*]}")

# Run as root, mosquitto would switch to user "mosquitto" and lose its log file here.
# QoS 0 messages for an online subscriber are dropped once max_queued_messages packets
# wait in its queue (default 1000); give the subscriber room for bursts.
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

{
  echo 'project_id = "bench"'
  echo 'device_id = "gw-bench"'
  echo "persistence_path = \"$TMP/state\""
  echo "prioritize_live_data = $PRIORITIZE_LIVE"
  echo
  echo '[broker]'
  echo 'host = "127.0.0.1"'
  echo "port = $BROKER_PORT"
  echo 'max_inflight = 100'
  for i in "${!APP_PORTS[@]}"; do
    echo
    echo "[tcpapps.a$i]"
    echo "port = ${APP_PORTS[$i]}"
    [[ $i == 0 ]] && echo 'actions = [{ name = "bench_ping", timeout = 30 }]'
  done
  for i in "${!APP_PORTS[@]}"; do
    echo
    echo "[streams.s$i]"
    echo 'batch_size = 100'
    echo 'flush_period = 1'
  done
  if [[ $SCRAPE == 1 ]]; then
    echo
    echo '[http]'
    echo "bind = \"127.0.0.1:$HTTP_PORT\""
  fi
  echo
  echo '[spool]'
  echo "max_memory_bytes = $MEMORY"
  echo
  echo '[log]'
  echo 'level = "warn"'
} >"$TMP/edgelink.toml"
"$EDGELINK" check -c "$TMP/edgelink.toml" >/dev/null

nice -n "$NICE" mosquitto -c "$TMP/mosquitto.conf" &
MOSQ_PID=$!
nice -n "$NICE" "$EDGELINK" run -c "$TMP/edgelink.toml" >"$TMP/edgelink.log" 2>&1 &
EDGELINK_PID=$!

# Wait until edgelink reports a broker connection.
connected=0
for _ in $(seq 100); do
  if "$EDGELINK" status -c "$TMP/edgelink.toml" --json 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["broker"]["state"] == "connected" else 1)' 2>/dev/null; then
    connected=1
    break
  fi
  sleep 0.1
done
if [[ $connected != 1 ]]; then
  echo "run_bench: edgelink did not connect to the broker; its log:" >&2
  cat "$TMP/edgelink.log" >&2
  exit 1
fi

kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
pss() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime+stime
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)

sleep "$IDLE_WAIT"
IDLE_RSS=$(kib "$EDGELINK_PID" VmRSS)
IDLE_ANON=$(kib "$EDGELINK_PID" RssAnon)
IDLE_FILE=$(kib "$EDGELINK_PID" RssFile)
IDLE_PSS=$(pss "$EDGELINK_PID")
echo "idle: edgelink VmRSS ${IDLE_RSS} KiB (anon ${IDLE_ANON}, file ${IDLE_FILE}, PSS ${IDLE_PSS})" >&2

bench() { nice -n "$NICE" "$RELAY_BENCH" --broker-port "$BROKER_PORT" --project bench --device gw-bench "$@"; }

# Relay and ceiling alternate, so a burst of foreign load on the shared machine hits
# both rather than one; the summary takes each side's best round.
CLK_TCK=$(getconf CLK_TCK)
RUN_TICKS=0 RUN_WALL=0
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS relay: $APPS apps, ${DURATION}s (first ${WARMUP}s excluded)" >&2
  T0=$(date +%s.%N)
  C0=$(cpu_ticks "$EDGELINK_PID")
  bench --mode relay --app-ports "$APP_PORT_LIST" --duration "$DURATION" --warmup "$WARMUP" \
    --watch "edgelink=$EDGELINK_PID" --watch "mosquitto=$MOSQ_PID" | tee "$TMP/relay-$round.out"
  C1=$(cpu_ticks "$EDGELINK_PID")
  T1=$(date +%s.%N)
  RUN_TICKS=$((RUN_TICKS + C1 - C0))
  RUN_WALL=$(awk -v a="$RUN_WALL" -v t0="$T0" -v t1="$T1" 'BEGIN { print a + t1 - t0 }')
  if [[ $SCRAPE == 1 ]]; then
    echo "round $round/$ROUNDS relay while wrk scrapes /metrics" >&2
    nice -n "$NICE" wrk -t1 -c1 -d"$((DURATION + 1))s" "http://127.0.0.1:$HTTP_PORT/metrics" >"$TMP/wrk-$round.out" 2>&1 &
    WRK_PID=$!
    bench --mode relay --app-ports "$APP_PORT_LIST" --duration "$DURATION" --warmup "$WARMUP" \
      --watch "edgelink=$EDGELINK_PID" --watch "mosquitto=$MOSQ_PID" | tee "$TMP/relay-scrape-$round.out"
    wait "$WRK_PID" || true
    grep -E "Requests/sec|Latency|requests in" "$TMP/wrk-$round.out" >&2 || cat "$TMP/wrk-$round.out" >&2
  fi
  echo "round $round/$ROUNDS ceiling: plain Paho publisher, ${DURATION}s (first ${WARMUP}s excluded)" >&2
  bench --mode ceiling --streams "$APPS" --duration "$DURATION" --warmup "$WARMUP" \
    --watch "mosquitto=$MOSQ_PID" | tee "$TMP/ceiling-$round.out"
done
PEAK_RSS=$(kib "$EDGELINK_PID" VmHWM)
"$EDGELINK" status -c "$TMP/edgelink.toml" --json >"$TMP/status-after-relay.json" || true
RUN_CPU=$(awk -v c="$RUN_TICKS" -v hz="$CLK_TCK" -v t="$RUN_WALL" 'BEGIN { printf "%.1f", 100 * c / hz / t }')

echo "rtt: $ACTIONS actions, one at a time, edgelink otherwise idle" >&2
sleep 1
bench --mode rtt --app-ports "${APP_PORTS[0]}" --actions "$ACTIONS" | tee "$TMP/rtt.out"
LOAD_END=$(loadavg)

python3 "$(dirname "$0")/summarize.py" "$TMP" "$ROUNDS" \
  "apps=$APPS" "duration=$DURATION" "warmup=$WARMUP" "idle_rss=$IDLE_RSS" "idle_anon=$IDLE_ANON" \
  "idle_file=$IDLE_FILE" "idle_pss=$IDLE_PSS" "peak_rss=$PEAK_RSS" "run_cpu=$RUN_CPU" \
  "load_start=$LOAD_START" "load_end=$LOAD_END" "nproc=$(nproc)" "nice=$NICE" "memory=$MEMORY" \
  "prioritize_live=$PRIORITIZE_LIVE" "scrape=$SCRAPE"
