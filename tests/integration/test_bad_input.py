"""The bad-input catalogue: malformed app lines, malformed actions from the broker,
malformed configuration files and damaged state files. Each gets a clear error, and
nothing else is affected: a good stream keeps flowing through all of it, in order."""
import json
import os
import re
import signal
import subprocess

from conftest import (EDGELINK_BIN, TOPIC, App, Edgelink, base_config, publish_many, read_errors, wait_for,
                      wait_online)

# (line bytes, expected code, expected field or None)
BAD_LINES = [
    (b"not json at all", "BadJson", None),
    (b'{"stream":"imu","sequence":1,', "BadJson", None),
    (b"[1,2,3]", "NotAnObject", None),
    (b'"just a string"', "NotAnObject", None),
    (b'{"sequence":1,"timestamp":1}', "MissingField", "stream"),
    (b'{"stream":"imu","timestamp":1}', "MissingField", "sequence"),
    (b'{"stream":"imu","sequence":1}', "MissingField", "timestamp"),
    (b'{"stream":"imu","sequence":-1,"timestamp":1}', "BadField", "sequence"),
    (b'{"stream":"imu","sequence":4294967296,"timestamp":1}', "BadField", "sequence"),
    (b'{"stream":"imu","sequence":1,"timestamp":"now"}', "BadField", "timestamp"),
    (b'{"stream":5,"sequence":1,"timestamp":1}', "BadField", "stream"),
    (b'{"stream":"imu","sequence":1,"timestamp":1,"v":"\xff\xfe"}', "BadJson", None),
    (b'{"stream":"imu","sequence":1,"timestamp":1,"v":"a\x01b"}', "BadJson", None),
    (b'{"stream":"imu","sequence":1,"timestamp":1,"v":NaN}', "BadJson", None),
    (b"\x00\x00\x00", "BadJson", None),
    (b'{"stream":"imu","sequence":1,"timestamp":1,"v":' + b"[" * 300 + b"]" * 300 + b"}", "BadJson", None),  # too deep
    (b'{"stream":"imu","sequence":1,"timestamp":1,"pad":"' + b"p" * 5000 + b'"}', "LineTooLong", None),
    (b'{"edgelink":{"nonsense":true}}', "BadField", None),
    (b'{"stream":"action_status","action_id":"","state":"Completed","sequence":1,"timestamp":1}', "BadField", None),
]

# (payload bytes, the action id a Failed status is expected for, or None)
BAD_ACTIONS = [
    (b"this is not json", None),
    (b'{"action_id": "t1", "name": ', None),
    (b"[]", None),
    (b"\xff\xfe{}", None),
    (b"", None),
    (json.dumps({"name": "reboot", "payload": "{}"}).encode(), None),
    (json.dumps({"action_id": "bad-name", "name": 5, "payload": "{}"}).encode(), "bad-name"),
    (json.dumps({"action_id": "no-name", "payload": "{}"}).encode(), "no-name"),
    (json.dumps({"action_id": "huge", "name": "reboot", "payload": "x" * (2 << 20)}).encode(), None),
]


def good_line(seq):
    return json.dumps({"stream": "imu", "sequence": seq, "timestamp": 1700000000000 + seq, "v": seq}).encode() + b"\n"


def test_bad_lines_and_bad_actions_affect_nothing_else(workdir, broker, sub):
    """Every malformed line gets its error report and every malformed action is counted (Failed when its id is
    readable), while good points interleaved with them all arrive in order and a good action still works."""
    cfg = base_config(workdir, broker.port, streams={"imu": {"batch_size": 5, "flush_period": 0.2}})
    cfg["tcpapps"]["app"]["max_line_bytes"] = 4096
    el = Edgelink(workdir, cfg).start()
    try:
        wait_online(sub)
        app = App(el.app_port(), hello=True)
        seq = 0
        expected_errors = []
        for n, (line, code, field) in enumerate(BAD_LINES):
            seq += 1
            app.send_raw(good_line(seq) + line + b"\n")
            if code:
                expected_errors.append((code, field, 2 * n + 3))  # line 1 is the hello
        errors = read_errors(app, len(expected_errors))
        got = [(e["code"], e.get("field") if f is not None else None, e["line"])
               for e, (_, f, _) in zip(errors, expected_errors)]
        assert got == expected_errors
        assert all(e["message"] for e in errors)

        publish_many(broker.port, TOPIC + "/actions", [p for p, _ in BAD_ACTIONS])
        wait_for(lambda: el.status()["actions"]["invalid"] == len(BAD_ACTIONS),
                 what=f"{len(BAD_ACTIONS)} invalid actions counted")
        for _, action_id in BAD_ACTIONS:
            if action_id:
                wait_for(lambda: any(s["action_id"] == action_id and s["state"] == "Failed"
                                     and s["errors"][0].startswith("Invalid action: ") for s in sub.statuses()),
                         what=f"Failed for {action_id}")
        publish_many(broker.port, TOPIC + "/actions",
                     [json.dumps({"action_id": "fine", "name": "reboot", "payload": "{}"}).encode()])
        msg = app.read_line()
        while msg is not None and "edgelink" in msg:  # error reports may still be queued
            msg = app.read_line()
        assert msg == {"action_id": "fine", "name": "reboot", "payload": "{}"}

        seq += 1
        app.send_raw(good_line(seq))
        good = list(range(1, seq + 1))
        wait_for(lambda: [p["sequence"] for p in sub.points("imu") if "v" in p and isinstance(p["v"], int)] == good,
                 what="every good point, in order")
        st = el.status()
        assert el.proc.poll() is None
        assert st["apps"]["app"]["points"] == seq
        assert sum(st["apps"]["app"]["errors"].values()) == len(expected_errors)
        assert sorted(s["action_id"] for s in sub.statuses() if s["state"] == "Failed") == ["bad-name", "no-name"]
    finally:
        el.kill()


BAD_CONFIGS = [
    ("syntax", 'project_id = "demo"\ndevice_id = "gw"\n[tcpapps.app\n', r":3:\d+: TOML syntax error"),
    ("non-ascii key", 'project_id = "demo"\ndevice_id = "gw"\nk\u0145y = 1\n', r":3:2: TOML syntax error: a non-ASCII"),
    ("missing ids", "[tcpapps.app]\nport = 5000\n", r"project_id"),
    ("bad type", 'project_id = "demo"\ndevice_id = "gw"\n[tcpapps.app]\nport = "x"\n', r":4:8: "),
    ("port range", 'project_id = "demo"\ndevice_id = "gw"\n[tcpapps.app]\nport = 70000\n', r":4:8: "),
    ("bad fsync", 'project_id = "demo"\ndevice_id = "gw"\n[spool]\nfsync = "sometimes"\n', r":4:9: "),
    ("negative budget", 'project_id = "demo"\ndevice_id = "gw"\n[spool]\nmax_bytes = -1\n', r":4:13: "),
    ("rtstream without device", 'project_id = "demo"\ndevice_id = "gw"\n[rtstreams.c]\nendpoint = "x"\nport = 7001\n',
     r"device"),
    ("binary", "\x00\x01\x02\x03", r"TOML syntax error"),
    ("empty", "", r"project_id"),
]


def test_malformed_configs_are_refused_with_their_position(workdir):
    """`edgelink check` (exit 1) and `edgelink run` (exit 2) refuse each malformed file with FILE:LINE:COL."""
    for name, text, pattern in BAD_CONFIGS:
        path = os.path.join(workdir, f"bad-{name.replace(' ', '-')}.toml")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        for cmd, exit_code in (("check", 1), ("run", 2)):
            r = subprocess.run([EDGELINK_BIN, cmd, "-c", path], capture_output=True, text=True, timeout=10)
            assert r.returncode == exit_code, (name, cmd, r.stdout, r.stderr)
            assert re.search(re.escape(path) + r".*" + pattern, r.stderr + r.stdout), (name, cmd, r.stderr)


def test_bad_reload_and_damaged_state_files_keep_the_daemon_running(workdir, broker, sub):
    """A malformed file on SIGHUP keeps the running config; a damaged actions.json is reported at start and
    ignored; data keeps flowing through both."""
    cfg = base_config(workdir, broker.port, streams={"imu": {"batch_size": 1, "flush_period": 0.2}})
    os.makedirs(cfg["persistence_path"])
    with open(os.path.join(cfg["persistence_path"], "actions.json"), "wb") as f:
        f.write(b'{"version":1,"actions":[{"id":"x"')
    el = Edgelink(workdir, cfg).start()
    try:
        wait_online(sub)
        el.wait_log("actions.json: not JSON")
        app = App(el.app_port())
        app.send_raw(good_line(1))
        wait_for(lambda: [p["sequence"] for p in sub.points("imu")] == [1], what="point 1")
        with open(el.path, "a") as f:
            f.write("[tcpapps.broken\n")
        el.signal(signal.SIGHUP)
        el.wait_log("the new configuration is invalid; keeping the current one")
        app.send_raw(good_line(2))
        wait_for(lambda: [p["sequence"] for p in sub.points("imu")] == [1, 2], what="point 2 after the bad reload")
        assert el.proc.poll() is None
    finally:
        el.kill()
