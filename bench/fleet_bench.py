#!/usr/bin/env python3
"""Fleet benchmark (issue 14): many edgelink instances on this machine against mosquitto
and against a two-node RabbitMQ cluster, in one run. See bench/README.md.

    /usr/bin/python3 bench/fleet_bench.py [BUILD_DIR]       (default build)

For each broker in turn (mosquitto first, then the cluster):
  1. INSTANCES edgelinks start (project "fleet", devices gw-000.., one app each, stream imu
     with batch_size 100 and flush_period 1 s, everything else default; the cluster ones
     with [broker] servers = [node1, node2]); a subscriber process (paho, QoS 1) on the
     broker (on node 2 for the cluster) counts points by (device, sequence) and the time
     of every presence "online";
  2. one load process keeps one connection per app and sends RATE points/s to each (10 ms
     apart on average, written every 100 ms), for WARMUP + DURATION s; points/s delivered
     is measured over DURATION; per-instance VmRSS and CPU over the same window;
  3. cluster only: node 1 stops (orderly) while the load runs; the reconnect time is from
     the stop to each instance's presence "online" on node 2 (median, max);
  4. the load stops; when the subscriber has every point sent (unique (device, sequence))
     the broker's run passed; anything missing is a failure.

Environment: INSTANCES (200), RATE (100), WARMUP (3), DURATION (15), KEEP=1.
Exit status 1 when a check fails (points lost, instances that never connected).
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from benchlib import cpu_seconds, finish, free_ports, kib  # noqa: E402
import rabbitmq  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
EDGELINK = os.path.join(ROOT, BUILD, "edgelink") if not os.path.isabs(BUILD) else os.path.join(BUILD, "edgelink")
INSTANCES = int(os.environ.get("INSTANCES", "200"))
RATE = float(os.environ.get("RATE", "100"))
WARMUP = float(os.environ.get("WARMUP", "3"))
DURATION = float(os.environ.get("DURATION", "15"))

SUBSCRIBER = r"""
import json, sys, threading, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
seen = set()
online = {}          # device -> [monotonic times of "online"]
lock = threading.Lock()
def on_connect(c, u, f, rc):
    c.subscribe([("/tenants/fleet/devices/+/events/#", 1), ("/tenants/fleet/devices/+/presence", 1)])
def on_subscribe(c, u, mid, q):
    print(json.dumps({"ready": True}), flush=True)
def on_message(c, u, m):
    t = time.monotonic()
    parts = m.topic.split("/")
    dev = parts[4]
    if m.topic.endswith("/presence"):
        if m.payload == b"online":
            with lock:
                online.setdefault(dev, []).append(t)
        return
    with lock:
        for p in json.loads(m.payload):
            seen.add((dev, p["sequence"]))
c = mqtt.Client(client_id=f"fleet-sub-{port}", clean_session=True)
c.max_inflight_messages_set(1000)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port, 30)
c.loop_start()
for line in sys.stdin:
    with lock:
        print(json.dumps({"unique": len(seen), "online": online}), flush=True)
"""

LOADER = r"""
import asyncio, json, sys, time
ports = json.loads(sys.argv[1]); rate = float(sys.argv[2]); seconds = float(sys.argv[3])
async def main():
    conns = []
    for p in ports:
        r, w = await asyncio.open_connection("127.0.0.1", p)
        conns.append(w)
    seq = 0
    start = time.monotonic()
    tick = 0.1
    per_tick = rate * tick
    owed = 0.0
    sent = 0
    while time.monotonic() - start < seconds:
        owed += per_tick
        n = int(owed)
        owed -= n
        for w in conns:
            lines = []
            for k in range(n):
                s = seq + k + 1
                lines.append('{"stream":"imu","sequence":%d,"timestamp":%d,"v":%d}\n' % (s, 1700000000000 + s, s))
            w.write("".join(lines).encode())
        seq += n
        sent += n * len(conns)
        await asyncio.gather(*(w.drain() for w in conns))
        next_t = start + (seq / rate)
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    print(json.dumps({"per_app": seq, "sent": sent, "seconds": time.monotonic() - start}), flush=True)
    for w in conns:
        w.close()
asyncio.run(main())
"""


def write_config(path, device, app_port, state, servers):
    broker = f'servers = [{", ".join(json.dumps(s) for s in servers)}]'
    with open(path, "w") as f:
        f.write(f'project_id = "fleet"\ndevice_id = "{device}"\npersistence_path = "{state}"\n'
                f'[broker]\n{broker}\nreconnect_min = 1\nreconnect_max = 10\n'
                f'[tcpapps.app]\nport = {app_port}\n'
                f'[streams.imu]\nbatch_size = 100\nflush_period = 1\n'
                f'[log]\nlevel = "warn"\n')


class Subscriber:
    def __init__(self, port, tmp, procs):
        self.proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, stderr=open(os.path.join(tmp, f"sub{port}.log"), "w"))
        procs.append(self.proc)
        assert json.loads(self.proc.stdout.readline()).get("ready")

    def snapshot(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


def wait(pred, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def run_fleet(label, servers, sub_port, tmp, procs, failures, node_to_stop=None):
    print(f"== {label}: {INSTANCES} instances, {RATE:g} points/s each", flush=True)
    sub = Subscriber(sub_port, tmp, procs)
    ports = free_ports(INSTANCES)
    fleet = []
    t_start = time.monotonic()
    for i, port in enumerate(ports):
        d = os.path.join(tmp, f"{label}-{i:03d}")
        os.makedirs(d)
        cfg = os.path.join(d, "edgelink.toml")
        write_config(cfg, f"gw-{i:03d}", port, os.path.join(d, "state"), servers)
        p = subprocess.Popen([EDGELINK, "run", "-c", cfg], stdout=open(os.path.join(d, "log"), "w"),
                             stderr=subprocess.STDOUT)
        procs.append(p)
        fleet.append(p)
    online = wait(lambda: len(sub.snapshot()["online"]) >= INSTANCES, 120)
    connected = len(sub.snapshot()["online"])
    started_s = time.monotonic() - t_start
    print(f"  {connected}/{INSTANCES} online after {started_s:.1f} s", flush=True)
    if not online:
        failures.append(f"{label}: only {connected}/{INSTANCES} instances came online")
    idle_rss = [kib(p.pid, "VmRSS") for p in fleet]
    total_s = WARMUP + DURATION + (25 if node_to_stop else 0)
    loader = subprocess.Popen([sys.executable, "-c", LOADER, json.dumps(ports), str(RATE), str(total_s)],
                              stdout=subprocess.PIPE, text=True)
    procs.append(loader)
    time.sleep(WARMUP)
    u0, c0, t0 = sub.snapshot()["unique"], [cpu_seconds(p.pid) for p in fleet], time.monotonic()
    time.sleep(DURATION)
    u1, c1, t1 = sub.snapshot()["unique"], [cpu_seconds(p.pid) for p in fleet], time.monotonic()
    rss = [kib(p.pid, "VmRSS") for p in fleet]
    cpu = [(b - a) / (t1 - t0) * 100 for a, b in zip(c0, c1)]
    result = {"delivered_pps": (u1 - u0) / (t1 - t0), "offered_pps": INSTANCES * RATE,
              "rss_med": statistics.median(rss), "rss_max": max(rss), "rss_idle_med": statistics.median(idle_rss),
              "cpu_med": statistics.median(cpu), "cpu_max": max(cpu), "cpu_sum": sum(cpu), "start_s": started_s}
    if node_to_stop is not None:
        before = sub.snapshot()["online"]
        counts = {d: len(v) for d, v in before.items()}
        t_stop = time.monotonic()
        node_to_stop.stop()
        stop_s = time.monotonic() - t_stop
        back = wait(lambda: sum(1 for d, v in sub.snapshot()["online"].items() if len(v) > counts.get(d, 0))
                    >= INSTANCES, 60, 0.1)
        snap = sub.snapshot()["online"]
        delays = [v[counts.get(d, 0)] - t_stop for d, v in snap.items() if len(v) > counts.get(d, 0)]
        result.update({"reconnected": len(delays), "stop_s": stop_s,
                       "reconnect_med": statistics.median(delays) if delays else float("nan"),
                       "reconnect_max": max(delays) if delays else float("nan")})
        print(f"  node stopped ({stop_s:.1f} s for rabbitmqctl stop); {len(delays)}/{INSTANCES} back online, "
              f"median {result['reconnect_med']:.2f} s, max {result['reconnect_max']:.2f} s", flush=True)
        if not back:
            failures.append(f"{label}: only {len(delays)}/{INSTANCES} instances reconnected after the node stopped")
    out = json.loads(loader.stdout.readline())
    loader.wait(30)
    sent = out["sent"]
    result["sent"] = sent
    result["load_pps"] = sent / out["seconds"]
    complete = wait(lambda: sub.snapshot()["unique"] >= sent, 90)
    got = sub.snapshot()["unique"]
    result["delivered_total"] = got
    print(f"  sent {sent} points ({result['load_pps']:.0f}/s), delivered {got} unique", flush=True)
    if not complete:
        failures.append(f"{label}: {sent - got} of {sent} points missing")
    for p in fleet:
        p.send_signal(signal.SIGTERM)
    for p in fleet:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            failures.append(f"{label}: an instance did not stop on SIGTERM")
    sub.proc.kill()
    return result


def main():
    if not os.access(EDGELINK, os.X_OK):
        sys.exit(f"no edgelink binary at {EDGELINK}")
    tmp = tempfile.mkdtemp(prefix="edgelink-fleet-")
    procs, failures, results = [], [], {}
    cluster = None
    try:
        (mport,) = free_ports(1)
        with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
            f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    "max_connections -1\n")
        mosq = subprocess.Popen(["mosquitto", "-c", os.path.join(tmp, "mosquitto.conf")],
                                stdout=open(os.path.join(tmp, "mosquitto.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(mosq)
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", mport)) == 0, 10, 0.05)
        results["mosquitto"] = run_fleet("mosquitto", [f"127.0.0.1:{mport}"], mport, tmp, procs, failures)
        mosq.terminate()

        if not rabbitmq.available():
            failures.append("rabbitmq-server is not installed: no cluster figures")
        else:
            print("== starting a two-node RabbitMQ cluster", flush=True)
            t = time.monotonic()
            cluster = rabbitmq.RabbitCluster(os.path.join(tmp, "rmq"))
            if not cluster.start():
                failures.append(f"RabbitMQ did not start: {cluster.error}")
            else:
                print(f"  up and joined in {time.monotonic() - t:.1f} s", flush=True)
                n1, n2 = cluster.nodes
                results["cluster"] = run_fleet("cluster", [f"127.0.0.1:{n1.mqtt_port}", f"127.0.0.1:{n2.mqtt_port}"],
                                               n2.mqtt_port, tmp, procs, failures, node_to_stop=n1)
    finally:
        if cluster:
            cluster.close()

    print()
    print(f"{'figure':60s} {'mosquitto':>14s} {'2-node RabbitMQ':>16s}")
    def row(name, key, fmt):
        vals = [fmt.format(results[k][key]) if k in results and key in results[k] else "-" for k in ("mosquitto", "cluster")]
        print(f"{name:60s} {vals[0]:>14s} {vals[1]:>16s}")
    row("instances online after start (s)", "start_s", "{:.1f}")
    row("points/s offered (instances x rate)", "offered_pps", "{:.0f}")
    row("points/s sent by the load process", "load_pps", "{:.0f}")
    row("points/s delivered (unique, steady window)", "delivered_pps", "{:.0f}")
    row("points sent / delivered over the run", "sent", "{}")
    row("  delivered (unique)", "delivered_total", "{}")
    row("per-instance VmRSS idle, median (KiB)", "rss_idle_med", "{:.0f}")
    row("per-instance VmRSS under load, median / max (KiB)", "rss_med", "{:.0f}")
    row("", "rss_max", "{:.0f}")
    row("per-instance CPU, median / max (% of a core)", "cpu_med", "{:.2f}")
    row("", "cpu_max", "{:.2f}")
    row("fleet CPU, sum (% of a core)", "cpu_sum", "{:.0f}")
    row("node stop -> instance online again, median (s)", "reconnect_med", "{:.2f}")
    row("node stop -> instance online again, max (s)", "reconnect_max", "{:.2f}")
    row("instances back after the node stop", "reconnected", "{}")
    for k, r in results.items():
        for key, v in r.items():
            print(f"result {k}_{key} {v:.3f}" if isinstance(v, float) else f"result {k}_{key} {v}")
    sys.exit(finish(procs, failures, tmp))


if __name__ == "__main__":
    main()
