"""The fake RTIO device (rtio_device.py) against a scripted server on loopback, without
edgelink: the bytes it sends, how it answers, its blocking calls while serve() runs, the
reply delay, EOF, and many devices on one DeviceLoop. The RTIO integration tests and the
benchmark rely on this library."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import rtio_device as rd  # noqa: E402

ID = rd.R6_ID
SECRET = rd.R6_SECRET


class Peer:
    """The server's side of one connection, driven by the test."""

    def __init__(self, conn):
        self.conn = conn
        self.conn.settimeout(5)
        self.dec = rd.StreamDecoder(4096)

    def send(self, raw):
        self.conn.sendall(raw)

    def recv(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            m = self.dec.next()
            if m is not None:
                return m
            self.conn.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.conn.recv(65536)
            if not data:
                raise EOFError
            self.dec.append(data)

    def answer(self, body_of, resp_type=rd.MsgType.DEVICE_SEND_RESP):
        """In a thread: reads one request and answers it with body_of(request)."""
        def run():
            m = self.recv()
            self.send(rd.encode_message(resp_type, 1, m.id, body_of(m)))
            self.last_request = m
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def close(self):
        self.conn.close()


@pytest.fixture
def pair():
    """A connected (device, peer)."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        dev = rd.RtioDevice("127.0.0.1", lsock.getsockname()[1], ID, SECRET, timeout=5).connect()
        conn, _ = lsock.accept()
    peer = Peer(conn)
    yield dev, peer
    dev.close()
    peer.close()


def test_selftest_passes():
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "rtio_device.py"), "--selftest"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "selftest ok (15 vectors)" in out.stdout


def test_verify_and_ping_send_the_vectors_without_a_thread(pair):
    dev, peer = pair
    # The responses may wait in the socket before the requests go out: ids are 1, 2, 3, ...
    peer.send(rd.vector("R6 success"))
    assert dev.verify() == rd.RespCode.SUCCESS
    assert peer.recv().raw == rd.vector("R6 req")
    peer.send(bytes.fromhex("41 00 02 00 00"))
    assert dev.ping(60) == rd.RespCode.SUCCESS
    assert peer.recv().raw == bytes.fromhex("31 00 02 00 02 00 3c")
    peer.send(bytes.fromhex("45 00 03 00 00"))
    assert dev.ping(raw_body=b"\x00\x3c\x00") == rd.RespCode.BODY_LENGTH_ERROR
    assert peer.recv().body == b"\x00\x3c\x00"
    peer.send(bytes.fromhex("41 00 04 00 00"))
    assert dev.ping() == rd.RespCode.SUCCESS
    assert peer.recv().body == b""
    assert [m.type for m in dev.received] == [2, 4, 4, 4]


def test_serve_answers_r3_with_r4_and_accepts_r7(pair):
    dev, peer = pair
    dev.add_uri("/rainbow", copost=lambda data: (rd.Status.OK, b"world"))
    dev.serve()
    peer.send(rd.vector("R3"))
    assert peer.recv().raw == rd.vector("R4")
    assert dev.wait_received(lambda m: m.raw == rd.vector("R3"))
    peer.send(rd.vector("R7 req"))
    assert peer.recv().raw == rd.vector("R7 resp")
    assert dev.wait_for(lambda: dev.observers) == {1: rd.crc32("/rainbow")}
    # Unknown digest: NotFound; a known uri without a handler echoes.
    peer.send(rd.encode_message(7, 1, 3, rd.encode_co_req(2, rd.crc32("/nosuch"), b"x")))
    assert peer.recv().raw == bytes.fromhex("81 00 03 00 01 25")
    dev.add_uri("/echo")
    peer.send(rd.encode_message(7, 1, 4, rd.encode_co_req(2, rd.crc32("/echo"), b"abc")))
    assert peer.recv().raw == rd.encode_message(8, 1, 4, b"\x22abc")
    # obget of an unknown uri: NotFound, no observer.
    peer.send(rd.encode_message(7, 1, 5, rd.encode_obget_estab_req(2, rd.crc32("/nosuch"))))
    assert peer.recv().body == bytes.fromhex("35 00 02")
    assert 2 not in dev.observers


def test_handlers_override_routes_and_none_means_no_reply(pair):
    dev, peer = pair
    seen = []
    dev.serve(handlers={"copost": lambda digest, data: seen.append((digest, data)),
                        "obget": lambda observer, digest, data: rd.Status.TOO_MANY_OBSERVERS})
    peer.send(rd.vector("R3"))
    peer.send(rd.vector("R7 req"))
    assert peer.recv().raw == bytes.fromhex("81 00 02 00 03 39 00 01")  # R3 got no reply
    assert seen == [(0xD5A7ABDB, b"hello")]
    # A test can answer by hand what it held back... after taking it from `received`.
    req = dev.wait_received(lambda m: m.raw == rd.vector("R3"))
    dev.reply(req, rd.encode_co_resp(2, rd.Status.OK, b"late"))
    assert peer.recv().raw == rd.encode_message(8, 1, 1, b"\x22late")


def test_blocking_calls_while_serving(pair):
    dev, peer = pair
    dev.serve()
    dev.observers[1] = rd.crc32("/rainbow")
    t = peer.answer(lambda m: rd.encode_obget_notify_resp(1, rd.Status.TERMINATE))
    assert dev.notify(1, rd.Status.CONTINUE, b"\x01\x02") == rd.Status.TERMINATE
    t.join()
    assert peer.last_request.body == rd.vector("R8 req")[5:]
    assert 1 not in dev.observers
    t = peer.answer(lambda m: rd.encode_co_resp(2, rd.Status.OK))
    assert dev.copost("/aa/bb", b"hi") == (rd.Status.OK, b"")
    t.join()
    assert peer.last_request.body == rd.vector("R9 req")[5:]
    assert peer.last_request.code == 1


def test_delay_applies_to_each_reply_without_serialising_them(pair):
    dev, peer = pair
    dev.add_uri("/rainbow")
    dev.serve(delay=0.5)
    start = time.monotonic()
    for mid in (1, 2, 3):
        peer.send(rd.encode_message(7, 1, mid, rd.encode_co_req(2, rd.crc32("/rainbow"), b"x")))
    ids = [peer.recv().id for _ in range(3)]
    took = time.monotonic() - start
    assert sorted(ids) == [1, 2, 3]
    assert 0.45 <= took < 1.4  # one after another would take 1.5 s


def test_without_serve_requests_wait_in_recv_message(pair):
    dev, peer = pair
    peer.send(rd.vector("R3"))
    m = dev.recv_message()
    assert m.raw == rd.vector("R3")
    dev.reply(m, rd.encode_co_resp(2, rd.Status.OK, b"world"))
    assert peer.recv().raw == rd.vector("R4")
    with pytest.raises(TimeoutError):
        dev.recv_message(timeout=0.1)


def test_eof(pair):
    dev, peer = pair
    assert not dev.wait_eof(0.1)
    peer.close()
    assert dev.wait_eof(2)
    with pytest.raises((rd.RtioClosed, OSError)):
        dev.copost("/aa/bb", b"hi")
    with pytest.raises(rd.RtioClosed):
        dev.recv_message(0.1)


def test_eof_while_serving_wakes_a_blocking_call(pair):
    dev, peer = pair
    dev.serve()
    threading.Timer(0.2, peer.close).start()
    with pytest.raises(rd.RtioClosed):
        dev.copost("/aa/bb", b"hi", timeout=5)


def test_a_body_above_the_declared_capacity_closes_the_device(pair):
    dev, peer = pair
    peer.send(rd.encode_message(7, 1, 1, bytes(513)))
    assert dev.wait_eof(2)
    assert "above the capacity 512" in dev.errors[0]


def test_many_devices_on_one_loop():
    """A server that answers like edgelink would, and 20 devices on one DeviceLoop."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    answered = []

    def serve_conn(conn):
        peer = Peer(conn)
        try:
            while True:
                m = peer.recv(10)
                if m.type == rd.MsgType.DEVICE_VERIFY_REQ:
                    peer.send(rd.encode_message(2, 1, m.id))
                elif m.type == rd.MsgType.DEVICE_SEND_REQ:
                    req = rd.decode_co_req(m.body)
                    peer.send(rd.encode_message(6, 1, m.id, rd.encode_co_resp(2, rd.Status.OK, req.data[::-1])))
                    # and ask the device something back
                    peer.send(rd.encode_message(7, 1, 9, rd.encode_co_req(2, rd.crc32("/rainbow"), b"ping")))
                elif m.type == rd.MsgType.SERVER_SEND_RESP:
                    answered.append(m.body)
        except (EOFError, OSError):
            pass

    def accept_all():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_all, daemon=True).start()
    loop = rd.DeviceLoop()
    devs = [rd.RtioDevice("127.0.0.1", port, ID, SECRET, record=False).connect() for _ in range(20)]
    results = {}
    for i, d in enumerate(devs):
        d.add_uri("/rainbow")
        loop.add(d)
        d.verify_async(lambda code, d=d, i=i: d.copost_async(
            "/aa/bb", f"n{i}".encode(), lambda status, data, i=i: results.__setitem__(i, (code, status, data))))
    loop.run(duration=10, until=lambda: len(results) == 20 and len(answered) == 20)
    lsock.close()
    assert results == {i: (1, rd.Status.OK, f"n{i}".encode()[::-1]) for i in range(20)}
    assert sorted(answered) == [b"\x22ping"] * 20
    for d in devs:
        d.close()
