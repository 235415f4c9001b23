#!/usr/bin/env python3
"""Benchmark of the HTTP API's device access (standard library only). See bench/README.md.

    bench/http_bench.py [BUILD_DIR]          (default build)

Starts mosquitto, a socat pty pair with demo/mcu_sim.py as the device `mcu1`, and
edgelink with [http]; then measures, printing `result KEY VALUE` lines and a table:

  1. edgelink's idle RSS with [http] on (after start, device up, nothing asked);
  2. copost round trip `/v` through HTTP (one keep-alive connection, one at a time),
     p50/p99 over COPOSTS requests; then, with edgelink stopped, the same `v` request
     sent straight on the pty by this script (HDLC + RICREST), the peer figure;
  3. OBSERVERS obget observers of `/pub/devjson` at RATE Hz for DURATION: frames/s
     delivered in total and edgelink's CPU (% of one core).

Environment: COPOSTS (2000), OBSERVERS (8), RATE (100), DURATION (10), NICE (0).
"""
import base64
import http.client
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "demo"))
import mcu_sim  # noqa: E402  (hdlc_encode, HdlcDecoder)
from benchlib import cpu_seconds, free_ports, kib, pct  # noqa: E402

COPOSTS = int(os.environ.get("COPOSTS", "2000"))
OBSERVERS = int(os.environ.get("OBSERVERS", "8"))
RATE = float(os.environ.get("RATE", "100"))
DURATION = float(os.environ.get("DURATION", "10"))
NICE = os.environ.get("NICE", "0")


def log(*a):
    print("http_bench:", *a, file=sys.stderr, flush=True)






def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise SystemExit(f"http_bench: timed out waiting for {what}")


class Obs(threading.Thread):
    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        data = base64.b64encode(json.dumps({"rateHz": rate, "minMs": 0}).encode()).decode()
        body = json.dumps({"method": "obget", "id": 1, "uri": "/pub/devjson", "data": data}).encode()
        self.sock.sendall(b"POST /mcu1 HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.frames = 0
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.frames += chunk.count(b'"CONTINUE"')


def direct_rtt(pty_path, n):
    """`v` straight on the pty: what a client that owns the serial port would see."""
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)
    dec = mcu_sim.HdlcDecoder(max_len=1 << 16)
    times = []
    num = 0
    for _ in range(n):
        num = num % 255 + 1
        frame = mcu_sim.hdlc_encode(bytes([num, 0x02, 0x00]) + b"v\x00")
        t0 = time.perf_counter()
        os.write(fd, frame)
        done = False
        while not done:
            r, _, _ = select.select([fd], [], [], 5)
            if not r:
                raise SystemExit("http_bench: no reply on the pty")
            for f in dec.feed(os.read(fd, 65536)):
                if f and f[0] == num:
                    done = True
        times.append((time.perf_counter() - t0) * 1000)
    os.close(fd)
    return times


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    edgelink = os.path.join(build, "edgelink")
    for tool in ("mosquitto", "socat"):
        if not shutil.which(tool):
            raise SystemExit(f"http_bench: {tool} is not installed")
    tmp = tempfile.mkdtemp(prefix="edgelink-http-bench.")
    nice = ["nice", "-n", NICE]
    procs = []
    try:
        mqtt_port, http_port = free_ports(2)
        with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
            f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nuser {os.environ.get('USER', 'root')}\n")
        procs.append(subprocess.Popen([*nice, "mosquitto", "-c", os.path.join(tmp, "mosquitto.conf")],
                                      stderr=subprocess.DEVNULL))
        gw, dev = os.path.join(tmp, "ttyGW"), os.path.join(tmp, "ttyMCU")
        socat = subprocess.Popen(["nice", "-n", "-10" if os.geteuid() == 0 else "0", "socat", "-d", "-d",
                                  f"pty,raw,echo=0,link={dev}", f"pty,raw,echo=0,link={gw}"],
                                 stderr=subprocess.DEVNULL)
        procs.append(socat)
        wait_for(lambda: os.path.exists(gw) and os.path.exists(dev), 10, "the pty pair")
        sim = subprocess.Popen(["nice", "-n", "-10" if os.geteuid() == 0 else "0", sys.executable,
                                os.path.join(ROOT, "demo", "mcu_sim.py"), dev], stderr=subprocess.DEVNULL)
        procs.append(sim)
        cfg = os.path.join(tmp, "edgelink.toml")
        with open(cfg, "w") as f:
            f.write(f'project_id = "bench"\ndevice_id = "gw"\npersistence_path = "{tmp}/state"\n'
                    f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
                    f'[devices.mcu1]\npath = "{gw}"\nbaud = 4000000\n'
                    f'[http]\nbind = "127.0.0.1:{http_port}"\n[log]\nlevel = "warn"\n')
        el = subprocess.Popen([*nice, edgelink, "run", "-c", cfg], stderr=open(os.path.join(tmp, "edgelink.log"), "w"))
        procs.append(el)
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)

        def status():
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            c.request("GET", "/status")
            return json.loads(c.getresponse().read())

        def copost(uri="/v"):
            conn.request("POST", "/mcu1", json.dumps({"method": "copost", "id": 1, "uri": uri, "data": ""}))
            return json.loads(conn.getresponse().read())

        # The timed requests go through a raw keep-alive socket with the request bytes
        # prepared and only Content-Length parsed, so the client costs about what the
        # pty client below costs (http.client adds about 0.1 ms a request).
        raw = None

        def raw_request(req):
            raw.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += raw.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < n:
                body += raw.recv(65536)
            return head, body

        body_v = json.dumps({"method": "copost", "id": 1, "uri": "/v", "data": ""}).encode()
        req_v = b"POST /mcu1 HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(body_v) + body_v
        req_health = b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"

        wait_for(lambda: status()["devices"]["mcu1"]["link"] == "up", 20, "mcu1 up")
        wait_for(lambda: copost()["code"] == "OK", 20, "mcu1 answering")
        time.sleep(2)
        idle_rss = kib(el.pid, "VmRSS")
        print(f"result idle_rss_kib {idle_rss}")

        raw = socket.create_connection(("127.0.0.1", http_port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        health = []
        for _ in range(COPOSTS):
            t0 = time.perf_counter()
            raw_request(req_health)
            health.append((time.perf_counter() - t0) * 1000)
        print(f"result healthz_p50_ms {pct(health, 50):.3f}")
        print(f"result healthz_p99_ms {pct(health, 99):.3f}")
        times = []
        for _ in range(COPOSTS):
            t0 = time.perf_counter()
            _, out = raw_request(req_v)
            times.append((time.perf_counter() - t0) * 1000)
            if b'"OK"' not in out:
                raise SystemExit(f"http_bench: copost answered {out!r}")
        print(f"result copost_http_p50_ms {pct(times, 50):.3f}")
        print(f"result copost_http_p99_ms {pct(times, 99):.3f}")
        raw.close()

        observers = [Obs(http_port, RATE) for _ in range(OBSERVERS)]
        for o in observers:
            o.start()
        time.sleep(2)  # subscribed, first frames flowing
        f0 = sum(o.frames for o in observers)
        c0, t0 = cpu_seconds(el.pid), time.monotonic()
        time.sleep(DURATION)
        f1 = sum(o.frames for o in observers)
        c1, t1 = cpu_seconds(el.pid), time.monotonic()
        for o in observers:
            o.stop = True
            o.sock.close()
        frames_per_s = (f1 - f0) / (t1 - t0)
        print(f"result obget_frames_per_s {frames_per_s:.1f}")
        print(f"result obget_cpu_pct {100 * (c1 - c0) / (t1 - t0):.1f}")
        ended = status()["http"]["devices"]["mcu1"].get("observers_ended", {})
        print(f"result obget_ended_slow {ended.get('slow', 0)}")

        el.terminate()
        el.wait(20)
        direct = direct_rtt(gw, COPOSTS)
        print(f"result copost_pty_p50_ms {pct(direct, 50):.3f}")
        print(f"result copost_pty_p99_ms {pct(direct, 99):.3f}")

        print()
        print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8}")
        print(f"{'copost /v through HTTP':34} {pct(times, 50):8.3f} {pct(times, 99):8.3f}")
        print(f"{'the same request on the pty':34} {pct(direct, 50):8.3f} {pct(direct, 99):8.3f}")
        print(f"{'HTTP adds':34} {pct(times, 50) - pct(direct, 50):8.3f} {pct(times, 99) - pct(direct, 99):8.3f}"
              f"   (goal: < 1 ms at p99)")
        print(f"{'GET /healthz (HTTP alone)':34} {pct(health, 50):8.3f} {pct(health, 99):8.3f}")
        print(f"obget: {OBSERVERS} observers at {RATE:g} Hz: {frames_per_s:,.0f} frames/s delivered "
              f"(device limit {OBSERVERS * RATE:,.0f} if it never skips a publish), edgelink CPU "
              f"{100 * (c1 - c0) / (t1 - t0):.1f} % of a core")
        print(f"idle RSS with [http] on: {idle_rss / 1024:.1f} MiB (goal: < 10 MiB)")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
