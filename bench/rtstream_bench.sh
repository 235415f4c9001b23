#!/usr/bin/env bash
# rtstream bridge benchmark: bytes/s and line echo latency through edgelink's rtstream TCP
# bridge to demo/mcu_sim.py over a socat pty pair, against a raw echo over the same pty
# pair (no edgelink, no protocol). See bench/README.md.
#
#   bench/rtstream_bench.sh [BUILD_DIR]          (default /work/main/build)
#
# Environment knobs:
#   BYTES       payload of the throughput run, bytes (default 262144 = 256 KiB)
#   LINE_LEN    bytes per line of that payload, CR included (default 64)
#   LAT_SIZE    bytes per latency line, CR included (default 16)
#   LAT_COUNT   timed round trips per latency run (default 200)
#   LAT_WARMUP  untimed round trips before them (default 20)
#   LAT_GAP_MS  pause between round trips of the second ("spaced") latency run; 0 skips
#               that run (default 50: longer than the rtstream block window at the default
#               baud, so each line finds no block of its predecessor in flight)
#   FRAMING     hdlc or console (default hdlc)
#   BAUD        [devices.X] baud; empty = edgelink's default (921600). A pty has no baud
#               rate, but edgelink sizes the rtstream block window from it.
#   STALL       s without progress before a run is reported as stalled (default 10)
#   TIMEOUT     s for one throughput run (default 90)
#   NICE        nice level for socat, simulator, edgelink, echo and client (default 0;
#               below 0 needs root)
#   EDGELINK    edgelink binary (default BUILD_DIR/edgelink)
#   KEEP=1      keep the temp dir (config, logs, result files)
#
# Output: progress on stderr, `result KEY VALUE` lines and a summary table on stdout.
# Exit status 0 when both sides echoed every byte intact and in order, 1 otherwise
# (corruption, stall, EOF, an edgelink crash): the problem is printed, the script does
# not hang.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${1:-/work/main/build}
EDGELINK=${EDGELINK:-$BUILD/edgelink}
BYTES=${BYTES:-262144}
LINE_LEN=${LINE_LEN:-64}
LAT_SIZE=${LAT_SIZE:-16}
LAT_COUNT=${LAT_COUNT:-200}
LAT_WARMUP=${LAT_WARMUP:-20}
LAT_GAP_MS=${LAT_GAP_MS:-50}
FRAMING=${FRAMING:-hdlc}
BAUD=${BAUD:-}
STALL=${STALL:-10}
TIMEOUT=${TIMEOUT:-90}
NICE=${NICE:-0}
PY=${PYTHON:-python3}

[[ -x $EDGELINK ]] || { echo "rtstream_bench: $EDGELINK is missing or not executable" >&2; exit 2; }
command -v socat >/dev/null || { echo "rtstream_bench: socat is not installed" >&2; exit 2; }
[[ $FRAMING == hdlc || $FRAMING == console ]] || { echo "rtstream_bench: FRAMING must be hdlc or console" >&2; exit 2; }

TMP=$(mktemp -d /tmp/rtstream-bench.XXXXXX)
SOCAT_PID="" SIM_PID="" EDGELINK_PID="" ECHO_PID=""
stop_pid() {  # SIGTERM, up to 5 s, then SIGKILL; only our own children
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in $ECHO_PID $EDGELINK_PID $SIM_PID $SOCAT_PID; do stop_pid "$pid"; done
  if [[ ${KEEP:-0} == 1 ]]; then echo "rtstream_bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GW=$TMP/ttyMCU   # edgelink's end (and the client's, for the raw baseline)
DEV=$TMP/ttySIM  # the simulator's end (and the raw echo's)
RES_EL=$TMP/edgelink.res
RES_RAW=$TMP/raw.res
: >"$RES_EL"
: >"$RES_RAW"
FAILED=0

# Free ports: bound to port 0 together (so they differ), then released. The broker port
# has no listener: this benchmark needs no MQTT, edgelink just keeps retrying.
read -r RT_PORT BROKER_PORT <<<"$($PY -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()')"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)

# ---- the pty pair (kept for both halves) ---------------------------------------------
nice -n "$NICE" socat -d -d "pty,raw,echo=0,link=$DEV" "pty,raw,echo=0,link=$GW" 2>"$TMP/socat.log" &
SOCAT_PID=$!
for _ in $(seq 50); do [[ -e $GW && -e $DEV ]] && break; sleep 0.1; done
[[ -e $GW && -e $DEV ]] || { echo "rtstream_bench: socat made no pty pair:" >&2; cat "$TMP/socat.log" >&2; exit 1; }

client() {  # client LABEL RESULT_FILE --tcp PORT|--pty PATH --expect ... [--watch ...]
  local label=$1 out=$2
  shift 2
  local budget=$((TIMEOUT + 2 * (LAT_WARMUP + LAT_COUNT) * 6 + 60))
  local rc=0
  timeout -k 5 "$budget" nice -n "$NICE" $PY "$HERE/rtstream_bench.py" client --label "$label" \
    --bytes "$BYTES" --line-len "$LINE_LEN" --lat-size "$LAT_SIZE" --lat-count "$LAT_COUNT" \
    --lat-warmup "$LAT_WARMUP" --lat-gap-ms "$LAT_GAP_MS" --stall "$STALL" --timeout "$TIMEOUT" "$@" \
    | tee -a "$out" || rc=$?
  [[ $rc == 124 || $rc == 137 ]] && echo "rtstream_bench: $label client killed after ${budget}s (hang)" >&2
  return "$rc"
}

# ---- 1. edgelink + simulator ---------------------------------------------------------
{
  echo 'project_id = "bench"'
  echo 'device_id = "gw-rtbench"'
  echo "persistence_path = \"$TMP/state\""
  echo
  echo '[broker]'
  echo 'host = "127.0.0.1"'
  echo "port = $BROKER_PORT"
  echo
  echo '[devices.mcu]'
  echo "path = \"$GW\""
  [[ -n $BAUD ]] && echo "baud = $BAUD"
  echo "framing = \"$FRAMING\""
  echo
  echo '[rtstreams.console]'
  echo 'device = "mcu"'
  echo 'endpoint = "upyconsole"'
  echo "port = $RT_PORT"
  echo
  echo '[log]'
  echo 'level = "info"'
} >"$TMP/edgelink.toml"
"$EDGELINK" check -c "$TMP/edgelink.toml" >/dev/null

nice -n "$NICE" $PY "$ROOT/demo/mcu_sim.py" "$DEV" --framing "$FRAMING" >"$TMP/sim.log" 2>&1 &
SIM_PID=$!
nice -n "$NICE" "$EDGELINK" run -c "$TMP/edgelink.toml" >"$TMP/edgelink.log" 2>&1 &
EDGELINK_PID=$!

status_json() { timeout 5 "$EDGELINK" status -c "$TMP/edgelink.toml" --json 2>/dev/null; }
up=0
for _ in $(seq 100); do
  kill -0 "$EDGELINK_PID" 2>/dev/null || break
  if status_json | $PY -c '
import json, sys
d = next(iter(json.load(sys.stdin)["devices"].values()))
sys.exit(0 if d["state"] == "up" and d["rtstreams"][0]["tcp"].get("listening", True) else 1)' 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.1
done
if [[ $up != 1 ]]; then
  echo "rtstream_bench: edgelink's device did not come up within 10 s; edgelink log:" >&2
  tail -30 "$TMP/edgelink.log" >&2
  exit 1
fi

echo "rtstream_bench: edgelink bridge: TCP $RT_PORT -> edgelink -> $FRAMING pty -> mcu_sim upyconsole and back" >&2
EL_RC=0
client el "$RES_EL" --tcp "$RT_PORT" --expect repl --watch "edgelink=$EDGELINK_PID" --watch "sim=$SIM_PID" || EL_RC=$?

# What edgelink says about the stream, and whether it is still alive.
if kill -0 "$EDGELINK_PID" 2>/dev/null; then
  status_json >"$TMP/status.json" || true
  $PY - "$TMP/status.json" >>"$RES_EL" <<'EOF' || true
import json, sys
d = next(iter(json.load(open(sys.argv[1]))["devices"].values()))
rt = d["rtstreams"][0]
print("result el_block_window_ms", rt["block_window_ms"])
print("result baud", d["baud"])
for k in ("blocks_out", "resends", "busy", "pos_mismatch", "late_notices", "data_lost", "rx_gaps",
          "session_not_found", "reopens", "keepalives", "write_refused"):
    print("result el_rt_%s %s" % (k, rt.get(k)))
print("result el_rt_tcp_pauses", rt["tcp"].get("pauses"))
print("result el_rt_tcp_dropped", rt["tcp"].get("dropped"))
print("result el_rt_link_retries", d["link_counters"].get("retries"))
print("result el_rt_link_bad_frames", d["link_counters"].get("bad_frames"))
EOF
  grep '^result el_rt_\|^result el_block' "$RES_EL" >&2 || true
else
  wait "$EDGELINK_PID" && ec=0 || ec=$?
  echo "rtstream_bench: EDGELINK DIED during the run (exit status $ec); last lines of its log:" >&2
  tail -30 "$TMP/edgelink.log" >&2
  echo "result el_crashed $ec" >>"$RES_EL"
  EDGELINK_PID=""
  FAILED=1
fi
kill -0 "$SIM_PID" 2>/dev/null || { echo "rtstream_bench: the simulator died; its output:" >&2; tail -20 "$TMP/sim.log" >&2; FAILED=1; }
# Warnings and errors edgelink logged about the device or stream (broker retries aside).
grep -iE 'warn|error|lost|late' "$TMP/edgelink.log" | grep -viE 'broker|mqtt|connect' | head -20 >"$TMP/edgelink-warnings.txt" || true
if [[ -s $TMP/edgelink-warnings.txt ]]; then
  echo "rtstream_bench: edgelink logged (first 20):" >&2
  cat "$TMP/edgelink-warnings.txt" >&2
fi
if [[ $EL_RC != 0 ]]; then
  FAILED=1
  echo "rtstream_bench: the edgelink run FAILED (client exit $EL_RC); last lines of edgelink's log:" >&2
  grep -v " broker: " "$TMP/edgelink.log" | tail -15 >&2
fi
stop_pid "$EDGELINK_PID"; EDGELINK_PID=""
stop_pid "$SIM_PID"; SIM_PID=""

# ---- 2. raw baseline over the same pty pair ------------------------------------------
nice -n "$NICE" $PY "$HERE/rtstream_bench.py" echo "$DEV" &
ECHO_PID=$!
sleep 0.2
echo "rtstream_bench: raw pty: client -> pty pair -> python echo and back" >&2
RAW_RC=0
client raw "$RES_RAW" --pty "$GW" --expect raw --watch "echo=$ECHO_PID" || RAW_RC=$?
[[ $RAW_RC == 0 ]] || { FAILED=1; echo "rtstream_bench: the raw run FAILED (client exit $RAW_RC)" >&2; }
stop_pid "$ECHO_PID"; ECHO_PID=""

{
  echo "result bytes $BYTES"
  echo "result line_len $LINE_LEN"
  echo "result size $LAT_SIZE"
  echo "result lat_count $LAT_COUNT"
  echo "result lat_warmup $LAT_WARMUP"
  echo "result lat_gap_ms $LAT_GAP_MS"
  echo "result framing $FRAMING"
  echo "result load_start $LOAD_START"
  echo "result load_end $(loadavg)"
  echo "result nproc $(nproc)"
} | tee -a "$RES_RAW"
$PY "$HERE/rtstream_bench.py" summary "$RES_EL" "$RES_RAW"
if [[ $FAILED != 0 ]]; then
  echo "rtstream_bench: FAILED: see the messages above" >&2
  exit 1
fi
