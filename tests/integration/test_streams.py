"""Stream batches on the broker side (spec/mqtt.md): batch_size and flush_period, the
payload, dynamic streams, topics, LZ4 and priority."""
import json
import signal
import time

import lz4.frame

from conftest import TOPIC, App, Subscriber, publish, stream_status, wait_for, wait_online


def ts(seq):
    return 1700000000000 + seq


def test_batch_published_at_batch_size(make_edgelink, sub):
    """A stream's batch goes out as soon as it holds batch_size points; the rest stays open until it fills."""
    el = make_edgelink(streams={"imu": {"batch_size": 5, "flush_period": 30}})
    app = App(el.app_port())
    for seq in range(1, 13):
        app.point("imu", seq, ax=seq)
    wait_for(lambda: len(sub.on("/events/imu/jsonarray")) == 2, what="two full batches")
    batches = sub.json_on("/events/imu/jsonarray")
    assert batches == [[{"sequence": s, "timestamp": ts(s), "ax": s} for s in range(1, 6)],
                       [{"sequence": s, "timestamp": ts(s), "ax": s} for s in range(6, 11)]]
    time.sleep(0.3)
    assert len(sub.on("/events/imu/jsonarray")) == 2  # 11 and 12 wait for more (flush_period is 30 s)
    st = stream_status(el, "imu")
    assert (st["points"], st["batches"], st["open_points"], st["configured"]) == (12, 2, 2, True)
    for seq in range(13, 16):
        app.point("imu", seq, ax=seq)
    wait_for(lambda: len(sub.on("/events/imu/jsonarray")) == 3, what="the third batch")
    assert [p["sequence"] for p in sub.json_on("/events/imu/jsonarray")[2]] == [11, 12, 13, 14, 15]


def test_partial_batch_flushed_flush_period_after_first_point(make_edgelink, sub):
    """A partial batch is published flush_period after its first point even while points keep coming."""
    el = make_edgelink(streams={"imu": {"batch_size": 100, "flush_period": 1.25}})
    app = App(el.app_port())
    arrivals = []  # (seconds since the first point, sequences)

    def poll_until(t):
        while True:
            seen = sub.json_on("/events/imu/jsonarray")
            for batch in seen[len(arrivals):]:
                arrivals.append((time.monotonic() - t0, [p["sequence"] for p in batch]))
            if time.monotonic() >= t0 + t:
                return
            time.sleep(0.01)

    # Points 0.4 s apart with a gap of 0.8 s after every third: 0, 0.4, 0.8 | 1.6, 2.0, 2.4 |
    # 3.2, 3.6. No gap reaches 1.25 s, so if the period ran from the last point nothing
    # would be published before 3.6 + 1.25 s, in one batch. From the first point, a batch
    # closes at 1.25, 2.85 and 4.45 s, at least 0.35 s from any point (slack for a loaded
    # machine; only the grouping and "not before its period" are asserted, no upper bound).
    sent_at = [0, 0.4, 0.8, 1.6, 2.0, 2.4, 3.2, 3.6]
    t0 = time.monotonic()
    for i, at in enumerate(sent_at):
        poll_until(at)
        app.point("imu", i + 1)
    wait_for(lambda: len(sub.json_on("/events/imu/jsonarray")) >= 3, 10, what="three batches")
    poll_until(5.0)
    assert [seqs for (_, seqs) in arrivals] == [[1, 2, 3], [4, 5, 6], [7, 8]]
    for (t, _), opened in zip(arrivals, (0, 1.6, 3.2)):
        assert t >= opened + 1.2, arrivals  # never before flush_period after the batch's first point


def test_payload_is_array_without_stream_with_columns_as_sent(make_edgelink, sub):
    """The batch is a JSON array of the points in order, without "stream", every column kept byte for byte."""
    el = make_edgelink(streams={"imu": {"batch_size": 5, "flush_period": 30}})
    app = App(el.app_port())
    lines = [
        # stream first, nested values
        (b'{"stream":"imu","sequence":1,"timestamp":2,"a":{"b":[1,2.50,{"c":null}],"t":true},"e":[]}',
         b'{"sequence":1,"timestamp":2,"a":{"b":[1,2.50,{"c":null}],"t":true},"e":[]}'),
        # stream in the middle, escapes in strings and keys
        (b'{"sequence":2,"stream":"imu","timestamp":3,"s":"q\\"uo\\\\te\\n\\t\\u00e9\\ud83d\\ude00","k\\u0020y":"\\/"}',
         b'{"sequence":2,"timestamp":3,"s":"q\\"uo\\\\te\\n\\t\\u00e9\\ud83d\\ude00","k\\u0020y":"\\/"}'),
        # stream last, raw UTF-8, big and precise numbers
        ('{"sequence":4294967295,"timestamp":18446744073709551615,"u":"h\u00e9llo \u2713 \U0001f600",'
         '"f":1e-7,"g":-0.0,"h":123456789012345678901234567890,"stream":"imu"}'.encode(),
         '{"sequence":4294967295,"timestamp":18446744073709551615,"u":"h\u00e9llo \u2713 \U0001f600",'
         '"f":1e-7,"g":-0.0,"h":123456789012345678901234567890}'.encode()),
        # only the required keys
        (b'{"timestamp":5,"stream":"imu","sequence":5}', b'{"timestamp":5,"sequence":5}'),
    ]
    for line, _ in lines:
        app.send_raw(line + b"\n")
    # a spaced-out line: the value must survive, the exact blanks are the daemon's business
    app.send_raw(b'{ "sequence" : 6 ,  "stream" : "imu" , "timestamp" : 7 , "x" : [ 1 , 2 ] }\n')
    wait_for(lambda: sub.on("/events/imu/jsonarray"), what="the batch")
    [(_, payload)] = sub.on("/events/imu/jsonarray")
    prefix = b"[" + b",".join(out for (_, out) in lines) + b","
    assert payload.startswith(prefix), payload
    batch = json.loads(payload)
    assert len(batch) == 5
    assert batch[4] == {"sequence": 6, "timestamp": 7, "x": [1, 2]}
    assert batch[1]["s"] == 'q"uo\\te\n\t\u00e9\U0001f600' and batch[1]["k y"] == "/"
    assert batch[2]["u"] == "h\u00e9llo \u2713 \U0001f600"
    assert all("stream" not in p for p in batch)


def test_dynamic_stream_gets_default_topic_and_batch_size(make_edgelink, sub):
    """A stream that is not configured is created on first use with the default topic and batch_size 100."""
    el = make_edgelink(streams={"imu": {"batch_size": 10, "flush_period": 30}})
    app = App(el.app_port())
    for seq in range(1, 100):
        app.point("dyn-1_x", seq)
    wait_for(lambda: (stream_status(el, "dyn-1_x") or {}).get("points") == 99, what="99 points")
    st = stream_status(el, "dyn-1_x")
    assert (st["configured"], st["batches"], st["open_points"]) == (False, 0, 99)
    time.sleep(0.3)
    assert sub.on("/events/dyn-1_x/jsonarray") == []  # no batch before the 100th point
    app.point("dyn-1_x", 100)
    wait_for(lambda: sub.on("/events/dyn-1_x/jsonarray"), what="the batch of 100")
    msgs = [(t, json.loads(p)) for (t, p) in sub.on("/events/dyn-1_x/jsonarray")]
    assert [t for (t, _) in msgs] == [TOPIC + "/events/dyn-1_x/jsonarray"]
    assert msgs[0][1] == [{"sequence": s, "timestamp": ts(s)} for s in range(1, 101)]
    assert stream_status(el, "dyn-1_x")["open_points"] == 0


def test_stream_topic_override(make_edgelink, sub):
    """A configured topic (with {tenant_id}, {device_id}, {stream}) replaces the default, also for action statuses."""
    el = make_edgelink(streams={
        "imu": {"batch_size": 2, "flush_period": 30, "topic": "/custom/{tenant_id}/{device_id}/{stream}/data"},
        "gps": {"batch_size": 1, "flush_period": 30, "topic": "/fixed/gps"},
        "action_status": {"topic": "/custom/{device_id}/statuses"},
    })
    app = App(el.app_port())
    app.point("imu", 1)
    app.point("imu", 2)
    app.point("gps", 3, lat=1.5)
    wait_for(lambda: sub.on("/custom/demo/gw-001/imu/data") and sub.on("/fixed/gps"), what="both batches")
    assert sub.json_on("/custom/demo/gw-001/imu/data") == [[{"sequence": 1, "timestamp": ts(1)},
                                                            {"sequence": 2, "timestamp": ts(2)}]]
    assert sub.json_on("/fixed/gps") == [[{"sequence": 3, "timestamp": ts(3), "lat": 1.5}]]
    assert [t for (t, _, _) in sub.messages if "/events/" in t] == []
    # action statuses follow [streams.action_status] topic
    wait_online(sub)
    publish(el.config["broker"]["port"], TOPIC + "/actions", '{"action_id": "9", "name": "nope", "payload": ""}')
    wait_for(lambda: sub.on("/custom/gw-001/statuses"), what="the Failed status on the custom topic")
    [status] = sub.json_on("/custom/gw-001/statuses")[0]
    assert (status["action_id"], status["state"]) == ("9", "Failed")
    assert sub.on("/action/status") == []


def test_lz4_compressed_stream(make_edgelink, sub):
    """With compression = "Lz4" batches go to .../jsonarray/lz4 as LZ4 frames holding the same array."""
    el = make_edgelink(streams={"imu": {"batch_size": 3, "flush_period": 30, "compression": "Lz4"},
                                "plain": {"batch_size": 3, "flush_period": 30}})
    app = App(el.app_port())
    for seq in range(1, 7):
        cols = {"label": "h\u00e9llo " * 20, "v": [seq] * 10}
        app.point("imu", seq, **cols)
        app.point("plain", seq, **cols)
    wait_for(lambda: len(sub.on("/events/imu/jsonarray/lz4")) == 2 and len(sub.on("/events/plain/jsonarray")) == 2,
             what="two batches on each stream")
    compressed = [p for (_, p) in sub.on("/events/imu/jsonarray/lz4")]
    plain = [p for (_, p) in sub.on("/events/plain/jsonarray")]
    assert [t for (t, _) in sub.on("/events/imu/jsonarray/lz4")] == [TOPIC + "/events/imu/jsonarray/lz4"] * 2
    assert [lz4.frame.decompress(c) for c in compressed] == plain
    assert all(c[:4] == b"\x04\x22\x4d\x18" for c in compressed)  # LZ4 frame magic
    assert all(len(c) < len(p) for c, p in zip(compressed, plain))  # repetitive text really got compressed
    assert json.loads(plain[1])[0] == {"sequence": 4, "timestamp": ts(4), "label": "h\u00e9llo " * 20, "v": [4] * 10}
    assert sub.on("/events/imu/jsonarray") == []  # nothing uncompressed for the Lz4 stream


def test_priority_order_after_reconnect(make_edgelink, broker, sub, workdir):
    """Batches queued while the broker is down go out highest priority first (statuses first of all), each stream in order."""
    el = make_edgelink(streams={"lo": {"batch_size": 2, "flush_period": 30, "priority": 0},
                                "hi": {"batch_size": 2, "flush_period": 30, "priority": 200},
                                "mid": {"batch_size": 2, "flush_period": 30, "priority": 5}})
    app = App(el.app_port())
    wait_online(sub)
    publish(broker.port, TOPIC + "/actions", '{"action_id": "a1", "name": "reboot", "payload": ""}')
    assert app.read_line()["action_id"] == "a1"
    wait_for(lambda: sub.statuses(), what="Received")
    broker.stop()
    wait_for(lambda: el.status()["broker"]["state"] != "connected", what="edgelink to lose the broker")
    for seq in range(1, 11):   # oldest: 5 lo batches
        app.point("lo", seq)
    for seq in range(1, 7):    # then 3 mid batches
        app.point("mid", seq)
    for seq in range(1, 11):   # then 5 hi batches
        app.point("hi", seq)
    app.status("a1", "Completed", 100)  # newest: an action status
    wait_for(lambda: el.status()["outbox"]["queued"] == 14, what="14 queued publishes")

    el.signal(signal.SIGSTOP)  # the subscriber must be there before edgelink reconnects
    try:
        broker.start()
        late = Subscriber(broker.port, topics=(TOPIC + "/events/+/jsonarray", TOPIC + "/action/status"))
    finally:
        el.signal(signal.SIGCONT)
    try:
        wait_for(lambda: len(late.messages) == 14, what="14 publishes")
        time.sleep(0.2)
        order = [(t.split("/")[-2] if "/events/" in t else "status", json.loads(p)) for (t, p, _) in late.messages]
        assert [name for (name, _) in order] == ["status"] + ["hi"] * 5 + ["mid"] * 3 + ["lo"] * 5
        assert order[0][1][0]["state"] == "Completed"
        for name, count in (("hi", 10), ("mid", 6), ("lo", 10)):
            seqs = [p["sequence"] for (n, batch) in order if n == name for p in batch]
            assert seqs == list(range(1, count + 1)), name
    finally:
        late.close()


def test_lz4_stream_with_a_configured_topic_uses_it_as_written(make_edgelink, sub):
    """uplink's example [streams.imu] spells out topic = ".../imu/jsonarray/lz4" with compression = "Lz4": batches
    go to exactly that topic (not .../lz4/lz4); only a default topic gets "/lz4" added."""
    el = make_edgelink(streams={
        "imu": {"topic": "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4", "batch_size": 2,
                "compression": "Lz4", "priority": 50},
        "motor": {"batch_size": 2, "compression": "Lz4"},
    })
    app = App(el.app_port())
    for seq in (1, 2):
        app.point("imu", seq, ax=0.5)
        app.point("motor", seq, rpm=1200)
    wait_for(lambda: len(sub.on("/lz4")) == 2, what="one batch on each stream")
    topics = sorted(t for (t, _) in sub.on("/lz4"))
    assert topics == [TOPIC + "/events/imu/jsonarray/lz4", TOPIC + "/events/motor/jsonarray/lz4"]
    imu = next(p for (t, p) in sub.on("/lz4") if "/imu/" in t)
    assert json.loads(lz4.frame.decompress(imu)) == [{"sequence": 1, "timestamp": ts(1), "ax": 0.5},
                                                     {"sequence": 2, "timestamp": ts(2), "ax": 0.5}]
