"""Operating the daemon: `edgelink check`, start-up failures, SIGTERM, presence, SIGHUP
reload and `edgelink status`."""
import os
import re
import signal
import socket
import subprocess
import time
import tomllib

from conftest import (EDGELINK_BIN, PRESENCE, TOPIC, App, Edgelink, app_config, app_status, base_config, free_port,
                      peer_eof, publish, retained, stream_status, to_toml, wait_for, wait_online)



def run_cli(*args, timeout=10):
    return subprocess.run([EDGELINK_BIN, *args], capture_output=True, text=True, timeout=timeout)


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_valid_config_prints_effective_config(workdir):
    """`check` on a valid file exits 0 and prints the configuration with defaults filled in, which itself checks OK."""
    path = write(workdir, "ok.toml", to_toml({
        "project_id": "demo", "device_id": "gw-9", "persistence_path": os.path.join(workdir, "state"),
        "tcpapps": {"main": {"port": 5050, "actions": [{"name": "reboot"}, {"name": "update", "timeout": 0.5}]}},
        "streams": {"imu": {"batch_size": 7, "flush_period": 0.25, "compression": "Lz4"}},
    }))
    out = run_cli("check", "-c", path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == f"{path}: OK"
    eff = tomllib.loads(out.stdout)
    assert eff["device_id"] == "gw-9" and eff["project_id"] == "demo"
    assert eff["broker"] == {"host": "localhost", "port": 1883, "client_id": "gw-9", "keep_alive": 30,
                             "max_inflight": 100, "reconnect_min": 1, "reconnect_max": 60}
    assert eff["max_stream_count"] == 64 and eff["shutdown_timeout"] == 5
    assert eff["tcpapps"]["main"] == {"port": 5050, "bind": "127.0.0.1", "max_line_bytes": 1048576,
                                      "actions": [{"name": "reboot", "timeout": 60}, {"name": "update", "timeout": 0.5}]}
    # the topic the batches are published on: a compressed stream's default topic ends in /lz4
    assert eff["streams"]["imu"] == {"topic": "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray/lz4",
                                     "batch_size": 7, "flush_period": 0.25, "compression": "Lz4", "priority": 0}
    assert eff["prioritize_live_data"] is False
    assert eff["streams"]["action_status"]["topic"] == "/tenants/{tenant_id}/devices/{device_id}/action/status"
    assert eff["spool"] == {"max_bytes": 268435456, "max_memory_bytes": 16777216, "fsync": "batch"}
    assert eff["log"] == {"level": "info"}

    # the printed configuration is a valid configuration with the same meaning
    again_path = write(workdir, "again.toml", out.stdout)
    again = run_cli("check", "-c", again_path)
    assert again.returncode == 0, again.stderr
    assert tomllib.loads(again.stdout) == eff


def test_check_accepts_an_uplink_config_with_warnings(workdir):
    """An uplink config.toml pasted as is: `check` exits 0 and names each uplink key or section edgelink reads
    differently or ignores as FILE:LINE:COL warnings; the printed topics are the ones used."""
    path = write(workdir, "uplink.toml", "\n".join([
        'project_id = "demo"',                                                          # 1
        'device_id = "gw-001"',                                                         # 2
        f'persistence_path = "{os.path.join(workdir, "state")}"',                      # 3
        'processes = [{ name = "echo" }]',                                              # 4
        '',                                                                             # 5
        '[mqtt]',                                                                       # 6
        'max_packet_size = 256000',                                                     # 7
        'max_inflight = 100',                                                           # 8
        'keep_alive = 30',                                                              # 9
        'network_timeout = 30',                                                         # 10
        '',                                                                             # 11
        '[tcpapps.1]',                                                                  # 12
        'port = 5050',                                                                  # 13
        'actions = [{ name = "install_update" }, { name = "load_file" }]',             # 14
        '',                                                                             # 15
        '[streams.imu]',                                                                # 16
        'topic = "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4"',  # 17
        'batch_size = 100',                                                             # 18
        'compression = "Lz4"',                                                          # 19
        'priority = 50',                                                                # 20
        '',                                                                             # 21
        '[streams.gps]',                                                                # 22
        'batch_size = 10',                                                              # 23
        'persistence = { max_file_size = 1048576, max_file_count = 10 }',              # 24
        '',                                                                             # 25
        '[streams.action_status]',                                                      # 26
        'topic = "/tenants/{tenant_id}/devices/{device_id}/action/status"',             # 27
        'batch_size = 1',                                                               # 28
        'priority = 255',                                                               # 29
        '',                                                                             # 30
        '[downloader]',                                                                 # 31
        'actions = [{ name = "update_firmware" }]',                                     # 32
        'path = "/var/tmp/ota-file"',                                                   # 33
        '',
    ]))
    out = run_cli("check", "-c", path)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == f"{path}: OK (9 warning(s))"
    assert lines[:-1] == [f"{path}:{pos}: {msg}" for pos, msg in [
        ("4:1", "processes: uplink feature not supported by edgelink (process actions); key ignored"),
        ("7:1", "mqtt.max_packet_size: uplink key ignored (edgelink's MQTT client sets its own limits)"),
        ("8:1", "mqtt.max_inflight: uplink's name for broker.max_inflight; read as broker.max_inflight"),
        ("9:1", "mqtt.keep_alive: uplink's name for broker.keep_alive; read as broker.keep_alive"),
        ("10:1", "mqtt.network_timeout: uplink key ignored (edgelink's MQTT client sets its own limits)"),
        ("24:1", "streams.gps.persistence: uplink key ignored (edgelink keeps unsent batches of every stream in its "
                 "one disk spool, see [spool])"),
        ("28:1", "streams.action_status.batch_size: uplink key ignored (edgelink publishes each action status at "
                 "once, ahead of all data, and spools it like any batch)"),
        ("29:1", "streams.action_status.priority: uplink key ignored (edgelink publishes each action status at once, "
                 "ahead of all data, and spools it like any batch)"),
        ("31:2", "downloader: uplink feature not supported by edgelink (file downloader); section ignored"),
    ]], out.stderr
    eff = tomllib.loads(out.stdout)
    assert eff["streams"]["imu"]["topic"] == "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4"
    assert eff["broker"]["max_inflight"] == 100 and eff["broker"]["keep_alive"] == 30
    assert "mqtt" not in eff and "downloader" not in eff

    # A typo is still an error: check fails on it, and the uplink warnings are still listed.
    typo = write(workdir, "typo.toml", open(path).read() + '\n[streams.motor]\nbatchsize = 5\n')
    out = run_cli("check", "-c", typo)
    assert out.returncode != 0
    assert f"{typo}:36:1: unknown key 'batchsize' in [streams.motor]" in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"{typo}: 1 error(s) (9 warning(s))"


def test_check_reports_every_error_with_position(workdir):
    """`check` on a file with several errors prints each as FILE:LINE:COL: message and exits non-zero."""
    path = write(workdir, "bad.toml", "\n".join([
        'project_id = "demo"',                      # 1
        'device_id = "gw-001"',                     # 2
        '',                                         # 3
        '[broker]',                                 # 4
        'port = 70000',                             # 5
        'reconnect_min = -1',                       # 6
        '',                                         # 7
        '[tcpapps.app]',                            # 8
        'port = 5050',                              # 9
        'actions = [{ name = "reboot", timeout = "soon" }]',  # 10
        '',                                         # 11
        '[streams.imu]',                            # 12
        'batch_size = 0',                           # 13
        'compression = "zip"',                      # 14
        'colour = "red"',                           # 15
        '',
    ]))
    out = run_cli("check", "-c", path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    issues = [l for l in lines if re.match(re.escape(path) + r":\d+:\d+: ", l)]
    positions = sorted(tuple(int(x) for x in l[len(path) + 1:].split(":")[:2]) for l in issues)
    assert positions == [(5, 8), (6, 17), (10, 41), (13, 14), (14, 15), (15, 1)], out.stderr
    text = "\n".join(issues)
    for needle in ("broker.port", "70000", "broker.reconnect_min", "timeout", "streams.imu.batch_size",
                   "streams.imu.compression", '"zip"', "unknown key 'colour'"):
        assert needle in text, needle
    assert lines[-1] == f"{path}: 6 error(s)"
    assert out.stdout == ""  # nothing effective to print


def test_toml_syntax_error_has_position(workdir):
    """A TOML syntax error is reported by check and run with its line and column, and nothing starts."""
    path = write(workdir, "syntax.toml", 'project_id = "demo"\ndevice_id = "gw-001"\n[tcpapps.app\nport = 1\n')
    out = run_cli("check", "-c", path)
    assert out.returncode != 0
    assert re.search(re.escape(path) + r":3:\d+: TOML syntax error", out.stderr), out.stderr
    run = run_cli("run", "-c", path)
    assert run.returncode != 0
    assert re.search(re.escape(path) + r":3:\d+: TOML syntax error", run.stderr), run.stderr


def test_unknown_key_is_error_for_check_but_warning_for_run(workdir, broker, sub):
    """An unknown key fails `check`, but `run` starts, logs a warning naming it, and relays data."""
    cfg = base_config(workdir, broker.port, streams={"imu": {"batch_size": 1, "flush_period": 30, "colour": "red"}})
    cfg["frobnicate"] = True
    el = Edgelink(workdir, cfg)
    out = run_cli("check", "-c", el.path)
    assert out.returncode != 0
    assert re.search(re.escape(el.path) + r":\d+:\d+: unknown key 'frobnicate' at top level", out.stderr), out.stderr
    assert re.search(re.escape(el.path) + r":\d+:\d+: unknown key 'colour' in \[streams.imu\]", out.stderr)
    assert "2 error(s)" in out.stderr

    el.start()
    try:
        app = App(el.app_port())
        app.point("imu", 1)
        wait_for(lambda: sub.points("imu"), what="the point")
        assert sub.points("imu") == [{"sequence": 1, "timestamp": 1700000000001}]
        log = el.log_text()
        assert re.search(r"warn.*unknown key 'frobnicate' at top level", log), log
        assert re.search(r"warn.*unknown key 'colour' in \[streams.imu\]", log), log
        assert el.proc.poll() is None
        assert el.stop() == 0
    finally:
        el.kill()


def test_run_with_invalid_config_exits_with_error(workdir, broker):
    """`run` with an invalid config prints the error with its position, exits non-zero and opens nothing."""
    cfg = base_config(workdir, broker.port, streams={"imu": {"batch_size": -3}})
    el = Edgelink(workdir, cfg)
    assert el.run_expecting_failure() != 0
    log = el.log_text()
    assert re.search(re.escape(el.path) + r":\d+:\d+: streams.imu.batch_size: must be an integer 1..1000000, got -3",
                     log), log
    assert "not started" in log
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", el.app_port())) != 0  # no listener was opened
    assert not os.path.exists(os.path.join(cfg["persistence_path"], "edgelink.sock"))


def test_second_daemon_with_same_persistence_path_refuses(make_edgelink, workdir):
    """A second edgelink on the same persistence_path refuses to start and the first keeps running."""
    first = make_edgelink()
    cfg = dict(first.config, tcpapps={"other": app_config()})
    other_dir = os.path.join(workdir, "second")
    os.makedirs(other_dir)
    second = Edgelink(other_dir, cfg)
    assert second.run_expecting_failure() != 0
    assert "another edgelink is running with this persistence_path" in second.log_text()
    assert first.proc.poll() is None
    assert first.status()["state"] == "running"  # the first one's status socket still answers


def test_presence_online_is_retained(make_edgelink, broker, sub):
    """After start the presence topic holds a retained "online"."""
    make_edgelink()
    wait_online(sub)
    assert retained(broker.port, PRESENCE) == [(PRESENCE, b"online", True)]


def test_sigterm_publishes_open_batch_and_goes_offline(make_edgelink, broker, sub):
    """SIGTERM publishes the open partial batch, exits 0 and leaves a retained "offline" presence."""
    el = make_edgelink(streams={"imu": {"batch_size": 100, "flush_period": 60}})
    app = App(el.app_port())
    for seq in range(1, 4):
        app.point("imu", seq, v=seq)
    wait_for(lambda: (stream_status(el, "imu") or {}).get("open_points") == 3, what="three open points")
    wait_online(sub)
    assert sub.points("imu") == []
    t0 = time.monotonic()
    assert el.stop() == 0
    # within shutdown_timeout (5 s); the stop disconnects as soon as "offline" is acknowledged
    assert time.monotonic() - t0 < 5, el.log_text()
    assert sub.points("imu") == [{"sequence": s, "timestamp": 1700000000000 + s, "v": s} for s in (1, 2, 3)]
    assert peer_eof(app), "the app connection was not closed"
    wait_for(lambda: [p for (_, p) in sub.on("/presence")] == [b"online", b"offline"], what="offline presence")
    assert retained(broker.port, PRESENCE) == [(PRESENCE, b"offline", True)]
    assert "stopped" in el.log_text()
    assert not os.path.exists(os.path.join(el.config["persistence_path"], "edgelink.sock"))


def test_sighup_applies_changed_config_without_dropping_unchanged_app(make_edgelink, broker, sub):
    """SIGHUP applies a new batch_size, a new app and a removed action while the existing app stays connected."""
    el = make_edgelink(
        tcpapps={"app": app_config(actions=[{"name": "reboot", "timeout": 5}, {"name": "reset", "timeout": 5}])},
        streams={"imu": {"batch_size": 10, "flush_period": 60}})
    app = App(el.app_port())
    app.point("imu", 1)
    wait_for(lambda: app_status(el)["points"] == 1, what="the first point")
    wait_online(sub)
    before = app_status(el)

    cfg = dict(el.config)
    cfg["tcpapps"] = {"app": dict(el.config["tcpapps"]["app"], actions=[{"name": "reboot", "timeout": 5}]),
                      "app2": app_config(actions=[{"name": "calibrate", "timeout": 5}])}
    cfg["streams"] = {"imu": {"batch_size": 2, "flush_period": 60}}
    el.write_config(cfg)
    el.signal(signal.SIGHUP)
    el.wait_log("configuration reloaded")

    # the unchanged app's connection survived and the new batch_size applies to it
    for seq in range(2, 6):
        app.point("imu", seq)
    wait_for(lambda: len(sub.points("imu")) == 5, what="five points")
    batches = [[p["sequence"] for p in b] for b in sub.json_on("/events/imu/jsonarray")]
    assert batches[-2:] == [[2, 3], [4, 5]]
    assert [s for b in batches for s in b] == [1, 2, 3, 4, 5]
    after = app_status(el)
    assert after["connected"] is True
    assert (after["connects"], after["evictions"]) == (before["connects"], before["evictions"])

    # the new app listens and gets its action; the removed action is refused
    app2 = App(el.app_port("app2"))
    publish(broker.port, TOPIC + "/actions", '{"action_id": "n1", "name": "calibrate", "payload": ""}')
    assert app2.read_line() == {"action_id": "n1", "name": "calibrate", "payload": ""}
    publish(broker.port, TOPIC + "/actions", '{"action_id": "n2", "name": "reset", "payload": ""}')
    publish(broker.port, TOPIC + "/actions", '{"action_id": "n3", "name": "reboot", "payload": ""}')
    assert app.read_line() == {"action_id": "n3", "name": "reboot", "payload": ""}
    wait_for(lambda: len(sub.statuses()) == 3, what="three statuses")
    by_id = {s["action_id"]: s for s in sub.statuses()}
    assert by_id["n1"]["state"] == "Received" and by_id["n3"]["state"] == "Received"
    assert (by_id["n2"]["state"], by_id["n2"]["errors"]) == (
        "Failed", ["edgelink isn't configured to handle actions of type reset"])
    assert app_status(el, "app2")["connected"] is True
    assert el.status()["broker"]["connects"] == 1  # broker settings unchanged: no reconnect


def test_sighup_with_invalid_config_keeps_running_config(make_edgelink, sub):
    """SIGHUP with an invalid file logs the errors, keeps the old configuration and data keeps flowing."""
    el = make_edgelink(streams={"imu": {"batch_size": 2, "flush_period": 60}})
    app = App(el.app_port())
    app.point("imu", 1)
    wait_for(lambda: app_status(el)["points"] == 1, what="the first point")
    with open(el.path, "a") as f:
        f.write("\n[spool]\nmax_bytes = 0\n")
    el.signal(signal.SIGHUP)
    el.wait_log("keeping the current one")
    log = el.log_text()
    assert re.search(re.escape(el.path) + r":\d+:\d+: spool.max_bytes: must be an integer > 0, got 0", log), log
    assert "configuration reloaded" not in log
    assert el.proc.poll() is None
    for seq in range(2, 5):
        app.point("imu", seq)
    wait_for(lambda: len(sub.points("imu")) == 4, what="four points")
    assert [[p["sequence"] for p in b] for b in sub.json_on("/events/imu/jsonarray")] == [[1, 2], [3, 4]]
    el.write_config(el.config)  # `status -c` reads the file too
    assert app_status(el)["connected"] is True
    assert el.stop() == 0


def test_status_human_output(make_edgelink, broker, sub):
    """`edgelink status` shows the app (connected, counters, errors), its streams and the broker state."""
    el = make_edgelink(streams={"imu": {"batch_size": 2, "flush_period": 60}})
    app = App(el.app_port())
    for seq in range(1, 4):
        app.point("imu", seq)
    app.send_raw(b"[]\n")
    wait_for(lambda: app_status(el)["errors"] == {"NotAnObject": 1}, what="the error to be counted")
    wait_for(lambda: el.status()["broker"]["acked"] >= 1, what="the batch to be acknowledged")
    out = run_cli("status", "-c", el.path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"^edgelink \S+\s+demo/gw-001\s+running, up \d+s$", text, re.M), text
    assert re.search(rf"^broker\s+tcp://127\.0\.0\.1:{broker.port}\s+connected\s+connects 1\b", text, re.M), text
    app_line = re.search(rf"^app\s+app\s+127\.0\.0\.1:{el.app_port()}\s+connected\s+points 3\b.*"
                         r"errors: NotAnObject=1$", text, re.M)
    assert app_line, text
    assert re.search(r"^stream\s+imu\s+points 3\s+batches 1\s+open 1$", text, re.M), text
    assert re.search(r"^outbox\s+queued 0\s+in flight 0", text, re.M), text
    assert "back-pressure" not in text

    broker.stop()
    wait_for(lambda: el.status()["broker"]["state"] != "connected", what="broker loss")
    text = run_cli("status", "-c", el.path).stdout
    assert re.search(rf"^broker\s+tcp://127\.0\.0\.1:{broker.port}\s+(disconnected|connecting)\b", text, re.M), text
    app.close()
    wait_for(lambda: not app_status(el)["connected"], what="the app to be seen as gone")
    text = run_cli("status", "-c", el.path).stdout
    assert re.search(r"^app\s+app\s+\S+\s+waiting\b", text, re.M), text


def test_status_without_daemon_fails_clearly(workdir):
    """`edgelink status` with no daemon running exits non-zero and says it cannot reach edgelink."""
    cfg = base_config(workdir, free_port())
    path = write(workdir, "el.toml", to_toml(cfg))
    for args in (("status", "-c", path), ("status", "-c", path, "--json"), ("status", "-c", path, "--metrics")):
        out = run_cli(*args)
        assert out.returncode != 0
        assert out.stdout == ""
        sock = os.path.join(cfg["persistence_path"], "edgelink.sock")
        assert f"cannot reach edgelink at {sock}" in out.stderr, out.stderr
        assert "is it running" in out.stderr
    # a stale socket file left behind by a killed daemon gives the same clear answer
    os.makedirs(cfg["persistence_path"], exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()
    out = run_cli("status", "-c", path)
    assert out.returncode != 0 and "cannot reach edgelink" in out.stderr, out.stderr
    # and an unreadable config is reported as such
    out = run_cli("status", "-c", os.path.join(workdir, "missing.toml"))
    assert out.returncode != 0 and "missing.toml: cannot read" in out.stderr


def test_unusable_persistence_path_fails_clearly(workdir, broker):
    """A persistence_path that cannot be created makes `run` exit non-zero and say why."""
    blocker = os.path.join(workdir, "a-file")
    with open(blocker, "w") as f:
        f.write("not a directory\n")
    cfg = base_config(workdir, broker.port, persistence_path=os.path.join(blocker, "state"))
    el = Edgelink(workdir, cfg)
    assert el.run_expecting_failure() != 0
    log = el.log_text()
    assert f"persistence_path {blocker}/state: cannot create it" in log, log
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", el.app_port())) != 0  # no listener left open
