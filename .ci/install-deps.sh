#!/usr/bin/env bash
# Installs the Debian 12 packages edgelink needs to build, run and test. Only what is
# missing is installed; with everything present this does nothing and needs no root.
#   .ci/install-deps.sh          build + run + test dependencies
#   .ci/install-deps.sh --run    only what building and running needs
set -euo pipefail

run_pkgs=(build-essential cmake ninja-build pkg-config
  libasio-dev rapidjson-dev libtomlplusplus-dev libpaho-mqttpp-dev libpaho-mqtt-dev libcli11-dev
  liblz4-dev libsystemd-dev librestinio-dev libssl-dev libsdbus-c++-dev catch2 mosquitto mosquitto-clients python3)
test_pkgs=(python3-pytest python3-paho-mqtt python3-lz4 clang-14 libfuzzer-14-dev libclang-rt-14-dev
  socat openssl curl prometheus wrk python3-dbusmock dbus-daemon rabbitmq-server dpkg-dev lintian)

pkgs=("${run_pkgs[@]}")
[ "${1:-}" = "--run" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
