"""Actions from the broker to apps: routing by name, the exact line an app receives, the
statuses edgelink publishes (Received, forwarded app statuses, Failed for unknown names,
timeouts and invalid actions), late statuses, redeliveries, apps that are not connected,
and action statuses overtaking a backlog of data batches (spec/mqtt.md, app-protocol.md)."""
import json
import time

from conftest import (TOPIC, App, Edgelink, Subscriber, base_config, free_port,
                      publish_many, wait_for, wait_online)

ACTIONS = TOPIC + "/actions"
STATUS_KEYS = ["sequence", "timestamp", "action_id", "state", "progress", "errors"]


def action_msg(action_id, name="reboot", payload="{}", id_key="action_id"):
    return json.dumps({id_key: action_id, "name": name, "payload": payload})


def send_actions(port, *payloads, retain=False):
    publish_many(port, ACTIONS, payloads, retain=retain)


def statuses_for(sub, action_id):
    return [s for s in sub.statuses() if s["action_id"] == action_id]


def states_of(sub, action_id):
    return [s["state"] for s in statuses_for(sub, action_id)]


def wait_states(sub, action_id, expected, timeout=10.0):
    """Waits until exactly `expected` states were published for the action; returns the statuses."""
    wait_for(lambda: len(statuses_for(sub, action_id)) >= len(expected), timeout,
             what=f"statuses {expected} for action {action_id}")
    got = statuses_for(sub, action_id)
    assert [s["state"] for s in got] == expected
    return got


def app_with(timeout=5, **extra):
    cfg = {"port": free_port(), "actions": [{"name": "reboot", "timeout": timeout}]}
    cfg.update(extra)
    return cfg


def action_counters(el):
    return el.status()["actions"]


def test_action_reaches_only_its_app_with_exact_line_and_payload(make_edgelink, broker, sub):
    """An action goes only to the app that lists its name, as {action_id,name,payload} with the payload text unchanged."""
    el = make_edgelink(tcpapps={
        "app": app_with(),
        "fw": {"port": free_port(), "actions": [{"name": "update_firmware", "timeout": 5}]},
    })
    wait_online(sub)
    app, fw = App(el.app_port("app")), App(el.app_port("fw"))
    wait_for(lambda: all(a["connected"] for a in el.status()["apps"].values()), what="both apps connected")
    payload = json.dumps({"url": "http://h/fw.bin?a=1&b=\"q\"", "path": "C:\\tmp\\x", "note": "line1\nline2\tü€"})
    send_actions(broker.port, json.dumps({"action_id": "fw-1", "name": "update_firmware", "payload": payload}))
    line = fw.read_line()
    assert line == {"action_id": "fw-1", "name": "update_firmware", "payload": payload}
    assert list(line) == ["action_id", "name", "payload"]
    assert json.loads(line["payload"])["note"] == "line1\nline2\tü€"
    assert app.read_line(timeout=0.3) is None, "the other app must not receive the action"

    received = wait_states(sub, "fw-1", ["Received"])[0]
    assert list(received) == STATUS_KEYS
    assert received["progress"] == 0 and received["errors"] == []
    assert abs(received["timestamp"] - time.time() * 1000) < 60_000

    # A non-string payload reaches the app as its JSON text.
    send_actions(broker.port, json.dumps({"action_id": "r-1", "name": "reboot", "payload": {"delay": 3}}))
    line = app.read_line()
    assert line["action_id"] == "r-1" and line["name"] == "reboot"
    assert json.loads(line["payload"]) == {"delay": 3}
    assert fw.read_line(timeout=0.3) is None
    wait_states(sub, "r-1", ["Received"])


def test_progress_and_completed_are_forwarded_normalized(make_edgelink, broker, sub):
    """Received comes first, then the app's Progress and Completed (sent with `id`) as action_id statuses in order."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("a1"))
    assert app.read_line() == {"action_id": "a1", "name": "reboot", "payload": "{}"}
    wait_states(sub, "a1", ["Received"])
    app.status("a1", "Progress", 40, seq=5, use_id=True)
    app.status("a1", "Completed", 100, errors=[], seq=6)
    got = wait_states(sub, "a1", ["Received", "Progress", "Completed"])
    for s in got:
        assert list(s) == STATUS_KEYS
    assert [s["progress"] for s in got] == [0, 40, 100]
    assert [s["errors"] for s in got] == [[], [], []]
    assert got[1]["timestamp"] == 1700000000005 and got[2]["timestamp"] == 1700000000006
    seqs = [s["sequence"] for s in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    # Every status is published on its own, as a one-element array.
    assert all(len(arr) == 1 for arr in sub.json_on("/action/status"))
    c = action_counters(el)
    assert (c["received"], c["statuses"], c["completed"], c["in_flight"], c["late_statuses"]) == (1, 2, 1, 0, 0)


def test_app_failed_status_with_errors_is_forwarded(make_edgelink, broker, sub):
    """A Failed status from the app is forwarded with its errors and ends the action."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("f1"))
    assert app.read_line()["action_id"] == "f1"
    app.status("f1", "Failed", 30, errors=["disk full", "rollback done"])
    got = wait_states(sub, "f1", ["Received", "Failed"])
    assert got[1]["errors"] == ["disk full", "rollback done"] and got[1]["progress"] == 30
    c = action_counters(el)
    assert (c["failed"], c["in_flight"]) == (1, 0)


def test_unknown_action_name_fails_and_reaches_no_app(make_edgelink, broker, sub):
    """An action no app lists is answered Failed with the uplink error text and is not sent to any app."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("u1", name="self_destruct"))
    got = wait_states(sub, "u1", ["Failed"])
    assert got[0]["errors"] == ["edgelink isn't configured to handle actions of type self_destruct"]
    assert list(got[0]) == STATUS_KEYS
    assert app.read_line(timeout=0.3) is None
    c = action_counters(el)
    assert (c["unknown_name"], c["received"], c["in_flight"]) == (1, 0, 0)


def test_deadline_fails_action_and_later_statuses_are_dropped(make_edgelink, broker, sub):
    """An unanswered action fails with "Action timed out" after its timeout; the app's later statuses are dropped and counted."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=1)})
    wait_online(sub)
    app = App(el.app_port())
    t0 = time.monotonic()
    send_actions(broker.port, action_msg("t1"))
    assert app.read_line()["action_id"] == "t1"
    got = wait_states(sub, "t1", ["Received", "Failed"], timeout=5)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4.0, f"timed out after {elapsed:.2f}s, configured 1s"
    assert 900 <= got[1]["timestamp"] - got[0]["timestamp"] < 2000
    assert got[1]["errors"] == ["Action timed out"] and got[1]["progress"] == 100

    app.status("t1", "Progress", 90)
    app.status("t1", "Completed", 100)
    wait_for(lambda: action_counters(el)["late_statuses"] == 2, what="two late statuses counted")
    time.sleep(0.3)
    assert states_of(sub, "t1") == ["Received", "Failed"]
    c = action_counters(el)
    assert (c["timed_out"], c["completed"], c["statuses"], c["in_flight"]) == (1, 0, 0, 0)
    el.wait_log("dropped: it already timed out or finished")


def test_status_after_completed_is_dropped(make_edgelink, broker, sub):
    """Once the app reported Completed, further statuses for that action are not forwarded and are counted."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("c1"))
    assert app.read_line()["action_id"] == "c1"
    app.status("c1", "Completed", 100)
    wait_states(sub, "c1", ["Received", "Completed"])
    app.status("c1", "Progress", 50, seq=2)
    app.status("c1", "Failed", 100, errors=["oops"], seq=3)
    wait_for(lambda: action_counters(el)["late_statuses"] == 2, what="two late statuses counted")
    time.sleep(0.3)
    assert states_of(sub, "c1") == ["Received", "Completed"]
    assert action_counters(el)["failed"] == 0


def test_action_waits_for_app_that_connects_before_deadline(make_edgelink, broker, sub):
    """An action for an app that is not connected is held and delivered when the app connects before the deadline."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=4)})
    wait_online(sub)
    send_actions(broker.port, action_msg("w1", payload="hold me"))
    wait_states(sub, "w1", ["Received"])
    wait_for(lambda: el.status()["apps"]["app"]["pending_actions"] == 1, what="the action pending for the app")
    app = App(el.app_port())
    assert app.read_line() == {"action_id": "w1", "name": "reboot", "payload": "hold me"}
    app.status("w1", "Completed", 100)
    wait_states(sub, "w1", ["Received", "Completed"])
    info = el.status()["apps"]["app"]
    assert (info["pending_actions"], info["actions_delivered"]) == (0, 1)
    assert action_counters(el)["timed_out"] == 0


def test_action_for_absent_app_times_out_and_is_not_delivered_later(make_edgelink, broker, sub):
    """If the app never connects before the deadline the action fails, and a later connection does not receive it."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=1)})
    wait_online(sub)
    send_actions(broker.port, action_msg("gone"))
    got = wait_states(sub, "gone", ["Received", "Failed"], timeout=5)
    assert got[1]["errors"] == ["Action timed out"]
    assert el.status()["apps"]["app"]["pending_actions"] == 0
    app = App(el.app_port())
    wait_for(lambda: el.status()["apps"]["app"]["connected"], what="app connected")
    assert app.read_line(timeout=0.5) is None
    assert el.status()["apps"]["app"]["actions_delivered"] == 0


def test_app_disconnecting_mid_action_leads_to_timeout(make_edgelink, broker, sub):
    """An app that receives an action and disconnects without answering gets the action Failed by timeout; a new connection does not get it again."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=1)})
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("d1"))
    assert app.read_line()["action_id"] == "d1"
    app.close()
    wait_for(lambda: not el.status()["apps"]["app"]["connected"], what="app disconnected")
    app2 = App(el.app_port())
    got = wait_states(sub, "d1", ["Received", "Failed"], timeout=5)
    assert got[1]["errors"] == ["Action timed out"]
    assert app2.read_line(timeout=0.3) is None
    assert action_counters(el)["timed_out"] == 1


def test_redelivered_in_flight_action_is_not_dispatched_twice(make_edgelink, broker, sub):
    """A second delivery of an action id that is still in flight is ignored and counted; after it finished the id may run again."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, *[action_msg("dup"), action_msg("dup", id_key="id")])
    assert app.read_line() == {"action_id": "dup", "name": "reboot", "payload": "{}"}
    wait_for(lambda: action_counters(el)["duplicates"] == 1, what="the redelivery counted")
    assert app.read_line(timeout=0.3) is None
    assert states_of(sub, "dup") == ["Received"]
    app.status("dup", "Completed", 100)
    wait_states(sub, "dup", ["Received", "Completed"])
    # Finished: the same id is a new action now (the cloud retried).
    send_actions(broker.port, action_msg("dup", payload="again"))
    assert app.read_line() == {"action_id": "dup", "name": "reboot", "payload": "again"}
    wait_states(sub, "dup", ["Received", "Completed", "Received"])
    c = action_counters(el)
    assert (c["received"], c["duplicates"]) == (2, 1)


def test_id_alias_in_action_message(make_edgelink, broker, sub):
    """An action that names its id `id` reaches the app as `action_id`."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, json.dumps({"id": "alias-7", "name": "reboot", "payload": "p"}))
    assert app.read_line() == {"action_id": "alias-7", "name": "reboot", "payload": "p"}
    wait_states(sub, "alias-7", ["Received"])


def test_invalid_actions_are_counted_and_daemon_keeps_working(make_edgelink, broker, sub):
    """Malformed actions publish nothing without an id, Failed "Invalid action: ..." with one, and later actions still work."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, *[
        b"this is not json",
        b'{"action_id": "x", "name": ',            # truncated JSON
        b'["action_id", "name"]',                  # not an object
        json.dumps({"name": "reboot", "payload": "{}"}),  # no id
        b"\xff\xfe{}",                             # not UTF-8
        json.dumps({"action_id": "noname", "payload": "{}"}),  # id but no name
        json.dumps({"action_id": "badname", "name": 5}),      # name not a string
    ])
    wait_for(lambda: action_counters(el)["invalid"] == 7, what="seven invalid actions counted")
    got = wait_states(sub, "noname", ["Failed"])
    assert got[0]["errors"] == ["Invalid action: no name"]
    got = wait_states(sub, "badname", ["Failed"])
    assert len(got[0]["errors"]) == 1 and got[0]["errors"][0].startswith("Invalid action: ")
    # Valid action afterwards still routed; nothing else was published or delivered.
    send_actions(broker.port, action_msg("ok-after"))
    assert app.read_line() == {"action_id": "ok-after", "name": "reboot", "payload": "{}"}
    wait_states(sub, "ok-after", ["Received"])
    assert sorted(s["action_id"] for s in sub.statuses()) == ["badname", "noname", "ok-after"]
    assert app.read_line(timeout=0.2) is None
    c = action_counters(el)
    assert (c["received"], c["unknown_name"]) == (1, 0)
    el.wait_log("invalid action")


def test_huge_action_is_invalid_and_not_delivered(make_edgelink, broker, sub):
    """An action message over 1 MiB is refused as invalid, reaches no app, and the daemon keeps running."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    huge = json.dumps({"action_id": "huge", "name": "reboot", "payload": "x" * (1 << 20)})
    send_actions(broker.port, huge)
    wait_for(lambda: action_counters(el)["invalid"] == 1, what="the huge action counted as invalid")
    assert el.proc.poll() is None
    assert app.read_line(timeout=0.3) is None
    assert statuses_for(sub, "huge") == []
    send_actions(broker.port, action_msg("small"))
    assert app.read_line()["action_id"] == "small"
    wait_states(sub, "small", ["Received"])


def test_many_concurrent_actions_each_received_and_completed_once(make_edgelink, broker, sub):
    """200 actions in flight at once each get exactly one Received and one Completed, with increasing sequences."""
    n = 200
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    ids = [f"m{i}" for i in range(n)]
    send_actions(broker.port, *[action_msg(i, payload=f"p{i}") for i in ids])
    lines = []
    for _ in ids:
        line = app.read_line(timeout=5)
        assert line is not None, f"only {len(lines)} of {n} actions reached the app"
        lines.append(line)
    assert lines == [{"action_id": i, "name": "reboot", "payload": f"p{i}"} for i in ids]
    assert action_counters(el)["in_flight"] == n
    app.send_raw(b"".join(
        json.dumps({"stream": "action_status", "sequence": k + 1, "timestamp": 1700000000000 + k,
                    "action_id": i, "state": "Completed", "progress": 100}).encode() + b"\n"
        for k, i in enumerate(ids)))
    wait_for(lambda: len(sub.statuses()) >= 2 * n, what=f"{2 * n} statuses")
    time.sleep(0.2)
    statuses = sub.statuses()
    assert len(statuses) == 2 * n
    for i in ids:
        assert [s["state"] for s in statuses if s["action_id"] == i] == ["Received", "Completed"]
    seqs = [s["sequence"] for s in statuses]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2 * n
    c = action_counters(el)
    assert (c["received"], c["completed"], c["in_flight"], c["duplicates"]) == (n, n, 0, 0)




def test_action_statuses_overtake_a_backlog_of_batches(workdir, broker):
    """With hundreds of batches queued behind a one-publish window on a slow broker path, an action's
    Received and Completed go out ahead of most of them.

    The path from edgelink to the broker is throttled (about 75 batches/s), so the backlog takes
    seconds to drain and the result does not depend on how fast this machine is: the statuses
    would have to be held back for over a second to miss the mark."""
    from test_spool import SlowProxy
    n = 400
    proxy = SlowProxy(broker.port, rate=10000)
    sub = Subscriber(broker.port)
    cfg = base_config(workdir, proxy.port, streams={"imu": {"batch_size": 1, "flush_period": 1}})
    cfg["broker"].update(max_inflight=1)
    el = Edgelink(workdir, cfg).start()
    try:
        wait_for(lambda: el.status()["broker"]["state"] == "connected", what="edgelink connected")
        app = App(el.app_port())
        app.send_raw(b"".join(json.dumps({"stream": "imu", "sequence": s, "timestamp": 1700000000000 + s}).encode()
                              + b"\n" for s in range(1, n + 1)))
        wait_for(lambda: el.status()["outbox"]["queued"] >= n // 2, what="a backlog of batches")
        send_actions(broker.port, action_msg("urgent"))
        assert app.read_line()["action_id"] == "urgent"
        app.status("urgent", "Completed", 100)

        wait_for(lambda: "Completed" in states_of(sub, "urgent"), 30, what="Completed")
        proxy.throttle = False  # the rest at full speed
        wait_for(lambda: len(sub.points("imu")) >= n, timeout=30, what=f"all {n} batches")
        with sub.lock:
            order = [(t, p) for (t, p, _) in sub.messages if t.endswith("/action/status") or "/events/imu/" in t]
        assert sorted({json.loads(p)[0]["sequence"] for t, p in order if "/events/imu/" in t}) == list(range(1, n + 1))
        position = {}
        batches_seen = 0
        for t, p in order:
            if "/events/imu/" in t:
                batches_seen += 1
            else:
                st = json.loads(p)[0]
                position.setdefault(st["state"], batches_seen)
        assert set(position) == {"Received", "Completed"}
        assert position["Received"] < n // 4, f"Received after {position['Received']} of {n} batches"
        assert position["Completed"] < n // 2, f"Completed after {position['Completed']} of {n} batches"
    finally:
        sub.close()
        el.kill()
        proxy.close()


def test_redelivery_while_waiting_for_app_is_queued_once(make_edgelink, broker, sub):
    """An action redelivered while it waits for its app to connect is delivered to the app only once."""
    el = make_edgelink()
    wait_online(sub)
    send_actions(broker.port, action_msg("wait-dup"), action_msg("wait-dup"))
    wait_for(lambda: action_counters(el)["duplicates"] == 1, what="the redelivery counted")
    assert el.status()["apps"]["app"]["pending_actions"] == 1
    app = App(el.app_port())
    assert app.read_line() == {"action_id": "wait-dup", "name": "reboot", "payload": "{}"}
    assert app.read_line(timeout=0.3) is None
    assert states_of(sub, "wait-dup") == ["Received"]


def test_custom_actions_and_status_topics(make_edgelink, broker, sub):
    """actions_subscription and [streams.action_status] topic overrides move where actions are read and statuses published."""
    el = make_edgelink(actions_subscription="/custom/{device_id}/cmd",
                       streams={"action_status": {"topic": "/custom/{tenant_id}/{device_id}/st"}})
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("ignored"))  # the default topic is no longer read
    publish_many(broker.port, "/custom/gw-001/cmd", [action_msg("custom")])
    assert app.read_line() == {"action_id": "custom", "name": "reboot", "payload": "{}"}
    app.status("custom", "Completed", 100)
    wait_for(lambda: len(sub.on("/custom/demo/gw-001/st")) == 2, what="two statuses on the custom topic")
    assert [json.loads(p)[0]["state"] for _, p in sub.on("/custom/demo/gw-001/st")] == ["Received", "Completed"]
    assert sub.statuses() == []  # nothing on the default status topic
    assert app.read_line(timeout=0.2) is None
    assert action_counters(el)["received"] == 1


def test_in_flight_action_survives_a_kill_and_its_status_is_forwarded(make_edgelink, broker, sub):
    """An action in flight when edgelink is killed is restored at start: the app's Completed after the restart
    is forwarded (not dropped as unknown-late), and the deadline is still tracked."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=30)})
    wait_online(sub)
    app = App(el.app_port())
    wait_for(lambda: el.status()["apps"]["app"]["connected"], what="app connected")
    send_actions(broker.port, action_msg("keep-1"))
    assert app.read_line()["action_id"] == "keep-1"
    wait_states(sub, "keep-1", ["Received"])
    el.proc.kill()
    el.proc.wait(10)
    app.close()

    el.start()
    el.wait_log("action keep-1 (reboot) for app still in flight")
    assert action_counters(el)["in_flight"] == 1 and action_counters(el)["restored"] == 1
    app = App(el.app_port())
    app.status("keep-1", "Completed", progress=100)
    wait_states(sub, "keep-1", ["Received", "Completed"])
    wait_for(lambda: action_counters(el)["in_flight"] == 0, what="the action to finish")
    assert action_counters(el)["late_statuses"] == 0


def test_in_flight_action_whose_deadline_passed_while_down_fails_at_start(make_edgelink, broker, sub):
    """An action whose deadline passed while edgelink was stopped is reported Failed "Action timed out" at start,
    and a late status for it is dropped."""
    el = make_edgelink(tcpapps={"app": app_with(timeout=1)})
    wait_online(sub)
    app = App(el.app_port())
    wait_for(lambda: el.status()["apps"]["app"]["connected"], what="app connected")
    send_actions(broker.port, action_msg("late-1"))
    assert app.read_line()["action_id"] == "late-1"
    wait_states(sub, "late-1", ["Received"])
    assert el.stop() == 0
    app.close()
    time.sleep(1.2)

    el.start()
    got = wait_states(sub, "late-1", ["Received", "Failed"])
    assert got[1]["errors"] == ["Action timed out"]
    app = App(el.app_port())
    app.status("late-1", "Completed", progress=100)
    wait_for(lambda: action_counters(el)["late_statuses"] == 1, what="the late status to be dropped")
    assert states_of(sub, "late-1") == ["Received", "Failed"]


def test_completed_below_100_is_progress_as_uplinks_rootfs_updater_sends_it(make_edgelink, broker, sub):
    """uplink's rootfs updater reports "Completed" at 20, 40, 50, 75 and 90 before its final 100: all are forwarded;
    only Completed at 100 ends the action, so a later status is late."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("fw-7"))
    assert app.read_line()["action_id"] == "fw-7"
    for seq, progress in enumerate([20, 40, 50, 75, 90, 100], start=1):
        app.send_raw(json.dumps({"stream": "action_status", "sequence": seq, "timestamp": 1700000000000 + seq,
                                 "action_id": "fw-7", "state": "Completed", "progress": progress,
                                 "errors": []}).encode() + b"\n")
    got = wait_states(sub, "fw-7", ["Received"] + ["Completed"] * 6)
    assert [s["progress"] for s in got] == [0, 20, 40, 50, 75, 90, 100]
    app.status("fw-7", "Progress", 100, seq=7)
    wait_for(lambda: action_counters(el)["late_statuses"] == 1, what="the late status to be counted")
    c = action_counters(el)
    assert (c["completed"], c["statuses"], c["in_flight"]) == (1, 6, 0)
    assert len(statuses_for(sub, "fw-7")) == 7

    # Completed without a progress also ends an action.
    send_actions(broker.port, action_msg("fw-8"))
    assert app.read_line()["action_id"] == "fw-8"
    app.send({"stream": "action_status", "sequence": 8, "timestamp": 1700000000008, "action_id": "fw-8",
              "state": "Completed"})
    wait_states(sub, "fw-8", ["Received", "Completed"])
    wait_for(lambda: action_counters(el)["in_flight"] == 0, what="fw-8 to end")


def cancel_msg(cancel_id, target_id, target_name="reboot"):
    """uplink's built-in cancel_action: its payload names the action to cancel."""
    return action_msg(cancel_id, "cancel_action", json.dumps({"action_id": target_id, "name": target_name}))


def test_cancel_action_goes_to_the_app_running_its_target(make_edgelink, broker, sub):
    """cancel_action reaches (unchanged) the app that runs the target, not the others; the app's answers for the
    cancel_action are forwarded. Unanswered, it ends with its target: Completed when the target fails, Failed when
    the target completes."""
    el = make_edgelink(tcpapps={
        "app": app_with(timeout=30),
        "fw": {"port": free_port(), "actions": [{"name": "update_firmware", "timeout": 30}]},
    })
    wait_online(sub)
    app, fw = App(el.app_port("app")), App(el.app_port("fw"))
    wait_for(lambda: all(a["connected"] for a in el.status()["apps"].values()), what="both apps connected")

    send_actions(broker.port, json.dumps({"action_id": "u1", "name": "update_firmware", "payload": "{}"}))
    assert fw.read_line()["action_id"] == "u1"
    send_actions(broker.port, cancel_msg("c1", "u1", "update_firmware"))
    assert fw.read_line() == {"action_id": "c1", "name": "cancel_action",
                              "payload": json.dumps({"action_id": "u1", "name": "update_firmware"})}
    assert app.read_line(timeout=0.3) is None, "only the app running u1 gets its cancellation"
    wait_states(sub, "c1", ["Received"])
    fw.status("u1", "Failed", 40, errors=["Cancelled"])  # the app stopped the update; it does not answer c1
    wait_states(sub, "u1", ["Received", "Failed"])
    got = wait_states(sub, "c1", ["Received", "Completed"])
    assert (got[1]["progress"], got[1]["errors"]) == (100, [])

    # The app answers the cancel_action itself: its statuses are forwarded as for any action.
    send_actions(broker.port, action_msg("r1"))
    assert app.read_line()["action_id"] == "r1"
    send_actions(broker.port, cancel_msg("c2", "r1"))
    assert app.read_line()["action_id"] == "c2"
    app.status("c2", "Failed", 100, errors=["reboot cannot be stopped"])
    wait_states(sub, "c2", ["Received", "Failed"])
    app.status("r1", "Completed", 100)
    wait_states(sub, "r1", ["Received", "Completed"])

    # Unanswered, and the target completes anyway: the cancellation failed.
    send_actions(broker.port, action_msg("r2"))
    assert app.read_line()["action_id"] == "r2"
    send_actions(broker.port, cancel_msg("c3", "r2"))
    assert app.read_line()["action_id"] == "c3"
    wait_states(sub, "c3", ["Received"])
    app.status("r2", "Completed", 100)
    got = wait_states(sub, "c3", ["Received", "Failed"])
    assert got[1]["errors"] == ["Cancellation failed: action r2 completed"]
    wait_for(lambda: action_counters(el)["in_flight"] == 0, what="nothing in flight")
    assert action_counters(el)["unknown_name"] == 0


def test_cancel_action_without_a_running_target_fails_clearly(make_edgelink, broker, sub):
    """A cancel_action whose target no app runs (finished, never received, or an unreadable payload) is Failed
    with a clear error and reaches no app; it is not an unknown action."""
    el = make_edgelink()
    wait_online(sub)
    app = App(el.app_port())
    send_actions(broker.port, action_msg("done"))
    assert app.read_line()["action_id"] == "done"
    app.status("done", "Completed", 100)
    wait_states(sub, "done", ["Received", "Completed"])

    send_actions(broker.port, cancel_msg("c1", "done"), cancel_msg("c2", "nope"),
                 action_msg("c3", "cancel_action", "not json"))
    assert wait_states(sub, "c1", ["Failed"])[0]["errors"] == [
        "Cannot cancel action done: it is not in flight (it finished, timed out or never arrived)"]
    assert wait_states(sub, "c2", ["Failed"])[0]["errors"] == [
        "Cannot cancel action nope: it is not in flight (it finished, timed out or never arrived)"]
    assert wait_states(sub, "c3", ["Failed"])[0]["errors"][0].startswith(
        "Invalid cancel_action: payload must be a JSON object")
    assert app.read_line(timeout=0.3) is None
    c = action_counters(el)
    assert (c["cancels_refused"], c["unknown_name"], c["received"], c["in_flight"]) == (3, 0, 1, 0)
