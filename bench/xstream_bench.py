#!/usr/bin/env python3
"""Benchmark of x-stream uploads (spec/xstream.md), standard library only. See bench/README.md.

    bench/xstream_bench.py [BUILD_DIR]          (default build)

Same run, same machine, same sender (Python, socket.sendall of 1 MiB slices of a
pregenerated 64 MiB random pattern, as fast as it can):

  1. plain copy: a receiver process reads the TCP socket (256 KiB reads, like edgelink in the raw phase) and
     writes a file, fdatasync at every SYNC_BYTES multiple, fdatasync at the end: the
     ceiling for "bytes from a socket to a durable file" at that sync interval. It is
     Python, but a loop of recv_into/os.write/os.fdatasync spends its time in the kernel;
  2. edgelink: the x-stream exchange to a file route with the default [xstream] settings
     (sync_bytes 1 MiB), from the first raw byte to the final reply (durable, renamed into
     place); its sha256 is checked against the data's. edgelink's RSS is sampled every
     100 ms (min/median/max, and at 10 % and 90 % of the upload) and its CPU counted;
  3. resume after kill -9 at 50 %: SIGKILL once half the bytes are sent, start edgelink
     again, time the restart until the app port answers, the resume request until its
     reply (which re-hashes the durable prefix), then send the rest; the final sha256 and
     the stored file are checked.

The plain copy and the upload take turns ROUNDS times (alternating which goes first: the
disk's speed drifts on a VM) and their medians are compared; the RSS and CPU figures are
those of the median upload.

Environment: SIZE_MIB (1024), SYNC_BYTES (1048576), ROUNDS (3), TMPDIR_BENCH (/var/tmp: the plain copy
and edgelink's persistence_path are on that filesystem), KEEP=1 (keep the temp dir).
Exit status 1 when a check fails.
"""
import hashlib
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
from benchlib import finish, cpu_seconds, free_ports, kib  # noqa: E402

SIZE = int(os.environ.get("SIZE_MIB", "1024")) << 20
SYNC = int(os.environ.get("SYNC_BYTES", "1048576"))
TMP_ROOT = os.environ.get("TMPDIR_BENCH", "/var/tmp")
PATTERN = os.urandom(64 << 20)
SLICE = 1 << 20
ROUNDS = int(os.environ.get("ROUNDS", "3"))

RECEIVER = r"""
import os, socket, sys
port, path, sync = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
srv = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
conn, _ = srv.accept()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
buf = bytearray(262144)
view = memoryview(buf)
written = next_sync = 0
next_sync = sync
while True:
    n = conn.recv_into(buf)
    if n == 0:
        break
    m = 0
    while m < n:  # split at sync boundaries, as edgelink does
        k = min(n - m, next_sync - written)
        os.write(fd, view[m:m + k])
        written += k
        m += k
        if written == next_sync:
            os.fdatasync(fd)
            next_sync += sync
os.fdatasync(fd)
os.close(fd)
conn.sendall(b"done %d\n" % written)
"""


def log(*a):
    print(*a, flush=True)


def data_slices(start, end):
    """(memoryview) slices of the stream [start, end) built from the repeated pattern."""
    pos = start
    view = memoryview(PATTERN)
    while pos < end:
        off = pos % len(PATTERN)
        n = min(SLICE, end - pos, len(PATTERN) - off)
        yield view[off:off + n]
        pos += n


def stream_sha256(n):
    h = hashlib.sha256()
    for s in data_slices(0, n):
        h.update(s)
    return h.hexdigest()


def send_range(sock, start, end):
    for s in data_slices(start, end):
        sock.sendall(s)


def read_line(sock, buf):
    while b"\n" not in buf[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("edgelink closed the connection")
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\n", 1)
    return json.loads(line)


def wait_port(port, timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.005)
    raise SystemExit(f"port {port} did not open")


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], False

    def run(self):
        while not self.stop:
            try:
                self.samples.append((time.monotonic(), kib(self.pid, "VmRSS")))
            except OSError:
                return
            time.sleep(0.1)


def plain_copy(tmp):
    port, = free_ports(1)
    out = os.path.join(tmp, "plain.bin")
    rx = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), out, str(SYNC)], stdout=subprocess.PIPE)
    rx.stdout.readline()
    sock = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    send_range(sock, 0, SIZE)
    sock.shutdown(socket.SHUT_WR)
    reply = sock.recv(100)
    elapsed = time.monotonic() - t0
    rx.wait()
    if reply != b"done %d\n" % SIZE:
        raise SystemExit(f"plain copy receiver said {reply!r}")
    os.unlink(out)
    return elapsed


def start_edgelink(edgelink, cfg, log_path):
    return subprocess.Popen([edgelink, "run", "-c", cfg], stderr=open(log_path, "a"))


def upload(app_port, name, el_pid=None, stop_at=None, key=None):
    """The x-stream exchange; returns (reply, seconds from first raw byte, rss samples)."""
    sock = socket.create_connection(("127.0.0.1", app_port))
    buf = [b""]
    req = {"route": "/upload-file", "x-stream": f"{SIZE}:65536", "name": name}
    if key:
        req["x-stream-key"] = key
    t_req = time.monotonic()
    sock.sendall(json.dumps(req).encode() + b"\n")
    neg = read_line(sock, buf)
    t_neg = time.monotonic() - t_req
    if neg.get("status") != 0 or neg.get("x-stream") != "0:65536":
        raise SystemExit(f"negotiation: {neg}")
    offset = neg["x-stream-offset"]
    sampler = RssSampler(el_pid) if el_pid else None
    if sampler:
        sampler.start()
    t0 = time.monotonic()
    end = stop_at if stop_at is not None else SIZE
    send_range(sock, offset, end)
    if stop_at is not None:
        return neg, sock, t_neg
    final = read_line(sock, buf)
    elapsed = time.monotonic() - t0
    if sampler:
        sampler.stop = True
        sampler.join()
    sock.close()
    return final, elapsed, (sampler.samples if sampler else []), neg, t_neg


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    edgelink = os.path.join(build, "edgelink")
    if not os.access(edgelink, os.X_OK):
        raise SystemExit(f"xstream_bench: no {edgelink}")
    st = os.statvfs(TMP_ROOT)
    if st.f_bavail * st.f_frsize < 2.5 * SIZE:
        raise SystemExit(f"xstream_bench: {TMP_ROOT} has less than {2.5 * SIZE / 2**30:.1f} GiB free")
    tmp = tempfile.mkdtemp(prefix="edgelink-xstream-bench.", dir=TMP_ROOT)
    procs, failures = [], []
    try:
        log(f"size {SIZE >> 20} MiB, sync every {SYNC} bytes, files in {tmp}, load average "
            f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        expected = stream_sha256(SIZE)


        mqtt_port, app_port = free_ports(2)
        with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
            f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nuser {os.environ.get('USER', 'root')}\n")
        procs.append(subprocess.Popen(["mosquitto", "-c", os.path.join(tmp, "mosquitto.conf")],
                                      stderr=subprocess.DEVNULL))
        cfg = os.path.join(tmp, "edgelink.toml")
        with open(cfg, "w") as f:
            f.write(f'project_id = "bench"\ndevice_id = "gw"\npersistence_path = "{tmp}/state"\n'
                    f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\n[log]\nlevel = "warn"\n'
                    f'[xstream]\nmax_spool_bytes = {4 * SIZE}\nsync_bytes = {SYNC}\n'
                    f'[tcpapps.app]\nport = {app_port}\n'
                    f'[[tcpapps.app.upload_routes]]\nroute = "/upload-file"\nkind = "file"\n'
                    f'max_total_bytes = {4 * SIZE}\n')
        el_log = os.path.join(tmp, "edgelink.log")
        el = start_edgelink(edgelink, cfg, el_log)
        procs.append(el)
        wait_port(app_port)
        time.sleep(0.5)
        idle_rss = kib(el.pid, "VmRSS")
        # The disk's speed drifts between runs on a VM: the two take turns, in alternating
        # order, and the medians are compared.
        plains, uploads = [], []
        for r in range(ROUNDS):
            order = ["plain", "edgelink"] if r % 2 == 0 else ["edgelink", "plain"]
            for what in order:
                if what == "plain":
                    plains.append(plain_copy(tmp))
                    log(f"round {r + 1}: plain copy {plains[-1]:.2f} s, {SIZE / plains[-1] / 1e6:.0f} MB/s")
                    continue
                cpu0 = cpu_seconds(el.pid)
                final, secs, samples, _, _ = upload(app_port, "big.bin", el.pid)
                cpu = cpu_seconds(el.pid) - cpu0
                uploads.append((secs, cpu, samples))
                log(f"round {r + 1}: edgelink   {secs:.2f} s, {SIZE / secs / 1e6:.0f} MB/s, CPU {cpu:.2f} s")
                if final.get("status") != 0 or final.get("sha256") != expected:
                    failures.append(f"upload final reply {final}, expected sha256 {expected}")
                stored = os.path.join(tmp, "state", "uploads", "app", "big.bin")
                if os.path.getsize(stored) != SIZE:
                    failures.append(f"stored file has {os.path.getsize(stored)} bytes")
                os.unlink(stored)
        plain = statistics.median(plains)
        secs, cpu, samples = sorted(uploads)[len(uploads) // 2]
        rss = [r for _, r in samples] or [0]
        t_start, t_end = (samples[0][0], samples[-1][0]) if samples else (0, 1)

        def rss_at(frac):
            t = t_start + frac * (t_end - t_start)
            return min(samples, key=lambda s: abs(s[0] - t))[1] if samples else 0


        # Resume after kill -9 at 50 %.
        neg, sock, _ = upload(app_port, "resume.bin", stop_at=SIZE // 2)
        key = neg["x-stream-key"]
        time.sleep(0.2)  # the bytes reach edgelink's socket buffer / disk
        el.send_signal(signal.SIGKILL)
        el.wait()
        sock.close()
        t0 = time.monotonic()
        el = start_edgelink(edgelink, cfg, el_log)
        procs.append(el)
        restart_s = wait_port(app_port)
        final2, rest_s, _, neg2, resume_neg_s = upload(app_port, "resume.bin", key=key)
        total_resume = time.monotonic() - t0
        offset = neg2["x-stream-offset"]
        if offset % SYNC or offset > SIZE // 2:
            failures.append(f"resume offset {offset} is not a multiple of {SYNC} at most {SIZE // 2}")
        if final2.get("status") != 0 or final2.get("sha256") != expected:
            failures.append(f"resumed upload final reply {final2}")

        ratio = (SIZE / secs) / (SIZE / plain)
        print()
        print(f"{'figure':52} {'value':>14}")
        for k, v in [
            ("plain copy, socket -> file, median (MB/s)", f"{SIZE / plain / 1e6:.0f}"),
            ("edgelink x-stream upload, file route, median (MB/s)", f"{SIZE / secs / 1e6:.0f}"),
            ("ratio to the plain copy (goal >= 0.8)", f"{ratio:.2f}"),
            ("edgelink CPU during the upload (s, % of one core)", f"{cpu:.2f}, {100 * cpu / secs:.0f} %"),
            ("edgelink RSS idle (KiB)", f"{idle_rss}"),
            ("RSS during the upload min/median/max (KiB)", f"{min(rss)}/{int(statistics.median(rss))}/{max(rss)}"),
            ("RSS at 10 % / 90 % of the upload (KiB)", f"{rss_at(0.1)}/{rss_at(0.9)}"),
            ("restart after kill -9 until the port answers (s)", f"{restart_s:.2f}"),
            ("resume request -> reply (re-hash of the prefix) (s)", f"{resume_neg_s:.2f}"),
            ("offset offered after kill -9 at 50 % (bytes)", f"{offset}"),
            ("sending the rest until the final reply (s)", f"{rest_s:.2f}"),
            ("kill -9 -> resumed upload complete (s)", f"{total_resume:.2f}"),
        ]:
            print(f"{k:52} {v:>14}")
        for k, v in [("plain_mb_s", SIZE / plain / 1e6), ("edgelink_mb_s", SIZE / secs / 1e6), ("ratio", ratio),
                     ("rss_max_kib", max(rss)), ("resume_offset", offset), ("restart_s", restart_s),
                     ("resume_reply_s", resume_neg_s)]:
            print(f"result {k} {v:.3f}" if isinstance(v, float) else f"result {k} {v}")
        print(f"verdict: {'meets' if ratio >= 0.8 else 'BELOW'} the 0.8 x plain copy goal; RSS range "
              f"{(max(rss) - min(rss)) / 1024:.1f} MiB over a {SIZE >> 20} MiB upload")
    finally:
        status = finish(procs, failures, tmp)
    return status


if __name__ == "__main__":
    sys.exit(main())
