"""Large uploads from apps (spec/xstream.md §12, items 1–8, 10 and 11): the real binary,
a real mosquitto, an app client on loopback sockets; for the device route a socat pty
pair with demo/mcu_sim.py as the RICREST device `mcu1` (as in test_devices.py), whose
sim/file and sim/busy knobs are reached through the HTTP API's copost (as in
test_http.py). Item 9 (the datastream route) is tested in test_datastreams.py. Further tests cover §3 (check order, bufsize clamping, the
upload port), §3.2 (actions wait for the final reply), §10 (SIGTERM, eviction) and §11
(status and metrics), and the demo client demo/xstream_upload.py.

Written from the spec before the implementation existed; the exact strings compared are
the spec's.
"""
import base64
import filecmp
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import EDGELINK_BIN, TOPIC, App, Edgelink, app_config, free_port, peer_eof, publish, wait_for, wait_online
from conftest import wait_port
from test_devices import BAUD, PtyPair, Sim
from test_http import Http
from test_status import metrics_text, parse_metrics, value

ROUTE = "/upload-file"
DEVICE_ROUTE = "/device/mcu1/file"
MiB = 1024 * 1024
STEP = 65536
TOTAL = 20 * STEP  # every 5 % progress step ends on a multiple of 65536 bytes
PERCENTS = list(range(5, 101, 5))
KEY = re.compile(r"[A-Za-z0-9_-]{22}")  # base64url of 128 bits
NAMES = {0: "OK", 1: "BadRequest", 2: "UnknownRoute", 3: "TooLarge", 4: "NoSpace", 5: "UnknownKey", 6: "Timeout",
         7: "ChecksumMismatch", 8: "Busy", 9: "Internal", 10: "Partial"}
REBOOT = [{"name": "reboot", "timeout": 5}]
DEMO_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "demo", "xstream_upload.py")

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (HTTP copost to the sim)")


def blob(size, seed=1):
    return random.Random(seed).randbytes(size)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def data_line(seq, **cols):
    """A data point line for stream imu, as bytes."""
    return json.dumps(dict(stream="imu", sequence=seq, timestamp=1700000000000 + seq, **cols)).encode() + b"\n"


def stream_request(total, route=ROUTE, bufsize=None, key=None, **fields):
    """The object of a stream request line (§3). `total` may be any string, for the refusals."""
    req = {"route": route, "x-stream": str(total) if bufsize is None else f"{total}:{bufsize}"}
    if key is not None:
        req["x-stream-key"] = key
    req.update(fields)
    return req


# ---- the client ----------------------------------------------------------------------

class Uploader(App):
    """An app connection that also uploads (§2): it sends a request line, reads the
    negotiation reply, sends raw bytes and reads up to the final reply."""

    def __init__(self, port, hello=False):
        super().__init__(port, hello)
        self.progress = []  # the inner objects of {"edgelink":{"progress":{…}}} lines, in order
        self.others = []    # any other line met while waiting for a reply (actions, error reports)

    def line(self, timeout=10.0):
        msg = self.read_line(timeout)
        assert msg is not None, f"no line from edgelink within {timeout} s (or the connection ended)"
        return msg

    def reply(self, timeout=10.0):
        """The next line with a "status" (a negotiation or final reply); progress lines and
        other lines before it are kept in self.progress and self.others."""
        while True:
            msg = self.line(timeout)
            if "status" in msg:
                return msg
            inner = msg.get("edgelink")
            if isinstance(inner, dict) and set(inner) == {"progress"}:
                self.progress.append(inner["progress"])
            else:
                self.others.append(msg)

    def ask(self, request, timeout=10.0):
        """Sends one stream request and returns the negotiation reply."""
        self.send(request)
        return self.reply(timeout)

    def start(self, total, name=None, route=ROUTE, bufsize=None, key=None, offset=0, grant=0, **fields):
        """A request that must be accepted: returns the key (checked as in `accepted`)."""
        if name is not None:
            fields["name"] = name
        reply = self.ask(stream_request(total, route, bufsize, key, **fields))
        return accepted(reply, offset=offset, bufsize=bufsize, grant=grant, key=key)

    def send_chunks(self, data, size=STEP):
        for i in range(0, len(data), size):
            self.send_raw(data[i:i + size])


def upload(port, data, name, hello=False, route=ROUTE, timeout=10.0, chunk=None, **fields):
    """A whole new upload with the right sha256 on a fresh connection -> (client, key, final reply)."""
    c = Uploader(port, hello)
    key = c.start(len(data), name, route, sha256=sha(data), **fields)
    c.send_chunks(data, chunk or len(data))
    return c, key, c.reply(timeout)


# ---- what the replies must be (§3.1, §3.3) --------------------------------------------

def accepted(reply, offset=0, bufsize=None, grant=0, key=None):
    """Checks an accepting negotiation reply; returns its key. `grant` 0 = all remaining bytes;
    the reply's bufsize is the requested one (default 4096) clamped to 512..65536."""
    k = reply.get("x-stream-key")
    advice = min(max(4096 if bufsize is None else bufsize, 512), 65536)
    assert reply == {"status": 0, "x-stream": f"{grant}:{advice}", "x-stream-key": k, "data-format": "bytes",
                     "x-stream-offset": offset}, reply
    assert isinstance(k, str) and KEY.fullmatch(k), k
    if key is not None:
        assert k == key
    return k


def refused(reply, status, key=None):
    """Checks a refusal: status, "x-stream":"-1", the error name, the key when the request had one."""
    want = {"status": status, "x-stream": "-1", "error": NAMES[status]}
    if key is not None:
        want["x-stream-key"] = key
    assert {k: v for k, v in reply.items() if k != "detail"} == want, reply
    assert isinstance(reply.get("detail", ""), str)


def done(key, data, path=None):
    """The final reply of a finished upload; file routes add the path."""
    want = {"status": 0, "x-stream-key": key, "x-stream": "0:0", "sha256": sha(data)}
    if path is not None:
        want["path"] = path
    return want


def failed(reply, key, status, missing):
    """Checks an error (or Partial) final reply; `missing` = total − durable offset. Returns the detail."""
    want = {"status": status, "x-stream-key": key, "x-stream": f"{missing}:0", "error": NAMES[status]}
    assert {k: v for k, v in reply.items() if k != "detail"} == want, reply
    return reply.get("detail")


def check_steps(items, total, percents=PERCENTS):
    """Progress lines or points: `percent` goes through `percents` in order, each one reached
    (floor(20 × bytes / total) ≥ percent / 5), bytes never going back and never above total."""
    assert [p["percent"] for p in items] == percents, items
    last = 0
    for p in items:
        assert 20 * p["bytes"] // total >= p["percent"] // 5 and last <= p["bytes"] <= total, p
        last = p["bytes"]


def check_progress(lines, key, total, percents=PERCENTS, phase="receive", route=ROUTE):
    """Progress lines sent to the app (§6)."""
    for p in lines:
        assert set(p) == {"x-stream-key", "route", "phase", "bytes", "total", "percent"}, p
        assert (p["x-stream-key"], p["route"], p["phase"], p["total"]) == (key, route, phase, total), p
    check_steps(lines, total, percents)


# ---- files and the uploads stream (§8, §9) ------------------------------------------------

def stored_path(el, name, app="app"):
    """Where a file route without `dir` stores `name`."""
    return os.path.join(el.config["persistence_path"], "uploads", app, name)


def spool_files(el, key):
    """The key's part file and record."""
    return [os.path.join(el.config["persistence_path"], "xstream", key + ext) for ext in (".part", ".json")]


def record(el, key):
    with open(spool_files(el, key)[1]) as f:
        return json.load(f)


def assert_same_file(path, data, workdir):
    expected = os.path.join(workdir, "expected-" + os.path.basename(path))
    with open(expected, "wb") as f:
        f.write(data)
    assert filecmp.cmp(path, expected, shallow=False), f"{path} differs from what was sent"


def upload_points(sub, key, state=None):
    return [p for p in sub.points("uploads") if p.get("key") == key and state in (None, p.get("state"))]


def wait_points(sub, key, state, count=1, timeout=10.0):
    return wait_for(lambda: (lambda ps: ps if len(ps) >= count else None)(upload_points(sub, key, state)), timeout,
                    what=f"{count} {state} point(s) for {key} on the uploads stream")


def check_point(p, key, name, total, state, route=ROUTE, app="app"):
    """The keys every point on the uploads stream has (§8)."""
    assert p["stream"] == "uploads"
    assert isinstance(p["sequence"], int) and isinstance(p["timestamp"], int) and p["timestamp"] > 1_500_000_000_000
    assert (p["app"], p["key"], p["route"], p["name"], p["total"], p["state"]) == (
        app, key, route, name, total, state), p
    assert isinstance(p["bytes"], int) and 0 <= p["bytes"] <= total, p


def wait_step(sub, key, percent):
    """Waits for the Progress point of `percent`: with TOTAL, proof that edgelink has written
    percent / 5 × 65536 bytes."""
    wait_for(lambda: any(p["percent"] == percent for p in upload_points(sub, key, "Progress")),
             what=f"the {percent} % Progress point of {key}")


# ---- configuration ----------------------------------------------------------------------

def file_route(route=ROUTE, **extra):
    return {"route": route, "kind": "file", **extra}


@pytest.fixture
def xlink(make_edgelink):
    """xlink(routes=[...], xstream={...}, app={more [tcpapps.app] keys}, **config) -> started
    edgelink whose app `app` (action reboot) has the upload routes (default: the file route
    /upload-file) and, when given, an [xstream] table. Waits for the upload_port too."""

    def make(routes=None, xstream=None, app=None, start=True, **overrides):
        cfg = {"tcpapps": {"app": app_config(**{"actions": REBOOT, "upload_routes": routes or [file_route()],
                                                **(app or {})})}}
        if xstream:
            cfg["xstream"] = xstream
        cfg.update(overrides)
        el = make_edgelink(start=start, **cfg)
        if start and "upload_port" in (app or {}):
            wait_port(app["upload_port"])
        return el

    return make


def restart(el, owned):
    """A new edgelink on the same config and persistence_path (after a kill or a stop)."""
    el2 = Edgelink(el.workdir, el.config)
    owned.append(el2)
    return el2.start()


# ---- §12 item 1: happy path ---------------------------------------------------------------

def test_upload_a_file(xlink, sub, workdir):
    """1 MiB with the right sha256: the exact replies, a byte-identical file, Started, 20
    Progress and Completed points; the connection carries JSON lines again; a resume of the
    done key repeats the final reply without storing anything again; a second upload with
    the same name replaces the file; a route's `dir` is used; sha256 is accepted in any case."""
    incoming = os.path.join(workdir, "incoming")
    el = xlink(routes=[file_route(), file_route("/to-dir", dir=incoming)])
    data = blob(MiB)
    path = stored_path(el, "fw.bin")
    c = Uploader(el.app_port())
    key = c.start(MiB, "fw.bin", bufsize=65536, sha256=sha(data))
    c.send_raw(data)
    assert c.reply() == done(key, data, path)
    assert_same_file(path, data, workdir)
    assert not os.path.exists(spool_files(el, key)[0])  # the part file became the stored file

    completed = wait_points(sub, key, "Completed")[0]
    check_point(completed, key, "fw.bin", MiB, "Completed")
    assert (completed["size"], completed["sha256"], completed["path"]) == (MiB, sha(data), path)
    points = upload_points(sub, key)
    assert [p["state"] for p in points] == ["Started"] + ["Progress"] * 20 + ["Completed"]
    for p in points:
        check_point(p, key, "fw.bin", MiB, p["state"])
    progress = [p for p in points if p["state"] == "Progress"]
    assert all(p["phase"] == "receive" for p in progress)
    check_steps(progress, MiB)

    # JSON lines again, on the same connection.
    c.send_raw(data_line(1, after="upload"))
    wait_for(lambda: sub.points("imu"), what="the data point after the upload")
    assert sub.points("imu") == [{"sequence": 1, "timestamp": 1700000000001, "after": "upload"}]

    # §5: the done key again: offset = total, no raw phase, the same final reply, nothing stored again.
    before = os.stat(path)
    accepted(c.ask(stream_request(MiB, bufsize=65536, key=key, name="fw.bin")), offset=MiB, bufsize=65536, key=key)
    assert c.reply() == done(key, data, path)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # The same name again replaces the file; the upper-case sha256 is the same digest.
    data2 = blob(100000, seed=2)
    key2 = c.start(len(data2), "fw.bin", sha256=sha(data2).upper())
    assert key2 != key
    c.send_raw(data2)
    assert c.reply() == done(key2, data2, path)
    assert_same_file(path, data2, workdir)

    # A route with its own dir.
    data3 = blob(5000, seed=3)
    key3 = c.start(len(data3), "third.bin", route="/to-dir")
    c.send_raw(data3)
    assert c.reply() == done(key3, data3, os.path.join(incoming, "third.bin"))
    assert_same_file(os.path.join(incoming, "third.bin"), data3, workdir)
    assert c.others == []


# ---- §12 item 2: resume -------------------------------------------------------------------

def test_resume_after_the_connection_is_lost(xlink, sub, workdir):
    """sync_bytes 65536: the record exists as soon as the key is sent; 300000 bytes then
    close -> Interrupted with bytes 300000, the part file and record hold 300000; a resume
    on another app's port, or with another route or total, is UnknownKey; the resume gets
    x-stream-offset 300000 (the request's other fields are ignored) and the rest completes
    it byte-identical under the original name."""
    el = xlink(routes=[file_route(), file_route("/other")], xstream={"sync_bytes": 65536}, start=False)
    el.write_config(dict(el.config, tcpapps=dict(el.config["tcpapps"], aux=app_config(upload_routes=[file_route()]))))
    el.start()
    data = blob(MiB, seed=4)
    c = Uploader(el.app_port())
    key = c.start(MiB, "big.bin", sha256=sha(data))
    assert record(el, key)["offset"] == 0  # the record is durable before the key is sent
    c.send_raw(data[:300000])
    c.close()

    p = wait_points(sub, key, "Interrupted")[0]
    check_point(p, key, "big.bin", MiB, "Interrupted")
    assert p["bytes"] == 300000
    part, _ = spool_files(el, key)
    assert os.path.getsize(part) == 300000
    rec = record(el, key)
    assert {k: rec[k] for k in ("key", "app", "route", "kind", "name", "total", "offset", "state")} == {
        "key": key, "app": "app", "route": ROUTE, "kind": "file", "name": "big.bin", "total": MiB, "offset": 300000,
        "state": "receiving"}

    refused(Uploader(el.app_port("aux")).ask(stream_request(MiB, key=key, name="big.bin")), 5, key)  # not aux's key
    r = Uploader(el.app_port())
    refused(r.ask(stream_request(MiB + 1, key=key, name="big.bin")), 5, key)
    refused(r.ask(stream_request(MiB, route="/other", key=key, name="big.bin")), 5, key)
    accepted(r.ask(stream_request(MiB, key=key, name="other.bin", sha256="0" * 64)), offset=300000, key=key)
    r.send_raw(data[300000:])
    assert r.reply() == done(key, data, stored_path(el, "big.bin"))
    assert_same_file(stored_path(el, "big.bin"), data, workdir)
    assert not os.path.exists(stored_path(el, "other.bin"))
    resumed = wait_points(sub, key, "Resumed")[0]
    check_point(resumed, key, "big.bin", MiB, "Resumed")
    assert resumed["offset"] == 300000 and resumed["bytes"] == 300000
    wait_points(sub, key, "Completed")


def test_resume_after_kill_9(xlink, sub, workdir, owned):
    """kill -9 mid-upload (458752 bytes written): after a restart the record's offset is a
    multiple of 65536 no larger than what was sent, the part file is cut to it (and a part
    file without a record is deleted), the resume is offered exactly that offset, and the
    resumed upload is byte-identical."""
    el = xlink(xstream={"sync_bytes": 65536})
    data = blob(TOTAL, seed=5)
    sent = 7 * STEP
    c = Uploader(el.app_port())
    key = c.start(TOTAL, "k9.bin", sha256=sha(data))
    c.send_raw(data[:sent])
    wait_step(sub, key, 35)
    el.proc.kill()
    el.proc.wait(10)
    c.close()

    offset = record(el, key)["offset"]
    assert offset % 65536 == 0 and 0 <= offset <= sent, offset
    orphan = spool_files(el, "O" * 22)[0]
    with open(orphan, "wb") as f:
        f.write(b"no record")
    el2 = restart(el, owned)
    part, _ = spool_files(el, key)
    wait_for(lambda: os.path.getsize(part) == offset, what="the part file cut to the recorded offset")
    wait_for(lambda: not os.path.exists(orphan), what="the part file without a record deleted")
    r = Uploader(el2.app_port())
    accepted(r.ask(stream_request(TOTAL, key=key)), offset=offset, key=key)
    r.send_raw(data[offset:])
    assert r.reply() == done(key, data, stored_path(el, "k9.bin"))
    assert_same_file(stored_path(el, "k9.bin"), data, workdir)


# ---- §12 item 3: refusals -----------------------------------------------------------------

REFUSALS = [
    # (request, status): the checks go route (2), syntax and fields (1), size (3), key (5).
    (stream_request(10, route="/nope", name="a.bin"), 2),
    (stream_request("abc", route="/nope", name=".bad"), 2),
    (stream_request(0, name="a.bin"), 1),
    (stream_request("abc", name="a.bin"), 1),
    (stream_request(10, bufsize=0, name="a.bin"), 1),           # "10:0"
    (stream_request(10, bufsize=16777217, name="a.bin"), 1),
    (stream_request("-1", name="a.bin"), 1),
    (stream_request("+5", name="a.bin"), 1),
    (stream_request("20000:", name="a.bin"), 1),
    (stream_request(":4096", name="a.bin"), 1),
    (stream_request("\uff11\uff10", name="a.bin"), 1),          # fullwidth "10": not ASCII digits
    ({"route": ROUTE, "x-stream": 10, "name": "a.bin"}, 1),     # not a string
    (stream_request(10, name="a.bin", **{"data-format": "base64"}), 1),
    (stream_request(10), 1),                                    # a file route needs a name
    (stream_request(10, name=".hidden"), 1),
    (stream_request(10, name="a/b"), 1),
    (stream_request(10, name="x" * 129), 1),
    (stream_request(10, name="a.bin", sha256="xyz"), 1),
    (stream_request(1001, route="/small", name="a.bin"), 3),
    (stream_request(1001, route="/small", name=".bad"), 1),     # fields before size
    (stream_request("99999999999999999999", name="a.bin"), 3),  # too many digits
    (stream_request(10, name="a.bin", key="A" * 22), 5),
    (stream_request(2000, route="/small", name="a.bin", key="A" * 22), 3),  # size before key
]


def test_refusals_keep_the_connection_in_json_mode(xlink, sub, workdir):
    """Every refusal has "x-stream":"-1" and its status (2, 1, 3, 5 in the check order);
    a line with a `stream` key is a data point even with route and x-stream; the largest
    allowed total is accepted; a requested bufsize comes back clamped to 512..65536; a wrong
    sha256 ends in status 7 with the whole total missing, the key is deleted (Failed point,
    files gone, resume -> 5) and the connection still parses the next data line."""
    el = xlink(routes=[file_route(), file_route("/small", max_total_bytes=1000)])
    c = Uploader(el.app_port())
    for request, status in REFUSALS:
        refused(c.ask(request), status, request.get("x-stream-key"))
    c.send_raw(data_line(1))
    c.send_raw(data_line(2, route=ROUTE, **{"x-stream": "10"}))  # has `stream`: a data point

    small = blob(1000, seed=6)
    key = c.start(1000, "small.bin", route="/small")
    c.send_raw(small)
    assert c.reply() == done(key, small, stored_path(el, "small.bin"))
    for bufsize in (1, 16777216):  # valid, and advised back as 512 and 65536
        key = c.start(10, f"b{bufsize}.bin", bufsize=bufsize)
        c.send_raw(small[:10])
        assert c.reply() == done(key, small[:10], stored_path(el, f"b{bufsize}.bin"))

    data = blob(20000, seed=7)
    key = c.start(len(data), "bad.bin", sha256=sha(b"something else"))
    c.send_raw(data)
    detail = failed(c.reply(), key, 7, 20000)
    assert isinstance(detail, str)
    c.send_raw(data_line(3))
    wait_for(lambda: len(sub.points("imu")) == 3, what="the three data points")
    assert sub.points("imu") == [{"sequence": 1, "timestamp": 1700000000001},
                                 {"sequence": 2, "timestamp": 1700000000002, "route": ROUTE, "x-stream": "10"},
                                 {"sequence": 3, "timestamp": 1700000000003}]

    f = wait_points(sub, key, "Failed")[0]
    check_point(f, key, "bad.bin", 20000, "Failed")
    assert (f["status"], f["error"], f["resumable"]) == (7, "ChecksumMismatch", False)
    assert isinstance(f["detail"], str)
    wait_for(lambda: not any(os.path.exists(p) for p in spool_files(el, key)), what="the deleted key's files gone")
    assert not os.path.exists(stored_path(el, "bad.bin"))
    refused(c.ask(stream_request(len(data), key=key, name="bad.bin")), 5, key)
    assert c.others == []


# ---- §12 item 4: partial grant --------------------------------------------------------------

def test_partial_grant_then_more_budget_after_sighup(xlink, sub, workdir):
    """max_spool_bytes 600000, total 1 MiB -> "600000:4096"; after those bytes status 10 with
    "448576:0" (progress 5..55 %); a resume before the budget grows is NoSpace; after SIGHUP
    raises max_spool_bytes the resume gets offset 600000, progress 60..100 % and status 0."""
    el = xlink(xstream={"max_spool_bytes": 600000})
    data = blob(MiB, seed=8)
    c = Uploader(el.app_port(), hello=True)
    key = c.start(MiB, "part.bin", grant=600000, sha256=sha(data))
    c.send_raw(data[:600000])
    assert c.reply() == {"status": 10, "x-stream-key": key, "x-stream": "448576:0", "error": "Partial"}
    check_progress(c.progress, key, MiB, PERCENTS[:11])
    p = wait_points(sub, key, "Partial")[0]
    check_point(p, key, "part.bin", MiB, "Partial")
    assert p["bytes"] == 600000

    refused(c.ask(stream_request(MiB, key=key)), 4, key)  # 600000 of 600000 in use: no room at all

    el.write_config(dict(el.config, xstream={"max_spool_bytes": 2 * MiB}))
    el.signal(signal.SIGHUP)
    el.wait_log("configuration reloaded")
    c.progress.clear()
    accepted(c.ask(stream_request(MiB, key=key)), offset=600000, key=key)
    c.send_raw(data[600000:])
    assert c.reply() == done(key, data, stored_path(el, "part.bin"))
    check_progress(c.progress, key, MiB, PERCENTS[11:])
    assert_same_file(stored_path(el, "part.bin"), data, workdir)
    resumed = wait_points(sub, key, "Resumed")[0]
    assert resumed["offset"] == 600000 and resumed["bytes"] == 600000
    wait_points(sub, key, "Completed")
    check_steps(upload_points(sub, key, "Progress"), MiB)
    assert c.others == []


# ---- §12 item 5: idle timeout ----------------------------------------------------------------

def test_raw_idle_timeout(xlink, sub, workdir):
    """raw_idle_timeout 1: half the bytes, then silence -> status 6 with the other half
    missing, then EOF; an Interrupted point (status 6); the resume from 100000 completes it."""
    el = xlink(xstream={"raw_idle_timeout": 1})
    data = blob(200000, seed=9)
    c = Uploader(el.app_port())
    key = c.start(len(data), "idle.bin", sha256=sha(data))
    c.send_raw(data[:100000])
    failed(c.reply(), key, 6, 100000)
    assert peer_eof(c), "the connection was not closed after the raw-phase error"
    p = wait_points(sub, key, "Interrupted")[0]
    check_point(p, key, "idle.bin", len(data), "Interrupted")
    assert (p["status"], p["error"], p["bytes"]) == (6, "Timeout", 100000)

    r = Uploader(el.app_port())
    accepted(r.ask(stream_request(len(data), key=key)), offset=100000, key=key)
    r.send_raw(data[100000:])
    assert r.reply() == done(key, data, stored_path(el, "idle.bin"))
    assert_same_file(stored_path(el, "idle.bin"), data, workdir)


# ---- §12 item 6: busy, and the upload port ---------------------------------------------------

def test_busy_key_and_the_upload_port(xlink, sub, workdir):
    """A key mid-upload on the app port, resumed on the upload_port -> 8 (Busy); a line that
    is no stream request on the upload port -> BadRequest; a new client on the app port
    evicts the uploader (Interrupted, 393216 bytes kept) and the key then resumes on the
    upload port."""
    up = free_port()
    el = xlink(app={"upload_port": up})
    data = blob(TOTAL, seed=10)
    a = Uploader(el.app_port())
    key = a.start(TOTAL, "busy.bin", sha256=sha(data))
    a.send_raw(data[:6 * STEP])
    wait_step(sub, key, 30)

    b = Uploader(up)
    refused(b.ask(stream_request(TOTAL, key=key)), 8, key)
    b.send_raw(data_line(1))
    refused(b.reply(), 1)

    intruder = App(el.app_port())  # one client per app port: the uploader is evicted
    assert peer_eof(a), "the uploader was not evicted"
    p = wait_points(sub, key, "Interrupted")[0]
    assert p["bytes"] == 6 * STEP
    accepted(b.ask(stream_request(TOTAL, key=key)), offset=6 * STEP, key=key)
    b.send_raw(data[6 * STEP:])
    assert b.reply() == done(key, data, stored_path(el, "busy.bin"))
    assert_same_file(stored_path(el, "busy.bin"), data, workdir)
    intruder.close()


def test_max_uploads(xlink, sub, workdir):
    """max_uploads 2: with two uploads under way on the upload port a third connection there
    is closed at once and a new upload on the app port is Busy; once one finishes the app
    port's upload is accepted."""
    up = free_port()
    el = xlink(app={"upload_port": up, "max_uploads": 2})
    data = [blob(TOTAL, seed=20 + i) for i in range(3)]
    u = [Uploader(up), Uploader(up)]
    keys = [u[i].start(TOTAL, f"m{i}.bin", sha256=sha(data[i])) for i in range(2)]
    for i in range(2):
        u[i].send_raw(data[i][:STEP])

    assert peer_eof(App(up)), "a third connection on the upload port was not closed"
    a = Uploader(el.app_port())
    refused(a.ask(stream_request(TOTAL, name="m2.bin")), 8)

    u[0].send_raw(data[0][STEP:])
    assert u[0].reply() == done(keys[0], data[0], stored_path(el, "m0.bin"))
    _, key, final = upload(el.app_port(), data[2], "m2.bin")
    assert final == done(key, data[2], stored_path(el, "m2.bin"))
    u[1].send_raw(data[1][STEP:])
    assert u[1].reply() == done(keys[1], data[1], stored_path(el, "m1.bin"))
    for i in range(3):
        assert_same_file(stored_path(el, f"m{i}.bin"), data[i], workdir)


# ---- §12 item 7: the exact mode switch -------------------------------------------------------

def test_exact_mode_switch(xlink, sub, workdir):
    """A data line and a stream request in one write, then the raw bytes and another data line
    in one write; then a data line, a request, its raw bytes and a data line all in one write
    (the bytes after the request's newline are raw even in the same read). The raw bodies are
    full of newlines, '{' and data-point lines, with runs longer than max_line_bytes: none of
    it is parsed, both files are identical, exactly the four points reach the broker."""
    el = xlink(app={"max_line_bytes": 1024})
    body = data_line(99) * 1000 + b"{" * 5000 + b"\n" * 3000 + b'{"edgelink":{"hello":{}}}\n' * 100
    body2 = b"\n{" * 20000 + data_line(98)
    c = Uploader(el.app_port(), hello=True)

    request = stream_request(len(body), name="mixed.bin", sha256=sha(body))
    c.send_raw(data_line(1) + json.dumps(request).encode() + b"\n")
    key = accepted(c.reply())
    c.send_raw(body + data_line(2))
    assert c.reply() == done(key, body, stored_path(el, "mixed.bin"))

    request2 = stream_request(len(body2), name="mixed2.bin", sha256=sha(body2))
    c.send_raw(data_line(3) + json.dumps(request2).encode() + b"\n" + body2 + data_line(4))
    key2 = accepted(c.reply())
    assert c.reply() == done(key2, body2, stored_path(el, "mixed2.bin"))

    wait_for(lambda: len(sub.points("imu")) >= 4, what="the four data points")
    assert [p["sequence"] for p in sub.points("imu")] == [1, 2, 3, 4]
    assert_same_file(stored_path(el, "mixed.bin"), body, workdir)
    assert_same_file(stored_path(el, "mixed2.bin"), body2, workdir)
    assert c.others == []  # no error report: no raw byte was read as a line


def test_actions_wait_for_the_final_reply(xlink, sub, broker):
    """An action that arrives during the raw phase is delivered after the final reply (§3.2)."""
    el = xlink(app={"actions": [{"name": "reboot", "timeout": 30}]})
    wait_online(sub)
    data = blob(TOTAL, seed=11)
    c = Uploader(el.app_port())
    key = c.start(TOTAL, "act.bin", sha256=sha(data))
    c.send_raw(data[:4 * STEP])
    wait_step(sub, key, 20)
    publish(broker.port, TOPIC + "/actions", '{"action_id": "u1", "name": "reboot", "payload": "{}"}')
    wait_for(lambda: [s["state"] for s in sub.statuses() if s["action_id"] == "u1"] == ["Received"],
             what="the action Received")
    c.send_raw(data[4 * STEP:])
    assert c.reply() == done(key, data, stored_path(el, "act.bin"))
    assert c.others == []
    assert c.line() == {"action_id": "u1", "name": "reboot", "payload": "{}"}


# ---- §12 item 8: progress --------------------------------------------------------------------

def test_progress_lines_after_hello_only(xlink, sub):
    """After hello: 20 progress lines, percent 5, 10, …, 100 in order, then the final reply.
    Without hello: the final reply is the first line. 20 Progress points either way."""
    el = xlink()
    data = [blob(MiB, seed=12), blob(MiB, seed=13)]
    c, key, final = upload(el.app_port(), data[0], "p0.bin", hello=True, chunk=STEP)
    assert final == done(key, data[0], stored_path(el, "p0.bin"))
    check_progress(c.progress, key, MiB)
    assert c.others == []
    c.close()

    q, key2, final = upload(el.app_port(), data[1], "p1.bin", chunk=STEP)
    assert final == done(key2, data[1], stored_path(el, "p1.bin"))
    assert q.progress == [] and q.others == []

    for k, name in ((key, "p0.bin"), (key2, "p1.bin")):
        wait_points(sub, k, "Completed")
        points = upload_points(sub, k, "Progress")
        for p in points:
            check_point(p, k, name, MiB, "Progress")
            assert p["phase"] == "receive"
        check_steps(points, MiB)


# ---- §10: SIGTERM in the raw phase -------------------------------------------------------------

def test_sigterm_in_the_raw_phase(xlink, sub, workdir, owned):
    """SIGTERM mid-upload: status 9 with detail "shutdown" and every received byte durable
    (the rest missing), then EOF; after a restart the resume starts at 393216."""
    el = xlink()
    data = blob(TOTAL, seed=14)
    c = Uploader(el.app_port())
    key = c.start(TOTAL, "term.bin", sha256=sha(data))
    c.send_raw(data[:6 * STEP])
    wait_step(sub, key, 30)
    el.stop()
    reply = c.reply()
    assert failed(reply, key, 9, TOTAL - 6 * STEP) == "shutdown"
    assert peer_eof(c)

    el2 = restart(el, owned)
    r = Uploader(el2.app_port())
    accepted(r.ask(stream_request(TOTAL, key=key)), offset=6 * STEP, key=key)
    r.send_raw(data[6 * STEP:])
    assert r.reply() == done(key, data, stored_path(el, "term.bin"))
    assert_same_file(stored_path(el, "term.bin"), data, workdir)


# ---- §11: status and metrics -------------------------------------------------------------------

def test_status_and_metrics(xlink, sub):
    """Mid-upload `status --json` lists the upload under uploads.active; afterwards active is
    empty, the done key is counted and the spool holds nothing; the §11 metric families
    have their types and values."""
    el = xlink(xstream={"sync_bytes": 65536})
    data = blob(TOTAL, seed=15)
    c = Uploader(el.app_port())
    key = c.start(TOTAL, "st.bin", sha256=sha(data))
    c.send_raw(data[:6 * STEP])
    wait_step(sub, key, 30)
    entry = {"app": "app", "key": key, "route": ROUTE, "bytes": 6 * STEP, "total": TOTAL}
    wait_for(lambda: el.status()["uploads"]["active"] == [entry], interval=0.2, what=f"uploads.active == [{entry}]")
    u = el.status()["uploads"]
    assert u["keys"] == 1 and 6 * STEP <= u["spool_bytes"] <= TOTAL, u

    c.send_raw(data[6 * STEP:])
    assert c.reply() == done(key, data, stored_path(el, "st.bin"))
    u = wait_for(lambda: (lambda u: u if u["active"] == [] else None)(el.status()["uploads"]), interval=0.2,
                 what="no upload active")
    assert (u["keys"], u["spool_bytes"]) == (1, 0), u

    types, samples = parse_metrics(metrics_text(el))
    families = {"edgelink_uploads_active": "gauge", "edgelink_uploads_total": "counter",
                "edgelink_upload_bytes_total": "counter", "edgelink_xstream_spool_bytes": "gauge",
                "edgelink_xstream_keys": "gauge"}
    assert {f: types.get(f) for f in families} == families
    assert value(samples, "edgelink_uploads_total", app="app", route=ROUTE, status="0") == 1
    assert value(samples, "edgelink_upload_bytes_total", app="app", route=ROUTE) == TOTAL
    assert value(samples, "edgelink_uploads_active", app="app") == 0
    assert value(samples, "edgelink_xstream_spool_bytes") == 0
    assert value(samples, "edgelink_xstream_keys", state="done") == 1


# ---- §12 item 11: expiry -------------------------------------------------------------------------

def test_key_expiry(xlink, sub, owned):
    """key_ttl 1: a resume 2 s after the last byte is UnknownKey; at the next sweep (a restart
    forces one) the key's files are gone and one Expired point carries the durable offset."""
    el = xlink(xstream={"key_ttl": 1})
    data = blob(TOTAL, seed=16)
    c = Uploader(el.app_port())
    key = c.start(TOTAL, "exp.bin", sha256=sha(data))
    c.send_raw(data[:2 * STEP])
    c.close()
    wait_points(sub, key, "Interrupted")
    time.sleep(2)  # the expiry itself is what is tested
    r = Uploader(el.app_port())
    refused(r.ask(stream_request(TOTAL, key=key)), 5, key)

    el.stop()
    el2 = restart(el, owned)
    wait_for(lambda: not any(os.path.exists(p) for p in spool_files(el, key)), what="the expired key's files gone")
    p = wait_points(sub, key, "Expired")[0]
    check_point(p, key, "exp.bin", TOTAL, "Expired")
    assert p["bytes"] == 2 * STEP
    assert el2.status()["uploads"]["keys"] == 0
    assert len(upload_points(sub, key, "Expired")) == 1


# ---- §12 item 10: device route ---------------------------------------------------------------------

@pytest.fixture
def device_rig(workdir, owned, xlink):
    """-> (edgelink, Http, pair, sim): the simulator on a socat pty pair as device mcu1 (its
    events in WORKDIR/sim.log), the route /device/mcu1/file (rtstream to the endpoint
    filesink) and [http] for coposts to the simulator."""
    pair = PtyPair(workdir).start()
    owned.append(pair)
    sim = Sim(pair.dev, log=os.path.join(workdir, "sim.log"))
    owned.append(sim)
    http_port = free_port()
    el = xlink(routes=[{"route": DEVICE_ROUTE, "kind": "device", "file_type": "rtstream", "endpoint": "filesink"}],
               devices={"mcu1": {"path": pair.gw, "baud": BAUD}},
               http={"bind": f"127.0.0.1:{http_port}", "copost_timeout": 3})
    wait_port(http_port)
    h = Http(http_port)
    wait_device_up(h)
    return el, h, pair, sim


def wait_device_up(h):
    wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "up", 20, what="mcu1 link up")
    # The first request after the link opens may race the device's boot: wait for v.
    wait_for(lambda: h.copost("mcu1", "/v")["code"] == "OK", 20, interval=0.3, what="mcu1 answering")


def sim_file(h, name):
    """The simulator's {"len", "sha256"} of a file its filesink or file system holds."""
    r = h.copost("mcu1", f"/sim/file?name={name}")
    assert r["code"] == "OK", r
    return json.loads(base64.b64decode(r["data"]))


def assert_on_device(h, name, data):
    info = sim_file(h, name)
    assert (info["len"], info["sha256"].lower()) == (len(data), sha(data)), info


@needs_curl
@pytest.mark.parametrize("file_type", ["rtstream", "fs"])
def test_device_route(device_rig, sub, file_type):
    """200 KiB to mcu1 over rtstream (the route's file_type) and over fs (the request's
    fileType): status 0 without a path, 20 receive then 20 device progress lines, the
    simulator holds the same bytes, a Completed point names the device and file type."""
    el, h, _, _ = device_rig
    data = blob(200 * 1024, seed=17)
    name = f"{file_type}.bin"
    extra = {"fileType": "fs"} if file_type == "fs" else {}
    c, key, final = upload(el.app_port(), data, name, hello=True, route=DEVICE_ROUTE, timeout=60, **extra)
    assert final == done(key, data)
    check_progress(c.progress[:20], key, len(data), route=DEVICE_ROUTE)
    check_progress(c.progress[20:], key, len(data), phase="device", route=DEVICE_ROUTE)
    assert_on_device(h, name, data)
    p = wait_points(sub, key, "Completed")[0]
    check_point(p, key, name, len(data), "Completed", route=DEVICE_ROUTE)
    assert (p["size"], p["sha256"], p["device"], p["file_type"]) == (len(data), sha(data), "mcu1", file_type)


@needs_curl
def test_device_route_restarts_after_busy(device_rig):
    """sim/busy?n=1: the first block is refused BUSY (once, says the simulator's log),
    edgelink restarts the rtstream (ufStart again, from offset 0) and the push still ends
    in status 0 with the file intact, completed once."""
    el, h, pair, sim = device_rig
    assert h.copost("mcu1", "/sim/busy?n=1")["code"] == "OK"
    data = blob(200 * 1024, seed=18)
    _, key, final = upload(el.app_port(), data, "busy.bin", route=DEVICE_ROUTE, timeout=60)
    assert final == done(key, data)
    assert_on_device(h, "busy.bin", data)
    assert len(sim.log_lines("sim: busy ")) == 1
    assert sim.log_lines("sim: filesink complete ") == [f"sim: filesink complete file=busy.bin len={len(data)}"]


@needs_curl
def test_device_offline_then_resume_pushes_again(device_rig, sub, workdir, owned):
    """socat gone before the push: status 9 after the raw phase (nothing missing, detail
    names mcu1 and offline), a resumable Failed point, the connection stays open; with the
    device back, a resume of the key on that connection has no raw phase
    (x-stream-offset = total) and the push runs again: status 0, the file on the device."""
    el, h, pair, _ = device_rig
    pair.stop()
    wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "down", what="mcu1 down")
    data = blob(200 * 1024, seed=19)
    c = Uploader(el.app_port())
    key = c.start(len(data), "off.bin", route=DEVICE_ROUTE, sha256=sha(data))
    c.send_raw(data)
    detail = failed(c.reply(30), key, 9, 0)
    assert "mcu1" in detail and "offline" in detail.lower(), detail
    f = wait_points(sub, key, "Failed")[0]
    check_point(f, key, "off.bin", len(data), "Failed", route=DEVICE_ROUTE)
    assert (f["status"], f["error"], f["resumable"]) == (9, "Internal", True) and "mcu1" in f["detail"]

    pair.start()
    owned.append(Sim(pair.dev, log=os.path.join(workdir, "sim.log")))
    wait_device_up(h)
    accepted(c.ask(stream_request(len(data), route=DEVICE_ROUTE, key=key)), offset=len(data), key=key)
    assert c.reply(60) == done(key, data)
    assert_on_device(h, "off.bin", data)


@needs_curl
def test_device_route_refusals(device_rig):
    """On the device route: 16777216 bytes is TooLarge, an unknown fileType and a missing
    name (the route has no file_name) are BadRequest, another device's route is unknown."""
    el, h, pair, _ = device_rig
    c = Uploader(el.app_port())
    refused(c.ask(stream_request(16777216, route=DEVICE_ROUTE, name="big.bin")), 3)
    refused(c.ask(stream_request(1000, route=DEVICE_ROUTE, name="x.bin", fileType="zip")), 1)
    refused(c.ask(stream_request(1000, route=DEVICE_ROUTE)), 1)
    refused(c.ask(stream_request(1000, route="/device/mcu2/file", name="x.bin")), 2)


# ---- configuration (§1; item 9 is not built) -------------------------------------------------

def check_config(workdir, tail, device=False):
    """`edgelink check` on a config with app `app` (and with `device`, a [devices.mcu1])
    followed by `tail` -> (path, the text's lines, CompletedProcess)."""
    devices = '[devices.mcu1]\npath = "/dev/ttyNOPE"\n\n' if device else ""
    text = (f'project_id = "demo"\ndevice_id = "gw-001"\npersistence_path = "{workdir}/state"\n\n'
            f'{devices}[tcpapps.app]\nport = {free_port()}\n{tail}')
    path = os.path.join(workdir, "check.toml")
    with open(path, "w") as f:
        f.write(text)
    out = subprocess.run([EDGELINK_BIN, "check", "-c", path], capture_output=True, text=True, timeout=10)
    return path, text.splitlines(), out


@pytest.mark.parametrize("route,ok", [("/ds/camera/video", True), ("/ds/", False), ("/ds/a+b", False),
                                      ("/dsx", False)])
def test_check_datastream_routes(workdir, route, ok):
    """kind = "datastream" takes "/ds/<topic>" with a data-stream topic (datastreams.md §5:
    1..128 bytes, no '+', '#'); anything else fails `check`, naming the route's key at its line."""
    path, lines, out = check_config(workdir, f'\n[[tcpapps.app.upload_routes]]\nroute = "{route}"\n'
                                             'kind = "datastream"\n')
    if ok:
        assert out.returncode == 0, out.stderr
        return
    assert out.returncode != 0
    hits = [ln for ln in out.stderr.splitlines() if "tcpapps.app.upload_routes[0].route" in ln]
    assert hits, out.stderr
    line = lines.index(f'route = "{route}"') + 1
    assert re.match(re.escape(path) + rf":{line}:\d+: ", hits[0]), hits[0]


def test_check_fills_in_the_xstream_defaults(workdir):
    """A file route alone passes `check`; the effective config has §1's defaults."""
    path, _, out = check_config(workdir, f'\n[[tcpapps.app.upload_routes]]\nroute = "{ROUTE}"\nkind = "file"\n')
    assert out.returncode == 0, out.stderr
    eff = tomllib.loads(out.stdout)
    assert eff["xstream"] == {"max_spool_bytes": 1073741824, "min_free_bytes": 67108864, "key_ttl": 86400,
                              "raw_idle_timeout": 30, "sync_bytes": 1048576, "device_restarts": 3}
    app = eff["tcpapps"]["app"]
    assert app["max_uploads"] == 4 and "upload_port" not in app
    route = app["upload_routes"][0]
    assert (route["route"], route["kind"], route["max_total_bytes"]) == (ROUTE, "file", 1073741824)


@pytest.mark.parametrize("tail,key", [
    ('route = "/ds/camera/video"\nkind = "file"', "upload_routes[0].route"),
    ('route = "/device/mcu1/file"\nkind = "file"', "upload_routes[0].route"),
    ('route = "upload"\nkind = "file"', "upload_routes[0].route"),
    ('route = "/a b"\nkind = "file"', "upload_routes[0].route"),
    ('route = "/device/nosuch/file"\nkind = "device"', "upload_routes[0].route"),
    ('route = "/device/mcu1/fs"\nkind = "device"', "upload_routes[0].route"),
    ('route = "/x"\nkind = "zip"', "upload_routes[0].kind"),
    ('route = "/x"\nkind = "file"\nmax_total_bytes = 0', "upload_routes[0].max_total_bytes"),
    ('route = "/device/mcu1/file"\nkind = "device"\nmax_total_bytes = 16777216', "upload_routes[0].max_total_bytes"),
    ('route = "/x"\nkind = "file"\n\n[[tcpapps.app.upload_routes]]\nroute = "/x"\nkind = "file"',
     "upload_routes[1].route"),
], ids=["ds-prefix", "device-prefix", "no-slash", "space", "unknown-device", "not-file", "kind", "zero-size",
        "device-size", "duplicate"])
def test_check_refuses_bad_routes(workdir, tail, key):
    """§1's route rules: each bad route fails `check` with an error naming its key."""
    _, _, out = check_config(workdir, f"\n[[tcpapps.app.upload_routes]]\n{tail}\n", device=True)
    assert out.returncode != 0
    assert f"tcpapps.app.{key}" in out.stderr, out.stderr


# ---- the demo client ---------------------------------------------------------------------------

def test_demo_client_uploads_and_resumes(xlink, workdir):
    """demo/xstream_upload.py: a partial grant exits 10 and prints the --key to resume; after
    SIGHUP raises the budget the same command with --key and --hello prints progress and the
    final reply, exits 0, and the stored file is identical."""
    el = xlink(xstream={"max_spool_bytes": 600000})
    data = blob(MiB, seed=30)
    src = os.path.join(workdir, "demo.bin")
    with open(src, "wb") as f:
        f.write(data)
    cmd = [sys.executable, DEMO_CLIENT, "--port", str(el.app_port()), "--route", ROUTE, src]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert first.returncode == 10, first.stdout + first.stderr
    key = re.search(r"--key (\S+)", first.stderr).group(1)
    assert KEY.fullmatch(key)

    el.write_config(dict(el.config, xstream={"max_spool_bytes": 2 * MiB}))
    el.signal(signal.SIGHUP)
    el.wait_log("configuration reloaded")
    second = subprocess.run(cmd + ["--key", key, "--hello"], capture_output=True, text=True, timeout=30)
    assert second.returncode == 0, second.stdout + second.stderr
    final = json.loads([ln for ln in second.stdout.splitlines() if ln.startswith("{")][-1])
    assert final == done(key, data, stored_path(el, "demo.bin"))
    assert "receive 100%" in second.stdout
    assert_same_file(stored_path(el, "demo.bin"), data, workdir)
