#!/usr/bin/env python3
"""Collects chunked data streams (spec/datastreams.md §3) as a broker subscriber sees them,
and checks them (§10): the order header → chunk 0..n → trailer on one MQTT topic, a
contiguous chunk_index, the reassembled bytes, and the trailer's `bytes`, `chunks` and
`sha256` attributes.

In the integration tests:

    checker = DsChecker(broker.port)                 # subscribes /tenants/+/devices/+/datastreams/#
    s = checker.wait_ended(stream_id)                # a snapshot once the trailer is in
    data = check_stream(s, expected_bytes)           # order, indexes, trailer -> the bytes

By hand, next to `mosquitto_sub` and an app driving edgelink:

    python3 tests/integration/ds_checker.py --port 1883 --expect snap.jpg --count 1

QoS 1 allows a message to arrive more than once (after a reconnect); the checks fail on a
repeat unless they are told `duplicates=True`, and then only on a repeat that differs from
the first copy or comes back out of order. Uses paho-mqtt, like the tests' conftest.
"""
import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys
import threading
import time

import paho.mqtt.client as mqtt

FILTER = "/tenants/+/devices/+/datastreams/#"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
KINDS = ("header", "chunk", "trailer")
CHUNK_KEYS = {"t", "stream_id", "chunk_index", "content", "version"}
TRAILER_KEYS = {"t", "stream_id", "reason", "attributes"}


class Stream:
    """Everything that arrived for one stream_id, in arrival order."""

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.topics = []     # the MQTT topics its messages came on, first-seen order (one if all is well)
        self.events = []     # the parsed payloads, in arrival order
        self.retained = False

    @property
    def topic(self):
        return self.topics[0] if self.topics else None

    def of(self, kind):
        return [e for e in self.events if e["t"] == kind]

    @property
    def header(self):
        return next(iter(self.of("header")), None)

    @property
    def chunks(self):
        """Every chunk message, in arrival order (repeats included)."""
        return self.of("chunk")

    @property
    def trailer(self):
        return next(iter(self.of("trailer")), None)

    @property
    def ended(self):
        return self.trailer is not None

    def snapshot(self):
        """A copy that later arrivals do not change (payload objects are never modified)."""
        s = Stream(self.stream_id)
        s.topics, s.events, s.retained = list(self.topics), list(self.events), self.retained
        return s

    def __repr__(self):
        kinds = [e["t"] if e["t"] != "chunk" else f"chunk {e.get('chunk_index')}" for e in self.events]
        return f"<Stream {self.stream_id} on {self.topics}: {kinds}>"


class DsChecker:
    """A paho subscriber that sorts data-stream messages by stream_id. With a fixed client_id
    and clean_session=False (against a persistent mosquitto) it misses nothing across broker
    restarts. Accessors return snapshots, safe to inspect while messages keep arriving."""

    def __init__(self, port, topics=(FILTER,), client_id=None, clean_session=True, host="127.0.0.1"):
        self._streams = {}   # stream_id -> Stream
        self.order = []      # stream ids in the order their first message arrived
        self.invalid = []    # (topic, payload): not a JSON object with t in KINDS and a string stream_id
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.topics = topics
        self.client = mqtt.Client(client_id=client_id or f"ds-checker-{os.getpid()}-{id(self)}",
                                  clean_session=clean_session)
        if not clean_session:
            self.client.reconnect_delay_set(0.1, 0.5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.connected.wait(10), "the data-stream checker could not connect"
        time.sleep(0.1)  # let the SUBACK arrive before the test starts publishing

    def _on_connect(self, client, userdata, flags, rc):
        if rc != 0:
            return
        for t in self.topics:
            client.subscribe(t, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            obj = None
        with self.lock:
            if not (isinstance(obj, dict) and obj.get("t") in KINDS and isinstance(obj.get("stream_id"), str)):
                self.invalid.append((msg.topic, msg.payload))
                return
            s = self._streams.get(obj["stream_id"])
            if s is None:
                s = self._streams[obj["stream_id"]] = Stream(obj["stream_id"])
                self.order.append(obj["stream_id"])
            if msg.topic not in s.topics:
                s.topics.append(msg.topic)
            s.retained = s.retained or bool(msg.retain)
            s.events.append(obj)

    # ---- snapshots ----------------------------------------------------------------------

    def stream(self, stream_id):
        """A snapshot of one stream, or None while nothing of it arrived."""
        with self.lock:
            s = self._streams.get(stream_id)
            return s.snapshot() if s else None

    def streams(self, topic_suffix=None):
        """Snapshots of every stream (on a topic ending in topic_suffix), in first-arrival order."""
        with self.lock:
            return [self._streams[i].snapshot() for i in self.order
                    if topic_suffix is None or self._streams[i].topic.endswith(topic_suffix)]

    def wait_ended(self, stream_id, timeout=10.0):
        """The stream once its trailer has arrived."""
        return _wait(lambda: (lambda s: s if s and s.ended else None)(self.stream(stream_id)), timeout,
                     f"the trailer of stream {stream_id} (have {self.stream(stream_id)})")

    def wait_chunks(self, stream_id, count, timeout=10.0):
        """The stream once `count` distinct chunk indexes have arrived."""
        def enough():
            s = self.stream(stream_id)
            return s if s and len({c["chunk_index"] for c in s.chunks}) >= count else None
        return _wait(enough, timeout, f"{count} chunks of stream {stream_id} (have {self.stream(stream_id)})")

    def wait_streams(self, topic_suffix, count=1, ended=True, timeout=10.0):
        """The first `count` streams on a topic ending in topic_suffix, once they have (ended=True:
        all of them have ended)."""
        def enough():
            found = self.streams(topic_suffix)
            if len(found) < count or (ended and not all(s.ended for s in found[:count])):
                return None
            return found[:count]
        return _wait(enough, timeout, f"{count} stream(s) on ...{topic_suffix} (have {self.streams(topic_suffix)})")

    def close(self):
        self.client.disconnect()  # first, so loop_stop need not wait out a select timeout
        self.client.loop_stop()


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# ---- checks ---------------------------------------------------------------------------------

def _place(event):
    return ("chunk", event["chunk_index"]) if event["t"] == "chunk" else (event["t"],)


def unique_events(stream, duplicates=False):
    """The stream's messages with repeats removed, in first-arrival order. A repeat fails the
    check unless `duplicates`; even then it must equal the first copy."""
    seen, out = {}, []
    for e in stream.events:
        place = _place(e)
        if place in seen:
            assert duplicates, f"{stream.stream_id}: {place} arrived more than once: {stream}"
            assert e == seen[place], f"{stream.stream_id}: a redelivered {place} differs: {e} vs {seen[place]}"
            continue
        seen[place] = e
        out.append(e)
    return out


def check_order(stream, duplicates=False):
    """Header, then chunk 0, 1, …, n-1, then the trailer, all on one MQTT topic, never
    retained; chunks have exactly the §3 keys and version 0. Returns the chunks in order."""
    assert stream is not None, "no such stream"
    assert len(stream.topics) == 1, f"{stream.stream_id} came on several topics: {stream.topics}"
    assert not stream.retained, f"{stream.stream_id}: a message was retained"
    events = unique_events(stream, duplicates)
    assert len(events) >= 2 and events[0]["t"] == "header" and events[-1]["t"] == "trailer", (
        f"not header ... trailer: {stream}")
    chunks = events[1:-1]
    assert [c["t"] for c in chunks] == ["chunk"] * len(chunks), f"a header or trailer inside the stream: {stream}"
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks))), (
        f"chunk_index not contiguous from 0: {[c['chunk_index'] for c in chunks]}")
    for c in chunks:
        assert set(c) == CHUNK_KEYS and c["version"] == 0, c
    assert set(events[-1]) == TRAILER_KEYS, events[-1]
    return chunks


def chunk_bytes(chunk):
    """The bytes of one chunk: its `content`, strict standard base64."""
    try:
        return base64.b64decode(chunk["content"], validate=True)
    except binascii.Error as e:
        raise AssertionError(f"chunk {chunk['chunk_index']}: content is not standard base64: {e}")


def chunk_sizes(stream, duplicates=False):
    return [len(chunk_bytes(c)) for c in check_order(stream, duplicates)]


def reassemble(stream, duplicates=False):
    return b"".join(chunk_bytes(c) for c in check_order(stream, duplicates))


def check_trailer(stream, duplicates=False, stats=True):
    """Order as check_order; with `stats` the trailer's `bytes`, `chunks` (decimal strings) and
    `sha256` (lowercase hex) describe the chunks that arrived. Returns the reassembled bytes."""
    chunks = check_order(stream, duplicates)
    data = b"".join(chunk_bytes(c) for c in chunks)
    attrs = stream.trailer["attributes"]
    assert isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values()), attrs
    if stats:
        got = {k: attrs.get(k) for k in ("bytes", "chunks", "sha256")}
        want = {"bytes": str(len(data)), "chunks": str(len(chunks)), "sha256": hashlib.sha256(data).hexdigest()}
        assert got == want, f"{stream.stream_id}: trailer attributes {got}, the chunks make {want}"
    return data


def check_stream(stream, data=None, reason="", duplicates=False, stats=True):
    """check_trailer, the trailer's reason, and (if given) the reassembled bytes against `data`.
    Returns the reassembled bytes."""
    got = check_trailer(stream, duplicates, stats)
    assert stream.trailer["reason"] == reason, f"{stream.stream_id}: trailer reason {stream.trailer['reason']!r}"
    if data is not None and got != data:
        at = next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), len(data)))
        raise AssertionError(f"{stream.stream_id}: reassembled {len(got)} bytes, expected {len(data)}; "
                             f"first difference at byte {at}")
    return got


def check_header_shape(header):
    """What every header has (§3): a lowercase UUIDv4, a Unix-ms timestamp, kind, mime_type,
    string attributes and a sender."""
    assert UUID4.fullmatch(header["stream_id"]), header["stream_id"]
    assert isinstance(header["timestamp"], int) and header["timestamp"] > 1_500_000_000_000, header
    assert header["kind"] in ("text", "byte") and isinstance(header["mime_type"], str), header
    assert isinstance(header["attributes"], dict) and all(isinstance(v, str) for v in header["attributes"].values())
    assert isinstance(header["sender"], str) and isinstance(header["topic"], str), header


# ---- by hand --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--topic", default=FILTER, help=f"MQTT filter (default {FILTER})")
    ap.add_argument("--expect", help="a file every stream's reassembled bytes must equal")
    ap.add_argument("--count", type=int, default=0, help="exit after this many streams ended (default: run on)")
    ap.add_argument("--duplicates", action="store_true", help="accept QoS 1 redeliveries")
    args = ap.parse_args()
    expected = open(args.expect, "rb").read() if args.expect else None

    checker = DsChecker(args.port, topics=(args.topic,), host=args.host)
    reported, failures = set(), 0
    try:
        while not args.count or len(reported) < args.count:
            for s in checker.streams():
                if s.stream_id in reported or not s.ended:
                    continue
                reported.add(s.stream_id)
                try:
                    data = check_stream(s, expected, reason=s.trailer["reason"], duplicates=args.duplicates,
                                        stats=s.trailer["reason"] != "AbnormalEnd" or "bytes" in s.trailer["attributes"])
                    print(f"ok   {s.stream_id} on {s.topic}: {len(s.chunks)} chunks, {len(data)} bytes, "
                          f"reason {s.trailer['reason']!r}, sha256 {hashlib.sha256(data).hexdigest()}", flush=True)
                except AssertionError as e:
                    failures += 1
                    print(f"FAIL {s.stream_id}: {e}", flush=True)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        checker.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
