"""Chunked data streams (spec/datastreams.md §10, items 1–7) and the x-stream datastream
route (spec/xstream.md §7.2, §12 item 9): the real binary against a real mosquitto, an app
client on loopback sockets speaking the control lines of §2, ds_checker.py collecting
what reaches the broker, and paho publishes (QoS 1) for inbound streams. Further tests
cover §2 (a line with `stream` is a data point, UnknownStream, Closed, HeaderTooLarge,
data/text against the kind, the `closed` reply, open refusals), §7's drop counters,
§9 (status and metrics), §1 (`edgelink check`) and the demo clients ds_send.py and
ds_receive.py.

Written from the spec, blind to the implementation; the exact strings compared are the
spec's. Where the spec leaves something open a test either checks only what the spec
fixes (and says so) or names the reading it assumes in its docstring ("Assumed: …").
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib

import pytest

from conftest import (TOPIC, App, Broker, ConfiguredBroker, Edgelink, app_config, base_config, publish_many,
                      wait_for)
from ds_checker import (UUID4, DsChecker, check_header_shape, check_order, check_stream, chunk_bytes, chunk_sizes)
from test_spool import lose_broker, wait_connected
from test_status import metrics_text, parse_metrics, value
from test_xstream import Uploader, blob, check_config, done, restart, sha, spool_files, upload, wait_points

DS = TOPIC + "/datastreams/"
DS_IN = TOPIC + "/datastreams-in/"
BLOB = "config/blob"
CHUNK = 15000
MiB = 1024 * 1024
END_CODES = {"AbnormalEnd": 1, "DecodeFailed": 2, "LengthExceeded": 3, "Incomplete": 4, "Timeout": 20,
             "Shutdown": 21, "Cancelled": 22, "Overflow": 23}                       # §6.1
ERROR_CODES = {"BadRequest": 1, "Full": 3, "Closed": 5, "UnknownStream": 6, "HandlerAlreadyRegistered": 7,
               "HeaderTooLarge": 9}                                                   # §6.2
DEFAULT_MIME = {"text": "text/plain", "byte": "application/octet-stream"}
# mosquitto logs every SUBSCRIBE as "<time>: <client id> <qos> <filter>".
SUB_LOG = "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe"
DS_SUBSCRIPTION = re.compile(r"^\d+: \S+ \d " + re.escape(DS_IN + "#") + r"$", re.M)
DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "demo")


def b64(data):
    return base64.b64encode(data).decode()


def now_ms():
    return int(time.time() * 1000)


# ---- control lines (§2) ------------------------------------------------------------------------

def line(obj):
    return json.dumps(obj).encode() + b"\n"


def open_line(topic, kind="byte", **fields):
    return {"ds": "open", "topic": topic, "kind": kind, **fields}


def write_line(sid, data=None, text=None):
    """A write of bytes (sent as base64 `data`) or of a string (`text`)."""
    return {"ds": "write", "stream_id": sid, **({"text": text} if text is not None else {"data": b64(data)})}


def writes(sid, data, sizes):
    """Write lines cutting `data` into pieces of the given sizes."""
    out, at = [], 0
    for n in sizes:
        out.append(write_line(sid, data[at:at + n]))
        at += n
    assert at == len(data)
    return out


def close_line(sid, attributes=None):
    return {"ds": "close", "stream_id": sid, **({"attributes": attributes} if attributes is not None else {})}


def abort_line(sid, reason=None):
    return {"ds": "abort", "stream_id": sid, **({"reason": reason} if reason is not None else {})}


def closed(sid, nbytes, chunks, reason=""):
    """The `closed` line: with "code" when the reason has a number in §6.1."""
    msg = {"ds": "closed", "stream_id": sid, "bytes": nbytes, "chunks": chunks, "reason": reason}
    if reason in END_CODES:
        msg["code"] = END_CODES[reason]
    return msg


def assert_error(reply, reason, req=None, stream_id=None):
    """{"ds":"error",…} with the §6.2 code, `req` or `stream_id`, and an optional text `message`."""
    want = {"ds": "error", "reason": reason, "code": ERROR_CODES[reason]}
    if req is not None:
        want["req"] = req
    if stream_id is not None:
        want["stream_id"] = stream_id
    assert {k: v for k, v in reply.items() if k != "message"} == want, reply
    assert isinstance(reply.get("message", ""), str), reply


# ---- the app client ----------------------------------------------------------------------------

class DsApp(App):
    """An app connection that speaks data-stream lines. Lines without "ds" met while waiting
    for one (actions, error reports) are kept in self.others."""

    def __init__(self, port, hello=False):
        super().__init__(port, hello)
        self.req = 0
        self.others = []

    def ds_line(self, timeout=10.0):
        """The next line with a "ds" key."""
        while True:
            msg = self.read_line(timeout)
            assert msg is not None, f"no data-stream line from edgelink within {timeout} s (or the connection ended)"
            if "ds" in msg:
                return msg
            self.others.append(msg)

    def send_lines(self, *objs):
        """All the lines in one sendall (no pause between them)."""
        self.send_raw(b"".join(line(o) for o in objs))

    def request(self, obj):
        """Sends a line that takes a `req` (open, subscribe, unsubscribe) with a fresh one -> (req, reply)."""
        self.req += 1
        self.send({**obj, "req": self.req})
        return self.req, self.ds_line()

    def open(self, topic, kind="byte", **fields):
        """An open that must succeed: the exact `opened` reply; returns the stream id."""
        req, reply = self.request(open_line(topic, kind, **fields))
        sid = reply.get("stream_id")
        assert reply == {"ds": "opened", "req": req, "stream_id": sid}, reply
        assert isinstance(sid, str) and UUID4.fullmatch(sid), sid
        return sid

    def refused(self, obj, reason):
        """A line with a req that must be refused with `reason`."""
        req, reply = self.request(obj)
        assert_error(reply, reason, req=req)

    def write(self, sid, data):
        self.send(write_line(sid, data))

    def close_stream(self, sid, attributes=None):
        """close -> the reply (`closed`, or an error)."""
        self.send(close_line(sid, attributes))
        return self.ds_line()

    def abort(self, sid, reason=None):
        self.send(abort_line(sid, reason))
        return self.ds_line()

    def subscribe(self, topic):
        req, reply = self.request({"ds": "subscribe", "topic": topic})
        assert reply == {"ds": "subscribed", "req": req, "topic": topic}, reply

    def unsubscribe(self, topic):
        req, reply = self.request({"ds": "unsubscribe", "topic": topic})
        assert reply == {"ds": "unsubscribed", "req": req, "topic": topic}, reply


# ---- what reaches the broker (§3) --------------------------------------------------------------

def header_of(sid, topic, kind="byte", mime_type=None, total_length=None, name=None, attributes=None,
              text_meta=None, sender="app:app"):
    """The header edgelink must publish, without its timestamp."""
    h = {"t": "header", "stream_id": sid, "topic": topic, "kind": kind, "mime_type": mime_type or DEFAULT_MIME[kind],
         "attributes": attributes or {}, "sender": sender}
    if total_length is not None:
        h["total_length"] = total_length
    if name is not None:
        h["name"] = name
    if text_meta is not None:
        h["text_meta"] = text_meta
    return h


def check_header(stream, t0, topic, **fields):
    """The stream came on …/datastreams/<topic> and its header is exactly header_of(…), with a
    timestamp taken at open (not before t0, not in the future)."""
    assert stream.topic == DS + topic, stream.topics
    h = stream.header
    check_header_shape(h)
    assert {k: v for k, v in h.items() if k != "timestamp"} == header_of(stream.stream_id, topic, **fields), h
    assert t0 <= h["timestamp"] <= now_ms(), (t0, h["timestamp"])


def ended(checker, sid, data, reason="", sizes=None, attributes=None, duplicates=False, timeout=10.0):
    """Waits for the stream's trailer and checks it (ds_checker.check_stream): order, contiguous
    indexes, the bytes, the trailer's bytes/chunks/sha256 and reason; optionally the chunk sizes and
    the trailer's other attributes. Returns the stream."""
    s = checker.wait_ended(sid, timeout)
    check_stream(s, data, reason, duplicates)
    if sizes is not None:
        assert chunk_sizes(s, duplicates) == sizes
    if attributes is not None:
        extra = {k: v for k, v in s.trailer["attributes"].items() if k not in ("bytes", "chunks", "sha256")}
        assert extra == attributes, s.trailer
    return s


# ---- inbound messages (§3, §7) and what the app gets (§2.4) -------------------------------------

def in_header(sid, kind="byte", topic=BLOB, total_length=None, name=None, attributes=None, text_meta=None,
              mime_type=None, sender="cloud"):
    h = {"t": "header", "stream_id": sid, "timestamp": 1732180000123, "topic": topic, "kind": kind,
         "mime_type": mime_type or DEFAULT_MIME[kind], "attributes": attributes or {}, "sender": sender}
    if total_length is not None:
        h["total_length"] = total_length
    if name is not None:
        h["name"] = name
    if text_meta is not None:
        h["text_meta"] = text_meta
    return h


def in_chunk(sid, index, data, version=0):
    return {"t": "chunk", "stream_id": sid, "chunk_index": index, "content": b64(data), "version": version}


def in_trailer(sid, reason="", attributes=None):
    return {"t": "trailer", "stream_id": sid, "reason": reason, "attributes": attributes or {}}


def rx_open(header, topic=BLOB):
    """rx_open carries the header fields that were present; `topic` is the one routed on."""
    return {"ds": "rx_open", **{k: v for k, v in header.items() if k != "t"}, "topic": topic}


def rx_chunk(sid, index, data, kind="byte", version=None):
    msg = {"ds": "rx_chunk", "stream_id": sid, "chunk_index": index}
    if kind == "text":
        msg["text"] = data.decode()
    else:
        msg["data"] = b64(data)
    if version is not None:
        msg.update(version=version, replace=True)
    return msg


def rx_close(sid, reason="", attributes=None):
    msg = {"ds": "rx_close", "stream_id": sid, "reason": reason, "attributes": attributes or {}}
    if reason in END_CODES:
        msg["code"] = END_CODES[reason]
    return msg


def assert_rx_close(msg, sid, reason):
    """An rx_close edgelink makes itself (no trailer to take attributes from): the spec fixes its
    reason and code; its attributes are only required to be an object of strings."""
    attrs = msg.get("attributes")
    assert isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values()), msg
    assert {k: v for k, v in msg.items() if k != "attributes"} == {
        k: v for k, v in rx_close(sid, reason).items() if k != "attributes"}, msg


def subscribe_when_free(c, topic):
    """Subscribes `topic` once its former reader's connection is gone (HandlerAlreadyRegistered
    until edgelink has noticed)."""
    def taken():
        req, reply = c.request({"ds": "subscribe", "topic": topic})
        if reply.get("ds") == "error":
            assert_error(reply, "HandlerAlreadyRegistered", req=req)
            return False
        assert reply == {"ds": "subscribed", "req": req, "topic": topic}, reply
        return True
    wait_for(taken, interval=0.2, what=f"{topic} free for a new reader")


def send_in(broker, topic, *messages):
    """Publishes the messages in order (QoS 1, one client) on …/datastreams-in/<topic>; a str or
    bytes message goes as it is."""
    publish_many(broker.port, DS_IN + topic,
                 [m if isinstance(m, (str, bytes)) else json.dumps(m) for m in messages])


def exchange(c, broker, topic, *messages):
    """Publishes the messages, then a marker stream (header and trailer) on the same topic, and
    returns the lines the app got before the marker's rx_open: exactly what the messages caused,
    since one publisher's messages on one topic arrive in order. The topic must be free for a new
    stream by then."""
    marker = f"marker-{time.monotonic_ns()}"
    send_in(broker, topic, *messages, in_header(marker, topic=topic), in_trailer(marker))
    got = []
    while True:
        msg = c.ds_line()
        if msg.get("ds") == "rx_open" and msg.get("stream_id") == marker:
            assert c.ds_line() == rx_close(marker), "the marker stream did not end cleanly"
            return got
        got.append(msg)


# ---- status, metrics, records ------------------------------------------------------------------

def ds_status(el):
    return el.status()["datastreams"]


def writer(el, sid):
    return next((w for w in ds_status(el)["writers"] if w["stream_id"] == sid), None)


def metric(el, name, **labels):
    """A sample's value; 0 while the labelled series does not exist yet."""
    return value(parse_metrics(metrics_text(el))[1], name, **labels) or 0


def dropped(el, why):
    return metric(el, "edgelink_datastream_inbound_dropped_total", why=why)


def open_records(el):
    """The records of open outbound streams (§6.1)."""
    d = os.path.join(el.config["persistence_path"], "datastreams", "open")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def ds_subscriptions(broker):
    """How many times a client subscribed …/datastreams-in/# (mosquitto's log)."""
    with open(broker.log, errors="replace") as f:
        return len(DS_SUBSCRIPTION.findall(f.read()))


def wait_ds_subscription(broker, count=1):
    wait_for(lambda: ds_subscriptions(broker) >= count, what=f"edgelink's subscription {count} to {DS_IN}#")


def wait_spooled(el):
    """Everything queued has been written to the disk spool (the broker is away)."""
    def on_disk():
        st = el.status()
        return st["outbox"]["memory_only"] == 0 and st["spool"]["writing"] == 0 and st["spool"]["records"] > 0
    wait_for(on_disk, 20, what="the outbox written to the disk spool")


# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def broker(workdir):
    """conftest's broker, logging subscriptions (see wait_ds_subscription)."""
    b = Broker(workdir, extra_conf=SUB_LOG).start()
    yield b
    b.kill()


@pytest.fixture
def durable(workdir):
    """A mosquitto that keeps the checker's session and queue across its restarts."""
    b = ConfiguredBroker(workdir, persistent=True, extra_conf=SUB_LOG).start()
    yield b
    b.kill()


@pytest.fixture
def checker(broker):
    c = DsChecker(broker.port)
    yield c
    c.close()


@pytest.fixture
def durable_checker(durable):
    c = DsChecker(durable.port, client_id=f"ds-checker-{os.getpid()}", clean_session=False)
    yield c
    c.close()


@pytest.fixture
def dslink(workdir, owned, request):
    """dslink(datastreams={…}, apps=("app", …), app={more [tcpapps.app] keys}, broker=Broker,
    **config) -> started edgelink (default: on the `broker` fixture) whose apps have fresh
    ports, once it has subscribed …/datastreams-in/#."""

    def make(datastreams=None, apps=("app",), app=None, broker=None, start=True, **overrides):
        b = broker or request.getfixturevalue("broker")
        tcpapps = {name: app_config(**((app or {}) if name == "app" else {})) for name in apps}
        cfg = base_config(workdir, b.port, tcpapps=tcpapps, **overrides)
        if datastreams is not None:
            cfg["datastreams"] = datastreams
        el = Edgelink(workdir, cfg)
        owned.append(el)
        if start:
            before = ds_subscriptions(b)
            el.start()
            wait_ds_subscription(b, before + 1)
        return el

    return make


@pytest.fixture
def reader(dslink):
    """reader(topic=BLOB, **dslink arguments) -> (edgelink, app subscribed to topic)."""

    def make(topic=BLOB, **kw):
        el = dslink(**kw)
        c = DsApp(el.app_port())
        c.subscribe(topic)
        return el, c

    return make


# ---- a whole outbound stream (§2.1–2.3, §3) -------------------------------------------------------

def test_byte_stream_end_to_end(dslink, checker):
    """The spec's example stream: `opened` with the req, a header with every field given,
    4 chunks (3 × 15000 + 3213) whatever the write sizes, a trailer whose attributes are the
    close's merged with edgelink's bytes/chunks/sha256 (which override the app's), the exact
    `closed` reply; nothing retained; the open record exists only while the stream is open."""
    el = dslink()
    data = blob(48213)
    c = DsApp(el.app_port())
    t0 = now_ms()
    sid = c.open("camera/snapshot", "byte", mime_type="image/jpeg", total_length=48213, name="snap.jpg",
                 attributes={"cam": "front"})
    assert len(open_records(el)) == 1
    c.send_lines(*writes(sid, data, [1, 20000, 7, 28205]))
    reply = c.close_stream(sid, attributes={"end": "1732180009000", "bytes": "1", "sha256": "nope"})
    assert reply == closed(sid, 48213, 4)
    s = ended(checker, sid, data, sizes=[15000, 15000, 15000, 3213], attributes={"end": "1732180009000"})
    check_header(s, t0, "camera/snapshot", mime_type="image/jpeg", total_length=48213, name="snap.jpg",
                 attributes={"cam": "front"})
    assert open_records(el) == []
    assert c.others == []


def test_text_stream_and_header_defaults(dslink, checker):
    """A text stream without mime_type gets text/plain; partial text_meta is completed with the
    defaults (create, 0, "", [], false, §2.1) and all five members appear in the header; the
    text arrives as UTF-8 bytes. A byte stream with only topic and kind gets
    application/octet-stream, no total_length, no name, attributes {}. Assumed: the header's
    text_meta uses the member names of the open line (operation, version, reply_to, attached,
    generated)."""
    el = dslink()
    c = DsApp(el.app_port())
    text = "héllo wörld, ünïcode ☃ " * 50
    t0 = now_ms()
    sid = c.open("chat/room", "text", text_meta={"operation": "update", "version": 2})
    c.send_lines(write_line(sid, text=text[:100]), write_line(sid, text=text[100:]), close_line(sid))
    assert c.ds_line() == closed(sid, len(text.encode()), 1)
    s = ended(checker, sid, text.encode(), attributes={})
    check_header(s, t0, "chat/room", kind="text", text_meta={
        "operation": "update", "version": 2, "reply_to": "", "attached": [], "generated": False})

    t0 = now_ms()
    sid2 = c.open("raw/bytes")
    assert c.close_stream(sid2) == closed(sid2, 0, 0)
    check_header(ended(checker, sid2, b""), t0, "raw/bytes")


def test_a_line_with_stream_is_a_data_point(dslink, sub, checker):
    """A line with "ds" and "stream" is a data point (§2): it reaches the broker with its "ds",
    "topic" and "kind" columns, gets no reply and opens nothing; with hello, ds lines get no
    error report either."""
    el = dslink()
    c = DsApp(el.app_port(), hello=True)
    c.point("imu", 1, ds="open", topic="pts", kind="byte")
    sid = c.open("after/point")  # the first reply is this one's: the point got none
    assert c.close_stream(sid) == closed(sid, 0, 0)
    ended(checker, sid, b"")
    wait_for(lambda: sub.points("imu"), what="the data point")
    assert sub.points("imu") == [{"sequence": 1, "timestamp": 1700000000001, "ds": "open", "topic": "pts",
                                  "kind": "byte"}]
    assert checker.streams("/pts") == [] and [s.stream_id for s in checker.streams()] == [sid]
    assert c.others == []


# ---- §10 item 1: sizes --------------------------------------------------------------------------

SIZES = {
    # writes (all in one sendall, then close) -> chunk sizes
    "0 bytes": ([], []),
    "15000": ([15000], [15000]),
    "15001": ([15001], [15000, 1]),
    "1 MiB in 64 KiB writes": ([65536] * 16, [15000] * 69 + [13576]),
}


@pytest.mark.parametrize("sizes,chunks", SIZES.values(), ids=SIZES.keys())
def test_chunk_sizes(dslink, checker, sizes, chunks):
    """Written without pauses: 0 bytes -> header and trailer only; 15000 -> 1 chunk; 15001 ->
    15000 + 1; 1 MiB -> 69 × 15000 + 13576. chunk_delay_ms 1000 so that a loaded machine
    cannot put a pause between the writes."""
    el = dslink(datastreams={"chunk_delay_ms": 1000})
    data = blob(sum(sizes), seed=len(sizes))
    c = DsApp(el.app_port())
    sid = c.open("sizes", total_length=len(data))
    c.send_lines(*writes(sid, data, sizes), close_line(sid))
    assert c.ds_line() == closed(sid, len(data), len(chunks))
    s = ended(checker, sid, data, sizes=chunks)
    assert len(s.events) == 2 + len(chunks)


def test_small_writes_merge_and_a_pause_cuts(dslink, checker):
    """chunk_delay_ms 100: a hundred 10-byte writes in one sendall -> one chunk of 1000 bytes,
    cut by the delay before the close; two 10-byte writes 300 ms apart -> two chunks."""
    el = dslink(datastreams={"chunk_delay_ms": 100})
    c = DsApp(el.app_port())
    data = blob(1000, seed=2)
    sid = c.open("merge")
    c.send_lines(*writes(sid, data, [10] * 100))
    checker.wait_chunks(sid, 1)
    assert c.close_stream(sid) == closed(sid, 1000, 1)
    ended(checker, sid, data, sizes=[1000])

    sid2 = c.open("pause")
    c.write(sid2, data[:10])
    time.sleep(0.3)  # the pause is the behaviour under test
    c.write(sid2, data[10:20])
    assert c.close_stream(sid2) == closed(sid2, 20, 2)
    ended(checker, sid2, data[:20], sizes=[10, 10])


# ---- §10 item 2: UTF-8 ----------------------------------------------------------------------------

TEXTS = {
    "14999 a + euro": ("a" * 14999 + "€", [14999, 3]),
    "14998 a + 4-byte": ("a" * 14998 + "\U0001F600", [14998, 4]),
    "a + 5000 euro": ("a" + "€" * 5000, [14998, 3]),
    "5000 euro": ("€" * 5000, [15000]),
}


@pytest.mark.parametrize("text,chunks", TEXTS.values(), ids=TEXTS.keys())
def test_text_chunks_never_split_a_character(dslink, checker, text, chunks):
    """A text stream's cut moves back to the first byte of the character: the spec's 14999 + 3,
    and the same for a 4-byte character and a cut inside a run of 3-byte ones; every chunk is
    valid UTF-8 and none starts with a continuation byte."""
    el = dslink(datastreams={"chunk_delay_ms": 1000})
    raw = text.encode()
    c = DsApp(el.app_port())
    sid = c.open("utf8", "text", total_length=len(raw))
    c.send_lines(write_line(sid, text=text), close_line(sid))
    assert c.ds_line() == closed(sid, len(raw), len(chunks))
    s = ended(checker, sid, raw, sizes=chunks)
    for chunk in check_order(s):
        part = chunk_bytes(chunk)
        part.decode("utf-8")  # strict
        assert part[0] & 0xC0 != 0x80, f"chunk {chunk['chunk_index']} starts with a continuation byte"


# ---- §10 item 3: writer slots -----------------------------------------------------------------------

def test_max_writers_is_daemon_wide(dslink, checker):
    """Two streams open on each of two apps: a fifth open is Full (code 3, the req echoed) and
    publishes nothing; after one close the open succeeds."""
    el = dslink(apps=("app", "aux"))
    a, b = DsApp(el.app_port()), DsApp(el.app_port("aux"))
    sids = [a.open("slot/a1"), a.open("slot/a2"), b.open("slot/b1"), b.open("slot/b2")]
    a.refused(open_line("slot/a3"), "Full")
    assert b.close_stream(sids[2]) == closed(sids[2], 0, 0)
    sid = a.open("slot/a3")
    for s, c in ((sids[0], a), (sids[1], a), (sids[3], b), (sid, a)):
        assert c.close_stream(s) == closed(s, 0, 0)
        ended(checker, s, b"")
    assert len(checker.streams("/slot/a3")) == 1


# ---- §10 item 4: how streams end ------------------------------------------------------------------

def test_app_disconnect_is_abnormal_end(dslink, checker):
    """The app's socket closes mid-stream: the trailer says AbnormalEnd and still carries
    bytes/chunks/sha256 of what went out; the open record goes."""
    el = dslink()
    data = blob(CHUNK, seed=3)
    c = DsApp(el.app_port())
    sid = c.open("gone", total_length=10 * CHUNK)
    c.write(sid, data)
    checker.wait_chunks(sid, 1)
    c.close()
    ended(checker, sid, data, reason="AbnormalEnd", sizes=[CHUNK])
    wait_for(lambda: open_records(el) == [], what="the open record removed")


def test_write_past_total_length(dslink, checker):
    """total_length 100, writes of 60 and 60: the second is refused whole, the first's bytes go
    out, then `closed` and the trailer say LengthExceeded (code 3)."""
    el = dslink()
    data = blob(120, seed=4)
    c = DsApp(el.app_port())
    sid = c.open("long", total_length=100)
    c.send_lines(*writes(sid, data, [60, 60]))
    assert c.ds_line() == closed(sid, 60, 1, "LengthExceeded")
    ended(checker, sid, data[:60], reason="LengthExceeded", sizes=[60])


def test_close_short_of_total_length(dslink, checker):
    """total_length 100, 60 written, close -> Incomplete (code 4) in `closed` and the trailer."""
    el = dslink()
    data = blob(60, seed=5)
    c = DsApp(el.app_port())
    sid = c.open("short", total_length=100)
    c.write(sid, data)
    assert c.close_stream(sid) == closed(sid, 60, 1, "Incomplete")
    ended(checker, sid, data, reason="Incomplete", sizes=[60])


def test_idle_writer_times_out(dslink, checker):
    """idle_timeout 1: 10 bytes, then nothing -> `closed` Timeout (code 20) and the trailer."""
    el = dslink(datastreams={"idle_timeout": 1})
    data = blob(10, seed=6)
    c = DsApp(el.app_port())
    sid = c.open("idle")
    c.write(sid, data)
    assert c.ds_line() == closed(sid, 10, 1, "Timeout")
    ended(checker, sid, data, reason="Timeout", sizes=[10])


def test_abort(dslink, checker):
    """chunk_delay_ms 10000. abort without a reason -> Cancelled (code 22): the 15000 bytes
    already chunked went out, the 10 buffered ones are dropped and not counted. abort "UserStop"
    -> UserStop, no code; a 15-character reason is taken as given. A 16-character reason, one
    with a space, and "" are BadRequest and the stream stays open: it still closes normally."""
    el = dslink(datastreams={"chunk_delay_ms": 10000})
    data = blob(CHUNK + 10, seed=7)
    c = DsApp(el.app_port())

    sid = c.open("abort/plain")
    c.write(sid, data)
    checker.wait_chunks(sid, 1)
    assert c.abort(sid) == closed(sid, CHUNK, 1, "Cancelled")
    ended(checker, sid, data[:CHUNK], reason="Cancelled", sizes=[CHUNK])

    for reason in ("UserStop", "ABCDEFGHIJ-_xyz"):
        sid = c.open("abort/" + reason)
        assert c.abort(sid, reason) == closed(sid, 0, 0, reason)
        ended(checker, sid, b"", reason=reason)

    sid = c.open("abort/invalid")
    c.write(sid, data[:10])
    for reason in ("ABCDEFGHIJKLMNOP", "User Stop", ""):
        assert_error(c.abort(sid, reason), "BadRequest", stream_id=sid)
    c.write(sid, data[10:20])
    assert c.close_stream(sid) == closed(sid, 20, 1)
    ended(checker, sid, data[:20])


def test_decode_failures(dslink, checker):
    """data that is not base64 ends a byte stream with DecodeFailed (code 2), text with a lone
    surrogate escape ends a text stream so; the earlier writes' bytes go out first."""
    el = dslink()
    data = blob(10, seed=8)
    c = DsApp(el.app_port())
    sid = c.open("decode/bytes")
    c.write(sid, data)
    c.send({"ds": "write", "stream_id": sid, "data": "!!not base64!!"})
    assert c.ds_line() == closed(sid, 10, 1, "DecodeFailed")
    ended(checker, sid, data, reason="DecodeFailed", sizes=[10])

    tid = c.open("decode/text", "text")
    c.send(write_line(tid, text="fine"))
    c.send_raw(b'{"ds":"write","stream_id":"' + tid.encode() + b'","text":"lone \\ud800 surrogate"}\n')
    assert c.ds_line() == closed(tid, 4, 1, "DecodeFailed")
    ended(checker, tid, b"fine", reason="DecodeFailed", sizes=[4])


# ---- §2: errors about streams -------------------------------------------------------------------

def test_write_must_match_the_kind(dslink, checker):
    """`text` on a byte stream and `data` on a text stream are BadRequest (with the stream_id)
    and change nothing; empty writes are ignored (no reply, no chunk). chunk_delay_ms 10000:
    only the close cuts a chunk."""
    el = dslink(datastreams={"chunk_delay_ms": 10000})
    data = blob(30, seed=9)
    c = DsApp(el.app_port())
    bid, tid = c.open("kind/byte"), c.open("kind/text", "text")
    c.write(bid, data[:10])
    c.send(write_line(bid, text="not for bytes"))
    assert_error(c.ds_line(), "BadRequest", stream_id=bid)
    c.send(write_line(tid, text="abc"))
    c.send(write_line(tid, data=b"not for text"))
    assert_error(c.ds_line(), "BadRequest", stream_id=tid)
    c.send_lines(write_line(bid, b""), write_line(tid, text=""), write_line(bid, data[10:30]),
                 write_line(tid, text="def"))
    assert c.close_stream(bid) == closed(bid, 30, 1)
    assert c.close_stream(tid) == closed(tid, 6, 1)
    ended(checker, bid, data, sizes=[30])
    ended(checker, tid, b"abcdef", sizes=[6])


def test_a_stream_belongs_to_its_connection(dslink, checker):
    """Another app's connection gets UnknownStream (code 6) for write, close and abort of a
    stream it did not open, as does any connection for an id never handed out; the stream
    goes on unchanged (chunk_delay_ms 10000: only the close cuts a chunk)."""
    el = dslink(apps=("app", "aux"), datastreams={"chunk_delay_ms": 10000})
    data = blob(20, seed=10)
    a, b = DsApp(el.app_port()), DsApp(el.app_port("aux"))
    sid = a.open("owned")
    a.write(sid, data[:10])
    b.write(sid, b"intruder")
    assert_error(b.ds_line(), "UnknownStream", stream_id=sid)
    assert_error(b.close_stream(sid), "UnknownStream", stream_id=sid)
    assert_error(b.abort(sid), "UnknownStream", stream_id=sid)
    made_up = "6f1c9e2a-5b7d-4c1e-9a43-2f0e8b7d1c55"
    a.write(made_up, b"x")
    assert_error(a.ds_line(), "UnknownStream", stream_id=made_up)
    a.write(sid, data[10:])
    assert a.close_stream(sid) == closed(sid, 20, 1)
    ended(checker, sid, data)


def test_an_ended_stream_is_closed_then_forgotten(dslink, checker):
    """idle_timeout 1: after `closed`, write, close and abort are Closed (code 5); the id is
    remembered for idle_timeout, then it is UnknownStream (every answer before that is Closed).
    Assumed: a forgotten id is "not known on this connection", hence UnknownStream."""
    el = dslink(datastreams={"idle_timeout": 1})
    c = DsApp(el.app_port())
    sid = c.open("ended")
    assert c.close_stream(sid) == closed(sid, 0, 0)
    c.write(sid, b"late")
    assert_error(c.ds_line(), "Closed", stream_id=sid)
    assert_error(c.close_stream(sid), "Closed", stream_id=sid)
    assert_error(c.abort(sid), "Closed", stream_id=sid)

    def forgotten():
        c.write(sid, b"late")
        reply = c.ds_line()
        if reply.get("reason") == "Closed":
            assert_error(reply, "Closed", stream_id=sid)
            return False
        assert_error(reply, "UnknownStream", stream_id=sid)
        return True
    wait_for(forgotten, interval=0.2, what="the ended stream id forgotten")
    ended(checker, sid, b"")


HEADER_TOO_LARGE = {
    "17 attributes": {f"k{i}": "v" for i in range(17)},
    "65-byte key": {"k" * 65: "v"},
    "513-byte value": {"k": "v" * 513},
    "header over 4096 bytes": {f"{i:02d}" + "k" * 62: "v" * 200 for i in range(16)},
}


def test_header_too_large(dslink, checker):
    """Attributes over the §5 limits, or an encoded header over 4096 bytes, are HeaderTooLarge
    (code 9) and publish nothing; 16 attributes with 64-byte keys and a 512-byte value within
    4096 bytes are fine."""
    el = dslink()
    c = DsApp(el.app_port())
    for attrs in HEADER_TOO_LARGE.values():
        c.refused(open_line("big/header", attributes=attrs), "HeaderTooLarge")
    fine = {f"{i:02d}" + "k" * 62: "v" for i in range(15)} | {"last": "v" * 512}
    sid = c.open("big/header", attributes=fine)
    assert c.close_stream(sid) == closed(sid, 0, 0)
    s = ended(checker, sid, b"")
    assert s.header["attributes"] == fine
    assert [x.stream_id for x in checker.streams("/big/header")] == [sid]


OPEN_REFUSALS = [
    {"ds": "open", "kind": "byte"},                                 # no topic
    open_line(""),
    open_line("a+b"),
    open_line("a/#"),
    open_line("nul\u0000here"),
    open_line("t" * 129),
    open_line("é" * 65),                                            # 130 UTF-8 bytes
    open_line(7),
    {"ds": "open", "topic": "no/kind"},
    open_line("k", kind="blob"),
    open_line("k", total_length=-1),
    open_line("k", total_length=2 ** 53 + 1),
    open_line("k", total_length="10"),
    open_line("k", mime_type="m" * 256),
    open_line("k", name="n" * 256),
    open_line("k", attributes={"a": 1}),
    open_line("k", attributes=["a"]),
    open_line("k", "text", text_meta={"operation": "shout"}),
    {"ds": "frobnicate"},
]


def test_open_refusals(dslink, checker):
    """Missing or invalid fields and an unknown "ds" value are BadRequest (code 1, the req
    echoed) and publish nothing; the limits themselves are accepted (a 128-byte topic with /,
    total_length 2^53)."""
    el = dslink()
    c = DsApp(el.app_port())
    for obj in OPEN_REFUSALS:
        c.refused(obj, "BadRequest")
    for topic, total in (("é" * 63 + "/x", 2 ** 53), ("t" * 128, 0)):
        sid = c.open(topic, total_length=total)
        reply = c.close_stream(sid)
        assert reply == closed(sid, 0, 0, "Incomplete" if total else "")
    assert len(checker.wait_streams("", 2)) == 2
    assert len(checker.streams()) == 2


def test_invalid_req_is_bad_request(dslink):
    """A req that is not an integer 0..4294967295 makes the line BadRequest; 4294967295 is echoed."""
    el = dslink()
    c = DsApp(el.app_port())
    for req in (-1, 4294967296, "7", 1.5):
        c.send({**open_line("req/bad"), "req": req})
        reply = c.ds_line()
        assert (reply["ds"], reply["reason"], reply["code"]) == ("error", "BadRequest", 1), reply
    c.send({**open_line("req/max"), "req": 4294967295})
    reply = c.ds_line()
    assert reply == {"ds": "opened", "req": 4294967295, "stream_id": reply.get("stream_id")}, reply


# ---- §10 item 5: always a trailer -------------------------------------------------------------------

def test_kill_9_then_restart_sends_abnormal_end(dslink, durable, durable_checker, owned):
    """With the broker away a stream's header and 3 chunks go to the disk spool; kill -9 with
    the stream open; broker and edgelink back: header, chunks 0..2, then an AbnormalEnd
    trailer without bytes/chunks/sha256 (attributes {}); the open record is gone. The spool is
    known to hold them when status shows outbox.memory_only 0, spool.writing 0 and records > 0
    (as in test_spool.py)."""
    el = dslink(broker=durable)
    data = blob(3 * CHUNK, seed=11)
    lose_broker(el, durable)
    c = DsApp(el.app_port())
    sid = c.open("crash", total_length=10 * CHUNK)
    c.write(sid, data)
    wait_for(lambda: (writer(el, sid) or {}).get("chunks") == 3, what="3 chunks cut")
    wait_spooled(el)
    assert len(open_records(el)) == 1
    el.proc.kill()
    el.proc.wait(10)
    c.close()

    durable.start()
    before = ds_subscriptions(durable)
    restart(el, owned)
    wait_ds_subscription(durable, before + 1)
    s = durable_checker.wait_ended(sid, 30)
    check_order(s, duplicates=True)
    assert s.trailer == {"t": "trailer", "stream_id": sid, "reason": "AbnormalEnd", "attributes": {}}
    check_stream(s, data, "AbnormalEnd", duplicates=True, stats=False)
    assert chunk_sizes(s, duplicates=True) == [CHUNK] * 3
    wait_for(lambda: open_records(el) == [], what="the leftover record removed")


def test_sigterm_ends_open_streams_with_shutdown(dslink, checker, owned):
    """chunk_delay_ms 10000, 20000 bytes written: SIGTERM -> the buffered 5000 bytes go out as
    a last chunk, the trailer says Shutdown, the app gets `closed` Shutdown (code 21), edgelink
    exits 0 and leaves no record (so a next start sends no second trailer). Assumed: the
    `closed` line reaches the app before edgelink closes its connection."""
    el = dslink(datastreams={"chunk_delay_ms": 10000})
    data = blob(20000, seed=12)
    c = DsApp(el.app_port())
    sid = c.open("term")
    c.write(sid, data)
    checker.wait_chunks(sid, 1)
    assert el.stop() == 0
    assert c.ds_line() == closed(sid, 20000, 2, "Shutdown")
    ended(checker, sid, data, reason="Shutdown", sizes=[15000, 5000])
    assert open_records(el) == []


# ---- §10 item 6: broker outage ----------------------------------------------------------------------

def test_broker_outage_mid_stream(dslink, durable, durable_checker):
    """75000 bytes published, mosquitto stopped, 75000 more, mosquitto back, 75000 more, close:
    every chunk arrives once or more, in order, none missing; the bytes and sha256 match."""
    el = dslink(broker=durable)
    data = blob(15 * CHUNK, seed=13)
    part = 5 * CHUNK
    c = DsApp(el.app_port())
    sid = c.open("outage", total_length=len(data))
    c.write(sid, data[:part])
    durable_checker.wait_chunks(sid, 5)
    lose_broker(el, durable)
    c.write(sid, data[part:2 * part])
    wait_for(lambda: (writer(el, sid) or {}).get("chunks") == 10, what="10 chunks cut while the broker is away")
    durable.start()
    c.write(sid, data[2 * part:])
    assert c.close_stream(sid) == closed(sid, len(data), 15)
    ended(durable_checker, sid, data, sizes=[CHUNK] * 15, duplicates=True, timeout=30)


class Sender(threading.Thread):
    """Sends `payload` in 64 KiB sendall calls on a blocking socket; `sent` says how far it got."""

    def __init__(self, sock, payload):
        super().__init__(daemon=True)
        self.sock, self.payload = sock, payload
        self.sent = 0
        self.changed = time.monotonic()
        self.error = None

    def run(self):
        try:
            for at in range(0, len(self.payload), 65536):
                self.sock.sendall(self.payload[at:at + 65536])
                self.sent = min(at + 65536, len(self.payload))
                self.changed = time.monotonic()
        except OSError as e:
            self.error = e

    def quiet_for(self):
        return time.monotonic() - self.changed


def test_back_pressure_while_the_broker_is_down(dslink, durable, durable_checker):
    """max_buffered_bytes_per_stream 65536, mosquitto stopped: a sender of 12 MiB in write lines
    stalls far short of the end (edgelink stops reading its socket); with mosquitto back it
    finishes, and every byte arrives in order, nothing missing."""
    el = dslink(broker=durable, datastreams={"max_buffered_bytes_per_stream": 65536})
    data = blob(12 * MiB, seed=14)
    c = DsApp(el.app_port())
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # keep the kernel's share small
    lose_broker(el, durable)
    sid = c.open("pressure", total_length=len(data))
    payload = b"".join(line(w) for w in writes(sid, data, [12288] * (len(data) // 12288)))
    c.sock.settimeout(None)
    sender = Sender(c.sock, payload)
    sender.start()
    wait_for(lambda: sender.sent > 0 and sender.quiet_for() >= 2, 30, interval=0.1, what="the sender to stall")
    assert sender.is_alive() and sender.error is None
    assert sender.sent < len(payload) // 2, f"{sender.sent} of {len(payload)} bytes went in with the broker down"

    durable.start()
    sender.join(120)
    assert not sender.is_alive(), f"the sender is stuck at {sender.sent} of {len(payload)} bytes"
    assert sender.error is None, sender.error
    reply = c.close_stream(sid)
    s = ended(durable_checker, sid, data, duplicates=True, timeout=120)
    assert reply == closed(sid, len(data), len(check_order(s, duplicates=True)))


# ---- §10 item 7: inbound ------------------------------------------------------------------------------

def test_inbound_stream_with_a_redelivered_chunk(reader, broker):
    """subscribe config/blob; header, chunk 0, chunk 1, chunk 1 again, trailer -> rx_open with
    the header's fields, rx_chunk 0 and 1 once each, rx_close "" with the trailer's attributes;
    the repeat counts as why="duplicate"."""
    el, c = reader()
    sid = "6f1c9e2a-5b7d-4c1e-9a43-2f0e8b7d1c55"
    data = blob(30000, seed=15)
    before = dropped(el, "duplicate")
    h = in_header(sid, total_length=30000, name="blob.bin", attributes={"origin": "console"})
    t = in_trailer(sid, attributes={"sha256": sha(data)})
    got = exchange(c, broker, BLOB, h, in_chunk(sid, 0, data[:15000]), in_chunk(sid, 1, data[15000:]),
                   in_chunk(sid, 1, data[15000:]), t)
    assert got == [rx_open(h), rx_chunk(sid, 0, data[:15000]), rx_chunk(sid, 1, data[15000:]),
                   rx_close(sid, "", t["attributes"])]
    wait_for(lambda: dropped(el, "duplicate") == before + 1, interval=0.2, what='why="duplicate" + 1')


def test_inbound_text_stream_routed_by_mqtt_topic(reader, broker):
    """The MQTT topic routes: a header whose own topic is elsewhere still reaches the reader of
    config/blob and rx_open names config/blob; text_meta passes through; a short stream id (any
    1..64 bytes inbound) works; text chunks arrive as `text`."""
    el, c = reader()
    meta = {"operation": "reply", "version": 3, "reply_to": "m-0", "attached": ["a-1"], "generated": True}
    h = in_header("m-1", kind="text", topic="somewhere/else", text_meta=meta, attributes={"lang": "de"})
    got = exchange(c, broker, BLOB, h, in_chunk("m-1", 0, "grüß ".encode()), in_chunk("m-1", 1, "dich".encode()),
                   in_trailer("m-1"))
    assert got == [rx_open(h), rx_chunk("m-1", 0, "grüß ".encode(), "text"),
                   rx_chunk("m-1", 1, b"dich", "text"), rx_close("m-1")]


def test_inbound_replacement(reader, broker):
    """chunk 0, then chunk 0 with version 1 -> rx_chunk 0, then rx_chunk 0 with version 1 and
    replace true; chunk 0 with version 1 again is a duplicate; the stream goes on."""
    el, c = reader()
    got = exchange(c, broker, BLOB, in_header("r-1"), in_chunk("r-1", 0, b"first"), in_chunk("r-1", 0, b"FIRST", 1),
                   in_chunk("r-1", 0, b"FIRST", 1), in_chunk("r-1", 1, b"second"), in_trailer("r-1"))
    h = in_header("r-1")
    assert got == [rx_open(h), rx_chunk("r-1", 0, b"first"), rx_chunk("r-1", 0, b"FIRST", version=1),
                   rx_chunk("r-1", 1, b"second"), rx_close("r-1")]


INBOUND_ENDS = {
    # (kind, messages after the header, the lines between rx_open and the last, the last line's reason)
    "gap": ("byte", [in_chunk("e", 0, b"aaaa"), in_chunk("e", 2, b"cccc"), in_chunk("e", 1, b"bbbb"),
                     in_trailer("e")], [rx_chunk("e", 0, b"aaaa")], "Incomplete"),
    "text not UTF-8": ("text", [in_chunk("e", 0, b"ok"), in_chunk("e", 1, b"\xff"), in_trailer("e")],
                       [rx_chunk("e", 0, b"ok", "text")], "DecodeFailed"),
    "content not base64": ("byte", [{"t": "chunk", "stream_id": "e", "chunk_index": 0, "content": "!!",
                                     "version": 0}, in_trailer("e")], [], "DecodeFailed"),
}


@pytest.mark.parametrize("kind,messages,lines,reason", INBOUND_ENDS.values(), ids=INBOUND_ENDS.keys())
def test_inbound_ends_made_by_edgelink(reader, broker, kind, messages, lines, reason):
    """A gap in chunk_index -> rx_close Incomplete; a text chunk holding \\xff, or content that
    is not base64 -> DecodeFailed; the stream's later messages are dropped."""
    el, c = reader()
    h = in_header("e", kind=kind)
    got = exchange(c, broker, BLOB, h, *messages)
    assert got[0] == rx_open(h) and got[1:-1] == lines, got
    assert_rx_close(got[-1], "e", reason)


def test_inbound_trailer_reasons(reader, broker):
    """A trailer's reason and attributes pass through (a code only for reasons listed in §6.1);
    a trailer "" before total_length is met gives Incomplete with the trailer's attributes."""
    el, c = reader()
    cases = [("UserStop", None, rx_close("t1", "UserStop", {"why": "user"})),
             ("AbnormalEnd", None, rx_close("t2", "AbnormalEnd", {"why": "crash"})),
             ("", 100, rx_close("t3", "Incomplete", {"why": "short"}))]
    for i, (reason, total, want) in enumerate(cases, 1):
        sid = f"t{i}"
        h = in_header(sid, total_length=total)
        got = exchange(c, broker, BLOB, h, in_chunk(sid, 0, b"12345"), in_trailer(sid, reason, want["attributes"]))
        assert got == [rx_open(h), rx_chunk(sid, 0, b"12345"), want]


def test_inbound_too_many_bytes(reader, broker):
    """total_length 20000, chunks of 15000 and 15000 -> rx_close LengthExceeded (code 3) after
    chunk 0; later messages of the stream are dropped. (Whether the chunk that passes
    total_length is handed over first the spec does not say; if it is, whole.)"""
    el, c = reader()
    data = blob(30000, seed=16)
    h = in_header("l-1", total_length=20000)
    got = exchange(c, broker, BLOB, h, in_chunk("l-1", 0, data[:15000]), in_chunk("l-1", 1, data[15000:]),
                   in_trailer("l-1"))
    assert got[:2] == [rx_open(h), rx_chunk("l-1", 0, data[:15000])], got
    assert got[2:-1] in ([], [rx_chunk("l-1", 1, data[15000:])]), got
    assert_rx_close(got[-1], "l-1", "LengthExceeded")


def test_inbound_silence_times_out(reader, broker):
    """idle_timeout 1: header and chunk 0, then nothing -> rx_close Timeout (code 20)."""
    el, c = reader(datastreams={"idle_timeout": 1})
    h = in_header("s-1")
    send_in(broker, BLOB, h, in_chunk("s-1", 0, b"only"))
    assert c.ds_line() == rx_open(h)
    assert c.ds_line() == rx_chunk("s-1", 0, b"only")
    assert_rx_close(c.ds_line(), "s-1", "Timeout")


def test_inbound_without_a_reader(reader, broker):
    """A header for a topic nobody subscribed: nothing reaches the app, why="no_reader" + 1."""
    el, c = reader()
    before = dropped(el, "no_reader")
    send_in(broker, "not/subscribed", in_header("n-1", topic="not/subscribed"), in_chunk("n-1", 0, b"x"),
            in_trailer("n-1"))
    assert exchange(c, broker, BLOB) == []
    wait_for(lambda: dropped(el, "no_reader") == before + 1, interval=0.2, what='why="no_reader" + 1')


def test_inbound_drops_are_counted(reader, broker):
    """max_streams_per_topic 2, §7's table: a repeated header is ignored (already_opened), a
    third stream is dropped (busy), a chunk or trailer of an unknown or ended stream is dropped
    (unknown_stream), and a header with an unknown kind or 17 attributes, a payload that is not
    JSON, and a chunk without stream_id are dropped (invalid). Only A and B reach the app."""
    el, c = reader(datastreams={"max_streams_per_topic": 2})
    why = ("already_opened", "busy", "unknown_stream", "invalid")
    before = {w: dropped(el, w) for w in why}
    ha, hb = in_header("A"), in_header("B")
    got = exchange(c, broker, BLOB,
                   ha, in_header("A"), hb, in_header("C"), in_chunk("C", 0, b"c"),
                   in_trailer("A"), in_trailer("B"), in_chunk("A", 0, b"late"),
                   {**in_header("D"), "kind": "blob"},
                   in_header("E", attributes={f"k{i}": "v" for i in range(17)}),
                   "not json", {"t": "chunk", "chunk_index": 0, "content": ""},
                   in_trailer("nope"))
    assert got == [rx_open(ha), rx_open(hb), rx_close("A"), rx_close("B")]
    want = {"already_opened": 1, "busy": 1, "unknown_stream": 3, "invalid": 4}
    wait_for(lambda: {w: dropped(el, w) - before[w] for w in why} == want, interval=0.2,
             what=f"the drop counters to grow by {want}")


def test_subscriptions(dslink, broker):
    """max_readers 3, apps app and aux: one reader per topic on any connection
    (HandlerAlreadyRegistered, code 7), the fourth topic is Full (code 3), bad topics are
    BadRequest, unsubscribing a topic never subscribed is answered too; when aux's connection
    closes its subscription ends and app can take the topic."""
    el = dslink(datastreams={"max_readers": 3}, apps=("app", "aux"))
    a, b = DsApp(el.app_port()), DsApp(el.app_port("aux"))
    a.subscribe("t/a")
    b.subscribe("t/b")
    a.refused({"ds": "subscribe", "topic": "t/b"}, "HandlerAlreadyRegistered")
    b.refused({"ds": "subscribe", "topic": "t/b"}, "HandlerAlreadyRegistered")
    for topic in ("", "t/+", "t/#", "x" * 129):
        a.refused({"ds": "subscribe", "topic": topic}, "BadRequest")
    a.refused({"ds": "subscribe"}, "BadRequest")
    a.subscribe("t/c")
    a.refused({"ds": "subscribe", "topic": "t/d"}, "Full")
    a.unsubscribe("never/subscribed")
    b.close()
    subscribe_when_free(a, "t/b")
    h = in_header("b-1", topic="t/b")
    assert exchange(a, broker, "t/b", h, in_trailer("b-1")) == [rx_open(h, "t/b"), rx_close("b-1")]


def test_unsubscribe_during_a_stream(reader, broker):
    """unsubscribe mid-stream: rx_close Cancelled (code 22), then `unsubscribed`; the stream's
    later messages reach no one, even after subscribing again."""
    el, c = reader()
    h = in_header("u-1")
    send_in(broker, BLOB, h, in_chunk("u-1", 0, b"zero"))
    assert c.ds_line() == rx_open(h)
    assert c.ds_line() == rx_chunk("u-1", 0, b"zero")
    req, reply = c.request({"ds": "unsubscribe", "topic": BLOB})
    assert_rx_close(reply, "u-1", "Cancelled")
    assert c.ds_line() == {"ds": "unsubscribed", "req": req, "topic": BLOB}
    c.subscribe(BLOB)
    assert exchange(c, broker, BLOB, in_chunk("u-1", 1, b"one"), in_trailer("u-1")) == []


def test_reconnecting_app_subscribes_again(reader, broker):
    """A subscription ends with its connection (a stream in progress is abandoned): a new
    connection subscribes the topic again and gets the next stream, not the old one's rest."""
    el, c = reader()
    h = in_header("old")
    send_in(broker, BLOB, h)
    assert c.ds_line() == rx_open(h)
    c.close()
    d = DsApp(el.app_port())
    subscribe_when_free(d, BLOB)
    h2 = in_header("new")
    assert exchange(d, broker, BLOB, in_chunk("old", 0, b"x"), in_trailer("old"), h2, in_trailer("new")) == [
        rx_open(h2), rx_close("new")]


# ---- §9: status and metrics ------------------------------------------------------------------------

DS_FAMILIES = {"edgelink_datastreams_open": "gauge", "edgelink_datastream_bytes_total": "counter",
               "edgelink_datastream_chunks_total": "counter", "edgelink_datastream_ends_total": "counter",
               "edgelink_datastream_errors_total": "counter", "edgelink_datastream_inbound_dropped_total": "counter"}


def test_status_and_metrics(reader, broker, checker):
    """`status --json` lists the open writer (stream_id, app, topic, bytes, chunks) and the reader
    (app, topic, and the stream_id of its inbound stream); `status --metrics` has the §9 families
    with their types, open gauges per direction, bytes, chunks and ends (reason "normal") per
    direction, errors by reason and inbound drops by why. Assumed: a reader without an inbound
    stream is listed with its app and topic (its stream_id is checked only while a stream is
    active)."""
    el, c = reader()
    names = ("edgelink_datastream_bytes_total", "edgelink_datastream_chunks_total")
    base = {(n, d): metric(el, n, direction=d) for n in names for d in ("out", "in")}
    ends = {d: metric(el, "edgelink_datastream_ends_total", direction=d, reason="normal") for d in ("out", "in")}
    bad, no_reader = metric(el, "edgelink_datastream_errors_total", reason="BadRequest"), dropped(el, "no_reader")

    data = blob(2 * CHUNK, seed=17)
    sid = c.open("camera/snapshot")
    c.write(sid, data)
    entry = {"stream_id": sid, "app": "app", "topic": "camera/snapshot", "bytes": 2 * CHUNK, "chunks": 2}
    wait_for(lambda: ds_status(el)["writers"] == [entry], interval=0.2, what=f"writers == [{entry}]")
    readers = ds_status(el)["readers"]
    assert len(readers) == 1 and (readers[0]["app"], readers[0]["topic"]) == ("app", BLOB), readers

    h = in_header("in-1")
    send_in(broker, BLOB, h, in_chunk("in-1", 0, b"i" * 1000))
    assert c.ds_line() == rx_open(h)
    assert c.ds_line() == rx_chunk("in-1", 0, b"i" * 1000)
    wait_for(lambda: ds_status(el)["readers"] == [{"app": "app", "topic": BLOB, "stream_id": "in-1"}],
             interval=0.2, what="the reader's stream id")
    assert metric(el, "edgelink_datastreams_open", direction="out") == 1
    assert metric(el, "edgelink_datastreams_open", direction="in") == 1

    assert c.close_stream(sid) == closed(sid, 2 * CHUNK, 2)
    send_in(broker, BLOB, in_trailer("in-1"))
    assert c.ds_line() == rx_close("in-1")
    c.refused({"ds": "frobnicate"}, "BadRequest")
    send_in(broker, "nobody", in_header("n-1", topic="nobody"))
    ended(checker, sid, data)
    wait_for(lambda: dropped(el, "no_reader") == no_reader + 1, interval=0.2, what="the no_reader drop")

    types, m = parse_metrics(metrics_text(el))
    assert {f: types.get(f) for f in DS_FAMILIES} == DS_FAMILIES
    assert value(m, "edgelink_datastreams_open", direction="out") == 0
    assert value(m, "edgelink_datastreams_open", direction="in") == 0
    assert value(m, "edgelink_datastream_bytes_total", direction="out") == base[names[0], "out"] + 2 * CHUNK
    assert value(m, "edgelink_datastream_bytes_total", direction="in") == base[names[0], "in"] + 1000
    assert value(m, "edgelink_datastream_chunks_total", direction="out") == base[names[1], "out"] + 2
    assert value(m, "edgelink_datastream_chunks_total", direction="in") == base[names[1], "in"] + 1
    assert value(m, "edgelink_datastream_ends_total", direction="out", reason="normal") == ends["out"] + 1
    assert value(m, "edgelink_datastream_ends_total", direction="in", reason="normal") == ends["in"] + 1
    assert value(m, "edgelink_datastream_errors_total", reason="BadRequest") == bad + 1
    st = ds_status(el)
    assert st["writers"] == [] and [(r["app"], r["topic"]) for r in st["readers"]] == [("app", BLOB)], st


# ---- xstream.md §12 item 9: the datastream upload route -------------------------------------------

def ds_route(route="/ds/camera/video", **extra):
    return {"route": route, "kind": "datastream", **extra}


def route_stream(checker, topic="camera/video", timeout=30.0, duplicates=False):
    """The one stream published on …/datastreams/<topic>, once ended and checked."""
    s = checker.wait_streams("/datastreams/" + topic, 1, timeout=timeout)[0]
    check_order(s, duplicates)
    return s


def test_datastream_route(dslink, checker, sub):
    """200 KiB to /ds/camera/video: final status 0 (no path), then a byte stream on
    …/datastreams/camera/video: header with name, total_length, the request's mime_type and
    attributes plus "x-stream-key", sender app:app; the bytes and the trailer's sha256 match; the
    Completed point names the topic and stream id; the part file goes once the trailer is
    acknowledged. mime_type falls back to the route's, then application/octet-stream.
    Assumed: the Completed point's `topic` is the data-stream topic (camera/video), and the
    trailer has only bytes/chunks/sha256 (the request's attributes go to the header)."""
    el = dslink(app={"upload_routes": [ds_route(mime_type="video/mp4"), ds_route("/ds/camera/raw")]})
    data = blob(200 * 1024, seed=18)
    t0 = now_ms()
    _, key, final = upload(el.app_port(), data, "clip.webm", route="/ds/camera/video", mime_type="video/webm",
                           attributes={"cam": "front"})
    assert final == done(key, data)
    s = route_stream(checker)
    check_stream(s, data)
    assert s.trailer["attributes"] == {"bytes": str(len(data)), "chunks": str(len(s.chunks)), "sha256": sha(data)}
    check_header(s, t0, "camera/video", mime_type="video/webm", total_length=len(data), name="clip.webm",
                 attributes={"cam": "front", "x-stream-key": key})
    p = wait_points(sub, key, "Completed")[0]
    assert (p["topic"], p["stream_id"]) == ("camera/video", s.stream_id), p
    wait_for(lambda: not os.path.exists(spool_files(el, key)[0]), what="the stored upload deleted")

    small = blob(1000, seed=19)
    for route, topic, mime in (("/ds/camera/video", "camera/video", "video/mp4"),
                               ("/ds/camera/raw", "camera/raw", "application/octet-stream")):
        _, key, final = upload(el.app_port(), small, "small.bin", route=route)
        assert final == done(key, small)
        s = checker.wait_streams("/datastreams/" + topic, 1 if topic == "camera/raw" else 2)[-1]
        check_stream(s, small)
        check_header(s, t0, topic, mime_type=mime, total_length=1000, name="small.bin",
                     attributes={"x-stream-key": key})


def test_datastream_route_through_a_broker_outage(dslink, durable, durable_checker):
    """mosquitto stopped mid-upload: status 0 still comes; after mosquitto is back the whole
    stream drains, its bytes and sha256 matching."""
    el = dslink(broker=durable, app={"upload_routes": [ds_route()]})
    data = blob(200 * 1024, seed=20)
    t0 = now_ms()
    c = Uploader(el.app_port())
    key = c.start(len(data), "outage.bin", "/ds/camera/video", sha256=sha(data))
    c.send_raw(data[:100 * 1024])
    lose_broker(el, durable)
    c.send_raw(data[100 * 1024:])
    assert c.reply() == done(key, data)
    durable.start()
    wait_connected(el)
    s = route_stream(durable_checker, duplicates=True)
    check_stream(s, data, duplicates=True)
    check_header(s, t0, "camera/video", total_length=len(data), name="outage.bin", attributes={"x-stream-key": key})


def test_datastream_route_waits_for_a_writer_slot(dslink, checker):
    """max_writers 1 (daemon-wide; routes count too), taken by app aux's own stream: an upload
    on app's datastream route still ends with status 0, but its stream is not published until
    aux closes its stream; then it is, whole."""
    el = dslink(datastreams={"max_writers": 1}, apps=("app", "aux"), app={"upload_routes": [ds_route()]})
    holder = DsApp(el.app_port("aux"))
    sid = holder.open("slot/holder")
    data = blob(50000, seed=21)
    _, key, final = upload(el.app_port(), data, "wait.bin", route="/ds/camera/video")
    assert final == done(key, data)
    time.sleep(1)  # nothing to await: the stream must not appear while the slot is taken
    assert checker.streams("/datastreams/camera/video") == []
    assert holder.close_stream(sid) == closed(sid, 0, 0)
    s = route_stream(checker)
    check_stream(s, data)
    assert (s.header["sender"], s.header["name"]) == ("app:app", "wait.bin")


# ---- §1: configuration ---------------------------------------------------------------------------------

def test_check_fills_in_the_datastreams_defaults(workdir):
    """An empty [datastreams] passes `check`; the effective config has §1's defaults."""
    _, _, out = check_config(workdir, "\n[datastreams]\n")
    assert out.returncode == 0, out.stderr
    assert tomllib.loads(out.stdout)["datastreams"] == {
        "topic": "/tenants/{tenant_id}/devices/{device_id}/datastreams/{topic}",
        "topic_in": "/tenants/{tenant_id}/devices/{device_id}/datastreams-in/{topic}",
        "chunk_size": 15000, "chunk_delay_ms": 100, "max_writers": 4, "max_readers": 4, "max_streams_per_topic": 1,
        "idle_timeout": 30, "max_buffered_bytes_per_stream": 8388608, "priority": 0}


@pytest.mark.parametrize("key,bad", [
    ("chunk_size", 255), ("chunk_size", 65537), ("chunk_delay_ms", -1), ("chunk_delay_ms", 10001),
    ("max_writers", 0), ("max_writers", 33), ("max_readers", 0), ("max_readers", 33),
    ("max_streams_per_topic", 0), ("max_streams_per_topic", 33), ("idle_timeout", 0.5), ("idle_timeout", 3601),
    ("max_buffered_bytes_per_stream", 65535), ("max_buffered_bytes_per_stream", 1073741825),
    ("priority", 256), ("topic_in", '"/in/{device_id}/{topic}/x"'),
])
def test_check_refuses_out_of_range_values(workdir, key, bad):
    """Every §1/§5 range is checked: a value just outside fails `check`, naming the key."""
    _, _, out = check_config(workdir, f"\n[datastreams]\n{key} = {bad}\n")
    assert out.returncode != 0
    assert f"datastreams.{key}" in out.stderr, out.stderr


# ---- the demo clients -------------------------------------------------------------------------------------

def test_demo_send_and_receive(dslink, broker, checker, workdir):
    """demo/ds_send.py streams a file (its `opened` and `closed` replies printed, exit 0) and
    the checker reassembles it; demo/ds_receive.py writes an inbound stream to a file named
    after it and unsubscribes on Ctrl-C."""
    el = dslink()
    data = blob(40000, seed=22)
    src = os.path.join(workdir, "snap.bin")
    with open(src, "wb") as f:
        f.write(data)
    out = subprocess.run([sys.executable, os.path.join(DEMO, "ds_send.py"), "--port", str(el.app_port()),
                          "--topic", "camera/snapshot", "--mime-type", "image/jpeg", "--name", "snap.jpg", src],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    replies = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    sid = replies[0]["stream_id"]
    assert replies == [{"ds": "opened", "req": replies[0].get("req"), "stream_id": sid},
                       closed(sid, 40000, 3)], replies
    s = ended(checker, sid, data)
    assert (s.header["name"], s.header["mime_type"], s.header["total_length"]) == ("snap.jpg", "image/jpeg", 40000)

    outdir = os.path.join(workdir, "received")
    os.makedirs(outdir)
    log = os.path.join(workdir, "ds_receive.log")
    rx = subprocess.Popen([sys.executable, os.path.join(DEMO, "ds_receive.py"), "--port", str(el.app_port()),
                           "--topic", BLOB, "--dir", outdir], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "subscribed" in open(log).read(), what="ds_receive subscribed")
        send_in(broker, BLOB, in_header("d-1", name="blob.bin", total_length=30000),
                in_chunk("d-1", 0, data[:15000]), in_chunk("d-1", 1, data[15000:30000]), in_trailer("d-1"))
        path = os.path.join(outdir, "blob.bin")
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) == 30000, what="the received file")
        with open(path, "rb") as f:
            assert f.read() == data[:30000]
        rx.send_signal(signal.SIGINT)
        assert rx.wait(10) == 0
    finally:
        if rx.poll() is None:
            rx.kill()
    text = open(log).read()
    assert "rx_open d-1" in text and "rx_close d-1" in text and "unsubscribed" in text, text
