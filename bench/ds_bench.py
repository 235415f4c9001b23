#!/usr/bin/env python3
"""Benchmark of chunked data streams (spec/datastreams.md), stdlib + paho-mqtt. See bench/README.md.

    /usr/bin/python3 bench/ds_bench.py [BUILD_DIR]       (default build)

Starts mosquitto (config file, free port, max_queued_messages 0 so that no QoS 1 message
is dropped for a slow subscriber) and edgelink with one app ([tcpapps.app]) and
[datastreams] at its defaults (chunk_size 15000, chunk_delay_ms 100, 8 MiB buffered per
stream; [broker] max_inflight 100, the default). A subscriber process (paho, QoS 1,
`/tenants/+/devices/+/datastreams/#`) counts messages and bytes per stream_id and
timestamps them (CLOCK_MONOTONIC, shared by the processes); it decodes only text chunks.

  1. byte stream: open (kind byte, total_length SIZE), SIZE_MIB of pregenerated random
     data as write lines of 60000 raw bytes (80000 base64 characters) sent with sendall
     as fast as the socket takes them (§8 back-pressure paces it), close; timed from the
     open to the trailer's arrival at the subscriber; the trailer's bytes/chunks/sha256
     are checked. edgelink's VmRSS is sampled every 100 ms, VmHWM read after, CPU per
     thread counted;
  2. baseline, same broker, same subscriber: the same number of chunk messages of the
     same size and shape (header, chunks of base64 JSON, trailer; pregenerated file, one
     message per line) published at QoS 1 with 100 in flight (edgelink's default) by
     `mosquitto_pub -q 1 -M 100 -l` and by a paho publisher (max_inflight 100); timed
     from the publisher's start to the subscriber's receipt of the last message. The
     faster of the two is the baseline;
     1 and 2 take turns ROUNDS times (alternating which goes first); medians compared;
  3. text streams: STREAMS apps ([tcpapps.textK]; an app has one connection), each opens a text stream and writes
     TEXT_BYTES-byte texts (stream number and sequence number inside) at RATE writes/s
     for DURATION s, then closes; chunks/s arriving, the latency from each write to the
     arrival of the chunk that holds it (p50/p99/max), edgelink CPU.

Environment: SIZE_MIB (256), ROUNDS (2), STREAMS (4), RATE (200), DURATION (10),
TEXT_BYTES (40), TMPDIR_BENCH (/dev/shm: the baseline file), KEEP=1 (keep the temp dir).
Exit status 1 when a check fails.
"""
import base64
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from benchlib import finish, cpu_seconds, free_ports, kib, pct  # noqa: E402

SIZE = int(os.environ.get("SIZE_MIB", "256")) << 20
ROUNDS = int(os.environ.get("ROUNDS", "2"))
STREAMS = int(os.environ.get("STREAMS", "4"))
RATE = float(os.environ.get("RATE", "200"))
DURATION = float(os.environ.get("DURATION", "10"))
TEXT_BYTES = int(os.environ.get("TEXT_BYTES", "40"))
TMP_ROOT = os.environ.get("TMPDIR_BENCH", "/dev/shm")
WRITE = 60000          # raw bytes per write line (4 chunks' worth)
CHUNK = 15000          # [datastreams] chunk_size default
PATTERN = os.urandom(WRITE * 560)   # 33.6 MB, a multiple of WRITE and CHUNK; repeated
PROJECT, DEVICE = "bench", "gw"
PREFIX = f"/tenants/{PROJECT}/devices/{DEVICE}/datastreams/"

SUBSCRIBER = r"""
import base64, json, re, sys, threading, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
streams = {}      # stream_id -> [msgs, payload bytes, first t, last t, chunk ts, arrivals]
text_ids = set()
lock = threading.Lock()
SEQ = re.compile(rb"<(\d+):(\d+)>")
def on_connect(c, u, f, rc):
    c.subscribe("/tenants/+/devices/+/datastreams/#", qos=1)
def on_subscribe(c, u, mid, q):
    print("ready", flush=True)
def on_message(c, u, m):
    t = time.monotonic()
    p = m.payload
    i = p.find(b'"stream_id":"', 0, 64)
    sid = p[i + 13:i + 49].decode() if i >= 0 else "?"
    s = streams.get(sid)
    if s is None:
        s = streams[sid] = [0, 0, t, t, [], []]
    s[0] += 1
    s[1] += len(p)
    s[3] = t
    kind = p[6:9]
    if kind == b"chu":
        s[4].append(t)
        if sid in text_ids:
            text = base64.b64decode(json.loads(p)["content"])
            s[5].extend((int(a), int(b), t) for a, b in SEQ.findall(text))
    elif kind == b"hea":
        if json.loads(p).get("kind") == "text":
            text_ids.add(sid)
    elif kind == b"tra":
        out = {"stream_id": sid, "msgs": s[0], "bytes": s[1], "first": s[2], "last": t,
               "trailer": json.loads(p), "chunk_ts": s[4], "arrivals": s[5]}
        if sid not in text_ids:
            out["chunk_ts"] = []
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        del streams[sid]
c = mqtt.Client(client_id="ds-bench-sub", clean_session=True)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port, keepalive=60)
c.loop_forever()
"""

PAHO_PUB = r"""
import sys, threading, time
import paho.mqtt.client as mqtt
port, topic, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = mqtt.Client(client_id="ds-bench-pub", clean_session=True)
c.max_inflight_messages_set(100)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port, keepalive=60)
c.loop_start()
last = None
with open(path, "rb") as f:
    for line in f:
        last = c.publish(topic, line.rstrip(b"\n"), qos=1)
last.wait_for_publish()
c.disconnect()
c.loop_stop()
"""


def log(*a):
    print(*a, flush=True)


def data_at(pos, n):
    off = pos % len(PATTERN)
    return PATTERN[off:off + n]


def stream_sha256(n):
    h = hashlib.sha256()
    pos = 0
    view = memoryview(PATTERN)
    while pos < n:
        k = min(len(PATTERN), n - pos)
        h.update(view[:k])
        pos += k
    return h.hexdigest()


class Subscriber:
    """The subscriber process; one JSON line per trailer, queued by stream_id."""

    def __init__(self, port):
        self.proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(port)], stdout=subprocess.PIPE,
                                     bufsize=1 << 20)
        if self.proc.stdout.readline().strip() != b"ready":
            raise SystemExit("subscriber did not start")
        self.ends, self.cond = {}, threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            d = json.loads(line)
            with self.cond:
                self.ends[d["stream_id"]] = d
                self.cond.notify_all()

    def wait(self, sid, timeout=600):
        with self.cond:
            if not self.cond.wait_for(lambda: sid in self.ends, timeout):
                raise SystemExit(f"no trailer for {sid} within {timeout} s")
            return self.ends.pop(sid)


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
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"port {port} did not open")


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], False

    def run(self):
        while not self.stop:
            try:
                self.samples.append(kib(self.pid, "VmRSS"))
            except OSError:
                return
            time.sleep(0.1)


def thread_cpu(pid):
    """{thread name: utime+stime ticks} of pid's threads (names summed)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def byte_stream(app_port, el_pid, sub, expected_sha):
    sock = socket.create_connection(("127.0.0.1", app_port))
    buf = [b""]
    sampler = RssSampler(el_pid)
    sampler.start()
    cpu0, thr0 = cpu_seconds(el_pid), thread_cpu(el_pid)
    t0 = time.monotonic()
    sock.sendall(json.dumps({"ds": "open", "req": 1, "topic": "bench/bytes", "kind": "byte",
                             "total_length": SIZE}).encode() + b"\n")
    opened = read_line(sock, buf)
    if opened.get("ds") != "opened":
        raise SystemExit(f"open: {opened}")
    head = b'{"ds":"write","stream_id":"' + opened["stream_id"].encode() + b'","data":"'
    full = {}
    pos = 0
    while pos < SIZE:
        n = min(WRITE, SIZE - pos)
        off = pos % len(PATTERN)
        b64 = full.get(off) if n == WRITE else None
        if b64 is None:
            b64 = base64.b64encode(data_at(pos, n))
            if n == WRITE:
                full[off] = b64
        sock.sendall(head + b64 + b'"}\n')
        pos += n
    t_sent = time.monotonic()
    sock.sendall(json.dumps({"ds": "close", "stream_id": opened["stream_id"]}).encode() + b"\n")
    closed = read_line(sock, buf)
    end = sub.wait(opened["stream_id"])
    secs = end["last"] - t0
    cpu = cpu_seconds(el_pid) - cpu0
    thr1 = thread_cpu(el_pid)
    sampler.stop = True
    sampler.join()
    sock.close()
    threads = {k: (v - thr0.get(k, 0)) / os.sysconf("SC_CLK_TCK") for k, v in thr1.items()}
    failures = []
    attrs = end["trailer"].get("attributes", {})
    nchunks = -(-SIZE // CHUNK)
    if end["trailer"].get("reason") != "" or attrs.get("bytes") != str(SIZE) or \
            attrs.get("chunks") != str(nchunks) or attrs.get("sha256") != expected_sha:
        failures.append(f"byte stream trailer {end['trailer']}, expected {nchunks} chunks, sha256 {expected_sha}")
    if end["msgs"] < nchunks + 2:
        failures.append(f"byte stream: {end['msgs']} messages arrived, expected {nchunks + 2}")
    if closed.get("ds") != "closed" or closed.get("bytes") != SIZE:
        failures.append(f"closed reply {closed}")
    return dict(secs=secs, send_s=t_sent - t0, cpu=cpu, rss=sampler.samples or [0], msgs=end["msgs"],
                mqtt_bytes=end["bytes"], threads=threads, failures=failures)


def make_baseline_file(path):
    """Header, chunks and trailer as edgelink encodes them (same keys, same sizes), one per line."""
    sid = str(uuid.uuid4())
    nchunks = -(-SIZE // CHUNK)
    with open(path, "wb", buffering=1 << 22) as f:
        f.write(json.dumps({"t": "header", "stream_id": sid, "timestamp": int(time.time() * 1000),
                            "topic": "bench/bytes", "mime_type": "application/octet-stream",
                            "total_length": SIZE, "attributes": {}, "kind": "byte", "sender": "app:app"},
                           separators=(",", ":")).encode() + b"\n")
        cache = {}
        for i in range(nchunks):
            pos = i * CHUNK
            n = min(CHUNK, SIZE - pos)
            key = (pos % len(PATTERN), n)
            b64 = cache.get(key)
            if b64 is None:
                b64 = cache[key] = base64.b64encode(data_at(pos, n))
            f.write(b'{"t":"chunk","stream_id":"' + sid.encode() + b'","chunk_index":' + str(i).encode() +
                    b',"content":"' + b64 + b'","version":0}\n')
        f.write(json.dumps({"t": "trailer", "stream_id": sid, "reason": "",
                            "attributes": {"bytes": str(SIZE), "chunks": str(nchunks), "sha256": "0" * 64}},
                           separators=(",", ":")).encode() + b"\n")
    return sid, nchunks + 2


def baseline(mqtt_port, sub, path, sid, nmsgs, how):
    topic = PREFIX + "baseline/bytes"
    t0 = time.monotonic()
    if how == "mosquitto_pub":
        with open(path, "rb") as f:
            p = subprocess.Popen(["mosquitto_pub", "-p", str(mqtt_port), "-q", "1", "-M", "100", "-t", topic, "-l"],
                                 stdin=f)
    else:
        p = subprocess.Popen([sys.executable, "-c", PAHO_PUB, str(mqtt_port), topic, path])
    end = sub.wait(sid)
    secs = end["last"] - t0
    p.wait(60)
    fail = [] if end["msgs"] >= nmsgs else [f"baseline {how}: {end['msgs']} of {nmsgs} messages"]
    return secs, fail


def text_streams(app_ports, el_pid, sub):
    socks, sids = [], []
    for k in range(STREAMS):
        s = socket.create_connection(("127.0.0.1", app_ports[k]))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(json.dumps({"ds": "open", "req": k, "topic": f"bench/text{k}", "kind": "text"}).encode() + b"\n")
        r = read_line(s, [b""])
        if r.get("ds") != "opened":
            raise SystemExit(f"text open {k}: {r}")
        socks.append(s)
        sids.append(r["stream_id"])
    sent = [dict() for _ in range(STREAMS)]
    n_writes = int(RATE * DURATION)
    cpu0 = cpu_seconds(el_pid)
    t_start = time.monotonic() + 0.1

    def writer(k):
        s, sid, table = socks[k], sids[k].encode(), sent[k]
        head = b'{"ds":"write","stream_id":"' + sid + b'","text":"'
        for seq in range(n_writes):
            due = t_start + seq / RATE + k / (RATE * STREAMS)
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            tag = f"<{k}:{seq}>".encode()
            text = tag + b"x" * max(0, TEXT_BYTES - len(tag) - 1) + b"\\n"
            table[seq] = time.monotonic()
            s.sendall(head + text + b'"}\n')

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end_writes = time.monotonic()
    cpu = cpu_seconds(el_pid) - cpu0
    wall = t_end_writes - t_start
    for s, sid in zip(socks, sids):
        s.sendall(json.dumps({"ds": "close", "stream_id": sid}).encode() + b"\n")
    lat, chunk_ts, failures = [], [], []
    for k, sid in enumerate(sids):
        end = sub.wait(sid, 60)
        chunk_ts += end["chunk_ts"]
        got = {}
        for kk, seq, t in end["arrivals"]:
            if kk == k:
                got.setdefault(seq, t)
        missing = n_writes - len(got)
        if missing:
            failures.append(f"text stream {k}: {missing} writes never arrived")
        lat += [got[seq] - sent[k][seq] for seq in got]
        socks[k].close()
    in_window = [t for t in chunk_ts if t <= t_end_writes]
    return dict(lat=lat or [0], chunks=len(chunk_ts), chunks_per_s=len(in_window) / wall, writes=n_writes * STREAMS,
                wall=wall, cpu=cpu, failures=failures)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    edgelink = os.path.join(build, "edgelink")
    if not os.access(edgelink, os.X_OK):
        raise SystemExit(f"ds_bench: no {edgelink}")
    tmp = tempfile.mkdtemp(prefix="edgelink-ds-bench.", dir=TMP_ROOT)
    procs, failures = [], []
    try:
        log(f"size {SIZE >> 20} MiB, {ROUNDS} rounds, files in {tmp}, load average "
            f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        expected = stream_sha256(SIZE)
        mqtt_port, app_port, *text_ports = free_ports(2 + STREAMS)
        with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
            f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                    f"user {os.environ.get('USER', 'root')}\n")
        procs.append(subprocess.Popen(["mosquitto", "-c", os.path.join(tmp, "mosquitto.conf")],
                                      stderr=subprocess.DEVNULL))
        wait_port(mqtt_port)
        cfg = os.path.join(tmp, "edgelink.toml")
        with open(cfg, "w") as f:
            f.write(f'project_id = "{PROJECT}"\ndevice_id = "{DEVICE}"\npersistence_path = "{tmp}/state"\n'
                    f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\n[log]\nlevel = "warn"\n'
                    f'[datastreams]\n[tcpapps.app]\nport = {app_port}\n'
                    + "".join(f'[tcpapps.text{k}]\nport = {p}\n' for k, p in enumerate(text_ports)))
        el = subprocess.Popen([edgelink, "run", "-c", cfg], stderr=open(os.path.join(tmp, "edgelink.log"), "a"))
        procs.append(el)
        for p in [app_port] + text_ports:
            wait_port(p)
        sub = Subscriber(mqtt_port)
        procs.append(sub.proc)
        time.sleep(0.5)
        idle_rss = kib(el.pid, "VmRSS")
        base_path = os.path.join(tmp, "baseline.jsonl")
        t = time.monotonic()
        base_sid, base_n = make_baseline_file(base_path)
        log(f"baseline file: {base_n} messages, {os.path.getsize(base_path) / 1e6:.0f} MB, "
            f"written in {time.monotonic() - t:.1f} s")

        runs, bases = [], {"mosquitto_pub": [], "paho": []}

        def run_baselines():
            for how in ("mosquitto_pub", "paho"):
                # The file's stream_id is the same each time: the subscriber forgets it at the trailer.
                secs, fail = baseline(mqtt_port, sub, base_path, base_sid, base_n, how)
                failures.extend(fail)
                bases[how].append(secs)
                log(f"  baseline {how:13} {secs:.2f} s, {SIZE / secs / 1e6:.1f} MB/s of content")

        for r in range(ROUNDS):
            order = ["edgelink", "baseline"] if r % 2 == 0 else ["baseline", "edgelink"]
            for what in order:
                if what == "baseline":
                    run_baselines()
                    continue
                res = byte_stream(app_port, el.pid, sub, expected)
                failures.extend(res["failures"])
                runs.append(res)
                log(f"round {r + 1}: edgelink {res['secs']:.2f} s, {SIZE / res['secs'] / 1e6:.1f} MB/s of content, "
                    f"CPU {res['cpu']:.2f} s, VmRSS max {max(res['rss'])} KiB")
        hwm_bytes = kib(el.pid, "VmHWM")
        el_secs = statistics.median(r["secs"] for r in runs)
        med = {how: statistics.median(v) for how, v in bases.items()}
        best = min(med, key=med.get)
        ratio = med[best] / el_secs
        mid = sorted(runs, key=lambda r: r["secs"])[len(runs) // 2]
        rss_all = [x for r in runs for x in r["rss"]]
        top_threads = sorted(mid["threads"].items(), key=lambda kv: -kv[1])[:4]

        log(f"text streams: {STREAMS} x {RATE:g} writes/s of {TEXT_BYTES} bytes for {DURATION:g} s")
        ts = text_streams(text_ports, el.pid, sub)
        failures.extend(ts["failures"])
        hwm_end = kib(el.pid, "VmHWM")
        lat_ms = [x * 1000 for x in ts["lat"]]

        print()
        print(f"{'figure':58} {'value':>22}")
        rows = [
            (f"edgelink byte stream {SIZE >> 20} MiB, median (MB/s of content)", f"{SIZE / el_secs / 1e6:.1f}"),
            ("  rounds (s)", ", ".join(f"{r['secs']:.2f}" for r in runs)),
            ("  MQTT messages / payload bytes (median round)", f"{mid['msgs']} / {mid['mqtt_bytes']}"),
            ("  edgelink CPU (s, % of one core)", f"{mid['cpu']:.2f}, {100 * mid['cpu'] / mid['secs']:.0f} %"),
            ("  busiest edgelink threads (CPU s)", ", ".join(f"{k} {v:.2f}" for k, v in top_threads)),
        ]
        for how in ("mosquitto_pub", "paho"):
            rows.append((f"baseline {how} QoS 1, 100 in flight, median (MB/s)",
                         f"{SIZE / med[how] / 1e6:.1f} ({', '.join(f'{s:.2f}' for s in bases[how])} s)"))
        rows += [
            (f"ratio edgelink / baseline ({best}) (goal >= 0.8)", f"{ratio:.2f}"),
            ("edgelink RSS idle (KiB)", f"{idle_rss}"),
            ("VmRSS sampled during the byte streams min/med/max (KiB)",
             f"{min(rss_all)}/{int(statistics.median(rss_all))}/{max(rss_all)}"),
            ("VmHWM after the byte streams (KiB)", f"{hwm_bytes}"),
            (f"text: {STREAMS} streams x {RATE:g}/s, writes / chunks", f"{ts['writes']} / {ts['chunks']}"),
            ("text: chunks/s arriving, writes per chunk", f"{ts['chunks_per_s']:.1f}, {ts['writes'] / max(1, ts['chunks']):.1f}"),
            ("text: write -> arrival p50 / p99 / max (ms)",
             f"{pct(lat_ms, 50):.1f} / {pct(lat_ms, 99):.1f} / {max(lat_ms):.1f}"),
            ("text: edgelink CPU (% of one core)", f"{100 * ts['cpu'] / ts['wall']:.1f} %"),
            ("VmHWM at the end (KiB)", f"{hwm_end}"),
        ]
        for k, v in rows:
            print(f"{k:58} {v:>22}")
        for k, v in [("edgelink_mb_s", SIZE / el_secs / 1e6), ("baseline_mb_s", SIZE / med[best] / 1e6),
                     ("baseline_mosquitto_pub_mb_s", SIZE / med["mosquitto_pub"] / 1e6),
                     ("baseline_paho_mb_s", SIZE / med["paho"] / 1e6), ("ratio", ratio),
                     ("rss_max_kib", max(rss_all)), ("vmhwm_kib", hwm_bytes),
                     ("text_chunks_per_s", ts["chunks_per_s"]), ("text_latency_p50_ms", pct(lat_ms, 50)),
                     ("text_latency_p99_ms", pct(lat_ms, 99)), ("text_cpu_pct", 100 * ts["cpu"] / ts["wall"])]:
            print(f"result {k} {v:.3f}" if isinstance(v, float) else f"result {k} {v}")
        print(f"verdict: {'meets' if ratio >= 0.8 else 'BELOW'} the 0.8 x baseline goal ({ratio:.2f} x {best}); "
              f"peak RSS {hwm_bytes / 1024:.1f} MiB for a {SIZE >> 20} MiB stream "
              f"(8 MiB buffered per stream configured)")
    finally:
        status = finish(procs, failures, tmp)
    return status


if __name__ == "__main__":
    sys.exit(main())
