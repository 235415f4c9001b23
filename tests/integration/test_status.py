"""The status model (spec/http-api.md §3.1) and its Prometheus text (§3.2) as
`edgelink status --json` and `edgelink status --metrics` show them: a daemon with two
apps, two streams and a RICREST device (the simulator on a socat pseudo-terminal pair,
as in test_devices.py), against a real mosquitto.
"""
import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import EDGELINK_BIN, TOPIC, App, app_config, free_port, publish, wait_for, wait_port
from test_devices import BAUD, PtyPair, Sim

SPEC_FAMILIES = {
    "edgelink_build_info": "gauge", "edgelink_uptime_seconds": "gauge", "edgelink_broker_connected": "gauge",
    "edgelink_broker_reconnects_total": "counter", "edgelink_app_connected": "gauge",
    "edgelink_app_lines_total": "counter", "edgelink_app_rejected_lines_total": "counter",
    "edgelink_stream_points_total": "counter", "edgelink_stream_batches_published_total": "counter",
    "edgelink_outbox_bytes": "gauge", "edgelink_dropped_total": "counter", "edgelink_actions_total": "counter",
    "edgelink_device_link_up": "gauge", "edgelink_device_resets_total": "counter",
    "edgelink_device_requests_total": "counter", "edgelink_http_requests_total": "counter",
    "edgelink_http_observers": "gauge", "edgelink_http_observers_ended_total": "counter",
    "edgelink_rtio_connections_total": "counter", "edgelink_rtio_device_copost_total": "counter",
}


def now_ms():
    return int(time.time() * 1000)


def run_status(el, *args):
    return subprocess.run([EDGELINK_BIN, "status", "-c", el.path, *args], capture_output=True, text=True, timeout=10)


def metrics_text(el):
    out = run_status(el, "--metrics")
    assert out.returncode == 0, out.stderr
    return out.stdout


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text):
    """-> ({family: type}, {(name, frozenset of (label, value)): float}); fails on lines it cannot read."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"family {name} repeated"
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unreadable sample line {line!r}"
        labels = frozenset((k, re.sub(r'\\(.)', lambda e: "\n" if e.group(1) == "n" else e.group(1), v))
                           for k, v in LABEL.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, f"sample {line!r} repeated"
        samples[key] = float(m.group(3))
    return types, samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def gateway(workdir, broker, make_edgelink):
    """edgelink with apps main_app and aux, streams imu and env, device mcu (simulator, an
    rtstream with a TCP port) -> (edgelink, pair)."""
    pair = PtyPair(workdir).start()
    sim = Sim(pair.dev, "--framing", "hdlc")
    console_port = free_port()
    el = make_edgelink(
        tcpapps={"main_app": app_config(actions=[{"name": "reboot", "timeout": 5}]), "aux": app_config()},
        streams={"imu": {"batch_size": 2, "flush_period": 0.5}, "env": {"batch_size": 2, "flush_period": 0.5},
                 "device_status": {"batch_size": 1, "flush_period": 0.5}},
        devices={"mcu": {"path": pair.gw, "baud": BAUD}},
        rtstreams={"console": {"device": "mcu", "endpoint": "upyconsole", "port": console_port}},
    )
    wait_port(console_port)
    wait_for(lambda: el.status()["broker"]["state"] == "connected", what="the broker connection")
    wait_for(lambda: el.status()["devices"]["mcu"]["link"] == "up", what="the device link up")
    yield el, pair
    el.kill()
    sim.kill()
    pair.stop()


def is_ms(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 1_500_000_000_000


def is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def test_status_json_has_the_spec_keys_with_their_types(gateway, broker):
    el, pair = gateway
    t0 = now_ms()
    main, aux = App(el.app_port("main_app")), App(el.app_port("aux"))
    for seq in range(1, 5):
        main.point("imu", seq)
        aux.point("env", seq)
    aux.send_raw(b"{not json\n")
    wait_for(lambda: all(s["batches_published"] == 2 and s["pending_points"] == 0
                         for name, s in el.status()["streams"].items() if name in ("imu", "env")),
             what="both streams' batches acknowledged")
    st = el.status()
    t1 = now_ms()

    assert isinstance(st["version"], str) and st["version"]
    assert is_ms(st["started"]) and st["started"] <= t0
    assert is_count(st["uptime_s"]) and st["uptime_s"] <= (t1 - st["started"]) / 1000 + 1
    assert (st["project_id"], st["device_id"], st["state"]) == ("demo", "gw-001", "running")

    b = st["broker"]
    assert b["state"] == "connected" and b["host"] == "127.0.0.1" and b["port"] == broker.port
    assert is_ms(b["since"]) and st["started"] <= b["since"] <= t1
    assert b["reconnects"] == 0 and is_count(b["inflight"])

    assert set(st["apps"]) == {"main_app", "aux"}
    for name, a in st["apps"].items():
        assert a["port"] == el.app_port(name)
        assert a["connected"] is True and is_ms(a["since"]) and t0 - 1 <= a["since"] <= t1
        assert is_count(a["lines"]) and is_count(a["rejected"]) and a["actions_pending"] == 0
    assert st["apps"]["main_app"]["lines"] == 4 and st["apps"]["main_app"]["rejected"] == 0
    assert st["apps"]["aux"]["lines"] == 5 and st["apps"]["aux"]["rejected"] == 1
    assert st["apps"]["aux"]["errors"] == {"BadJson": 1}  # the detail keys stay

    assert {"imu", "env"} <= set(st["streams"])
    for name in ("imu", "env"):
        s = st["streams"][name]
        assert s["points"] == 4 and s["batches_published"] == 2 and s["pending_points"] == 0

    sp = st["spool"]
    assert is_count(sp["bytes"]) and sp["max_bytes"] > 0 and sp["dropped"] == 0
    assert is_count(st["outbox"]["queued"])  # outbox stays

    d = st["devices"]["mcu"]
    assert (d["kind"], d["transport"], d["link"]) == ("ricrest", "serial", "up")
    assert is_ms(d["since"]) and st["started"] <= d["since"] <= t1
    assert is_count(d["resets"]) and d["coposts"] == 0 and d["observers"] == 0
    assert d["rtstreams"][0]["name"] == "console" and is_count(d["link_counters"]["requests"])

    assert st["actions"]["by_app"]["main_app"] == {"received": 0, "completed": 0, "failed": 0, "timed_out": 0}
    c = st["counters"]
    assert c["dropped"]["spool_full"] == 0 and all(is_count(v) for v in c["dropped"].values())
    assert c["rejected_lines"]["BadJson"] == 1 and c["http_status"] == {}
    assert all(is_count(v) for group in ("dropped_bytes", "errors") for v in c[group].values())

    # An app that leaves: not connected, since = the disconnect.
    t2 = now_ms()
    aux.close()
    wait_for(lambda: not el.status()["apps"]["aux"]["connected"], what="aux seen as gone")
    assert el.status()["apps"]["aux"]["since"] >= t2 - 1
    main.close()

    # The device unplugged: link down, since = the change.
    t3 = now_ms()
    pair.stop()
    wait_for(lambda: el.status()["devices"]["mcu"]["link"] == "down", what="the device link down")
    assert el.status()["devices"]["mcu"]["since"] >= t3 - 1


def test_status_metrics_follow_the_status(gateway, broker):
    el, pair = gateway
    types, before = parse_metrics(metrics_text(el))
    for name, kind in SPEC_FAMILIES.items():
        assert types.get(name) == kind, f"{name}: {types.get(name)}"
    assert all(name.startswith("edgelink_") for name in types)
    assert all(name.endswith("_total") == (kind == "counter") for name, kind in types.items())
    assert value(before, "edgelink_broker_connected") == 1
    assert value(before, "edgelink_device_link_up", device="mcu", kind="ricrest") == 1
    assert value(before, "edgelink_build_info", version=el.status()["version"]) == 1

    main, aux = App(el.app_port("main_app")), App(el.app_port("aux"))
    for seq in range(1, 11):
        main.point("imu", seq)
    aux.send_raw(b"[1]\n{broken\n")
    # An action for main_app, answered Completed.
    publish(broker.port, TOPIC + "/actions", json.dumps({"action_id": "a1", "name": "reboot", "payload": "{}"}))
    line = main.read_line()
    assert line and line["action_id"] == "a1"
    main.status("a1", "Completed", progress=100)
    wait_for(lambda: el.status()["streams"]["imu"]["batches_published"] == 5, what="imu's 5 batches acknowledged")
    wait_for(lambda: el.status()["actions"]["by_app"]["main_app"]["completed"] == 1, what="the action completed")

    _, after = parse_metrics(metrics_text(el))
    st = el.status()
    assert value(after, "edgelink_app_lines_total", app="main_app") == 11  # 10 points and the status
    assert value(after, "edgelink_app_lines_total", app="main_app") == st["apps"]["main_app"]["lines"]
    assert value(after, "edgelink_stream_points_total", stream="imu") == 10
    assert value(after, "edgelink_stream_batches_published_total", stream="imu") == 5
    assert value(after, "edgelink_app_rejected_lines_total", app="aux", code="NotAnObject") == 1
    assert value(after, "edgelink_app_rejected_lines_total", app="aux", code="BadJson") == 1
    assert value(after, "edgelink_rejected_lines_total", code="BadJson") == 1
    assert value(after, "edgelink_actions_total", app="main_app", state="received") == 1
    assert value(after, "edgelink_actions_total", app="main_app", state="completed") == 1
    assert value(after, "edgelink_actions_total", app="aux", state="received") == 0
    assert value(after, "edgelink_broker_acked_total") > value(before, "edgelink_broker_acked_total")
    assert value(after, "edgelink_dropped_total", reason="spool_full") == 0
    assert value(after, "edgelink_outbox_bytes", where="disk") == st["spool"]["bytes"]
    assert value(after, "edgelink_device_resets_total", device="mcu") == st["devices"]["mcu"]["resets"]
    assert value(after, "edgelink_rtstream_open", device="mcu", rtstream="console") is not None

    pair.stop()
    wait_for(lambda: el.status()["devices"]["mcu"]["link"] == "down", what="the device link down")
    _, unplugged = parse_metrics(metrics_text(el))
    assert value(unplugged, "edgelink_device_link_up", device="mcu", kind="ricrest") == 0
    assert value(unplugged, "edgelink_device_link_downs_total", device="mcu") >= 1


def test_status_metrics_pass_promtool(gateway):
    el, _ = gateway
    app = App(el.app_port("main_app"))
    app.point("imu", 1)
    app.send_raw(b"nope\n")
    wait_for(lambda: el.status()["apps"]["main_app"]["rejected"] == 1, what="the rejected line")
    text = metrics_text(el)
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus): the text format was not linted")
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"promtool: {out.stdout}{out.stderr}\n{text}"


def test_status_json_and_metrics_exclude_each_other(gateway):
    el, _ = gateway
    out = run_status(el, "--json", "--metrics")
    assert out.returncode != 0 and out.stdout == ""
