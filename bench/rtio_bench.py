#!/usr/bin/env python3
"""Benchmark of the RTIO device-access server (standard library only, plus the fake RTIO
device of tests/integration/rtio_device.py). See bench/README.md.

    bench/rtio_bench.py [BUILD_DIR]          (default build)

Starts mosquitto and edgelink with [rtio] (DEVICES + 1 device ids and secrets,
max_connections 2048) and [http]; then measures, printing `result KEY VALUE` lines and a
table:

  1. edgelink's idle RSS (VmRSS, RssAnon) with no device connected;
  2. baseline: one echo device (a separate process answering copost `/rainbow`) and
     COPOSTS HTTP coposts to it, one at a time over one keep-alive connection: p50/p99;
     then edgelink's background CPU over 5 s (the floor under the ping figures);
  3. DEVICES devices connected and verified through one DeviceLoop (one thread): time to
     verify them all, edgelink CPU for it, RSS after and (after - before) per device;
  4. every device sets its heartbeat (ping seconds=30), then pings every PING_S seconds,
     spread evenly; over DURATION: pings answered, edgelink CPU (% of one core) and CPU
     per ping;
  5. the same COPOSTS coposts to the echo device with the fleet still pinging;
  6. checks: edgelink (started with a soft RLIMIT_NOFILE of 1024) raised its limit to the
     hard one; /status shows every device `link: up`, status.rtio.connections has no
     verify_failed / verify_timeout / heartbeat_timeout / protocol_error / replaced, no
     ping failed, no device connection ended;
  7. SIGTERM with every device still connected: edgelink exits with status 0 and every
     device sees EOF. edgelink's log (level warn) is shown at the end.

Environment: DEVICES (1000), PING_S (10, below 45: the heartbeat is 30 s), DURATION (20),
COPOSTS (2000), GAP_MS (pause between coposts, 0: back-to-back), NICE (0; e.g. -10
as root: mosquitto, edgelink and the echo device run at that nice level), KEEP=1 (keep
the temp dir with config and logs). Exit status 1 when a check fails.
"""
import base64
import json
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import rtio_device as rd  # noqa: E402
from benchlib import cpu_seconds, free_ports, kib, pct  # noqa: E402

DEVICES = int(os.environ.get("DEVICES", "1000"))
PING_S = float(os.environ.get("PING_S", "10"))
DURATION = float(os.environ.get("DURATION", "20"))
COPOSTS = int(os.environ.get("COPOSTS", "2000"))
GAP_MS = float(os.environ.get("GAP_MS", "0"))
NICE = os.environ.get("NICE", "0")
KEEP = os.environ.get("KEEP", "") == "1"
HEARTBEAT_S = 30          # set by each device's first ping; edgelink closes after 1.5x
MAX_CONNECTIONS = 2048
IDLE_CPU_S = 5            # window for edgelink's background CPU before the fleet
BAD_RESULTS = ("verify_failed", "verify_timeout", "heartbeat_timeout", "protocol_error", "replaced")


def log(*a):
    print("rtio_bench:", *a, file=sys.stderr, flush=True)






def sched_seconds(pid):
    """Time on a CPU of all of pid's threads, from /proc/PID/task/*/schedstat (ns): the
    precise figure next to utime+stime, which counts in 10 ms clock ticks."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


class Cpu:
    """edgelink's CPU over a window: utime+stime (/proc/PID/stat) and schedstat."""

    def __init__(self, pid):
        self.pid = pid
        self.t0, self.c0, self.s0 = time.monotonic(), cpu_seconds(pid), sched_seconds(pid)

    def stop(self):
        self.t1, self.c1, self.s1 = time.monotonic(), cpu_seconds(self.pid), sched_seconds(self.pid)
        self.wall = self.t1 - self.t0
        self.stat_s = self.c1 - self.c0
        self.sched_s = self.s1 - self.s0
        return self

    def pct(self):
        return 100 * self.stat_s / self.wall, 100 * self.sched_s / self.wall


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        raise SystemExit(f"rtio_bench: RLIMIT_NOFILE hard limit {hard} < {need} descriptors needed "
                         f"for {DEVICES} devices (raise it with `ulimit -Hn` as root, or lower DEVICES)")
    return soft


def low_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def nofile_of(pid):
    """(soft, hard) 'Max open files' of a process, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return None, None


class Http:
    """One raw keep-alive connection: prepared request bytes, only Content-Length parsed
    (http.client would add about 0.1 ms a request)."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, req):
        self.sock.sendall(req)
        buf = self.buf
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("edgelink closed the HTTP connection")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(body) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("edgelink closed the HTTP connection")
            body += chunk
        self.buf = body[n:]
        return head, body[:n]

    def close(self):
        self.sock.close()


def get(port, path):
    c = Http(port)
    try:
        head, body = c.request(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    finally:
        c.close()
    return head, body


def status(port):
    return json.loads(get(port, "/status")[1])


def wait_for(pred, timeout, what, alive=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in alive:
            if p.poll() is not None:
                raise SystemExit(f"rtio_bench: a process exited (status {p.returncode}) while waiting for {what}")
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"rtio_bench: timed out waiting for {what}")


def copost_rtts(port, req, want, n):
    """n coposts one at a time (20 untimed first), GAP_MS apart; times in ms."""
    c = Http(port)
    times = []
    try:
        for i in range(n + 20):
            t0 = time.perf_counter()
            head, body = c.request(req)
            dt = (time.perf_counter() - t0) * 1000
            if want not in body:
                raise SystemExit(f"rtio_bench: copost answered {head[:40]!r} {body!r}")
            if i >= 20:
                times.append(dt)
            if GAP_MS > 0:
                time.sleep(GAP_MS / 1000)
    finally:
        c.close()
    return times


class Fleet:
    """DEVICES devices on one DeviceLoop: verify, set the heartbeat, then ping forever."""

    def __init__(self, port, creds):
        self.port = port
        self.creds = creds
        self.loop = rd.DeviceLoop()
        self.devs = []
        self.lock = threading.Lock()
        self.verified = 0
        self.verify_bad = {}        # code -> count (None: connection closed first)
        self.t_verified = None
        self.hb_set = 0
        self.pings_ok = 0
        self.ping_bad = {}          # code -> count
        self.ping_rtt_sum = 0.0
        self.ping_rtt_max = 0.0
        self.pinging = True

    def connect_and_verify(self):
        self.loop.start()
        for i, (dev_id, secret) in enumerate(self.creds):
            d = rd.RtioDevice("127.0.0.1", self.port, dev_id, secret, timeout=30, record=False).connect()
            self.devs.append(d)
            self.loop.add(d, answer=True)
            d.verify_async(lambda code, d=d: self._verified(d, code))

    def _bad(self, table, code):
        with self.lock:
            table[code] = table.get(code, 0) + 1

    def _verified(self, d, code):
        if code != rd.RespCode.SUCCESS:
            self._bad(self.verify_bad, code)
            return
        with self.lock:
            self.verified += 1
            if self.verified == len(self.creds):
                self.t_verified = time.monotonic()

    def start_pinging(self):
        """First ping sets the heartbeat interval; then one every PING_S per device, the
        devices spread evenly over the period."""
        n = len(self.devs)
        for i, d in enumerate(self.devs):
            offset = PING_S * i / n

            def first(d=d):
                d.ping_async(HEARTBEAT_S, lambda code, d=d: self._hb(d, code))
            self.loop.call_later(offset, first)

    def _hb(self, d, code):
        if code != rd.RespCode.SUCCESS:
            self._bad(self.ping_bad, code)
            return
        with self.lock:
            self.hb_set += 1
        self.loop.call_later(PING_S, lambda: self._ping(d))

    def _ping(self, d):
        if not self.pinging or d.eof:
            return
        t0 = time.monotonic()
        d.ping_async(None, lambda code: self._pong(d, code, t0))

    def _pong(self, d, code, t0):
        if code != rd.RespCode.SUCCESS:
            self._bad(self.ping_bad, code)
            return
        dt = time.monotonic() - t0
        with self.lock:
            self.pings_ok += 1
            self.ping_rtt_sum += dt
            self.ping_rtt_max = max(self.ping_rtt_max, dt)
        # next one PING_S after this one was sent: keeps the spread
        self.loop.call_later(max(0.0, PING_S - dt), lambda: self._ping(d))

    def counts(self):
        with self.lock:
            return self.pings_ok, self.ping_rtt_sum, self.ping_rtt_max

    def closed(self):
        return sum(1 for d in self.devs if d.eof)

    def errors(self):
        return [e for d in self.devs for e in d.errors]

    def close(self):
        self.pinging = False
        self.loop.stop()
        for d in self.devs:
            try:
                d._sock.close()
            except OSError:
                pass


def main():
    sys.stdout.reconfigure(line_buffering=True)
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    edgelink = os.path.join(build, "edgelink")
    if not os.access(edgelink, os.X_OK):
        raise SystemExit(f"rtio_bench: no {edgelink}")
    if not shutil.which("mosquitto"):
        raise SystemExit("rtio_bench: mosquitto is not installed")
    if PING_S >= 1.5 * HEARTBEAT_S:
        raise SystemExit(f"rtio_bench: PING_S must be below {1.5 * HEARTBEAT_S:g} (heartbeat {HEARTBEAT_S} s)")
    if DEVICES + 1 > MAX_CONNECTIONS:
        raise SystemExit(f"rtio_bench: DEVICES + 1 must be at most max_connections {MAX_CONNECTIONS}")
    nofile = raise_nofile(DEVICES + 64)
    tmp = tempfile.mkdtemp(prefix="edgelink-rtio-bench.")
    nice = ["nice", "-n", NICE]
    procs = []
    fleet = None
    failures = []
    el_log = os.path.join(tmp, "edgelink.log")
    try:
        mqtt_port, http_port, rtio_port = free_ports(3)
        with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
            f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nuser {os.environ.get('USER', 'root')}\n")
        procs.append(subprocess.Popen([*nice, "mosquitto", "-c", os.path.join(tmp, "mosquitto.conf")],
                                      stderr=subprocess.DEVNULL))

        # uuid-like ids (36 chars), 32-char secrets; the last one is the echo device
        creds = [(str(uuid.uuid4()), secrets.token_hex(16)) for _ in range(DEVICES + 1)]
        echo_id, echo_secret = creds.pop()
        cfg = os.path.join(tmp, "edgelink.toml")
        with open(cfg, "w") as f:
            f.write(f'project_id = "bench"\ndevice_id = "gw"\npersistence_path = "{tmp}/state"\n'
                    f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
                    f'[http]\nbind = "127.0.0.1:{http_port}"\n[log]\nlevel = "warn"\n'
                    f'[rtio]\nbind = "127.0.0.1:{rtio_port}"\nmax_connections = {MAX_CONNECTIONS}\n'
                    f'[rtio.devices]\n')
            for dev_id, secret in creds + [(echo_id, echo_secret)]:
                f.write(f'"{dev_id}" = "{secret}"\n')
            f.write('[[rtio.device_services]]\nuri = "/aa/bb"\n'
                    'topic = "/tenants/{tenant_id}/devices/{device_id}/rtio/{rtio_device_id}/aa/bb"\n')
        # edgelink starts with a shell's usual soft limit of 1024 descriptors (too few for
        # DEVICES devices) and must raise it to the hard limit itself
        el = subprocess.Popen([*nice, edgelink, "run", "-c", cfg], stderr=open(el_log, "w"),
                              preexec_fn=low_nofile)
        procs.append(el)
        wait_for(lambda: status(http_port)["rtio"]["listening"] and status(http_port)["broker"]["state"] == "connected",
                 20, "edgelink listening and connected", alive=[el])
        el_soft, el_hard = nofile_of(el.pid)
        print(f"result edgelink_nofile {el_soft} {el_hard}")
        if el_soft != el_hard:
            failures.append(f"edgelink kept a descriptor soft limit of {el_soft} (hard {el_hard})")
        log(f"load average {loadavg()}; edgelink pid {el.pid}, RLIMIT_NOFILE {nofile} (bench), "
            f"edgelink's {el_soft}/{el_hard} (started with 1024), {kib(el.pid, 'VmRSS')} KiB")
        time.sleep(2)
        idle_rss, idle_anon = kib(el.pid, "VmRSS"), kib(el.pid, "RssAnon")
        print(f"result idle_rss_kib {idle_rss}")
        print(f"result idle_rss_anon_kib {idle_anon}")

        # --- baseline: the echo device alone
        echo_log = open(os.path.join(tmp, "echo_device.log"), "w")
        echo = subprocess.Popen([*nice, sys.executable, os.path.join(ROOT, "tests", "integration", "rtio_device.py"),
                                 "--port", str(rtio_port), "--id", echo_id, "--secret", echo_secret,
                                 "--uri", "/rainbow"], stdout=echo_log, stderr=subprocess.STDOUT)
        procs.append(echo)
        wait_for(lambda: status(http_port)["devices"][echo_id]["link"] == "up", 20, "the echo device up",
                 alive=[el, echo])
        payload = b"hello rtio bench"
        b64 = base64.b64encode(payload).decode()
        body = json.dumps({"method": "copost", "id": 1, "uri": "/rainbow", "data": b64}).encode()
        req = (f"POST /{echo_id} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        want = f'"data":"{b64}"'.encode()
        c = Http(http_port)
        _, first = c.request(req)
        c.close()
        if b'"OK"' not in first or want not in first:
            raise SystemExit(f"rtio_bench: first copost to the echo device answered {first!r}")
        log(f"baseline: {COPOSTS} coposts to the echo device, no other device")
        base = copost_rtts(http_port, req, want, COPOSTS)
        print(f"result copost_idle_p50_ms {pct(base, 50):.3f}")
        print(f"result copost_idle_p99_ms {pct(base, 99):.3f}")
        print(f"result copost_idle_max_ms {max(base):.3f}")
        # edgelink's own background CPU (broker keep-alive, timers) with one device: the
        # floor under the pinging figure below
        idle_cpu = Cpu(el.pid)
        time.sleep(IDLE_CPU_S)
        idle_cpu.stop()
        print(f"result idle_cpu_pct {idle_cpu.pct()[0]:.2f}")
        print(f"result idle_cpu_sched_pct {idle_cpu.pct()[1]:.3f}")
        before_rss, before_anon = kib(el.pid, "VmRSS"), kib(el.pid, "RssAnon")
        print(f"result before_fleet_rss_kib {before_rss}")
        print(f"result before_fleet_rss_anon_kib {before_anon}")

        # --- the fleet: connect and verify
        log(f"connecting and verifying {DEVICES} devices (load average {loadavg()})")
        fleet = Fleet(rtio_port, creds)
        t0 = time.monotonic()
        vcpu = Cpu(el.pid)
        fleet.connect_and_verify()
        t_connected = time.monotonic()
        wait_for(lambda: fleet.verified + sum(fleet.verify_bad.values()) >= DEVICES, 60,
                 f"{DEVICES} verify answers (got {fleet.verified})", alive=[el])
        if fleet.verified != DEVICES:
            failures.append(f"{DEVICES - fleet.verified} devices not verified: {fleet.verify_bad}")
            t_done = time.monotonic()
        else:
            t_done = fleet.t_verified
        vcpu.stop()
        verify_s = t_done - t0
        verify_cpu_us = vcpu.sched_s * 1e6 / max(1, fleet.verified)
        print(f"result connect_s {t_connected - t0:.3f}")
        print(f"result verify_all_s {verify_s:.3f}")
        print(f"result verify_cpu_us_per_device {verify_cpu_us:.0f}")
        print(f"result verify_cpu_pct {vcpu.pct()[1]:.1f}")
        log(f"{fleet.verified} verified in {verify_s:.2f} s (connect calls done after {t_connected - t0:.2f} s)")

        # --- heartbeat set, then steady pinging
        fleet.start_pinging()
        wait_for(lambda: fleet.hb_set + sum(fleet.ping_bad.values()) >= fleet.verified, PING_S + 20,
                 f"heartbeat set on every device (got {fleet.hb_set})", alive=[el])
        time.sleep(1)
        after_rss, after_anon = kib(el.pid, "VmRSS"), kib(el.pid, "RssAnon")
        per_dev = (after_rss - before_rss) / DEVICES
        per_dev_anon = (after_anon - before_anon) / DEVICES
        print(f"result fleet_rss_kib {after_rss}")
        print(f"result fleet_rss_anon_kib {after_anon}")
        print(f"result rss_kib_per_device {per_dev:.2f}")
        print(f"result rss_anon_kib_per_device {per_dev_anon:.2f}")

        log(f"steady pinging for {DURATION:g} s ({DEVICES / PING_S:.0f} pings/s offered; load average {loadavg()})")
        p0, s0, _ = fleet.counts()
        b0 = os.times()
        pcpu = Cpu(el.pid)
        time.sleep(DURATION)
        pcpu.stop()
        b1 = os.times()
        p1, s1, rtt_max = fleet.counts()
        pings = p1 - p0
        cpu_pct, sched_pct = pcpu.pct()
        cpu_per_ping = pcpu.stat_s * 1e6 / max(1, pings)
        sched_per_ping = pcpu.sched_s * 1e6 / max(1, pings)
        bench_pct = 100 * ((b1.user + b1.system) - (b0.user + b0.system)) / pcpu.wall
        ping_rtt_mean = 1000 * (s1 - s0) / max(1, pings)
        print(f"result pings_per_s {pings / pcpu.wall:.1f}")
        print(f"result ping_cpu_pct {cpu_pct:.2f}")
        print(f"result ping_cpu_sched_pct {sched_pct:.3f}")
        print(f"result ping_cpu_us {cpu_per_ping:.1f}")
        print(f"result ping_cpu_sched_us {sched_per_ping:.1f}")
        print(f"result ping_rtt_mean_ms {ping_rtt_mean:.3f}")
        print(f"result ping_rtt_max_ms {1000 * rtt_max:.1f}")
        print(f"result bench_cpu_pct {bench_pct:.1f}")

        # --- the same coposts with the fleet pinging
        log(f"{COPOSTS} coposts to the echo device with {DEVICES} devices pinging")
        loaded = copost_rtts(http_port, req, want, COPOSTS)
        print(f"result copost_fleet_p50_ms {pct(loaded, 50):.3f}")
        print(f"result copost_fleet_p99_ms {pct(loaded, 99):.3f}")
        print(f"result copost_fleet_max_ms {max(loaded):.3f}")

        # --- checks
        st = status(http_port)
        up = sum(1 for d in st["devices"].values() if d.get("kind") == "rtio" and d.get("link") == "up")
        conns = st["rtio"].get("connections", {})
        bad = {k: v for k, v in conns.items() if k in BAD_RESULTS and v}
        hb30 = sum(1 for dev_id, _ in creds if st["devices"].get(dev_id, {}).get("heartbeat") == HEARTBEAT_S)
        print(f"result devices_up {up}")
        print(f"result devices_heartbeat_{HEARTBEAT_S} {hb30}")
        print(f"result rtio_open_connections {st['rtio'].get('open_connections')}")
        print(f"result rtio_connections {json.dumps(conns, separators=(',', ':'))}")
        print(f"result ping_failures {sum(fleet.ping_bad.values())}")
        closed_before = fleet.closed()
        print(f"result devices_closed {closed_before}")
        hwm = kib(el.pid, "VmHWM")
        print(f"result vmhwm_kib {hwm}")
        if up != DEVICES + 1:
            failures.append(f"{up} devices up in /status, want {DEVICES + 1}")
        if hb30 != DEVICES:
            failures.append(f"{DEVICES - hb30} devices without heartbeat {HEARTBEAT_S} in /status")
        if bad:
            failures.append(f"status.rtio.connections: {bad}")
        if conns.get("verified", 0) != DEVICES + 1:
            failures.append(f"status.rtio.connections.verified = {conns.get('verified')}, want {DEVICES + 1}")
        if fleet.ping_bad:
            failures.append(f"pings answered with codes other than 1: {fleet.ping_bad}")
        if closed_before:
            failures.append(f"{closed_before} device connections ended")
        if fleet.errors():
            failures.append(f"device errors: {fleet.errors()[:3]}")
        stop_s = rc = None
        if el.poll() is not None:
            failures.append(f"edgelink exited with {el.returncode}")
        else:
            # stop edgelink with every device still connected: it should exit at once,
            # with status 0, and every device should see its connection end
            fleet.pinging = False
            t_stop = time.monotonic()
            el.terminate()
            try:
                rc = el.wait(20)
            except subprocess.TimeoutExpired:
                rc = None
            stop_s = time.monotonic() - t_stop
            eof_deadline = time.monotonic() + 5
            while fleet.closed() < DEVICES and time.monotonic() < eof_deadline:
                time.sleep(0.05)
            print(f"result stop_s {stop_s:.3f}")
            print(f"result stop_status {rc}")
            print(f"result devices_eof_after_stop {fleet.closed()}")
            if rc != 0:
                failures.append(f"edgelink stopped with status {rc} after SIGTERM ({stop_s:.1f} s)")
            if fleet.closed() != DEVICES:
                failures.append(f"{DEVICES - fleet.closed()} devices saw no EOF after edgelink stopped")

        print()
        print(f"RTIO device server, {DEVICES} devices on one DeviceLoop, pinging every {PING_S:g} s "
              f"(heartbeat {HEARTBEAT_S} s); load average {loadavg()}")
        print("CPU: utime+stime from /proc/PID/stat (10 ms ticks), in brackets the schedstat sum over threads;"
              " % of one core")
        print(f"{'':44} {'value':>14}")
        row = lambda k, v: print(f"{k:44} {v:>14}")  # noqa: E731
        row("idle RSS, no device (VmRSS / RssAnon)", f"{idle_rss:,} / {idle_anon:,} KiB")
        row("RSS before the fleet (echo device up)", f"{before_rss:,} / {before_anon:,} KiB")
        row(f"RSS with {DEVICES} devices verified", f"{after_rss:,} / {after_anon:,} KiB")
        row("  per device: (with - before) / DEVICES", f"{per_dev:.2f} / {per_dev_anon:.2f} KiB")
        row("peak RSS (VmHWM)", f"{hwm:,} KiB")
        row(f"connect + verify {DEVICES} devices", f"{verify_s:.2f} s")
        row("edgelink CPU per verified device (schedstat)", f"{verify_cpu_us:.0f} µs")
        row(f"edgelink CPU idle, echo device only ({IDLE_CPU_S:g} s)",
            f"{idle_cpu.pct()[0]:.2f} ({idle_cpu.pct()[1]:.3f}) %")
        row("pings answered per s", f"{pings / pcpu.wall:.1f}")
        row(f"edgelink CPU while pinging ({DURATION:g} s)", f"{cpu_pct:.2f} ({sched_pct:.3f}) %")
        row("edgelink CPU per ping", f"{cpu_per_ping:.1f} ({sched_per_ping:.1f}) µs")
        row("ping round trip mean / max (Python loop)", f"{ping_rtt_mean:.2f} / {1000 * rtt_max:.1f} ms")
        row("bench process CPU while pinging", f"{bench_pct:.1f} %")
        print()
        how = "back-to-back" if GAP_MS <= 0 else f"{GAP_MS:g} ms apart"
        print(f"{f'HTTP copost /rainbow -> echo device, {COPOSTS} {how}':52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        print(f"{'  no other device':52} {pct(base, 50):8.3f} {pct(base, 99):8.3f} {max(base):8.3f}")
        print(f"{f'  {DEVICES} devices pinging':52} {pct(loaded, 50):8.3f} {pct(loaded, 99):8.3f} {max(loaded):8.3f}")
        print()
        if stop_s is not None:
            print(f"SIGTERM with {DEVICES + 1} devices connected: edgelink exited after {stop_s:.2f} s, "
                  f"status {rc}; {fleet.closed()} of {DEVICES} devices saw EOF")
        print(f"status: {up} of {DEVICES + 1} devices up; rtio.connections {json.dumps(conns)}; "
              f"ping failures {sum(fleet.ping_bad.values())}; device connections ended {closed_before}")
    finally:
        if fleet:
            fleet.close()
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        try:
            with open(el_log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        if lines:
            print(f"edgelink log: {len(lines)} lines (level warn), first ones:")
            for line in lines[:15]:
                print("  " + line)
        else:
            print("edgelink log: empty (level warn)")
        if KEEP:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print(f"CHECK FAILED: {f}")
    print(f"result checks {'ok' if not failures else 'failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
