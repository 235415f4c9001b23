#!/usr/bin/env python3
"""A fake RTIO device: speaks RTIO's binary protocol to edgelink's device-access server
(spec/http-api.md §6.3-§6.4) as a device running the RTIO device SDK would.

Python 3 standard library only. Three layers:

* Codecs mirroring include/edgelink/rtio/rtio_codec.hpp: ``encode_message``,
  ``decode_header``, ``StreamDecoder``, ``crc32`` and the REST-like encoders/decoders.
* ``RtioDevice``: one device on one TCP connection. Blocking calls (``verify``,
  ``ping``, ``copost``, ``notify``, ``recv_message``) read the socket themselves, no
  thread needed; ``serve()`` starts a background thread that answers the server's
  requests (HTTP coposts and obget establishes) and routes responses to the blocking
  calls. Every received message is kept in ``received`` (``record=False`` turns that off).
* ``DeviceLoop``: many devices on one selector loop in one thread, for benchmarks. The
  ``*_async`` methods send a request and call back from the loop when the reply comes.

Example::

    dev = RtioDevice("127.0.0.1", port, DEVICE_ID, SECRET).connect()
    assert dev.verify() == RespCode.SUCCESS
    dev.add_uri("/rainbow", copost=lambda data: (Status.OK, b"world"))
    dev.serve(delay=0)
    ...                                     # curl copost /rainbow -> the device answers
    assert dev.wait_received(lambda m: m.raw == R3)

Self-check against the spec's vectors: ``python3 rtio_device.py --selftest``.
"""

import argparse
import collections
import enum
import heapq
import itertools
import selectors
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from typing import NamedTuple

# --- transport (§6.3) -------------------------------------------------------------------

HEADER_BYTES = 5
DEFAULT_CAPACITY = 512


class MsgType(enum.IntEnum):
    DEVICE_VERIFY_REQ = 1
    DEVICE_VERIFY_RESP = 2
    DEVICE_PING_REQ = 3
    DEVICE_PING_RESP = 4
    DEVICE_SEND_REQ = 5
    DEVICE_SEND_RESP = 6
    SERVER_SEND_REQ = 7
    SERVER_SEND_RESP = 8


class RespCode(enum.IntEnum):
    FAILURE = 0
    SUCCESS = 1
    TYPE_ERROR = 2
    VERIFY_FAILED = 3
    INVALID_PARAM = 4
    BODY_LENGTH_ERROR = 5
    NOT_FOUND = 6


# --- REST-like layer (§6.4) -------------------------------------------------------------

class Method(enum.IntEnum):
    UNKNOWN = 0
    CONSTRAINED_GET = 1
    CONSTRAINED_POST = 2
    OBSERVED_GET = 3


class Status(enum.IntEnum):
    UNKNOWN = 0
    INTERNAL_SERVER_ERROR = 1
    OK = 2
    CONTINUE = 3
    TERMINATE = 4
    NOT_FOUND = 5
    BAD_REQUEST = 6
    METHOD_NOT_ALLOWED = 7
    TOO_MANY_REQUESTS = 8
    TOO_MANY_OBSERVERS = 9


class ProtocolError(Exception):
    """The server sent something a device cannot accept."""


class RtioClosed(ConnectionError):
    """The connection ended (EOF, reset or close()) before the awaited message."""


def _bytes(data):
    return data.encode() if isinstance(data, str) else bytes(data)


def crc32(data):
    """CRC-32/IEEE of a uri (str or bytes), as zlib computes it: the URIDigest."""
    return zlib.crc32(_bytes(data)) & 0xFFFFFFFF


class Header(NamedTuple):
    type: int
    v: bool
    code: int
    id: int
    body_len: int


class Message(NamedTuple):
    type: int
    v: bool
    code: int
    id: int
    body: bytes
    raw: bytes  # the message exactly as received, header included


def encode_message(mtype, code, mid, body=b""):
    """Header (V = 0) + body."""
    body = _bytes(body)
    if len(body) > 0xFFFF:
        raise ValueError("body longer than 65535 bytes")
    return struct.pack(">BHH", (mtype & 0x0F) << 4 | (code & 0x07), mid & 0xFFFF, len(body)) + body


def decode_header(five):
    b0, mid, body_len = struct.unpack(">BHH", bytes(five[:HEADER_BYTES]))
    return Header(b0 >> 4, bool(b0 & 0x08), b0 & 0x07, mid, body_len)


class StreamDecoder:
    """Splits the byte stream into Messages; refuses a BodyLength above the capacity."""

    def __init__(self, capacity=DEFAULT_CAPACITY):
        self.capacity = capacity
        self._buf = bytearray()

    def append(self, data):
        self._buf += data

    def next(self):
        """The next whole Message, or None. Raises ProtocolError for a body too long."""
        if len(self._buf) < HEADER_BYTES:
            return None
        h = decode_header(self._buf)
        if h.body_len > self.capacity:
            raise ProtocolError(f"BodyLength {h.body_len} above the capacity {self.capacity}")
        end = HEADER_BYTES + h.body_len
        if len(self._buf) < end:
            return None
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        return Message(h.type, h.v, h.code, h.id, raw[HEADER_BYTES:], raw)

    def __iter__(self):
        while True:
            m = self.next()
            if m is None:
                return
            yield m

    def buffered(self):
        return len(self._buf)


class CoReq(NamedTuple):
    method: int
    digest: int
    data: bytes


class CoResp(NamedTuple):
    method: int
    status: int
    data: bytes


class ObGet(NamedTuple):
    method: int
    status: int
    observer: int
    data: bytes


class ObGetEstabReq(NamedTuple):
    method: int
    observer: int
    digest: int
    data: bytes


def _first(method, status):
    return bytes([(method & 0x0F) << 4 | (status & 0x0F)])


def encode_co_req(method, digest, data=b""):
    return _first(method, 0) + struct.pack(">I", digest) + _bytes(data)


def encode_co_resp(method, status, data=b""):
    return _first(method, status) + _bytes(data)


def encode_obget_estab_req(observer, digest, data=b""):
    return _first(Method.OBSERVED_GET, 0) + struct.pack(">HI", observer, digest) + _bytes(data)


def encode_obget_estab_resp(observer, status):
    return _first(Method.OBSERVED_GET, status) + struct.pack(">H", observer)


def encode_obget_notify_req(observer, status, data=b""):
    return _first(Method.OBSERVED_GET, status) + struct.pack(">H", observer) + _bytes(data)


def encode_obget_notify_resp(observer, status):
    return encode_obget_estab_resp(observer, status)


def decode_co_req(body):
    if len(body) < 5:
        return None
    return CoReq(body[0] >> 4, struct.unpack(">I", body[1:5])[0], bytes(body[5:]))


def decode_co_resp(body):
    if len(body) < 1:
        return None
    return CoResp(body[0] >> 4, body[0] & 0x0F, bytes(body[1:]))


def decode_obget(body):
    """ObGetEstabResp, ObGetNotifyReq or ObGetNotifyResp."""
    if len(body) < 3:
        return None
    return ObGet(body[0] >> 4, body[0] & 0x0F, struct.unpack(">H", body[1:3])[0], bytes(body[3:]))


def decode_obget_estab_req(body):
    if len(body) < 7:
        return None
    observer, digest = struct.unpack(">HI", body[1:7])
    return ObGetEstabReq(body[0] >> 4, observer, digest, bytes(body[7:]))


def verify_body(device_id, secret, level=0):
    """DeviceVerifyReq body: CL in the top two bits of byte 0, then "<id>:<secret>"."""
    return bytes([(level & 3) << 6]) + _bytes(device_id) + b":" + _bytes(secret)


def ping_body(seconds=None):
    return b"" if seconds is None else struct.pack(">H", seconds)


# --- the device -------------------------------------------------------------------------

class _Route(NamedTuple):
    uri: str
    copost: object  # fn(data) -> (status, data) | None to not answer; None: echo with OK
    obget: object   # fn(observer, data) -> status | None to not answer; None: Continue


_RESPONSES = (MsgType.DEVICE_VERIFY_RESP, MsgType.DEVICE_PING_RESP, MsgType.DEVICE_SEND_RESP)
_PENDING = object()  # a blocking call waits for this response


class RtioDevice:
    """One fake device. Not thread-safe beyond: one serve()/DeviceLoop thread reading,
    any thread calling the blocking methods."""

    def __init__(self, host, port, device_id, secret, level=0, timeout=10.0, record=True):
        self.host = host
        self.port = port
        self.device_id = device_id
        self.secret = secret
        self.level = level
        self.timeout = timeout  # default wait of the blocking calls, seconds
        self.record = record
        # handlers["copost"](digest, data) -> (status, data); handlers["obget"](observer,
        # digest, data) -> status. Either may return None: no reply is sent. When a key is
        # absent, the routes of add_uri() decide.
        self.handlers = {}
        self.delay = 0.0          # seconds before each answer to a ServerSendReq
        self.received = []        # every Message received, in order
        self.observers = {}       # observer id -> digest, for each obget this device accepted
        self.errors = []          # handler exceptions and protocol errors, as text
        self.eof = False
        self._routes = {}         # digest -> _Route
        self._sock = None
        self._decoder = StreamDecoder(DEFAULT_CAPACITY << (level & 3))
        self._next_id = 0
        self._waiters = {}        # (response type, id) -> _PENDING or the Message
        self._callbacks = {}      # (response type, id) -> fn(Message or None)
        self._inbox = collections.deque()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._loop = None         # the DeviceLoop reading this device's socket, if any
        self._own_loop = None     # the one serve() started
        self._answering = False

    # -- connection

    def connect(self):
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def fileno(self):
        return self._sock.fileno()

    def close(self):
        """Stops serve()'s thread and closes the socket (the server sees EOF)."""
        loop, self._own_loop = self._own_loop, None
        if loop:
            loop.stop()
        elif self._loop:
            self._loop.remove(self)
        if self._sock:
            try:
                self._sock.close()
            except OSError:
                pass
        self._on_eof()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        with self._send_lock:
            self._sock.sendall(_bytes(data))

    def send_message(self, mtype, body=b"", mid=None, code=RespCode.SUCCESS):
        """Sends one message; returns its id (allocated when not given). Code 1 in
        requests, as the RTIO SDK sends (R5, R6, R8, R9)."""
        if mid is None:
            mid = self._alloc_id()
        self.send_raw(encode_message(mtype, code, mid, body))
        return mid

    # -- routes for serve()

    def add_uri(self, uri, copost=None, obget=None):
        """Makes `uri` known: coposts to it call copost(data) -> (status, data) (default:
        echo the data with OK), obgets call obget(observer, data) -> status (default:
        Continue). Unknown digests get NotFound."""
        self._routes[crc32(uri)] = _Route(uri, copost, obget)
        return self

    # -- blocking requests (device -> server)

    def verify(self, device_id=None, secret=None, level=None, raw_body=None, timeout=None):
        """DeviceVerifyReq; returns the response code (1 success, 3 failed, 4 malformed)."""
        body = raw_body if raw_body is not None else verify_body(
            self.device_id if device_id is None else device_id,
            self.secret if secret is None else secret,
            self.level if level is None else level)
        return self._request(MsgType.DEVICE_VERIFY_REQ, body, MsgType.DEVICE_VERIFY_RESP, timeout).code

    def ping(self, seconds=None, raw_body=None, timeout=None):
        """DevicePingReq (empty body, or u16 seconds, or raw_body); returns the code."""
        body = raw_body if raw_body is not None else ping_body(seconds)
        return self._request(MsgType.DEVICE_PING_REQ, body, MsgType.DEVICE_PING_RESP, timeout).code

    def copost(self, uri, data=b"", method=Method.CONSTRAINED_POST, timeout=None):
        """Device -> cloud copost (a CoReq in a DeviceSendReq). `uri` may be an int digest.
        Returns (status, data) of the DeviceSendResp's CoResp."""
        digest = uri if isinstance(uri, int) else crc32(uri)
        m = self._request(MsgType.DEVICE_SEND_REQ, encode_co_req(method, digest, data), MsgType.DEVICE_SEND_RESP,
                          timeout)
        resp = decode_co_resp(m.body)
        if resp is None:
            raise ProtocolError("empty DeviceSendResp body")
        return resp.status, resp.data

    def notify(self, observer, status=Status.CONTINUE, data=b"", timeout=None):
        """ObGetNotifyReq; returns the status of the server's ObGetNotifyResp (Continue:
        keep going, Terminate: the observer is gone)."""
        m = self._request(MsgType.DEVICE_SEND_REQ, encode_obget_notify_req(observer, status, data),
                          MsgType.DEVICE_SEND_RESP, timeout)
        resp = decode_obget(m.body)
        if resp is None:
            raise ProtocolError(f"ObGetNotifyResp of {len(m.body)} bytes")
        if status != Status.CONTINUE or resp.status != Status.CONTINUE:
            self.observers.pop(observer, None)
        return resp.status

    def recv_message(self, timeout=None):
        """The next message no blocking call or serve() consumed (server requests while
        not serving, stray responses). TimeoutError / RtioClosed when none comes."""
        def pred():
            if self._inbox:
                return self._inbox.popleft()
            if self.eof:
                raise RtioClosed("connection closed")
            return None
        return self._wait(pred, timeout)

    def reply(self, request, body):
        """Answers a ServerSendReq (e.g. one from recv_message) with a ServerSendResp."""
        self.send_message(MsgType.SERVER_SEND_RESP, body, mid=request.id)

    def wait_received(self, pred, timeout=None):
        """The first recorded message for which pred(message) is true, waiting for it."""
        def find():
            for m in self.received:
                if pred(m):
                    return m
            if self.eof:
                raise RtioClosed("connection closed")
            return None
        return self._wait(find, timeout)

    def wait_eof(self, timeout=None):
        """True once the server has closed the connection; False after the timeout."""
        try:
            return self._wait(lambda: True if self.eof else None, timeout)
        except TimeoutError:
            return False

    def wait_for(self, pred, timeout=None):
        """Waits until pred() (about this device's state) is truthy and returns it."""
        return self._wait(lambda: pred() or None, timeout)

    # -- answering the server (serve)

    def serve(self, handlers=None, delay=None):
        """Answers ServerSendReqs from a background thread until close(). Blocking calls
        keep working from any other thread."""
        if handlers:
            self.handlers.update(handlers)
        if delay is not None:
            self.delay = delay
        if self._loop:
            raise RuntimeError("already driven by a DeviceLoop")
        loop = DeviceLoop()
        loop.add(self, answer=True)
        self._own_loop = loop
        loop.start()
        return self

    # -- non-blocking requests, for a DeviceLoop

    def request_async(self, mtype, body, resp_type, callback):
        """Sends a request; callback(Message) runs on the loop thread when the response
        comes, or callback(None) if the connection ends first."""
        mid = self._alloc_id()
        with self._cond:
            self._callbacks[(resp_type, mid)] = callback
        self.send_message(mtype, body, mid=mid)
        return mid

    def verify_async(self, callback):
        self.request_async(MsgType.DEVICE_VERIFY_REQ, verify_body(self.device_id, self.secret, self.level),
                           MsgType.DEVICE_VERIFY_RESP, lambda m: callback(None if m is None else m.code))

    def ping_async(self, seconds, callback):
        self.request_async(MsgType.DEVICE_PING_REQ, ping_body(seconds), MsgType.DEVICE_PING_RESP,
                           lambda m: callback(None if m is None else m.code))

    def copost_async(self, uri, data, callback, method=Method.CONSTRAINED_POST):
        digest = uri if isinstance(uri, int) else crc32(uri)

        def done(m):
            r = decode_co_resp(m.body) if m is not None else None
            callback(None, b"") if r is None else callback(r.status, r.data)
        self.request_async(MsgType.DEVICE_SEND_REQ, encode_co_req(method, digest, data), MsgType.DEVICE_SEND_RESP,
                           done)

    def notify_async(self, observer, status, data, callback):
        def done(m):
            r = decode_obget(m.body) if m is not None else None
            if r is None or status != Status.CONTINUE or r.status != Status.CONTINUE:
                self.observers.pop(observer, None)
            callback(None if r is None else r.status)
        self.request_async(MsgType.DEVICE_SEND_REQ, encode_obget_notify_req(observer, status, data),
                           MsgType.DEVICE_SEND_RESP, done)

    # -- internals

    def _alloc_id(self):
        with self._cond:
            for _ in range(0x10000):
                self._next_id = self._next_id % 0xFFFF + 1  # 1..65535, never 0
                mid = self._next_id
                if not any(k[1] == mid for k in itertools.chain(self._waiters, self._callbacks)):
                    return mid
        raise RuntimeError("65535 requests pending")

    def _request(self, mtype, body, resp_type, timeout):
        mid = self._alloc_id()
        key = (resp_type, mid)
        with self._cond:
            self._waiters[key] = _PENDING
        try:
            self.send_message(mtype, body, mid=mid)

            def pred():
                m = self._waiters[key]
                if m is not _PENDING:
                    return m
                if self.eof:
                    raise RtioClosed(f"connection closed before the response to {MsgType(mtype).name} {mid}")
                return None
            return self._wait(pred, timeout)
        finally:
            with self._cond:
                self._waiters.pop(key, None)

    def _wait(self, pred, timeout):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                value = pred()
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer within {timeout} s")
                if self._loop is not None and self._loop.active:
                    if self._loop.in_loop_thread():
                        raise RuntimeError("blocking call on the loop thread; use the *_async methods")
                    self._cond.wait(remaining)
                    continue
            self._pump(remaining)

    def _pump(self, timeout):
        """Reads what the socket has (waiting up to `timeout`), without a loop."""
        if self.eof:
            return
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            if not sel.select(timeout):
                return
        self._read_ready()

    def _read_ready(self):
        try:
            data = self._sock.recv(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._on_eof()
            return False
        self._decoder.append(data)
        try:
            for m in self._decoder:
                self._on_message(m)
        except ProtocolError as e:
            self.errors.append(f"protocol error: {e}")
            try:
                self._sock.close()
            except OSError:
                pass
            self._on_eof()
            return False
        return True

    def _on_eof(self):
        with self._cond:
            if self.eof:
                return
            self.eof = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
            self._cond.notify_all()
        for cb in callbacks:
            cb(None)

    def _on_message(self, m):
        callback = None
        with self._cond:
            if self.record:
                self.received.append(m)
            key = (m.type, m.id)
            if m.type in _RESPONSES and self._waiters.get(key) is _PENDING:
                self._waiters[key] = m
                self._cond.notify_all()
                return
            if m.type in _RESPONSES and key in self._callbacks:
                callback = self._callbacks.pop(key)
            elif not (m.type == MsgType.SERVER_SEND_REQ and self._answering):
                self._inbox.append(m)
                self._cond.notify_all()
                return
            self._cond.notify_all()  # wait_received() may be waiting for it
        if callback:
            callback(m)
        else:
            self._answer(m)

    def _answer(self, m):
        try:
            body = self._answer_body(m.body)
        except Exception:  # a test's handler failed: say so, and answer as a device would
            self.errors.append(traceback.format_exc())
            body = encode_co_resp(m.body[0] >> 4 if m.body else 0, Status.INTERNAL_SERVER_ERROR)
        if body is None:
            return
        reply = encode_message(MsgType.SERVER_SEND_RESP, RespCode.SUCCESS, m.id, body)
        if self.delay > 0 and self._loop and self._loop.active:
            self._loop.call_later(self.delay, lambda: self._send_quietly(reply))
        else:
            self._send_quietly(reply)

    def _send_quietly(self, data):
        if self.eof:
            return
        try:
            self.send_raw(data)
        except OSError as e:
            self.errors.append(f"send failed: {e}")

    def _answer_body(self, body):
        method = body[0] >> 4 if body else 0
        if method in (Method.CONSTRAINED_GET, Method.CONSTRAINED_POST):
            req = decode_co_req(body)
            if req is None:
                return encode_co_resp(method, Status.BAD_REQUEST)
            if "copost" in self.handlers:
                result = self.handlers["copost"](req.digest, req.data)
            else:
                route = self._routes.get(req.digest)
                if route is None:
                    result = (Status.NOT_FOUND, b"")
                elif route.copost is None:
                    result = (Status.OK, req.data)
                else:
                    result = route.copost(req.data)
            if result is None:
                return None
            status, data = result
            return encode_co_resp(method, status, data)
        if method == Method.OBSERVED_GET:
            req = decode_obget_estab_req(body)
            if req is None:
                return encode_co_resp(method, Status.BAD_REQUEST)
            if "obget" in self.handlers:
                status = self.handlers["obget"](req.observer, req.digest, req.data)
            else:
                route = self._routes.get(req.digest)
                if route is None:
                    status = Status.NOT_FOUND
                elif route.obget is None:
                    status = Status.CONTINUE
                else:
                    status = route.obget(req.observer, req.data)
            if status is None:
                return None
            if status == Status.CONTINUE:
                with self._cond:
                    self.observers[req.observer] = req.digest
                    self._cond.notify_all()
            return encode_obget_estab_resp(req.observer, status)
        return encode_co_resp(method, Status.METHOD_NOT_ALLOWED)


# --- many devices, one thread -----------------------------------------------------------

class DeviceLoop:
    """Drives many connected RtioDevices from one selector loop: reads their sockets,
    answers ServerSendReqs (with each device's delay) and runs the *_async callbacks."""

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._timers = []               # heap of (when, seq, fn)
        self._seq = itertools.count()
        self._lock = threading.Lock()   # guards _timers and _todo (other threads add)
        self._todo = []                 # functions to run on the loop thread
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = None
        self._running_ident = None
        self._stopping = False
        # True while run() runs (from start() on): devices' blocking calls then wait for
        # this loop to read their sockets instead of reading themselves.
        self.active = False

    def in_loop_thread(self):
        return self._running_ident == threading.get_ident()

    def add(self, dev, answer=True):
        """Registers a connected device; with answer, it answers the server's requests."""
        def do():
            dev._loop = self
            dev._answering = answer
            self._sel.register(dev._sock, selectors.EVENT_READ, dev)
            if answer:  # requests that arrived before, during blocking calls
                with dev._cond:
                    early = [m for m in dev._inbox if m.type == MsgType.SERVER_SEND_REQ]
                    for m in early:
                        dev._inbox.remove(m)
                for m in early:
                    dev._answer(m)
        dev._loop = self  # blocking calls wait for the loop from now on
        self._call(do)

    def remove(self, dev):
        def do():
            self._unregister(dev._sock)
            dev._loop = None
            dev._answering = False
        self._call(do)

    def call_later(self, delay, fn):
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))
        self._wake()

    def call_soon(self, fn):
        self.call_later(0, fn)

    def start(self):
        self.active = True
        self._thread = threading.Thread(target=self.run, name="rtio-device-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping = True
        self._wake()
        if self._thread and not self.in_loop_thread():
            self._thread.join(10)

    def run(self, duration=None, until=None):
        """Runs until stop(), `duration` seconds, or until() returns true."""
        self._running_ident = threading.get_ident()
        self.active = True
        end = None if duration is None else time.monotonic() + duration
        try:
            while not self._stopping and not (until and until()):
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                self._run_todo()
                timeout = None if end is None else end - now
                with self._lock:
                    if self._timers:
                        t = max(0.0, self._timers[0][0] - now)
                        timeout = t if timeout is None else min(timeout, t)
                if until is not None:
                    timeout = 0.05 if timeout is None else min(timeout, 0.05)
                for key, _ in self._sel.select(timeout):
                    if key.data is None:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif not key.data._read_ready():
                        self._unregister(key.fileobj)
                self._run_timers()
        finally:
            self._running_ident = None
            self._stopping = False
            self.active = False
            for key in list(self._sel.get_map().values()):  # wake blocking calls: they read again
                if key.data is not None:
                    with key.data._cond:
                        key.data._cond.notify_all()

    def _unregister(self, fileobj):
        try:
            self._sel.unregister(fileobj)
        except (KeyError, ValueError, OSError):
            pass

    def _call(self, fn):
        if self.in_loop_thread() or not self.active:
            fn()
        else:
            with self._lock:
                self._todo.append(fn)
            self._wake()

    def _run_todo(self):
        with self._lock:
            todo, self._todo = self._todo, []
        for fn in todo:
            fn()

    def _run_timers(self):
        now = time.monotonic()
        due = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for fn in due:
            fn()

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass


# --- self-test against spec/http-api.md §6.7 ---------------------------------------------

R6_ID = "cfa09baa-4913-4ad7-a936-3e26f9671b09"
R6_SECRET = "example-secret-0123456789"

VECTORS = {
    "R3": "71 00 01 00 0a 20 d5 a7 ab db 68 65 6c 6c 6f",
    "R4": "81 00 01 00 06 22 77 6f 72 6c 64",
    "R5 req": "31 00 05 00 02 00 3c",
    "R5 resp": "41 00 05 00 00",
    "R6 req": "11 00 01 00 3f 00 63 66 61 30 39 62 61 61 2d 34 39 31 33 2d 34 61 64 37 2d 61 39 33 36 2d 33 65 32 36"
              " 66 39 36 37 31 62 30 39 3a 65 78 61 6d 70 6c 65 2d 73 65 63 72 65 74 2d 30 31 32 33 34 35 36 37 38 39",
    "R6 success": "21 00 01 00 00",
    "R6 failed": "23 00 01 00 00",
    "R7 req": "71 00 02 00 07 30 00 01 d5 a7 ab db",
    "R7 resp": "81 00 02 00 03 33 00 01",
    "R8 req": "51 00 07 00 05 33 00 01 01 02",
    "R8 continue": "61 00 07 00 03 33 00 01",
    "R8 terminate": "61 00 07 00 03 34 00 01",
    "R9 req": "51 00 09 00 07 20 a7 96 d0 57 68 69",
    "R9 ok": "61 00 09 00 01 22",
    "R9 not found": "61 00 09 00 01 25",
}


def vector(name):
    return bytes.fromhex(VECTORS[name])


def selftest():
    failures = []

    def check(what, got, want):
        if got != want:
            failures.append(f"{what}: got {got!r}, want {want!r}")

    check("R1 crc32(/greeter)", crc32("/greeter"), 0xE5DCC140)
    check("R2 crc32(/rainbow)", crc32("/rainbow"), 0xD5A7ABDB)
    check("R2 crc32(/aa/bb)", crc32("/aa/bb"), 0xA796D057)
    check("R2 crc32(123456789)", crc32(b"123456789"), 0xCBF43926)
    S, T, POST = MsgType, Status, Method.CONSTRAINED_POST
    ok = RespCode.SUCCESS
    built = {
        "R3": encode_message(S.SERVER_SEND_REQ, ok, 1, encode_co_req(POST, crc32("/rainbow"), b"hello")),
        "R4": encode_message(S.SERVER_SEND_RESP, ok, 1, encode_co_resp(POST, T.OK, b"world")),
        "R5 req": encode_message(S.DEVICE_PING_REQ, ok, 5, ping_body(60)),
        "R5 resp": encode_message(S.DEVICE_PING_RESP, ok, 5),
        "R6 req": encode_message(S.DEVICE_VERIFY_REQ, ok, 1, verify_body(R6_ID, R6_SECRET, 0)),
        "R6 success": encode_message(S.DEVICE_VERIFY_RESP, ok, 1),
        "R6 failed": encode_message(S.DEVICE_VERIFY_RESP, RespCode.VERIFY_FAILED, 1),
        "R7 req": encode_message(S.SERVER_SEND_REQ, ok, 2, encode_obget_estab_req(1, crc32("/rainbow"))),
        "R7 resp": encode_message(S.SERVER_SEND_RESP, ok, 2, encode_obget_estab_resp(1, T.CONTINUE)),
        "R8 req": encode_message(S.DEVICE_SEND_REQ, ok, 7, encode_obget_notify_req(1, T.CONTINUE, b"\x01\x02")),
        "R8 continue": encode_message(S.DEVICE_SEND_RESP, ok, 7, encode_obget_notify_resp(1, T.CONTINUE)),
        "R8 terminate": encode_message(S.DEVICE_SEND_RESP, ok, 7, encode_obget_notify_resp(1, T.TERMINATE)),
        "R9 req": encode_message(S.DEVICE_SEND_REQ, ok, 9, encode_co_req(POST, crc32("/aa/bb"), b"hi")),
        "R9 ok": encode_message(S.DEVICE_SEND_RESP, ok, 9, encode_co_resp(POST, T.OK)),
        "R9 not found": encode_message(S.DEVICE_SEND_RESP, ok, 9, encode_co_resp(POST, T.NOT_FOUND)),
    }
    check("R6 body length", len(verify_body(R6_ID, R6_SECRET)), 63)
    for name in VECTORS:
        check(f"{name} encodes", built[name].hex(" "), vector(name).hex(" "))

    # Decoding: the whole stream in one piece and byte by byte gives every vector back.
    stream = b"".join(vector(n) for n in VECTORS)
    for piece in (len(stream), 1, 3, 7):
        dec = StreamDecoder(DEFAULT_CAPACITY)
        got = []
        for i in range(0, len(stream), piece):
            dec.append(stream[i:i + piece])
            got.extend(dec)
        check(f"decode in pieces of {piece}", [m.raw for m in got], [vector(n) for n in VECTORS])
    check("R3 decodes", decode_co_req(_one_message(vector("R3")).body),
          CoReq(2, 0xD5A7ABDB, b"hello"))
    check("R4 decodes", decode_co_resp(_one_message(vector("R4")).body), CoResp(2, 2, b"world"))
    check("R7 decodes", decode_obget_estab_req(_one_message(vector("R7 req")).body),
          ObGetEstabReq(3, 1, 0xD5A7ABDB, b""))
    check("R8 decodes", decode_obget(_one_message(vector("R8 req")).body), ObGet(3, 3, 1, b"\x01\x02"))
    check("R8 terminate decodes", decode_obget(_one_message(vector("R8 terminate")).body), ObGet(3, 4, 1, b""))
    check("R9 decodes", decode_co_req(_one_message(vector("R9 req")).body), CoReq(2, 0xA796D057, b"hi"))
    h = decode_header(bytes.fromhex("7d abcd 0102"))
    check("header V and Code", h, Header(7, True, 5, 0xABCD, 0x0102))
    try:
        dec = StreamDecoder(512)
        dec.append(encode_message(5, 1, 1, bytes(513))[:5])
        dec.next()
        failures.append("a body of 513 bytes was accepted with capacity 512")
    except ProtocolError:
        pass

    # The device answers R3 with R4 and R7 with R7's response through its routes.
    dev = RtioDevice("127.0.0.1", 0, R6_ID, R6_SECRET)
    dev.add_uri("/rainbow", copost=lambda data: (Status.OK, b"world"))
    check("R3 answered with R4's body", dev._answer_body(_one_message(vector("R3")).body),
          _one_message(vector("R4")).body)
    check("R7 answered with R7's response body", dev._answer_body(_one_message(vector("R7 req")).body),
          _one_message(vector("R7 resp")).body)
    check("unknown uri", dev._answer_body(encode_co_req(2, crc32("/nosuch"))), bytes([0x25]))

    for f in failures:
        print("FAIL", f)
    print("selftest", "failed" if failures else "ok", f"({len(VECTORS)} vectors)")
    return not failures


def _one_message(raw):
    """The single message of `raw` (for the self-test)."""
    dec = StreamDecoder(0xFFFF)
    dec.append(raw)
    m = dec.next()
    assert m is not None and dec.buffered() == 0
    return m


# --- command line -----------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--selftest", action="store_true", help="check the codecs against the spec's vectors R1-R9")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=17017)
    p.add_argument("--id", default=R6_ID, help="device id (36 characters)")
    p.add_argument("--secret", default=R6_SECRET)
    p.add_argument("--level", type=int, default=0, help="capacity level CL: 0..3 = 512..4096 bytes")
    p.add_argument("--uri", action="append", default=[], help="a uri to answer (echo / accept obget); repeatable")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--heartbeat", type=int, default=0, help="set this ping interval (30..43200) and keep pinging")
    p.add_argument("--notify-hz", type=float, default=1.0, help="notifies per second to each accepted observer")
    p.add_argument("--copost", nargs=2, metavar=("URI", "DATA"), help="send one device copost and exit")
    args = p.parse_args(argv)
    if args.selftest:
        return 0 if selftest() else 1

    dev = RtioDevice(args.host, args.port, args.id, args.secret, level=args.level, record=False).connect()
    code = dev.verify()
    print(f"verify: code {code}", flush=True)
    if code != RespCode.SUCCESS:
        return 1
    if args.copost:
        status, data = dev.copost(args.copost[0], args.copost[1].encode())
        print(f"copost {args.copost[0]}: status {status} data {data!r}")
        dev.close()
        return 0 if status == Status.OK else 1
    if args.heartbeat:
        print(f"ping {args.heartbeat}: code {dev.ping(args.heartbeat)}", flush=True)
    for uri in args.uri:
        dev.add_uri(uri)
    dev.serve(delay=args.delay)
    counter = 0
    last_ping = time.monotonic()
    try:
        while not dev.eof:
            time.sleep(1.0 / args.notify_hz if args.notify_hz > 0 else 1.0)
            for observer in list(dev.observers):
                counter += 1
                status = dev.notify(observer, Status.CONTINUE, str(counter).encode())
                if status != Status.CONTINUE:
                    print(f"observer {observer} ended (status {status})", flush=True)
            if args.heartbeat and time.monotonic() - last_ping > args.heartbeat / 2:
                dev.ping()
                last_ping = time.monotonic()
    except (KeyboardInterrupt, RtioClosed):
        pass
    print("connection closed", flush=True)
    dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
