#!/usr/bin/env bash
# The run command: installs what is missing, builds edgelink, and runs it with
# config/edgelink.toml. When no broker answers on localhost:1883 (the example config's
# broker) it starts a local mosquitto there for the session.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/install-deps.sh --run
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELINK_TESTS=OFF -DEDGELINK_BENCH=OFF >/dev/null
cmake --build build --target edgelink -j"$(nproc)"

config=config/edgelink.toml
build/edgelink check -c "$config" >/dev/null

# persistence_path (/var/lib/edgelink) needs root; otherwise use a copy under build/.
state=$(sed -n 's/^persistence_path *= *"\(.*\)".*/\1/p' "$config")
if ! mkdir -p "$state" 2>/dev/null || [ ! -w "$state" ]; then
  sed "s|^persistence_path *=.*|persistence_path = \"$PWD/build/state\"|" "$config" >build/edgelink.toml
  config=build/edgelink.toml
  echo "note: $state is not writable; using $PWD/build/state (config: $config)"
fi

broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true; }
trap cleanup EXIT
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "no broker on localhost:1883: starting mosquitto for this session"
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' >build/mosquitto.conf
  mosquitto -c build/mosquitto.conf >build/mosquitto.log 2>&1 &
  broker_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
fi

echo "edgelink: apps connect to the ports in $config; try: python3 demo/app.py --port 5050"
build/edgelink run -c "$config"
