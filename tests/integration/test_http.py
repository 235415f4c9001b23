"""The local HTTP API (spec/http-api.md §7 items 2–6 and 9): the real binary, real
curl, a real mosquitto, a socat pty pair with demo/mcu_sim.py as the RICREST device
`mcu1`, and OpenSSL for JWTs. Items 1, 7 and 8 (RTIO codecs and device server) are
the RTIO server's tests.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import EDGELINK_BIN, free_port, wait_for, wait_port
from test_devices import BAUD, PtyPair, Sim

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


class Http:
    """curl against the daemon's [http] port."""

    def __init__(self, port):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def request(self, path, body=None, method=None, headers=(), max_time=15, extra=()):
        """-> (status, headers dict (lower-case names), body bytes)."""
        cmd = ["curl", "-s", "-i", "--max-time", str(max_time), *extra]
        if method:
            cmd += ["-X", method]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append(self.base + path)
        out = subprocess.run(cmd, input=body.encode() if isinstance(body, str) else body, capture_output=True,
                             timeout=max_time + 5)
        raw = out.stdout
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines and lines[0].startswith("HTTP/1.1"), f"no HTTP response: {raw!r} {out.stderr!r}"
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs, rest

    def post(self, device, obj, **kw):
        body = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        return self.request("/" + device, body=body, method="POST", **kw)

    def copost(self, device, uri, data="", id=1, **kw):
        status, hdrs, body = self.post(device, {"method": "copost", "id": id, "uri": uri, "data": data}, **kw)
        assert status == 200, (status, body)
        assert hdrs.get("content-type") == "application/json"
        return json.loads(body)

    def obget_lines(self, device, uri, data="", id=2, max_time=3):
        """The NDJSON frames of an obget that curl ends after max_time seconds."""
        status, hdrs, body = self.post(device, {"method": "obget", "id": id, "uri": uri, "data": data},
                                       max_time=max_time, extra=("-N",))
        assert status == 200, (status, body)
        assert hdrs.get("content-type") == "application/x-ndjson"
        return [json.loads(ln) for ln in body.split(b"\n") if ln.strip()], hdrs

    def get(self, path, **kw):
        return self.request(path, **kw)

    def status(self):
        status, _, body = self.get("/status")
        assert status == 200
        return json.loads(body)

    def metrics(self):
        status, hdrs, body = self.get("/metrics")
        assert status == 200
        assert hdrs["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return body.decode()


class Observer:
    """A streaming obget read line by line on a raw socket (keeps the connection)."""

    def __init__(self, port, device, uri, data="", id=7, rcvbuf=None, read=True):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        body = json.dumps({"method": "obget", "id": id, "uri": uri, "data": data}).encode()
        self.sock.sendall(b"POST /%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (device.encode(), len(body))
                          + body)
        self.buf = b""
        self.frames = []
        self.ended = False
        self.headers = None
        if read:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
                self._parse()
                if self.ended:
                    break
        except OSError:
            pass

    def _parse(self):
        if self.headers is None:
            if b"\r\n\r\n" not in self.buf:
                return
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.headers = head.decode()
        while True:  # chunked transfer: size CRLF data CRLF
            if b"\r\n" not in self.buf:
                return
            size_line, _, rest = self.buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                return
            if len(rest) < size + 2:
                return
            data, self.buf = rest[:size], rest[size + 2:]
            for ln in data.split(b"\n"):
                if ln.strip():
                    self.frames.append(json.loads(ln))

    def wait_frames(self, n, timeout=10):
        wait_for(lambda: len(self.frames) >= n, timeout, what=f"{n} obget frames (have {len(self.frames)})")
        return self.frames

    def close(self):
        self.sock.close()


@pytest.fixture
def http_rig(workdir, broker, make_edgelink):
    """http_rig(http={...}, sim_args=(), device={...}) -> (edgelink, Http, pair, sim)."""
    things = []

    def make(http=None, sim_args=(), device=None, wait_up=True, **overrides):
        pair = PtyPair(workdir).start()
        things.append(pair)
        sim = Sim(pair.dev, *sim_args, log=os.path.join(workdir, "sim.log"))
        things.append(sim)
        port = free_port()
        config = {
            "devices": {"mcu1": {"path": pair.gw, "baud": BAUD, **(device or {})}},
            "rtstreams": {"console": {"device": "mcu1", "endpoint": "upyconsole", "port": free_port()}},
            "http": {"bind": f"127.0.0.1:{port}", "copost_timeout": 3, "obget_establish_timeout": 3,
                     **(http or {})},
        }
        config.update(overrides)
        e = make_edgelink(**config)
        wait_port(port)
        h = Http(port)
        if wait_up:
            wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "up", what="mcu1 link up")
            # The first request after the link opens may race the device's boot: wait for v.
            wait_for(lambda: h.copost("mcu1", "/v")["code"] == "OK", 20, interval=0.3, what="mcu1 answering")
        return e, h, pair, sim

    yield make
    for t in reversed(things):
        t.kill()


def device_requests(h, device="mcu1"):
    return h.status()["http"]["devices"].get(device, {})


# ---- item 9: status endpoints --------------------------------------------------------

def test_healthz_status_metrics_and_methods(http_rig):
    e, h, pair, sim = http_rig()
    status, hdrs, body = h.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    assert hdrs["content-type"] == "text/plain; charset=utf-8"

    doc = h.status()
    for key in ("version", "started", "uptime_s", "broker", "apps", "streams", "spool", "devices", "http", "counters"):
        assert key in doc, key
    assert doc["devices"]["mcu1"]["link"] == "up"
    assert doc["devices"]["mcu1"]["kind"] == "ricrest"
    assert doc["http"]["bind"] == f"127.0.0.1:{h.port}"
    assert doc["http"]["jwt"] is False

    # HEAD: the headers of GET, no body.
    status, hdrs, body = h.get("/healthz", extra=("-I",))
    assert status == 200 and body == b""

    for path in ("/healthz", "/status", "/metrics"):
        status, hdrs, body = h.request(path, method="POST", body="x")
        assert status == 405 and hdrs["allow"] == "GET, HEAD" and body == b"Method Not Allowed\n"
    status, hdrs, body = h.request("/mcu1", method="GET")
    assert status == 405 and hdrs["allow"] == "POST, OPTIONS"
    status, hdrs, body = h.request("/mcu1", method="OPTIONS")
    assert status == 204

    # The same model over the local socket (works with [http] off too).
    local = e.status()
    assert local["devices"]["mcu1"]["link"] == "up"
    assert local["version"] == doc["version"]

    # Unplugged: down.
    pair.stop()
    wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "down", what="mcu1 down")


def test_keep_alive_reuses_one_connection(http_rig):
    e, h, pair, sim = http_rig()
    out = subprocess.run(["curl", "-s", "-v", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          h.base + "/healthz", h.base + "/status", h.base + "/metrics"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("Re-using existing connection") + out.stderr.count("Reusing existing connection") == 2, \
        out.stderr[-2000:]


def test_metrics_pass_promtool_and_move(http_rig):
    e, h, pair, sim = http_rig()
    h.copost("mcu1", "/v")
    h.copost("mcu1", "/nosuch")
    text = h.metrics()
    for family in ("edgelink_build_info", "edgelink_uptime_seconds", "edgelink_broker_connected",
                   "edgelink_broker_reconnects_total", "edgelink_stream_points_total", "edgelink_outbox_bytes",
                   "edgelink_device_link_up", "edgelink_device_requests_total", "edgelink_http_requests_total",
                   "edgelink_http_observers"):
        assert f"# TYPE {family} " in text, family
    assert 'edgelink_device_link_up{device="mcu1",kind="ricrest"} 1' in text
    assert 'edgelink_http_requests_total{kind="copost",code="NOT_FOUND"} 1' in text

    def ok_count(t):
        for ln in t.splitlines():
            if ln.startswith('edgelink_device_requests_total{device="mcu1",result="ok"}'):
                return float(ln.split()[-1])
        return 0
    before = ok_count(text)
    h.copost("mcu1", "/v")
    assert ok_count(h.metrics()) == before + 1

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed; the format check did not run")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- item 2: RICREST copost ----------------------------------------------------------

def test_copost_url_command_frame_and_refusals(http_rig):
    e, h, pair, sim = http_rig()
    status, hdrs, body = h.post("mcu1", {"method": "copost", "id": 12667, "uri": "/v", "data": ""})
    assert status == 200
    assert list(json.loads(body).keys()) == ["id", "fid", "code", "data"]
    assert not body.endswith(b"\n")
    r = json.loads(body)
    assert (r["id"], r["fid"], r["code"]) == (12667, 0, "OK")
    v = json.loads(base64.b64decode(r["data"]))
    assert v["SystemName"] == "SimMCU" and v["rslt"] == "ok"

    r = h.copost("mcu1", "/nosuch")
    assert r["code"] == "NOT_FOUND" and b"failUnknownAPI" in base64.b64decode(r["data"])

    r = h.copost("mcu1", "/sim/say", b64('{"text":"hi"}'))
    assert r["code"] == "OK", r

    requests = h.status()["devices"]["mcu1"]["link_counters"]["requests"]
    for data in (b64("[1]"), b64("hello")):
        r = h.copost("mcu1", "/sim/say", data)
        assert r["code"] == "BAD_REQUEST" and r["data"] == ""
    assert h.copost("mcu1", "/subscription")["code"] == "METHOD_NOT_ALLOWED"
    assert h.copost("mcu1", "/ufStart", b64('{"fileName":"x"}'))["code"] == "BAD_REQUEST"
    # None of these reached the device.
    assert h.status()["devices"]["mcu1"]["link_counters"]["requests"] == requests


def test_copost_retry_timeout_and_offline(http_rig):
    e, h, pair, sim = http_rig(http={"copost_timeout": 1})
    # The device drops every request frame from now on.
    r = h.copost("mcu1", "/sim/drop?n=100")
    assert r["code"] == "OK"
    t0 = time.monotonic()
    r = h.copost("mcu1", "/v")
    assert r["code"] == "REQUEST_TIMEOUT" and r["data"] == ""
    assert 0.8 < time.monotonic() - t0 < 5
    pair.stop()
    wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "down", what="mcu1 down")
    r = h.copost("mcu1", "/v")
    assert r["code"] == "DEVICEID_OFFLINE"


def test_copost_survives_one_lost_frame(http_rig):
    e, h, pair, sim = http_rig(http={"copost_timeout": 10})
    assert h.copost("mcu1", "/sim/drop?n=1")["code"] == "OK"
    r = h.copost("mcu1", "/v")
    assert r["code"] == "OK", r


# ---- item 3: RICREST obget ----------------------------------------------------------

def sim_updates(sim, topic="devjson"):
    """The rateHz of every subscription update the simulator received for `topic`."""
    out = []
    for ln in sim.log_lines():
        if f"subscription update {topic} " in ln:
            out.append(float(ln.split("rateHz=")[1].split()[0]))
    return out


def test_obget_pub_streams_frames_and_cancel_unsubscribes(http_rig):
    e, h, pair, sim = http_rig()
    frames, hdrs = h.obget_lines("mcu1", "/pub/devjson", b64('{"rateHz":10}'), max_time=2)
    assert hdrs.get("cache-control") == "no-store"
    assert len(frames) >= 5, frames
    assert [f["fid"] for f in frames] == list(range(len(frames)))
    for f in frames:
        assert f["code"] == "CONTINUE" and f["id"] == 2
        payload = json.loads(base64.b64decode(f["data"]))
        assert payload["_t"] == 0
    # curl went away: the observer is removed and the device told rateHz 0.
    wait_for(lambda: h.status()["http"]["devices"]["mcu1"]["observers"] == 0, what="observer removed")
    ended = h.status()["http"]["devices"]["mcu1"]["observers_ended"]
    assert ended.get("client_gone") == 1
    wait_for(lambda: sim_updates(sim)[-1:] == [0.0], what="the device told rateHz 0")
    assert sim_updates(sim)[0] == 10.0
    # And no publish frames follow: the device's subscription is gone.
    routed = h.status()["devices"]["mcu1"]["subscriptions"]["publishes_routed"]
    time.sleep(0.5)
    assert h.status()["devices"]["mcu1"]["subscriptions"]["publishes_routed"] == routed


def test_obget_two_observers_share_the_fastest_rate(http_rig):
    e, h, pair, sim = http_rig()
    slow = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":1}'))
    fast = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":10}'))
    fast.wait_frames(10, timeout=5)
    # One device subscription at the fastest rate, shared: both see the 10 Hz publishes.
    assert 10.0 in sim_updates(sim)
    assert len(slow.frames) >= 5
    slow.close()
    fast.close()
    wait_for(lambda: h.status()["http"]["devices"]["mcu1"]["observers"] == 0, what="observers removed")


def test_obget_unknown_topic_and_uri(http_rig):
    e, h, pair, sim = http_rig()
    frames, _ = h.obget_lines("mcu1", "/pub/nosuch")
    assert len(frames) == 1 and frames[0]["code"] == "NOT_FOUND" and frames[0]["fid"] == 0
    frames, _ = h.obget_lines("mcu1", "/nothing/here")
    assert [f["code"] for f in frames] == ["NOT_FOUND"]
    frames, _ = h.obget_lines("mcu1", "/pub/devjson", b64("[1]"))
    assert [f["code"] for f in frames] == ["BAD_REQUEST"]


def test_obget_rtstream_sees_device_output(http_rig):
    e, h, pair, sim = http_rig()
    obs = Observer(h.port, "mcu1", "/rtstreams/console")
    wait_for(lambda: obs.headers is not None, what="the obget to be established")
    assert h.copost("mcu1", "/sim/say?text=hello")["code"] == "OK"
    wait_for(lambda: any(b"hello" in base64.b64decode(f["data"]) for f in obs.frames), what="hello on the stream")
    assert all(f["code"] == "CONTINUE" for f in obs.frames)
    obs.close()
    frames, _ = h.obget_lines("mcu1", "/rtstreams/nosuch")
    assert [f["code"] for f in frames] == ["NOT_FOUND"]


def test_obget_continues_across_a_reset_and_ends_offline_on_unplug(http_rig):
    e, h, pair, sim = http_rig()
    obs = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":20}'))
    obs.wait_frames(5)
    assert h.copost("mcu1", "/reset")["code"] == "OK"
    n = len(obs.frames)
    # After the REPORT and the restart wait, edgelink subscribes again on the new boot.
    obs.wait_frames(n + 10, timeout=15)
    assert not obs.ended
    pair.stop()
    wait_for(lambda: obs.ended, what="the stream to end")
    last = obs.frames[-1]
    assert last["code"] == "DEVICEID_OFFLINE" and last["data"] == ""
    assert [f["fid"] for f in obs.frames] == list(range(len(obs.frames)))


# ---- item 4: contract limits ---------------------------------------------------------

def test_contract_limits(http_rig):
    e, h, pair, sim = http_rig()
    base = {"method": "copost", "id": 5, "uri": "/v", "data": ""}
    body = json.dumps(base)
    padded = body[:-1] + " " * (865 - len(body)) + "}"
    assert len(padded) == 865
    status, hdrs, out = h.post("mcu1", padded)
    assert (status, out) == (400, b"Read body failed\n")
    assert hdrs["content-type"] == "text/plain; charset=utf-8"
    exact = body[:-1] + " " * (864 - len(body)) + "}"
    assert h.copost("mcu1", "/v") and json.loads(h.post("mcu1", exact)[2])["code"] == "OK"

    status, _, out = h.post("mcu1", {**base, "id": -1})
    assert (status, out) == (400, b"Read body json unmarshall failed\n")
    status, _, out = h.post("mcu1", "not json")
    assert (status, out) == (400, b"Read body json unmarshall failed\n")

    assert h.copost("mcu1", "/sim/say", "A" * 673)["code"] == "BAD_REQUEST"
    assert h.copost("mcu1", "/sim/say", "!!!!")["code"] == "BAD_REQUEST"
    r = json.loads(h.post("mcu1", {**base, "method": "get"})[2])
    assert r["code"] == "METHOD_NOT_ALLOWED" and r["id"] == 5
    assert h.copost("mcu1", "/" + "a" * 128)["code"] == "BAD_REQUEST"  # 129 bytes
    assert h.copost("mcu1", "/x")["code"] == "NOT_FOUND"  # 2 bytes is enough for a RICREST device
    # An unknown id: DEVICEID_OFFLINE; with a 4-byte uri BAD_REQUEST first (minimum 5).
    assert h.copost("cfa09baa-4913-4ad7-a936-3e26f9671b09", "/aa/bb")["code"] == "DEVICEID_OFFLINE"
    assert h.copost("cfa09baa-4913-4ad7-a936-3e26f9671b09", "/abc")["code"] == "BAD_REQUEST"

    for path in ("/" + "a" * 65, "/a%20b", "/"):
        status, _, out = h.request(path, method="POST", body=body)
        assert (status, out) == (403, b"The deviceID length error\n"), path
    # Further path segments and the query are ignored.
    status, _, out = h.request("/mcu1/ignored?x=1", method="POST", body=body)
    assert status == 200 and json.loads(out)["code"] == "OK"
    # Nothing else changed: the device still answers.
    assert h.copost("mcu1", "/v")["code"] == "OK"


# ---- item 5: concurrency and slow clients --------------------------------------------

def test_observer_and_copost_limits(http_rig):
    e, h, pair, sim = http_rig(http={"max_observers_per_device": 2, "max_coposts_per_device": 4,
                                     "copost_timeout": 2})
    a = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":5}'))
    b = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":5}'))
    a.wait_frames(1)
    b.wait_frames(1)
    frames, _ = h.obget_lines("mcu1", "/pub/devjson")
    assert [f["code"] for f in frames] == ["TOO_MANY_OBSERVERS"]
    a.close()
    b.close()

    assert h.copost("mcu1", "/sim/drop?n=100")["code"] == "OK"
    results = []

    def one(i):
        results.append(h.copost("mcu1", "/v", id=100 + i)["code"])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(20)
    assert sorted(results) == ["REQUEST_TIMEOUT"] * 4 + ["TOO_MANY_REQUESTS"], results


def test_slow_observer_is_terminated_and_the_device_stays_responsive(http_rig):
    e, h, pair, sim = http_rig()
    slow = Observer(h.port, "mcu1", "/pub/devjson", b64('{"rateHz":1000,"minMs":0}'), rcvbuf=4096, read=False)
    wait_for(lambda: device_requests(h).get("observers_ended", {}).get("slow") == 1, 60,
             interval=0.2, what="the slow observer to be ended")
    assert h.copost("mcu1", "/v")["code"] == "OK"
    assert 'edgelink_http_observers_ended_total{device="mcu1",reason="slow"} 1' in h.metrics()
    # Its data, read now, ends with the TERMINATE frame.
    slow.sock.settimeout(5)
    data = b""
    try:
        while b"\r\n0\r\n\r\n" not in data:
            chunk = slow.sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    slow.buf = data
    slow._parse()
    assert slow.frames and slow.frames[-1]["code"] == "TERMINATE"
    slow.close()


def test_max_connections_closes_the_extra_connection(http_rig):
    e, h, pair, sim = http_rig(http={"max_connections": 2}, wait_up=False)
    wait_for(lambda: h.get("/healthz")[0] == 200, what="healthz")
    idle = [socket.create_connection(("127.0.0.1", h.port)) for _ in range(2)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", h.port))
    extra.settimeout(5)
    try:
        assert extra.recv(10) == b""
    except ConnectionResetError:
        pass
    for s in idle:
        s.close()
    wait_for(lambda: h.get("/healthz")[0] == 200, what="healthz after the idle ones left")
    assert h.status()["http"]["connections_refused"] >= 1


def test_cors_headers(http_rig):
    e, h, pair, sim = http_rig(http={"cors_allow_origin": "*"})
    status, hdrs, _ = h.request("/mcu1", method="OPTIONS")
    assert status == 204
    assert hdrs["access-control-allow-origin"] == "*"
    assert hdrs["access-control-allow-methods"] == "POST, OPTIONS"
    assert hdrs["access-control-allow-headers"] == "Authorization, Content-Type"
    status, hdrs, _ = h.post("mcu1", {"method": "copost", "id": 1, "uri": "/v", "data": ""})
    assert hdrs["access-control-allow-origin"] == "*"
    status, hdrs, _ = h.get("/healthz")
    assert "access-control-allow-origin" not in hdrs


# ---- item 6: JWT ----------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    def __init__(self, workdir, name="k"):
        self.dir = workdir
        self.key = os.path.join(workdir, f"{name}.pem")
        self.pub = os.path.join(workdir, f"{name}.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "Ed25519", "-out", self.key], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-out", self.pub], check=True,
                       capture_output=True)

    def token(self, claims, header=None):
        h = b64url(json.dumps(header or {"alg": "EdDSA", "typ": "JWT"}).encode())
        c = b64url(json.dumps(claims).encode())
        si = os.path.join(self.dir, "si")
        with open(si, "w") as f:
            f.write(f"{h}.{c}")
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.key, "-rawin", "-in", si],
                             check=True, capture_output=True).stdout
        return f"{h}.{c}.{b64url(sig)}"


def test_jwt(http_rig, workdir):
    signer = Signer(workdir)
    other = Signer(workdir, "other")
    e, h, pair, sim = http_rig(http={"jwt_public_key": signer.pub}, wait_up=False)
    wait_for(lambda: h.status()["devices"]["mcu1"]["link"] == "up", what="mcu1 link up")
    body = {"method": "copost", "id": 1, "uri": "/v", "data": ""}
    now = int(time.time())

    def call(token=None, header=None):
        hdrs = []
        if header is not None:
            hdrs.append(header)
        elif token is not None:
            hdrs.append(f"Authorization: Bearer {token}")
        return h.post("mcu1", body, headers=hdrs)

    good = signer.token({"sub": "mcu1", "exp": now + 300})
    wait_for(lambda: json.loads(call(good)[2]).get("code") == "OK", 20, interval=0.3, what="an authorised copost")

    def rejected(resp, text):
        status, hdrs, out = resp
        assert status == 401 and out == text, (status, out)
        assert hdrs.get("www-authenticate") == "Bearer"

    rejected(call(), b"Missing or malformed Authorization header\n")
    rejected(call(header=f"Authorization: bearer {good}"), b"Invalid Authorization header\n")
    rejected(call(signer.token({"sub": "mcu2", "exp": now + 300})), b"JWT subject invalid\n")
    rejected(call(signer.token({"sub": "mcu1", "exp": now - 11})), b"Invalid or expired JWT\n")
    # Inside the 10 s leeway, with room for a slow call.
    assert json.loads(call(signer.token({"sub": "mcu1", "exp": int(time.time()) - 5}))[2])["code"] == "OK"
    rejected(call(signer.token({"sub": "mcu1"})), b"Invalid or expired JWT\n")
    rejected(call(signer.token({"sub": "mcu1", "exp": now + 300}, {"alg": "HS256", "typ": "JWT"})),
             b"Invalid or expired JWT\n")
    rejected(call(signer.token({"sub": "mcu1", "exp": now + 300}, {"alg": "none"})), b"Invalid or expired JWT\n")
    rejected(call(other.token({"sub": "mcu1", "exp": now + 300})), b"Invalid or expired JWT\n")
    # Status endpoints and preflights need no token.
    assert h.get("/status")[0] == 200
    assert h.request("/mcu1", method="OPTIONS")[0] == 204
    assert h.status()["http"]["jwt"] is True


# ---- config --------------------------------------------------------------------------

def check(workdir, text):
    path = os.path.join(workdir, "check.toml")
    with open(path, "w") as f:
        f.write('project_id = "p"\ndevice_id = "d"\n' + text)
    return subprocess.run([EDGELINK_BIN, "check", "-c", path], capture_output=True, text=True, timeout=10)


def test_http_config_checks(workdir):
    out = check(workdir, '[http]\nbind = "0.0.0.0:17917"\n')
    assert out.returncode == 0 and "not a loopback address" in out.stderr, out.stderr
    out = check(workdir, '[http]\nbind = "127.0.0.1:17917"\n')
    assert out.returncode == 0 and "loopback" not in out.stderr
    out = check(workdir, f'[http]\njwt_public_key = "{workdir}/missing.pub"\n')
    assert out.returncode != 0 and "jwt_public_key" in out.stderr
    rsa = os.path.join(workdir, "rsa.pub")
    subprocess.run(f"openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null | "
                   f"openssl pkey -pubout -out {rsa}", shell=True, check=True)
    out = check(workdir, f'[http]\njwt_public_key = "{rsa}"\n')
    assert out.returncode != 0 and "Ed25519" in out.stderr, out.stderr
    out = check(workdir, '[http]\ncopost_timeout = 0.05\n')
    assert out.returncode != 0 and "copost_timeout" in out.stderr
    out = check(workdir, '[devices.status]\npath = "/dev/ttyX"\n')
    assert out.returncode != 0 and "reserved" in out.stderr, out.stderr
    out = check(workdir, '[http]\nbind = "localhost:80"\n')
    assert out.returncode != 0 and "http.bind" in out.stderr


def test_port_in_use_is_a_clear_error(workdir, broker, make_edgelink):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    e = make_edgelink(start=False, http={"bind": f"127.0.0.1:{port}"})
    code = e.run_expecting_failure()
    s.close()
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in e.log_text()
