"""The local app protocol (spec/app-protocol.md) against the real binary: one client per
port, line limits, error reports and counters, CRLF, the `id` alias, back-pressure."""
import json
import os
import select
import signal
import socket
import subprocess
import time

from conftest import (EDGELINK_BIN, TOPIC, App, Subscriber, app_config, app_status, peer_eof, publish, read_errors,
                      wait_for, wait_online)

FAST = {"imu": {"batch_size": 10, "flush_period": 0.2}}


def point_line(stream, seq, **cols):
    return json.dumps(dict(stream=stream, sequence=seq, timestamp=1700000000000 + seq, **cols)).encode() + b"\n"


def expected(seq, **cols):
    return dict(sequence=seq, timestamp=1700000000000 + seq, **cols)


def without_stream(line):
    """The point a data-point line becomes in a batch."""
    point = json.loads(line)
    del point["stream"]
    return point


def padded_line(stream, seq, total):
    """A data-point line (without its '\\n') of exactly `total` bytes."""
    base = point_line(stream, seq, pad="")[:-1]
    return point_line(stream, seq, pad="x" * (total - len(base)))[:-1]


def test_second_client_evicts_first(make_edgelink, sub):
    """A second client on an app port disconnects the first; the second one's points flow and the eviction is counted."""
    el = make_edgelink(streams=FAST)
    first = App(el.app_port())
    first.point("imu", 1)
    wait_for(lambda: app_status(el)["points"] == 1, what="first client's point")
    # (start-up's wait_port probe also counts as a connection: compare with a baseline)
    before = app_status(el)
    assert before["connected"] is True

    second = App(el.app_port())
    assert peer_eof(first), "the first client was not disconnected"
    second.point("imu", 2)
    second.point("imu", 3)
    wait_for(lambda: len(sub.points("imu")) == 3, what="three points")
    assert sub.points("imu") == [expected(1), expected(2), expected(3)]

    st = app_status(el)
    assert st["connected"] is True
    assert st["connects"] == before["connects"] + 1
    assert st["evictions"] == before["evictions"] + 1
    assert st["points"] == 3
    assert "closing the previous one" in el.log_text()

    # The evicted socket is really dead for edgelink: what it writes now goes nowhere.
    try:
        first.point("imu", 99)
    except OSError:
        pass
    time.sleep(0.4)  # > flush_period: a point 99 would have been published by now
    assert [p["sequence"] for p in sub.points("imu")] == [1, 2, 3]
    assert app_status(el)["points"] == 3


def test_line_too_long_is_rejected_and_connection_survives(make_edgelink, sub):
    """A line over max_line_bytes is answered with LineTooLong; a line of exactly the limit and the next lines are processed."""
    el = make_edgelink(streams=FAST, tcpapps={"app": app_config(max_line_bytes=200)})
    app = App(el.app_port(), hello=True)                          # line 1
    app.send_raw(point_line("imu", 1))                             # line 2
    exact = padded_line("imu", 2, 200)
    assert len(exact) == 200
    app.send_raw(exact + b"\r\n")                                  # line 3: 200 bytes after the '\r' is stripped
    app.send_raw(padded_line("imu", 3, 201) + b"\n")              # line 4: one byte too many
    app.send_raw(b'{"stream":"imu","sequence":4,"timestamp":1,"pad":"' + b"y" * 5000 + b'"}\n')  # line 5
    app.send_raw(point_line("imu", 5))                             # line 6

    errors = read_errors(app, 2)
    assert [(e["code"], e["line"]) for e in errors] == [("LineTooLong", 4), ("LineTooLong", 5)]
    assert all("field" not in e and "max_line_bytes" in e["message"] for e in errors)

    wait_for(lambda: len(sub.points("imu")) == 3, what="three points")
    pts = sub.points("imu")
    assert [p["sequence"] for p in pts] == [1, 2, 5]
    assert pts[1] == without_stream(exact)
    assert app.read_line(0.2) is None  # no other report
    st = app_status(el)
    assert st["errors"] == {"LineTooLong": 2}
    assert st["points"] == 3
    assert st["connected"] is True and st["evictions"] == 0


def test_line_too_long_split_across_writes(make_edgelink, sub):
    """An overlong line that arrives in several TCP writes is rejected once and reading resumes after its newline."""
    el = make_edgelink(streams=FAST, tcpapps={"app": app_config(max_line_bytes=200)})
    app = App(el.app_port(), hello=True)                           # line 1
    app.send_raw(point_line("imu", 1))                             # line 2
    wait_for(lambda: app_status(el)["points"] == 1, what="point 1")
    long_line = padded_line("imu", 2, 450)                        # line 3, in 5 pieces
    pieces = [long_line[0:120], long_line[120:190], long_line[190:260], long_line[260:400], long_line[400:]]
    for piece in pieces:
        app.send_raw(piece)
        time.sleep(0.05)  # separate reads on the daemon side
    # The error comes as soon as the limit is passed, before the line has ended.
    err = app.read_line(3)
    assert err is not None and err["edgelink"]["error"]["code"] == "LineTooLong"
    assert err["edgelink"]["error"]["line"] == 3
    # The newline arrives together with the next line; a split good line also works.
    good = point_line("imu", 3, note="split")
    app.send_raw(b"\n" + good[:20])                                # line 4 begins
    time.sleep(0.05)
    app.send_raw(good[20:])
    # exactly max_line_bytes plus a '\r' whose '\n' comes in the next write: accepted
    exact = padded_line("imu", 4, 200)
    app.send_raw(exact[:150])                                      # line 5
    time.sleep(0.05)
    app.send_raw(exact[150:] + b"\r")
    time.sleep(0.05)
    app.send_raw(b"\n[1]\n")                                       # line 6: proves line counting went on
    errors = read_errors(app, 1)
    assert errors[0]["code"] == "NotAnObject" and errors[0]["line"] == 6
    wait_for(lambda: len(sub.points("imu")) == 3, what="three points")
    assert sub.points("imu") == [expected(1), expected(3, note="split"), without_stream(exact)]
    assert app_status(el)["errors"] == {"LineTooLong": 1, "NotAnObject": 1}


def test_error_codes_fields_and_lines_after_hello(make_edgelink, sub):
    """After hello each rejected line is reported with its code, field and line number; good lines around it all arrive."""
    el = make_edgelink(streams={"imu": {"batch_size": 4, "flush_period": 0.2}})
    app = App(el.app_port(), hello=True)                                                   # 1
    lines = [
        point_line("imu", 1, ax=0.5),                                                      # 2
        b'{"stream": "imu", "sequence": 2,\n',                                             # 3 BadJson
        point_line("imu", 2, label="ok"),                                                  # 4
        b'{"stream": "imu", "sequence": 3, "timestamp": 5, "label": "\xff\xfe"}\n',        # 5 BadJson (UTF-8)
        b'[{"stream": "imu"}]\n',                                                          # 6 NotAnObject
        b'"just a string"\n',                                                              # 7 NotAnObject
        b'{"stream": "imu", "timestamp": 5}\n',                                            # 8 MissingField sequence
        b'{"sequence": 1, "timestamp": 5}\n',                                              # 9 MissingField stream
        b'{"stream": "imu", "sequence": 1}\n',                                             # 10 MissingField timestamp
        b'{"stream": "imu", "sequence": -1, "timestamp": 5}\n',                            # 11 BadField sequence
        b'{"stream": "imu", "sequence": 4294967296, "timestamp": 5}\n',                    # 12 BadField sequence
        b'{"stream": "imu", "sequence": 4294967295, "timestamp": 5}\n',                    # 13 good: u32 max
        b'{"stream": "bad name", "sequence": 1, "timestamp": 5}\n',                        # 14 BadField stream
        b'{"stream": "' + b"s" * 65 + b'", "sequence": 1, "timestamp": 5}\n',              # 15 BadField stream
        b'{"stream": "imu", "sequence": 1.5, "timestamp": 5}\n',                           # 16 BadField sequence
        b'{"stream": "imu", "sequence": 6, "timestamp": -5}\n',                            # 17 BadField timestamp
        point_line("imu", 7),                                                              # 18
    ]
    app.send_raw(b"".join(lines))
    errors = read_errors(app, 13)
    got = [(e["code"], e.get("field"), e["line"]) for e in errors]
    assert got == [
        ("BadJson", None, 3),
        ("BadJson", None, 5),
        ("NotAnObject", None, 6),
        ("NotAnObject", None, 7),
        ("MissingField", "sequence", 8),
        ("MissingField", "stream", 9),
        ("MissingField", "timestamp", 10),
        ("BadField", "sequence", 11),
        ("BadField", "sequence", 12),
        ("BadField", "stream", 14),
        ("BadField", "stream", 15),
        ("BadField", "sequence", 16),
        ("BadField", "timestamp", 17),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert app.read_line(0.3) is None  # exactly these reports, nothing for the good lines

    wait_for(lambda: len(sub.points("imu")) == 4, what="the four good points")
    assert sub.points("imu") == [expected(1, ax=0.5), expected(2, label="ok"),
                                 {"sequence": 4294967295, "timestamp": 5}, expected(7)]
    st = app_status(el)
    assert st["errors"] == {"BadJson": 2, "NotAnObject": 2, "MissingField": 3, "BadField": 6}
    assert st["points"] == 4
    assert st["lines"] == 18
    assert st["connected"] is True


def test_unknown_stream_when_stream_limit_reached(make_edgelink, sub):
    """With max_stream_count reached, a point for a new stream is UnknownStream; existing streams keep working."""
    el = make_edgelink(max_stream_count=2, streams=FAST)
    app = App(el.app_port(), hello=True)
    app.point("dyn1", 1)        # line 2: second stream (imu is configured), allowed
    app.point("dyn2", 1)        # line 3: a third stream: rejected
    app.point("imu", 1)         # line 4
    app.point("dyn1", 2)        # line 5
    app.point("dyn3", 1)        # line 6: still rejected
    errors = read_errors(app, 2)
    assert [(e["code"], e["field"], e["line"]) for e in errors] == [("UnknownStream", "stream", 3),
                                                                    ("UnknownStream", "stream", 6)]
    assert "dyn2" in errors[0]["message"] and "dyn3" in errors[1]["message"]
    # dynamic streams get the default batch_size (100) and flush_period (60 s): read them from status
    wait_for(lambda: sub.points("imu"), what="imu point")
    assert sub.points("imu") == [expected(1)]
    st = el.status()
    assert sorted(st["streams"]) == ["dyn1", "imu"]
    assert st["streams"]["dyn1"]["open_points"] == 2
    assert app_status(el)["errors"] == {"UnknownStream": 2}
    assert app_status(el)["points"] == 3
    assert el.stop() == 0  # flushes dyn1
    assert sub.points("dyn1") == [expected(1), expected(2)]
    assert sub.on("/events/dyn2/jsonarray") == [] and sub.on("/events/dyn3/jsonarray") == []


def test_no_error_reports_without_hello(make_edgelink, sub):
    """Without hello an app gets nothing for its bad lines (they are still counted); after hello it does."""
    el = make_edgelink(streams=FAST)
    app = App(el.app_port())
    app.send_raw(b"not json\n[1]\n{\"stream\": \"imu\"}\n")
    app.point("imu", 1)
    wait_for(lambda: app_status(el)["points"] == 1, what="the good point")
    assert app_status(el)["errors"] == {"BadJson": 1, "NotAnObject": 1, "MissingField": 1}
    assert app.read_line(0.3) is None
    assert app.buf == b""
    # hello switches reports on for this connection; the line number counts from the start
    app.send({"edgelink": {"hello": {"errors": True}}})   # line 5
    app.send_raw(b"nope\n")                                # line 6
    err = read_errors(app, 1)[0]
    assert (err["code"], err["line"]) == ("BadJson", 6)
    # hello with errors=false switches them off again
    app.send({"edgelink": {"hello": {"errors": False}}})  # line 7
    app.send_raw(b"[2]\n")                                # line 8
    wait_for(lambda: app_status(el)["errors"].get("NotAnObject") == 2, what="the second NotAnObject")
    assert app.read_line(0.3) is None
    wait_for(lambda: sub.points("imu"), what="the point")
    assert sub.points("imu") == [expected(1)]


def test_crlf_line_endings(make_edgelink, broker, sub):
    """Lines ending in CRLF are accepted for points, statuses and control lines; error line numbers stay right."""
    el = make_edgelink(streams=FAST)
    app = App(el.app_port())
    app.send_raw(b'{"edgelink": {"hello": {"errors": true}}}\r\n')              # 1
    app.send_raw(point_line("imu", 1, label="a")[:-1] + b"\r\n")                # 2
    app.send_raw(b"\r\n")                                                       # 3: blank, ignored
    app.send_raw(b'{"stream": "imu"}\r\n')                                      # 4: MissingField
    app.send_raw(point_line("imu", 2, label="b\r")[:-1] + b"\r\n")             # 5: an escaped \r in a value stays
    err = read_errors(app, 1)[0]
    assert (err["code"], err["field"], err["line"]) == ("MissingField", "sequence", 4)
    wait_for(lambda: len(sub.points("imu")) == 2, what="two points")
    assert sub.points("imu") == [expected(1, label="a"), expected(2, label="b\r")]

    wait_online(sub)
    publish(broker.port, TOPIC + "/actions", '{"action_id": "c1", "name": "reboot", "payload": "{}"}')
    assert app.read_line() == {"action_id": "c1", "name": "reboot", "payload": "{}"}
    app.send_raw(b'{"stream": "action_status", "sequence": 1, "timestamp": 1700000000001, '
                 b'"action_id": "c1", "state": "Completed", "progress": 100}\r\n')
    wait_for(lambda: [s["state"] for s in sub.statuses()] == ["Received", "Completed"], what="Completed status")
    assert app_status(el)["errors"] == {"MissingField": 1}


def test_action_status_id_alias_is_normalized(make_edgelink, broker, sub):
    """A status using `id` (or a numeric id) is forwarded at once as action_id; a status after a terminal one is dropped."""
    el = make_edgelink()
    app = App(el.app_port())
    wait_online(sub)
    publish(broker.port, TOPIC + "/actions", '{"id": "77", "name": "reboot", "payload": "x"}')
    assert app.read_line() == {"action_id": "77", "name": "reboot", "payload": "x"}
    app.status("77", "Progress", 40, seq=1, use_id=True)
    wait_for(lambda: len(sub.statuses()) == 2, what="Received and Progress")
    # numeric id (some uplink apps), with errors
    app.send({"stream": "action_status", "sequence": 2, "timestamp": 1700000000002, "id": 77,
              "state": "Failed", "progress": 100, "errors": ["disk full"]})
    wait_for(lambda: len(sub.statuses()) == 3, what="Failed")
    app.status("77", "Progress", 90, seq=3, use_id=True)  # after a terminal state: not forwarded
    wait_for(lambda: el.status()["actions"]["late_statuses"] == 1, what="the late status to be counted")

    raw = [p for (_, p) in sub.on("/action/status")]
    assert all(b'"id"' not in p for p in raw)
    received, progress, failed = sub.statuses()
    assert received["state"] == "Received" and received["action_id"] == "77" and received["sequence"] == 1
    assert progress == {"sequence": 2, "timestamp": 1700000000001, "action_id": "77", "state": "Progress",
                        "progress": 40, "errors": []}
    assert failed == {"sequence": 3, "timestamp": 1700000000002, "action_id": "77", "state": "Failed",
                      "progress": 100, "errors": ["disk full"]}
    time.sleep(0.2)
    assert len(sub.statuses()) == 3
    actions = el.status()["actions"]
    assert (actions["statuses"], actions["failed"], actions["in_flight"]) == (2, 1, 0)
    assert app_status(el)["statuses"] == 3


def test_backpressure_blocks_app_and_loses_nothing(make_edgelink, broker, workdir):
    """With the broker down, no usable disk spool and a small memory budget the app's writes stall (no drop);
    after reconnect every point arrives in order."""
    el = make_edgelink(start=False, spool={"max_memory_bytes": 20000},
                       streams={"imu": {"batch_size": 10, "flush_period": 0.2}})
    os.makedirs(el.config["persistence_path"], exist_ok=True)
    with open(os.path.join(el.config["persistence_path"], "spool"), "w") as f:
        f.write("a file where the spool directory should be\n")
    el.start()
    wait_for(lambda: el.status()["broker"]["state"] == "connected", what="broker connection")
    broker.stop()
    wait_for(lambda: el.status()["broker"]["state"] != "connected", what="edgelink to notice the broker is gone")

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # stall sooner
    s.connect(("127.0.0.1", el.app_port()))
    s.setblocking(False)
    pad = "p" * 100
    seq, pending = 0, b""
    start = last_progress = time.monotonic()
    while time.monotonic() - last_progress < 1.0:
        assert time.monotonic() - start < 30, "the app's writes never stalled"
        if not pending:
            seq += 1
            pending = point_line("imu", seq, pad=pad)
        try:
            n = s.send(pending)
            pending = pending[n:]
            last_progress = time.monotonic()
        except BlockingIOError:
            select.select([], [s], [], 0.1)

    st = el.status()
    app = st["apps"]["app"]
    assert st["outbox"]["accepting"] is False
    assert st["outbox"]["bytes"] >= 20000
    assert app["pauses"] > 0
    assert 0 < app["points"] < seq  # the rest waits in socket buffers, not dropped
    time.sleep(0.3)
    assert el.status()["apps"]["app"]["points"] == app["points"]  # really stopped
    human = subprocess.run([EDGELINK_BIN, "status", "-c", el.path], capture_output=True, text=True, timeout=10)
    assert human.returncode == 0 and "(back-pressure on apps)" in human.stdout

    # Hold edgelink while the broker comes back so the subscriber is there first.
    el.signal(signal.SIGSTOP)
    try:
        broker.start()
        sub = Subscriber(broker.port, topics=(TOPIC + "/events/imu/jsonarray",))
    finally:
        el.signal(signal.SIGCONT)
    try:
        s.setblocking(True)
        s.settimeout(20)
        s.sendall(pending)  # the last, partly written line
        wait_for(lambda: len(sub.points("imu")) >= seq, timeout=30, what=f"all {seq} points")
        time.sleep(0.3)
        pts = sub.points("imu")
        assert [p["sequence"] for p in pts] == list(range(1, seq + 1))
        assert all(p == expected(p["sequence"], pad=pad) for p in pts)
        st = el.status()
        assert st["outbox"]["accepting"] is True
        assert st["apps"]["app"]["points"] == seq
    finally:
        sub.close()
        s.close()


def test_pending_action_reaches_app_that_connects_later(make_edgelink, broker, sub):
    """An action for an app that is not connected waits and is written when the app connects."""
    el = make_edgelink()
    wait_online(sub)
    publish(broker.port, TOPIC + "/actions", '{"action_id": "p1", "name": "reboot", "payload": "{\\"a\\":1}"}')
    wait_for(lambda: app_status(el)["pending_actions"] == 1, what="the action to wait for the app")
    assert app_status(el)["actions_delivered"] == 0
    app = App(el.app_port())
    assert app.read_line() == {"action_id": "p1", "name": "reboot", "payload": '{"a":1}'}
    wait_for(lambda: app_status(el)["pending_actions"] == 0, what="pending to drain")
    assert app_status(el)["actions_delivered"] == 1
    assert [s["state"] for s in sub.statuses()] == ["Received"]


def test_invalid_utf8_and_other_rejections(make_edgelink, sub):
    """Malformed UTF-8, control characters, duplicates, bad control and status lines get the right code and field."""
    el = make_edgelink(streams={"imu": {"batch_size": 1, "flush_period": 60}})
    app = App(el.app_port(), hello=True)                                                           # 1
    cases = [
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"\xed\xa0\x80"}', ("BadJson", None)),     # UTF-8 surrogate
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"\xc0\xaf"}', ("BadJson", None)),         # overlong
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"\xf4\x90\x80\x80"}', ("BadJson", None)), # > U+10FFFF
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"\xe2\x82"}', ("BadJson", None)),         # truncated
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"a\x01b"}', ("BadJson", None)),           # raw control
        (b'{"stream":"imu","sequence":1,"timestamp":1,"s":"a\x00b"}', ("BadJson", None)),           # NUL
        (b'\xef\xbb\xbf{"stream":"imu","sequence":1,"timestamp":1}', ("BadJson", None)),            # BOM
        (b'{"stream":"imu","sequence":1,"timestamp":1} x', ("BadJson", None)),                      # trailing text
        (b'{"stream":"imu","sequence":007,"timestamp":1}', ("BadJson", None)),                      # leading zeros
        (b'{"stream":"imu","sequence":1,"timestamp":1,"stream":"imu"}', ("BadField", "stream")),    # duplicate
        (b'{"stream":"","sequence":1,"timestamp":1}', ("BadField", "stream")),
        (b'{"stream":"imu","sequence":1,"timestamp":18446744073709551616}', ("BadField", "timestamp")),
        (b'{"edgelink":{"bogus":true}}', ("BadField", "edgelink")),
        (b'{"stream":"action_status","sequence":1,"timestamp":1,"action_id":"x","state":"Progress","progress":101}',
         ("BadField", "progress")),
        (b'{"stream":"action_status","sequence":1,"timestamp":1,"state":"Progress"}', ("MissingField", "action_id")),
    ]
    good = [
        b'{"str\\u0065am":"imu","sequence":1,"timestamp":1}',            # an escaped key is still "stream"
        b'{"stream":"imu","sequence":2,"timestamp":1,"edgelink":"x"}',  # not a control line: a column
        ('{"stream":"imu","sequence":3,"timestamp":1,"s":"\U0010ffff\u00e9"}').encode(),
    ]
    app.send_raw(b"".join(line + b"\n" for (line, _) in cases) + b"".join(line + b"\n" for line in good))
    errors = read_errors(app, len(cases))
    assert [(e["code"], e.get("field"), e["line"]) for e in errors] == [
        (code, field, i + 2) for i, (_, (code, field)) in enumerate(cases)]
    wait_for(lambda: len(sub.points("imu")) == 3, what="the three good points")
    assert sub.points("imu") == [{"sequence": 1, "timestamp": 1}, {"sequence": 2, "timestamp": 1, "edgelink": "x"},
                                 {"sequence": 3, "timestamp": 1, "s": "\U0010ffff\u00e9"}]
    assert app.read_line(0.2) is None
    assert app_status(el)["errors"] == {"BadJson": 9, "BadField": 5, "MissingField": 1}


def test_error_reports_to_an_app_that_never_reads_are_capped(make_edgelink, sub):
    """An app that asks for error reports but never reads: reports beyond the write cap are dropped and
    counted, and its good lines still reach the broker."""
    el = make_edgelink(streams={"imu": {"batch_size": 1, "flush_period": 1}})
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the kernel from absorbing the reports
    s.connect(("127.0.0.1", el.app_port()))
    s.sendall(b'{"edgelink": {"hello": {"errors": true}}}\n')
    # ~170-byte reports for 10-byte lines: 20,000 of them are far more than the 1 MiB queue
    bad = b"not json\n" * 20000
    s.sendall(bad)
    s.sendall(b'{"stream": "imu", "sequence": 1, "timestamp": 5}\n')
    wait_for(lambda: sub.points("imu") == [{"sequence": 1, "timestamp": 5}], what="the good line after the flood")
    st = app_status(el)
    assert st["errors"]["BadJson"] == 20000
    assert st["reports_dropped"] > 0
    assert el.proc.poll() is None
    s.close()


def test_last_line_without_newline_is_processed_at_end_of_connection(make_edgelink, broker, sub):
    """`printf '{...}' | nc host port`: a last line without '\\n' is processed when the app closes its side, as in
    uplink's line codec (an action status from an updater script, and a data point); a tail longer than
    max_line_bytes is rejected as LineTooLong, not processed."""
    el = make_edgelink(streams=FAST, tcpapps={"app": app_config(actions=[{"name": "update_firmware", "timeout": 30}],
                                                                max_line_bytes=200)})
    wait_online(sub)
    app = App(el.app_port())
    publish(broker.port, TOPIC + "/actions", '{"action_id": "17", "name": "update_firmware", "payload": "{}"}')
    assert app.read_line()["action_id"] == "17"
    app.close()

    def printf_nc(data):
        with socket.create_connection(("127.0.0.1", el.app_port())) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # what nc does at the end of its input
            assert s.recv(1) == b""  # edgelink closes its side once it has read everything

    printf_nc(b'{ "stream": "action_status", "sequence": 1, "timestamp": 1700000000001, "action_id": "17", '
              b'"state": "Completed", "progress": 100, "errors": [] }')
    printf_nc(point_line("imu", 1, label="first") + point_line("imu", 2, label="no newline")[:-1])
    printf_nc(point_line("imu", 3, label="crlf")[:-1] + b"\r")
    printf_nc(padded_line("imu", 4, 201))
    wait_for(lambda: [s["state"] for s in sub.statuses()] == ["Received", "Completed"], what="Completed status")
    wait_for(lambda: len(sub.points("imu")) == 3, what="three points")
    assert sub.points("imu") == [expected(1, label="first"), expected(2, label="no newline"),
                                 expected(3, label="crlf")]
    st = wait_for(lambda: (lambda a: a if a["errors"] else None)(app_status(el)), what="the LineTooLong count")
    assert st["errors"] == {"LineTooLong": 1} and st["points"] == 3 and st["statuses"] == 1


def test_app_port_in_use_is_retried_while_the_rest_runs(make_edgelink, broker, sub):
    """An app port that is taken at start is retried every few seconds with a log line and a status, while the other
    apps and the broker link run; once the port is free the app becomes reachable (uplink does the same)."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        el = make_edgelink(start=False, streams=FAST, tcpapps={"app": app_config(port), "other": app_config()})
        el.start(wait_apps=False)
        wait_online(sub)
        other = App(el.app_port("other"))
        other.point("imu", 1, by="other")
        wait_for(lambda: sub.points("imu") == [expected(1, by="other")], what="the other app's point")
        el.wait_log(f"tcpapps.app: cannot listen on 127.0.0.1:{port}: Address already in use; trying again every")
        st = app_status(el, "app")
        assert (st["listener"], st["connected"], st["port"]) == ("bind_failed", False, port)
        assert st["last_error"] == f"cannot listen on 127.0.0.1:{port}: Address already in use"
        assert app_status(el, "other")["listener"] == "listening"
        human = subprocess.run([EDGELINK_BIN, "status", "-c", el.path], capture_output=True, text=True, timeout=10)
        assert "bind_failed" in human.stdout and "retrying: cannot listen" in human.stdout, human.stdout
        wait_for(lambda: app_status(el, "app")["bind_failures"] >= 2, timeout=15, what="a second attempt")
        assert el.log_text().count(f"cannot listen on 127.0.0.1:{port}") == 1  # logged once, not at every retry
        assert el.proc.poll() is None
    finally:
        squatter.close()

    wait_for(lambda: app_status(el, "app")["listener"] == "listening", timeout=15, what="the app port to be bound")
    assert app_status(el, "app")["last_error"] == ""
    el.wait_log(f"app: listening on 127.0.0.1:{port} after")
    app = App(port)
    app.point("imu", 2, by="app")
    wait_for(lambda: len(sub.points("imu")) == 2, what="the app's point")
    assert sub.points("imu")[1] == expected(2, by="app")
