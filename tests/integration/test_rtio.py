"""The RTIO device-access server (spec/http-api.md §7 items 4, 5, 7 and 8): the real
binary with [rtio] and [http], a real mosquitto, real curl, and the fake RTIO device of
rtio_device.py on loopback TCP.
"""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Subscriber, free_port, wait_for, wait_port
from test_http import Http, Observer

sys.path.insert(0, os.path.dirname(__file__))
import rtio_device as rd  # noqa: E402

ID = rd.R6_ID
SECRET = rd.R6_SECRET
ID2 = "0b0b0b0b-0000-4000-8000-000000000002"
SECRET2 = "another-secret-abcdefghijk"
TOPIC = "/tenants/demo/devices/gw-001/rtio/{rtio_device_id}/aa/bb"


@pytest.fixture
def rtio_rig(workdir, broker, make_edgelink):
    """rtio_rig(rtio={...}, http={...}) -> (edgelink, Http, rtio_port)."""
    devices = []

    def make(rtio=None, http=None, **overrides):
        rport, hport = free_port(), free_port()
        config = {
            "rtio": {"bind": f"127.0.0.1:{rport}", "verify_timeout": 2, "service_timeout": 2,
                     "devices": {ID: SECRET, ID2: SECRET2},
                     "device_services": [{"uri": "/aa/bb", "topic": TOPIC}],
                     **(rtio or {})},
            "http": {"bind": f"127.0.0.1:{hport}", "copost_timeout": 1, "obget_establish_timeout": 2,
                     **(http or {})},
        }
        config.update(overrides)
        e = make_edgelink(**config)
        wait_port(rport)
        wait_port(hport)
        return e, Http(hport), rport

    def device(port, device_id=ID, secret=SECRET, verify=True, **kw):
        d = rd.RtioDevice("127.0.0.1", port, device_id, secret, **kw).connect()
        devices.append(d)
        if verify:
            assert d.verify() == rd.RespCode.SUCCESS
        return d

    make.device = device
    yield make
    for d in devices:
        d.close()


def b64(data):
    return base64.b64encode(data).decode()


def rtio_status(h):
    return h.status()["rtio"]


# ---- item 7: the connection life cycle --------------------------------------------------

def test_verify_ping_and_status(rtio_rig):
    e, h, port = rtio_rig()
    assert h.status()["devices"][ID]["link"] == "down"
    d = rtio_rig.device(port, verify=False)
    assert d.verify() == rd.RespCode.SUCCESS
    assert d.wait_received(lambda m: m.raw == rd.vector("R6 success"))
    assert d.ping(60) == rd.RespCode.SUCCESS
    assert d.ping(29) == rd.RespCode.INVALID_PARAM
    assert d.ping(raw_body=b"\x00\x3c\x00") == rd.RespCode.BODY_LENGTH_ERROR
    assert d.ping() == rd.RespCode.SUCCESS
    dev = h.status()["devices"][ID]
    assert (dev["kind"], dev["link"], dev["heartbeat"]) == ("rtio", "up", 60)
    assert dev["remote"].startswith("127.0.0.1:")
    # `edgelink status` shows the same.
    assert e.status()["devices"][ID]["link"] == "up"
    assert 'edgelink_device_link_up{device="%s",kind="rtio"} 1' % ID in h.metrics()
    d.close()
    wait_for(lambda: h.status()["devices"][ID]["link"] == "down", what="down after the device left")


def test_wrong_secret_malformed_verify_and_no_verify(rtio_rig):
    e, h, port = rtio_rig(rtio={"verify_timeout": 0.5})
    bad = rtio_rig.device(port, secret="wrong-secret-0123456789xx", verify=False)
    assert bad.verify() == rd.RespCode.VERIFY_FAILED
    assert bad.wait_eof(5)
    odd = rtio_rig.device(port, verify=False)
    assert odd.verify(raw_body=b"\x00short") == rd.RespCode.INVALID_PARAM
    assert odd.wait_eof(5)
    silent = rtio_rig.device(port, verify=False)
    t0 = time.monotonic()
    assert silent.wait_eof(5)
    assert time.monotonic() - t0 >= 0.3
    early = rtio_rig.device(port, verify=False)
    early.send_message(rd.MsgType.DEVICE_PING_REQ)  # anything before verify closes
    assert early.wait_eof(5)
    c = rtio_status(h)["connections"]
    assert c.get("verify_failed") == 2 and c.get("verify_timeout") == 1 and c.get("protocol_error") == 1


def test_last_connection_wins(rtio_rig):
    e, h, port = rtio_rig()
    first = rtio_rig.device(port)
    first.add_uri("/rainbow")
    first.serve()
    obs = Observer(h.port, ID, "/rainbow")
    wait_for(lambda: obs.headers is not None, what="the obget to be established")
    second = rtio_rig.device(port)
    assert first.wait_eof(5)
    wait_for(lambda: obs.ended, what="the observer to end")
    assert obs.frames[-1]["code"] == "DEVICEID_OFFLINE"
    assert rtio_status(h)["connections"].get("replaced") == 1
    assert h.status()["devices"][ID]["link"] == "up"
    second.add_uri("/rainbow", copost=lambda data: (rd.Status.OK, b"again"))
    second.serve()
    r = h.copost(ID, "/rainbow", b64(b"x"))
    assert (r["code"], base64.b64decode(r["data"])) == ("OK", b"again")


# ---- item 7: HTTP -> device ------------------------------------------------------------

def test_copost_sends_r3_and_the_reply_becomes_rtio_json(rtio_rig):
    e, h, port = rtio_rig()
    d = rtio_rig.device(port)
    d.add_uri("/rainbow", copost=lambda data: (rd.Status.OK, b"world"))
    d.serve()
    r = h.copost(ID, "/rainbow", b64(b"hello"), id=12667)
    assert r == {"id": 12667, "fid": 0, "code": "OK", "data": "d29ybGQ="}
    # The first ServerSendReq edgelink sent on this connection is R3 exactly.
    assert d.wait_received(lambda m: m.raw == rd.vector("R3"))
    # Other statuses map to their codes, with no data.
    d.add_uri("/missing", copost=lambda data: (rd.Status.NOT_FOUND, b"ignored"))
    r = h.copost(ID, "/missing", "")
    assert (r["code"], r["data"]) == ("NOT_FOUND", "")
    # 672 base64 characters (504 bytes) reach the device and come back.
    big = (bytes(range(256)) * 2)[:504]
    d.add_uri("/echo")
    r = h.copost(ID, "/echo", b64(big))
    assert len(b64(big)) == 672
    assert r["code"] == "OK" and base64.b64decode(r["data"]) == big
    # Limits of §4.2 for an RTIO device: a 4-byte uri is too short.
    assert h.copost(ID, "/abc")["code"] == "BAD_REQUEST"


def test_late_reply_is_dropped_and_the_connection_kept(rtio_rig):
    e, h, port = rtio_rig(http={"copost_timeout": 0.5})
    d = rtio_rig.device(port)
    d.add_uri("/slow", copost=lambda data: (rd.Status.OK, b"late"))
    d.serve(delay=1.0)
    assert h.copost(ID, "/slow")["code"] == "REQUEST_TIMEOUT"
    wait_for(lambda: rtio_status(h)["late_replies"] == 1, what="the late reply to be counted")
    assert not d.eof
    assert d.ping() == rd.RespCode.SUCCESS


def test_obget_notifies_terminate_and_cancel(rtio_rig):
    e, h, port = rtio_rig()
    d = rtio_rig.device(port)
    d.add_uri("/rainbow")
    d.serve()
    obs = Observer(h.port, ID, "/rainbow", id=9)
    observer = d.wait_for(lambda: next(iter(d.observers), None))
    wait_for(lambda: obs.headers is not None, what="established")
    for i in range(10):
        assert d.notify(observer, rd.Status.CONTINUE, bytes([i])) == rd.Status.CONTINUE
    assert d.notify(observer, rd.Status.TERMINATE) == rd.Status.CONTINUE
    wait_for(lambda: obs.ended, what="the stream to end")
    assert [f["fid"] for f in obs.frames] == list(range(11))
    assert [f["code"] for f in obs.frames] == ["CONTINUE"] * 10 + ["TERMINATE"]
    assert [base64.b64decode(f["data"]) for f in obs.frames[:10]] == [bytes([i]) for i in range(10)]

    # curl gives up: the device's next notify is answered Terminate (R8).
    out = subprocess.Popen(["curl", "-s", "-N", "--max-time", "1", "-X", "POST", f"{h.base}/{ID}",
                            "-d", json.dumps({"method": "obget", "id": 3, "uri": "/rainbow", "data": ""})],
                           stdout=subprocess.PIPE)
    observer = d.wait_for(lambda: next(iter(d.observers), None))
    assert d.notify(observer, rd.Status.CONTINUE, b"\x01\x02") == rd.Status.CONTINUE
    out.wait(10)
    assert b"CONTINUE" in out.stdout.read()
    wait_for(lambda: h.status()["http"]["devices"][ID]["observers"] == 0, what="observer removed")
    assert d.notify(observer, rd.Status.CONTINUE, b"\x01\x02") == rd.Status.TERMINATE

    # A device that refuses the observation: its status is the only frame.
    d.add_uri("/closed", obget=lambda observer, data: rd.Status.NOT_FOUND)
    frames, _ = h.obget_lines(ID, "/closed")
    assert [(f["code"], f["fid"]) for f in frames] == [("NOT_FOUND", 0)]


# ---- item 5: limits and slow clients ----------------------------------------------------

def test_too_many_requests_to_a_slow_device(rtio_rig):
    e, h, port = rtio_rig(http={"copost_timeout": 5, "max_coposts_per_device": 4})
    d = rtio_rig.device(port)
    d.add_uri("/slow", copost=lambda data: (rd.Status.OK, b"ok"))
    d.serve(delay=2.0)
    codes = []

    def one(i):
        codes.append(h.copost(ID, "/slow", id=i)["code"])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(codes) == ["OK"] * 4 + ["TOO_MANY_REQUESTS"], codes


def test_slow_observer_is_terminated_and_copost_still_answers(rtio_rig):
    e, h, port = rtio_rig()
    d = rtio_rig.device(port)
    d.add_uri("/rainbow")
    d.add_uri("/echo")
    d.serve()
    slow = Observer(h.port, ID, "/rainbow", rcvbuf=4096, read=False)
    observer = d.wait_for(lambda: next(iter(d.observers), None))
    payload = b"x" * 400
    sent = 0
    while d.notify(observer, rd.Status.CONTINUE, payload) == rd.Status.CONTINUE:
        sent += 1
        assert sent < 200000, "never ended"
    ended = h.status()["http"]["devices"][ID]["observers_ended"]
    assert ended.get("slow") == 1
    r = h.copost(ID, "/echo", b64(b"meanwhile"))
    assert r["code"] == "OK"
    slow.close()


# ---- item 8: device -> MQTT --------------------------------------------------------------

def test_device_copost_is_published_and_answered_on_puback(rtio_rig, broker):
    e, h, port = rtio_rig()
    wait_for(lambda: h.status()["broker"]["state"] == "connected", what="broker connected")
    sub = Subscriber(broker.port, topics=("/tenants/#",))
    try:
        d = rtio_rig.device(port)
        status, data = d.copost("/aa/bb", b"hi")
        assert (status, data) == (rd.Status.OK, b"")
        topic = TOPIC.replace("{rtio_device_id}", ID)
        wait_for(lambda: any(t == topic and p == b"hi" for t, p, _ in sub.messages), what="hi on the topic")
        # R9's reply: a DeviceSendResp, code 1, body 22.
        assert d.wait_received(lambda m: m.type == 6 and m.code == 1 and m.body == b"\x22")
        assert d.copost("/nosuch", b"x")[0] == rd.Status.NOT_FOUND
        broker.stop()
        wait_for(lambda: h.status()["broker"]["state"] != "connected", what="broker gone")
        t0 = time.monotonic()
        assert d.copost("/aa/bb", b"not sent")[0] == rd.Status.INTERNAL_SERVER_ERROR
        assert time.monotonic() - t0 < 1.0  # at once, not after service_timeout
        dc = rtio_status(h)["device_copost"]
        assert dc["/aa/bb"]["OK"] == 1 and dc["/aa/bb"]["INTERNAL_SERVER_ERROR"] == 1
        assert dc["unknown"]["NOT_FOUND"] == 1
        assert 'edgelink_rtio_device_copost_total{uri="/aa/bb",status="OK"} 1' in h.metrics()
    finally:
        sub.close()


# ---- bad input ---------------------------------------------------------------------------

def test_garbage_connections_are_closed_and_nothing_else_affected(rtio_rig):
    e, h, port = rtio_rig(rtio={"max_connections": 64})
    good = rtio_rig.device(port)
    good.add_uri("/echo")
    good.serve()
    junk = [
        b"\xff" * 64,  # type 15
        rd.encode_message(rd.MsgType.DEVICE_VERIFY_REQ, 1, 1, b"")[:5] + b"",  # then nothing: verify timeout
        bytes.fromhex("11 00 01 ff ff"),  # body length above capacity
        rd.encode_message(rd.MsgType.DEVICE_VERIFY_REQ, 1, 1, b"\x00" + b"x" * 70),
    ]
    for i in range(1000):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(junk[i % len(junk)] if i % 4 != 1 else junk[0])
        s.close()
    # A verified device that sends a bad type is closed too.
    bad = rtio_rig.device(port, device_id=ID2, secret=SECRET2)
    bad.send_raw(bytes.fromhex("00 00 01 00 00"))
    assert bad.wait_eof(5)
    assert h.copost(ID, "/echo", b64(b"still here"))["code"] == "OK"
    assert good.ping() == rd.RespCode.SUCCESS
    wait_for(lambda: rtio_status(h)["open_connections"] == 1, 20, what="the junk connections to be gone")
    assert rtio_status(h)["connections"].get("protocol_error", 0) >= 1


def test_rtio_config_checks(workdir):
    from test_http import check
    out = check(workdir, '[rtio]\n[rtio.devices]\n"short-id" = "example-secret-0123456789"\n')
    assert out.returncode != 0 and "rtio.devices" in out.stderr
    secrets = os.path.join(workdir, "secrets")
    with open(secrets, "w") as f:
        f.write(f"# comment\n{ID}:{SECRET}\n")
    os.chmod(secrets, 0o644)
    out = check(workdir, f'[rtio]\nsecrets_file = "{secrets}"\n')
    assert out.returncode == 0 and "chmod" in out.stderr, out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_reload_disconnects_a_removed_device_and_keeps_the_others(rtio_rig):
    e, h, port = rtio_rig()
    keep = rtio_rig.device(port)
    keep.add_uri("/echo")
    keep.serve()
    gone = rtio_rig.device(port, device_id=ID2, secret=SECRET2)
    cfg = dict(e.config)
    cfg["rtio"] = {**cfg["rtio"], "devices": {ID: SECRET}}
    e.write_config(cfg)
    e.signal(signal.SIGHUP)
    assert gone.wait_eof(10)
    wait_for(lambda: ID2 not in h.status()["devices"], what="the removed id to leave the status")
    assert h.copost(ID2, "/echo")["code"] == "DEVICEID_OFFLINE"
    # It cannot come back with its old secret; the other device never noticed.
    again = rtio_rig.device(port, device_id=ID2, secret=SECRET2, verify=False)
    assert again.verify() == rd.RespCode.VERIFY_FAILED
    assert h.copost(ID, "/echo", b64(b"kept"))["code"] == "OK"
