#!/usr/bin/env python3
"""BLE rtstream benchmark (issue 13): bytes/s through an rtstream over the mock
bluetoothd at ATT MTU 23 and 517, next to the same transfer over a serial pty in the same
run, and a short line's round trip on each. See bench/README.md.

    /usr/bin/python3 bench/ble_bench.py [BUILD_DIR]        (default build)

It runs as a pytest session over the integration fixtures (a real mosquitto, the mock
bluetoothd of tests/integration/bluez_mock.py on a private dbus-daemon, demo/mcu_sim.py,
socat for the serial pty) and prints its figures; `-s` shows them as they come.

Per transport: SIZE_KIB of REPL lines (112 bytes each) written to the rtstream's TCP port
as fast as it takes them, timed from the first byte to the last answer byte (the REPL
echoes each line, so the same amount comes back: both directions at once); then ROUNDS
round trips of one short line (p50, p99). The ceiling is the protocol's: one block of at
most 475 bytes per block window (status block_window_ms), one block in flight.

Environment: SIZE_KIB (128), ROUNDS (50).
"""
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IT = os.path.join(ROOT, "tests", "integration")
SIZE = int(os.environ.get("SIZE_KIB", "128")) * 1024
ROUNDS = int(os.environ.get("ROUNDS", "50"))
RESULTS = []

if __name__ == "__main__":
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    os.environ.setdefault("EDGELINK_BIN", os.path.join(build if os.path.isabs(build) else os.path.join(ROOT, build),
                                                       "edgelink"))
    os.environ.setdefault("EDGELINK_SOURCE_DIR", ROOT)
    os.environ["PYTHONPATH"] = IT + os.pathsep + os.environ.get("PYTHONPATH", "")
    import subprocess
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                              "--rootdir", IT, "-p", "conftest", os.path.abspath(__file__)], cwd=IT))

sys.path.insert(0, IT)
import pytest  # noqa: E402

from conftest import *  # noqa: E402,F401,F403  (the fixtures: workdir, broker, make_edgelink, ...)
from bluez_mock import make_bluez  # noqa: E402,F401
from test_ble import ble_rig, rt_status as ble_rt_status  # noqa: E402,F401
from test_devices import Console, repl_answer, rig  # noqa: E402,F401


def bulk(port, status):
    lines = [b"%07d " % i + bytes(range(0x41, 0x5B)) * 4 + b"\r" for i in range(SIZE // 112)]
    data = b"".join(lines)
    want = sum(len(repl_answer(x)) for x in lines)
    con = Console(port)
    got = 0
    t0 = time.monotonic()
    sender = threading.Thread(target=con.send, args=(data,))
    sender.start()
    con.sock.settimeout(300)
    while got < want:
        chunk = con.sock.recv(65536)
        assert chunk, "EOF from the rtstream port"
        got += len(chunk)
    elapsed = time.monotonic() - t0
    sender.join()
    s = status()
    con.sock.close()
    return len(data) / elapsed, elapsed, s


def round_trips(port):
    con = Console(port)
    times = []
    for i in range(ROUNDS):
        line = b"r%d\r" % i
        t = time.monotonic()
        assert con.ask(line) == repl_answer(line)
        times.append((time.monotonic() - t) * 1000)
    con.sock.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def record(name, port, status):
    rate, elapsed, s = bulk(port, status)
    p50, p99 = round_trips(port)
    window = s.get("block_window_ms") or 0
    ceiling = 475 / (window / 1000) if window else float("nan")
    RESULTS.append((name, rate, elapsed, p50, p99, window, ceiling, s.get("busy", 0), s.get("data_lost", 0)))
    print(f"\n{name}: {rate / 1000:.1f} KB/s ({elapsed:.1f} s for {SIZE // 1024} KiB each way), "
          f"round trip p50 {p50:.1f} ms p99 {p99:.1f} ms, block window {window} ms "
          f"(ceiling {ceiling / 1000:.1f} KB/s), busy {s.get('busy')}, data_lost {s.get('data_lost')}", flush=True)


def test_serial_pty(rig):
    e, pair, sim, port = rig()
    record("serial pty (4 Mbaud)", port,
           lambda: next(s for s in e.status()["devices"]["mcu"]["rtstreams"] if s["name"] == "console"))


@pytest.mark.parametrize("mtu", [517, 23])
def test_ble(ble_rig, mtu):
    e, mock, port = ble_rig(mock={"mtu": mtu})
    record(f"BLE mock, MTU {mtu}", port, lambda: ble_rt_status(e))


def test_zz_print():
    print("\n\nfigure                               KB/s   seconds  rt p50 ms  rt p99 ms  window ms  ceiling KB/s")
    for name, rate, elapsed, p50, p99, window, ceiling, busy, lost in RESULTS:
        print(f"{name:32s} {rate / 1000:8.1f} {elapsed:9.1f} {p50:10.2f} {p99:10.2f} {window:10} {ceiling / 1000:12.1f}")
    for name, rate, elapsed, p50, p99, *_ in RESULTS:
        key = name.split(" (")[0].replace(" ", "_").replace(",", "").lower()
        print(f"result {key}_kb_s {rate / 1000:.2f}")
        print(f"result {key}_rt_p50_ms {p50:.2f}")
