"""Raft MCUs over BLE (spec/ricrest.md §3.5): the real edgelink against a mock BlueZ on a
private system bus (bluez_mock.py: a real dbus-daemon, the real python-dbusmock server with
bluez_raft_template.py, and the real simulator demo/mcu_sim.py behind the GATT
characteristics), with a real mosquitto. The test_mock_* tests check the mock itself with
dbus-python as the BlueZ client, without edgelink.

Run:  EDGELINK_BIN=$PWD/build/edgelink /usr/bin/python3 -m pytest -q tests/integration/test_ble.py
(needs dbus-daemon, python3-dbus, python3-gi and python3-dbusmock from Debian).
"""
import base64
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time

import dbus
import dbus.mainloop.glib
import pytest
from gi.repository import GLib

from bluez_mock import ADAPTER_PATH, COMMAND_UUID, RAFT_SERVICE, RAFT_SERVICE_ALT, RESPONSE_UUID
from bluez_mock import make_bluez  # noqa: F401  (a fixture)
from conftest import EDGELINK_BIN, TOPIC, App, free_port, publish, wait_for, wait_port
from test_devices import DEMO, Console, repl_answer

sys.path.insert(0, DEMO)
import mcu_sim  # noqa: E402  (the simulator's own HDLC codec)

ADDRESS = "AA:BB:CC:DD:EE:01"
RT_TOPIC = TOPIC + "/rtstreams/console"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
DEVICE_IFACE = "org.bluez.Device1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"


def url_frame(url, msg_num=1):
    """An HDLC-framed RICREST URL request (§4.1/§4.2): msgNum, header 0x02 (command,
    protocol RICREST), element 0 (URL), the URL and its NUL."""
    return mcu_sim.hdlc_encode(bytes([msg_num, 0x02, 0x00]) + url.encode() + b"\0")


# ---- 1. the mock on its own -------------------------------------------------------------

class BusClient:
    """A BlueZ client in this process: dbus-python on the mock's bus with a GLib main loop
    that is run only while waiting, recording every signal it receives."""

    def __init__(self, address):
        self.loop = dbus.mainloop.glib.DBusGMainLoop()
        self.conn = dbus.bus.BusConnection(address, mainloop=self.loop)
        self.signals = []  # (path, interface, member, args)
        self.conn.add_signal_receiver(self._on_signal, sender_keyword=None, interface_keyword="iface",
                                      member_keyword="member", path_keyword="path")

    def _on_signal(self, *args, iface=None, member=None, path=None):
        self.signals.append((str(path), str(iface), str(member), args))

    def pump(self, seconds=0.0):
        ctx = GLib.MainContext.default()
        end = time.monotonic() + seconds
        while True:
            while ctx.pending():
                ctx.iteration(False)
            if time.monotonic() >= end:
                return
            time.sleep(0.005)

    def until(self, predicate, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; signals: {self.signals[-20:]}")
            time.sleep(0.01)

    def iface(self, path, iface, bus_name="org.bluez"):
        return dbus.Interface(self.conn.get_object(bus_name, path, introspect=False), iface)

    def call(self, path, iface, method, *args):
        """A method call that runs the main loop while waiting (signals interleave)."""
        result = {}
        self.iface(path, iface).get_dbus_method(method)(
            *args, reply_handler=lambda *r: result.setdefault("ok", r),
            error_handler=lambda e: result.setdefault("err", e))
        self.until(lambda: result, what=f"the reply to {method}")
        if "err" in result:
            raise result["err"]
        return result["ok"][0] if result["ok"] else None

    def changed(self, path, iface=None):
        """[(name, value)] of every PropertiesChanged on path, in order."""
        out = []
        for p, i, m, args in self.signals:
            if p == path and i == PROPS_IFACE and m == "PropertiesChanged" and (iface is None or args[0] == iface):
                out += list(args[1].items())
        return out

    def values(self, path):
        return [bytes(v) for k, v in self.changed(path, CHAR_IFACE) if k == "Value"]

    def om(self, member):
        return [(str(a[0]), a[1]) for p, i, m, a in self.signals
                if p == "/" and i == "org.freedesktop.DBus.ObjectManager" and m == member]

    def close(self):
        self.conn.close()


def reply_from(values):
    frames = mcu_sim.HdlcDecoder(max_len=1 << 20).feed(b"".join(values))
    return [f[3:].rstrip(b"\0").decode() for f in frames if f[1] == 0x42 and f[2] == 0x01]


def write_frame(c, path, frame, size):
    for i in range(0, len(frame), size):
        c.call(path, CHAR_IFACE, "WriteValue", dbus.ByteArray(frame[i:i + size]), {"type": "command"})


def dbus_error(fn, *args):
    with pytest.raises(dbus.exceptions.DBusException) as ex:
        fn(*args)
    return ex.value.get_dbus_name(), ex.value.get_dbus_message()


def prop_changes(c, since):
    return [(p, k, bool(v) if isinstance(v, dbus.Boolean) else v) for p, i, m, a in c.signals[since:]
            if m == "PropertiesChanged" for k, v in a[1].items()]


def test_mock_is_faithful(make_bluez):
    """Without edgelink: dbus-python plays the BlueZ client and talks to the simulator
    through the mock, the way edgelink must (GetManagedObjects, Connect, ServicesResolved,
    StartNotify, WriteValue of HDLC slices, replies as Value notifications), and the mock
    answers as bluetoothd does (BlueZ's default GATT cache: the objects stay)."""
    mock = make_bluez(mtu=23)
    c = BusClient(mock.bus_address)
    try:
        objs = c.iface("/", "org.freedesktop.DBus.ObjectManager").GetManagedObjects()
        dev = mock.device_path
        svc, cmd, rsp = dev + "/service0010", dev + "/service0010/char0011", dev + "/service0010/char0012"
        assert bool(objs[ADAPTER_PATH]["org.bluez.Adapter1"]["Powered"])
        d = objs[dev][DEVICE_IFACE]
        assert (d["Address"], d["Name"], d["Alias"]) == (ADDRESS, "RaftBot", "RaftBot")
        assert not d["Connected"] and not d["ServicesResolved"] and RAFT_SERVICE in d["UUIDs"]
        assert d["Adapter"] == ADAPTER_PATH
        s = objs[svc]["org.bluez.GattService1"]
        assert s["UUID"] == RAFT_SERVICE and s["Primary"] and s["Device"] == dev
        cp, rp = objs[cmd][CHAR_IFACE], objs[rsp][CHAR_IFACE]
        assert cp["UUID"] == COMMAND_UUID and list(cp["Flags"]) == ["write", "write-without-response"]
        assert rp["UUID"] == RESPONSE_UUID and list(rp["Flags"]) == ["read", "notify", "indicate"]
        assert cp["Service"] == svc and rp["Service"] == svc and cp["MTU"] == 23 and not rp["Notifying"]

        frame = url_frame("v")
        assert dbus_error(c.call, cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(frame[:20]),
                          {"type": "command"}) == ("org.bluez.Error.Failed", "Not connected")

        c.call(dev, DEVICE_IFACE, "Connect")
        c.until(lambda: ("ServicesResolved", True) in c.changed(dev, DEVICE_IFACE), what="ServicesResolved")
        assert [k for k, v in c.changed(dev, DEVICE_IFACE)] == ["Connected", "ServicesResolved"]
        assert mock.connected()

        # Before StartNotify (the CCCD) the device's reply is not sent: dropped and counted.
        write_frame(c, cmd, frame, 20)
        wait_for(lambda: mock.state()["bytes_dropped"] > 0, what="the unsubscribed reply to be dropped")
        c.pump(0.2)
        assert c.values(rsp) == []

        c.call(rsp, CHAR_IFACE, "StartNotify")
        c.until(lambda: ("Notifying", True) in c.changed(rsp), what="Notifying")
        assert mock.notifying() and mock.state()["subscribed"]
        c.call(rsp, CHAR_IFACE, "StartNotify")  # again from the same client: success
        # A write command above MTU-3 cannot be sent; a write request above it is a long
        # write (up to 512 bytes).
        assert dbus_error(c.call, cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(bytes(21)),
                          {"type": "command"}) == ("org.bluez.Error.Failed", "Failed to initiate write")
        assert dbus_error(c.call, cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(bytes(513)),
                          {"type": "request"})[0] == "org.bluez.Error.InvalidValueLength"
        c.call(cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(b"\0" * 30), {"type": "request"})  # junk, then a flag
        assert mock.writes()[-1] == (30, "request")

        frame = url_frame("v", msg_num=2)
        write_frame(c, cmd, frame, 20)
        got = c.until(lambda: reply_from(c.values(rsp)), what="the reply as notifications")
        assert '"SystemName":"SimMCU"' in got[0]
        assert len(c.values(rsp)) > 1 and all(1 <= len(v) <= 23 - 12 for v in c.values(rsp))
        assert all(n <= 20 for n, t in mock.writes() if t == "command")

        # MTU 517: a frame in one write, the reply in one notification.
        mock.set_mtu(517)
        c.until(lambda: ("MTU", 517) in c.changed(cmd), what="the MTU change")
        n = len(c.values(rsp))
        c.call(cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(url_frame("v", 3)), {"type": "command"})
        c.until(lambda: len(reply_from(c.values(rsp)[n:])) == 1, what="the reply at MTU 517")
        assert len(c.values(rsp)) == n + 1
        events = mock.events()
        assert events.index("StartNotify") > events.index("Connect")
        assert mock.state()["max_writes_in_flight"] == 1

        # The client drops the link: ServicesResolved, Connected go false. The notify
        # session stays (Notifying unchanged); a StartNotify now is InProgress, and at the
        # next connection the session is registered again by itself.
        before = len(c.signals)
        c.call(dev, DEVICE_IFACE, "Disconnect")
        c.until(lambda: ("Connected", False) in c.changed(dev, DEVICE_IFACE), what="Connected false")
        c.pump(0.1)
        assert prop_changes(c, before) == [(dev, "ServicesResolved", False), (dev, "Connected", False)]
        st = mock.state()
        assert st["notifying"] and not st["subscribed"] and st["sessions"] == 1
        assert dbus_error(c.call, rsp, CHAR_IFACE, "StartNotify")[0] == "org.bluez.Error.InProgress"
        c.call(dev, DEVICE_IFACE, "Disconnect")  # not connected: still success
        c.call(dev, DEVICE_IFACE, "Connect")
        c.until(lambda: mock.state()["services_resolved"], what="resolved again")
        assert mock.state()["subscribed"]
        c.call(rsp, CHAR_IFACE, "StartNotify")  # registered: success
        n = len(c.values(rsp))
        c.call(cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(url_frame("v", 4)), {"type": "command"})
        c.until(lambda: reply_from(c.values(rsp)[n:]), what="the reply on the new connection")

        # The device drops the link (out of range): the same signals.
        before = len(c.signals)
        mock.disconnect_from_device()
        c.until(lambda: ("Connected", False) in c.changed(dev, DEVICE_IFACE)[-1:], what="the link loss")
        assert prop_changes(c, before) == [(dev, "ServicesResolved", False), (dev, "Connected", False)]
        mock.set_reachable(False)
        assert dbus_error(c.call, dev, DEVICE_IFACE, "Connect") == ("org.bluez.Error.Failed",
                                                                    "le-connection-abort-by-local")
        mock.set_reachable(True)

        # Removed and added again: InterfacesRemoved children first, InterfacesAdded parents first.
        mock.remove_device()
        c.until(lambda: len(c.om("InterfacesRemoved")) == 4, what="InterfacesRemoved")
        assert [p for p, _ in c.om("InterfacesRemoved")] == [rsp, cmd, svc, dev]
        assert dev not in c.iface("/", "org.freedesktop.DBus.ObjectManager").GetManagedObjects()
        assert mock.state()["sessions"] == 0  # the session went with the characteristic
        mock.add_device()
        c.until(lambda: len(c.om("InterfacesAdded")) == 4, what="InterfacesAdded")
        assert [p for p, _ in c.om("InterfacesAdded")] == [dev, svc, cmd, rsp]
        assert DEVICE_IFACE in c.om("InterfacesAdded")[0][1]

        # Adapter power off: Connect is refused; on again: it works.
        mock.power_adapter(False)
        assert dbus_error(c.call, dev, DEVICE_IFACE, "Connect")[0] == "org.bluez.Error.NotReady"
        mock.power_adapter(True)

        # bluetoothd restarts: org.bluez changes owner, the simulator keeps running, and the
        # device is there again, not connected; a new session works.
        sim_pid = mock.sim.proc.pid
        mock.restart_bluez()
        c.until(lambda: [a for p, i, m, a in c.signals if m == "NameOwnerChanged" and a[0] == "org.bluez"
                         and a[2] == ""], what="NameOwnerChanged for org.bluez")
        assert mock.sim.alive() and mock.sim.proc.pid == sim_pid
        objs = c.iface("/", "org.freedesktop.DBus.ObjectManager").GetManagedObjects()
        assert not objs[dev][DEVICE_IFACE]["Connected"] and objs[cmd][CHAR_IFACE]["MTU"] == 517
        c.call(dev, DEVICE_IFACE, "Connect")
        c.call(rsp, CHAR_IFACE, "StartNotify")
        n = len(c.values(rsp))
        c.call(cmd, CHAR_IFACE, "WriteValue", dbus.ByteArray(url_frame("v", 5)), {"type": "command"})
        c.until(lambda: reply_from(c.values(rsp)[n:]), what="the reply after the restart")

        # The client leaves the bus: its notify session ends (Notifying false).
        c.close()
        wait_for(lambda: not mock.notifying(), what="the notify session to end with its client")
        assert mock.connected() and mock.state()["sessions"] == 0
        assert mock.events().count("Connect") >= 4
    finally:
        with contextlib.suppress(Exception):
            c.close()


def test_mock_gatt_objects_only_while_connected(make_bluez):
    """gatt="connected" (bluetoothd without a GATT cache for this device): the service and
    characteristics appear (InterfacesAdded) after Connect, before ServicesResolved, and
    go (InterfacesRemoved) at the disconnect, their notify session with them."""
    mock = make_bluez(gatt="connected")
    c = BusClient(mock.bus_address)
    try:
        om = c.iface("/", "org.freedesktop.DBus.ObjectManager")
        dev = mock.device_path
        svc, rsp = dev + "/service0010", dev + "/service0010/char0012"
        assert svc not in om.GetManagedObjects() and dev in om.GetManagedObjects()
        c.call(dev, DEVICE_IFACE, "Connect")
        c.until(lambda: mock.state()["services_resolved"], what="ServicesResolved")
        c.pump(0.1)
        added = [str(a[0]) for p, i, m, a in c.signals if m == "InterfacesAdded"]
        resolved_at = next(k for k, (p, i, m, a) in enumerate(c.signals)
                           if m == "PropertiesChanged" and "ServicesResolved" in a[1])
        added_at = next(k for k, (p, i, m, a) in enumerate(c.signals) if m == "InterfacesAdded" and a[0] == rsp)
        assert added_at < resolved_at and svc in added
        c.call(rsp, CHAR_IFACE, "StartNotify")
        write_frame(c, dev + "/service0010/char0011", url_frame("v"), 512)
        c.until(lambda: reply_from(c.values(rsp)), what="the reply")
        mock.disconnect_from_device()
        c.until(lambda: len(c.om("InterfacesRemoved")) == 3, what="the GATT objects to go")
        assert svc not in om.GetManagedObjects() and mock.state()["sessions"] == 0
        assert not mock.notifying()
    finally:
        c.close()


# ---- edgelink against the mock ------------------------------------------------------------

BLE_KEYS = ("adapter", "address", "device_path", "mtu", "write_size", "connects", "connect_failures", "disconnects",
            "notifications", "bytes_in", "bytes_out", "writes", "writes_failed", "queued_bytes", "bytes_discarded")
FAST = {"batch_size": 1, "flush_period": 1}


def device_status(e, name="bot"):
    return e.status()["devices"][name]


def rt_status(e, name="console", device="bot"):
    return next(s for s in device_status(e, device)["rtstreams"] if s["name"] == name)


def ble_diagnostics(e, mock, device="bot"):
    """What explains a failure: edgelink's device and rtstream status, the mock's state and
    the last client calls it saw, the tail of edgelink's log and of the simulator's."""
    out = []
    try:
        d = device_status(e, device)
        out.append("device " + ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("rtstreams", "ble")))
        out.append("ble " + ", ".join(f"{k}={v}" for k, v in (d.get("ble") or {}).items()))
        for s in d.get("rtstreams", []):
            out.append("rtstream " + ", ".join(f"{k}={v}" for k, v in s.items() if not isinstance(v, dict)))
    except Exception as ex:  # the daemon may be what failed
        out.append(f"(no status: {ex!r})")
    try:
        out.append(f"mock {mock.state()}")
        out.append(f"mock events (last 30) {mock.events()[-30:]}")
    except Exception as ex:
        out.append(f"(no mock state: {ex!r})")
    out.append("--- edgelink log (tail)\n" + "\n".join(e.log_text().splitlines()[-40:]))
    out.append("--- simulator (tail)\n" + "\n".join(mock.sim_stderr().splitlines()[-10:]))
    return "\n".join(out)


@contextlib.contextmanager
def diagnosed(e, mock, device="bot"):
    try:
        yield
    except AssertionError as ex:
        raise AssertionError(f"{ex}\n--- BLE diagnostics ---\n{ble_diagnostics(e, mock, device)}") from ex


def wait_state(e, state, device="bot", timeout=20):
    return wait_for(lambda: (lambda d: d if d["state"] == state else None)(device_status(e, device)), timeout=timeout,
                    interval=0.05, what=f"device {device} {state}")


@pytest.fixture
def ble_rig(workdir, broker, make_bluez, make_edgelink):
    """ble_rig(mock={BlueZMock kwargs}, device={extra [devices.bot] keys}, port=True, mqtt=False,
    wait_up=True, **config overrides) -> (edgelink, mock, tcp port). edgelink runs with the
    mock's bus as its system bus; the rtstream `console` goes to upyconsole on `bot`."""

    def make(mock=None, device=None, port=True, mqtt=False, wait_up=True, **overrides):
        m = make_bluez(**(mock or {}))
        tcp_port = free_port() if port else None
        rt = {"device": "bot", "endpoint": "upyconsole", "mqtt": mqtt}
        if tcp_port:
            rt["port"] = tcp_port
        dev = {"transport": "ble", "address": ADDRESS}
        dev.update(device or {})
        dev = {k: v for k, v in dev.items() if v is not None}  # address=None: look it up by name
        config = {
            "devices": {"bot": dev},
            "rtstreams": {"console": rt},
            "streams": {"imu": FAST, "device_log": FAST, "device_status": FAST},
        }
        config.update(overrides)
        e = make_edgelink(start=False, **config)
        e.start(wait_apps=False, env=m.env())
        for app in e.config.get("tcpapps", {}).values():
            wait_port(app["port"])
        if tcp_port:
            wait_port(tcp_port)
        if wait_up:
            with diagnosed(e, m):
                wait_state(e, "up")
        return e, m, tcp_port

    return make


def check_writes(mock, mtu, max_write=512):
    """Every write the mock accepted fits the ATT limit and is a write command."""
    writes = mock.writes()
    assert writes, "no writes"
    limit = min(mtu - 3, max_write, 512)
    too_long = [n for n, _ in writes if n > limit]
    assert not too_long, f"{len(too_long)} writes above {limit} bytes: {too_long[:10]}"
    types = {t for _, t in writes}
    assert types == {"command"}, f"write types {types}"
    # one write in flight at a time: the next WriteValue only after the reply to the last
    assert mock.state()["max_writes_in_flight"] == 1, mock.state()
    return writes


@pytest.mark.parametrize("mtu", [517, 23])
def test_console_round_trip_over_tcp_and_mqtt(ble_rig, sub, mtu):
    """REPL lines through the rtstream's TCP port and its MQTT topics reach the simulator
    as WriteValue slices (never above MTU-3, always write commands, only after StartNotify)
    and its answers come back from the notifications, exactly."""
    e, mock, port = ble_rig(mock={"mtu": mtu}, mqtt=True)
    with diagnosed(e, mock):
        con = Console(port)
        for i in range(8):
            line = b"v%d = '%s'\r" % (i, b"x" * (i * 70))  # up to ~500 bytes: many writes at MTU 23
            assert con.ask(line, timeout=20) == repl_answer(line)

        wait_for(lambda: e.status()["broker"]["state"] == "connected", what="the broker connection")
        time.sleep(0.3)  # edgelink subscribes to /in once connected: let the SUBACK arrive
        publish(e.config["broker"]["port"], RT_TOPIC + "/in", b"print(2)\r")
        out = lambda: b"".join(p for _, p in sub.on("/rtstreams/console/out"))
        wait_for(lambda: repl_answer(b"print(2)\r") in out(), timeout=20, what="the REPL answer on /out")

        writes = check_writes(mock, mtu)
        if mtu == 517:
            assert max(n for n, _ in writes) > 20, "edgelink did not use the negotiated MTU (all writes <= 20 bytes)"
        events = mock.events()
        assert "StartNotify" in events and "WriteValue" in events
        assert events.index("Connect") < events.index("StartNotify") < events.index("WriteValue"), events
        assert mock.state()["bytes_dropped"] == 0  # nothing was sent before the CCCD was written

        d = device_status(e)
        assert d["transport"] == "ble" and d["state"] == "up" and d["ups"] == 1 and d["downs"] == 0
        ble = d["ble"]
        missing = [k for k in BLE_KEYS if k not in ble]
        assert not missing, f"status ble object lacks {missing}: {ble}"
        assert ble["adapter"] == "hci0" and ble["address"] == ADDRESS and ble["device_path"] == mock.device_path
        assert ble["mtu"] == mtu and ble["write_size"] == min(mtu - 3, 512)
        assert ble["connects"] == 1 and ble["connect_failures"] == 0 and ble["disconnects"] == 0
        assert ble["writes_failed"] == 0 and ble["bytes_discarded"] == 0
        # Once quiet, edgelink's counters match what the mock saw.
        st = lambda: (device_status(e)["ble"], mock.state())
        wait_for(lambda: (lambda b, m: b["bytes_out"] == m["bytes_written"] and b["writes"] == len(mock.writes())
                          and b["bytes_in"] == m["bytes_notified"] and b["notifications"] == m["notifications"]
                          and b["queued_bytes"] == 0)(*st()),
                 what="edgelink's ble counters to match the mock's")


@pytest.mark.parametrize("case", ["max_write", "no_mtu_property"])
def test_write_size_limits(ble_rig, case):
    """max_write = 100 at MTU 517: no write above 100 bytes. A bluetoothd without the MTU
    property (before 5.62): edgelink assumes 23, so no write above 20 bytes."""
    if case == "max_write":
        e, mock, port = ble_rig(mock={"mtu": 517}, device={"max_write": 100})
        mtu, limit = 517, 100
    else:
        e, mock, port = ble_rig(mock={"mtu": 517, "mtu_property": False})
        mtu, limit = 23, 20
    with diagnosed(e, mock):
        con = Console(port)
        line = b"w = '" + b"q" * 1500 + b"'\r"
        assert con.ask(line, timeout=20) == repl_answer(line)
        writes = check_writes(mock, 517, max_write=limit)
        assert max(n for n, _ in writes) == limit  # the frame was cut at the limit, not smaller
        ble = device_status(e)["ble"]
        assert ble["mtu"] == mtu and ble["write_size"] == limit


def test_write_error_takes_the_link_down_and_it_recovers(ble_rig):
    """A WriteValue that fails (an ATT error; the link itself stays up) is counted and
    takes edgelink's link down; it connects again by itself and the console works."""
    e, mock, port = ble_rig()
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"f = 1\r") == repl_answer(b"f = 1\r")
        wait_for(lambda: rt_status(e)["queued_bytes"] == 0, what="the block to be confirmed")
        mock.fail_writes(1)
        con.send(b"f\r")
        wait_for(lambda: device_status(e)["ble"]["writes_failed"] >= 1, what="the failed write to be counted")
        wait_for(lambda: device_status(e)["downs"] >= 1, what="the link to go down")
        d = wait_state(e, "up", timeout=30)
        assert d["ble"]["writes_failed"] == 1
        # The line sent at the failure may be lost or sent again (its answer then comes
        # first); what is sent now arrives exactly.
        con.send(b"g = 2\r")
        con.read_until(repl_answer(b"g = 2\r"), timeout=20)
        assert con.ask(b"g\r", timeout=20) == repl_answer(b"g\r")


def test_http_copost_over_ble(ble_rig):
    """The HTTP API reaches a BLE device like a serial one: copost /v at MTU 23 (the
    request and the reply each span several writes and notifications), and a request
    whose frame the device drops is retried."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    from test_http import Http
    http_port = free_port()
    e, mock, _ = ble_rig(mock={"mtu": 23}, http={"bind": f"127.0.0.1:{http_port}", "copost_timeout": 10})
    with diagnosed(e, mock):
        wait_port(http_port)
        h = Http(http_port)
        r = wait_for(lambda: (lambda r: r if r["code"] == "OK" else None)(h.copost("bot", "/v")), timeout=20,
                     interval=0.3, what="bot answering copost /v")
        v = json_of(r)
        assert v["SystemName"] == "SimMCU" and v["rslt"] == "ok"
        assert h.copost("bot", "/sim/drop?n=1")["code"] == "OK"
        r = h.copost("bot", "/v")
        assert r["code"] == "OK", r
        assert h.status()["devices"]["bot"]["link"] == "up"
        check_writes(mock, 23)


def json_of(copost_reply):
    import json
    return json.loads(base64.b64decode(copost_reply["data"]))


def test_edgelink_restart_finds_the_device_still_connected(ble_rig):
    """edgelink is killed (no goodbye): the device stays connected, only the notify session
    ends with edgelink's bus connection. A new edgelink finds Connected and ServicesResolved
    already true (Connect succeeds at once and no property changes), subscribes again and
    works."""
    e, mock, port = ble_rig()
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"k = 1\r") == repl_answer(b"k = 1\r")
        e.kill()
        con.close()
        wait_for(lambda: not mock.state()["notifying"], what="the notify session to end with edgelink")
        st = mock.state()
        assert st["connected"] and st["services_resolved"]
    e.start(wait_apps=False, env=mock.env())
    with diagnosed(e, mock):
        wait_port(port)
        wait_state(e, "up", timeout=30)
        con = Console(port)
        assert con.ask(b"k\r", timeout=20) == repl_answer(b"k\r")
        assert mock.state()["connects"] == 1  # the link of the first edgelink, reused


@pytest.mark.parametrize("mtu", [517, 23])
def test_256k_through_an_rtstream_with_busy(ble_rig, mtu):
    """256 KiB of REPL lines through the TCP port while the device answers BUSY at the
    start and twice in the middle: every answer arrives intact and in order, in write
    slices that fit the MTU (the serial test sends 1 MiB at 4 Mbaud; through the Python
    mock BLE is slower: 256 KiB takes ~45 s (a 70 ms block window) with 20-byte writes and 11-byte
    notifications)."""
    run_bulk(ble_rig, mtu=mtu, size=256 * 1024, timeout=240)


def run_bulk(ble_rig, mtu, size, timeout):
    e, mock, port = ble_rig(mock={"mtu": mtu, "sim_args": ("--busy", "20")})
    lines = [b"%07d " % i + bytes(range(0x41, 0x5B)) * 4 + b"\r" for i in range(size // 112)]
    data = b"".join(lines)
    want = b"".join(repl_answer(x) for x in lines)
    con = Console(port)
    got = bytearray()

    def reader():
        con.sock.settimeout(timeout)
        while len(got) < len(want):
            chunk = con.sock.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    writer = threading.Thread(target=con.send, args=(data,))
    writer.start()
    def progress(frac):
        # A block lost to a late BUSY (data_lost) never gets its answer: fail at once
        # with the status, instead of waiting out the timeout.
        if len(got) >= frac * len(want):
            return True
        lost = rt_status(e)["data_lost"]
        assert lost == 0, f"{lost} blocks lost to late complaints: {rt_status(e)}"
        return False

    with diagnosed(e, mock):
        for frac in (0.3, 0.6):
            wait_for(lambda: progress(frac), timeout=timeout, interval=0.2, what=f"{frac:.0%} of the answers")
            mock.sim.busy()
        wait_for(lambda: progress(1.0), timeout=timeout, interval=0.2, what="every answer")
        writer.join(timeout)
        t.join(timeout)
        if bytes(got) != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise AssertionError(f"got {len(got)} of {len(want)} answer bytes; first difference at {at}: "
                                 f"got {bytes(got[at:at + 60])!r}, want {want[at:at + 60]!r}")
        s = wait_for(lambda: (lambda s: s if s["bytes_out"] == len(data) else None)(rt_status(e)), timeout=30,
                     what="every byte confirmed")
        assert s["busy"] >= 40 and s["resends"] >= 40, s
        assert s["data_lost"] == 0 and s["late_notices"] == 0, s
        check_writes(mock, mtu)
        d = device_status(e)
        assert d["ups"] == 1 and d["downs"] == 0 and d["ble"]["writes_failed"] == 0
    print(ble_diagnostics(e, mock))


@pytest.mark.parametrize("gatt", ["always", "connected"])
def test_device_out_of_range_and_removed_comes_back(ble_rig, sub, gatt):
    """The device drops the link and cannot be reached for a while: edgelink reports it
    down (last_error, disconnects), retries, and is up again once it is reachable; then
    bluetoothd forgets the device (InterfacesRemoved) and sees it again (InterfacesAdded):
    down, then up. The same TCP client gets answers after each. gatt="connected": the GATT
    objects exist only while connected, as bluetoothd does for an unbonded device."""
    e, mock, port = ble_rig(mock={"gatt": gatt})
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"a = 1\r") == repl_answer(b"a = 1\r")
        wait_for(lambda: rt_status(e)["queued_bytes"] == 0, what="the block to be confirmed")

        mock.set_reachable(False)
        mock.disconnect_from_device()
        d = wait_state(e, "down")
        assert d["last_error"], d
        wait_for(lambda: device_status(e)["ble"]["connect_failures"] >= 1, timeout=20,
                 what="a failed reconnection attempt")
        wait_for(lambda: [p for p in sub.points("device_status") if p["state"] == "down"], what="a 'down' point")
        mock.set_reachable(True)
        wait_state(e, "up", timeout=30)
        assert con.ask(b"a\r", timeout=20) == repl_answer(b"a\r")
        d = device_status(e)
        assert d["ups"] == 2 and d["downs"] == 1 and d["ble"]["disconnects"] == 1
        assert d["ble"]["connects"] == 2
        wait_for(lambda: rt_status(e)["queued_bytes"] == 0, what="the block to be confirmed")

        mock.remove_device()
        wait_state(e, "down")
        time.sleep(1.5)  # a few reconnection attempts against a device that is not there
        assert device_status(e)["state"] == "down"
        mock.add_device()
        wait_state(e, "up", timeout=30)
        assert con.ask(b"b = 2\r", timeout=20) == repl_answer(b"b = 2\r")
        d = device_status(e)
        assert d["ups"] == 3 and d["downs"] == 2 and d["ble"]["disconnects"] == 2
        check_writes(mock, 517)
        assert e.proc.poll() is None and mock.sim.alive()


def test_bluetoothd_restart(ble_rig):
    """bluetoothd crashes and is started again (org.bluez changes owner; the device is known
    again but not connected): edgelink notices, and reconnects by itself."""
    e, mock, port = ble_rig()
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"r = 1\r") == repl_answer(b"r = 1\r")
        wait_for(lambda: rt_status(e)["queued_bytes"] == 0, what="the block to be confirmed")
        sim_pid = mock.sim.proc.pid
        mock.restart_bluez()
        wait_for(lambda: device_status(e)["downs"] >= 1, what="the link to go down")
        wait_state(e, "up", timeout=30)
        wait_for(lambda: mock.state()["connected"] and mock.state()["notifying"], what="a new connection")
        assert con.ask(b"r\r", timeout=20) == repl_answer(b"r\r")
        d = device_status(e)
        assert d["downs"] == 1 and d["ups"] == 2 and d["ble"]["connects"] == 2
        events = mock.events(current_only=True)
        assert events.index("Connect") < events.index("StartNotify") < events.index("WriteValue"), events
        assert mock.sim.proc.pid == sim_pid and mock.sim.alive()


def test_adapter_power_cycle(ble_rig):
    """The adapter is powered off (the link drops, Connect is NotReady) and on again."""
    e, mock, port = ble_rig()
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"p = 1\r") == repl_answer(b"p = 1\r")
        wait_for(lambda: rt_status(e)["queued_bytes"] == 0, what="the block to be confirmed")
        mock.power_adapter(False)
        d = wait_state(e, "down")
        assert d["last_error"]
        time.sleep(1.5)
        assert device_status(e)["state"] == "down"
        mock.power_adapter(True)
        wait_state(e, "up", timeout=30)
        assert con.ask(b"p\r", timeout=20) == repl_answer(b"p\r")


def test_unknown_address_is_reported_and_the_rest_works(ble_rig, sub):
    """A configured device that bluetoothd does not know (and discovery does not find):
    down, with a clear last_error; the daemon goes on serving the good device on the same
    adapter, its apps and the status."""
    ghost = "AA:BB:CC:DD:EE:99"
    e, mock, port = ble_rig(wait_up=False, devices={"bot": {"transport": "ble", "address": ADDRESS},
                                                     "ghost": {"transport": "ble", "address": ghost}})
    with diagnosed(e, mock, "ghost"):
        wait_state(e, "up", "bot")
        con = Console(port)
        assert con.ask(b"g = 1\r") == repl_answer(b"g = 1\r")
        d = wait_for(lambda: (lambda d: d if d["last_error"] else None)(device_status(e, "ghost")), timeout=30,
                     what="ghost's last_error")
        assert d["state"] == "down" and d["transport"] == "ble" and d["ups"] == 0
        err = d["last_error"]
        print("ghost:", d)
        assert ghost in err or "not found" in err.lower() or "unknown" in err.lower(), err
        assert d["ble"]["address"] == ghost
        app = App(e.app_port())
        app.point("imu", 1, ax=0.5)
        wait_for(lambda: sub.points("imu"), what="app data")
        app.close()
        time.sleep(2)  # retries for the ghost go on
        assert device_status(e, "ghost")["state"] == "down"
        assert con.ask(b"g\r") == repl_answer(b"g\r")
        assert e.proc.poll() is None
        assert mock.events().count("Connect") >= 1  # the good device's; the ghost never had an object


def test_device_publishes_become_points(ble_rig, sub):
    """[[devices.bot.publish]] over BLE: devjson and devbin publishes become points, an
    unknown topic is reported and not retried (as test_devices does on a serial port)."""
    publish_cfg = [{"topic": "devjson", "stream": "mcu_pub", "rate_hz": 5},
                   {"topic": "devbin", "stream": "mcu_bin", "rate_hz": 2, "min_ms": 100},
                   {"topic": "nosuch", "stream": "mcu_pub"}]
    e, mock, _ = ble_rig(device={"publish": publish_cfg},
                         streams={"mcu_pub": FAST, "mcu_bin": FAST, "device_status": FAST})
    with diagnosed(e, mock):
        points = wait_for(lambda: (lambda p: p if len(p) >= 5 else None)(sub.points("mcu_pub")), timeout=20,
                          what="devjson points")
        for p in points:
            assert p["device"] == "bot" and p["topic"] == "devjson" and isinstance(p["sequence"], int)
            assert p["payload"]["_t"] == 0 and p["payload"]["_v"] == 1 and "x" in p["payload"]["1"]["48"]
        counters = [int(p["payload"]["1"]["48"]["x"], 16) for p in points]
        assert counters == sorted(counters)
        bins = wait_for(lambda: sub.points("mcu_bin"), what="devbin points")
        raw = base64.b64decode(bins[0]["payload_b64"])
        assert bins[0]["topic"] == "devbin" and raw[:2] == bytes([0xDB, 0x01]) and len(raw) == 13
        requests = [ln for ln in mock.sim_stderr().splitlines() if ln.startswith("sim: subscription update")]
        assert "sim: subscription update devjson rateHz=5 minMs=50" in requests
        assert "sim: subscription update devbin rateHz=2 minMs=100" in requests
        assert "sim: subscription update nosuch rateHz=1 minMs=50" in requests
        pub = {m["topic"]: m for m in device_status(e)["publish"]}
        assert pub["devjson"]["subscribed"] and pub["devjson"]["points"] >= 5 and pub["devjson"]["dropped"] == 0
        assert not pub["nosuch"]["subscribed"] and pub["nosuch"]["failures"] == 1
        e.wait_log("publish topic nosuch not subscribed")
        wait_for(lambda: [p for p in sub.points("device_status") if p["state"] == "up" and p["device"] == "bot"],
                 what="a device_status 'up' point")


@pytest.mark.parametrize("device_drops_link", [False, True])
def test_sigterm_says_bledisconnect_and_disconnects(ble_rig, device_drops_link):
    """SIGTERM: edgelink sends the URL request bledisconnect (the simulator logs it), then
    calls Device1.Disconnect, and exits 0. device_drops_link: like the firmware, the device
    drops the link itself right after the request (the Disconnect may then find it gone)."""
    e, mock, port = ble_rig(mock={"drop_on_bledisconnect": device_drops_link})
    with diagnosed(e, mock):
        con = Console(port)
        assert con.ask(b"t = 1\r") == repl_answer(b"t = 1\r")
        assert e.stop(timeout=15) == 0
        assert "sim: bledisconnect" in mock.sim_stderr()
        events = mock.events()
        print("events:", events)
        assert "bledisconnect" in events, events  # the request reached the device through a write
        if device_drops_link:
            # The device drops the link right after its reply, and edgelink disconnects right
            # after the request: whichever comes first ends the link (a slow build's
            # Disconnect can beat the device's drop; a Disconnect after it is harmless).
            after = events[events.index("bledisconnect"):]
            assert "link dropped after bledisconnect" in after or "Disconnect" in after, events
        else:
            assert "Disconnect" in events[events.index("bledisconnect"):], events
        assert events.count("Connect") == 1, events  # no reconnection while shutting down
        wait_for(lambda: not mock.state()["connected"], what="the link to be down")
        assert mock.sim.alive()


def test_name_lookup_with_discovery_and_the_alternative_service(ble_rig):
    """name = "RaftBot": the device is not known to bluetoothd until a scan sees it, and
    it offers the alternative Raft service UUID (ricrest.md §3.5): edgelink discovers it,
    finds the service, and the console works."""
    e, mock, port = ble_rig(mock={"present": False, "service_uuid": RAFT_SERVICE_ALT},
                            device={"address": None, "name": "RaftBot"}, wait_up=False)
    with diagnosed(e, mock):
        wait_state(e, "up", timeout=30)
        assert "StartDiscovery" in mock.events()
        con = Console(port)
        assert con.ask(b"n = 1\r") == repl_answer(b"n = 1\r")
        d = device_status(e)["ble"]
        assert d["device_path"] == mock.device_path


# ---- 9. configuration errors ---------------------------------------------------------------

BLE_HEAD = 'project_id = "demo"\ndevice_id = "gw"\n[devices.bot]\ntransport = "ble"\n'
BAD_BLE = [
    # (name, the [devices.bot] lines after transport, the line of the error)
    ("bad address", 'address = "AA:BB:CC:DD:EE"\n', 5),
    ("bad address hex", 'address = "GG:BB:CC:DD:EE:01"\n', 5),
    ("no address nor name", "adapter = \"hci0\"\n", None),
    ("address and name", 'address = "AA:BB:CC:DD:EE:01"\nname = "RaftBot"\n', None),
    ("path", 'address = "AA:BB:CC:DD:EE:01"\npath = "/dev/ttyUSB0"\n', 6),
    ("baud", 'address = "AA:BB:CC:DD:EE:01"\nbaud = 115200\n', 6),
    ("console framing", 'address = "AA:BB:CC:DD:EE:01"\nframing = "console"\n', 6),
    # 20 is the smallest write any BLE link takes (ATT_MTU 23 - 3).
    ("max_write 19", 'name = "RaftBot"\nmax_write = 19\n', 6),
    ("max_write 513", 'name = "RaftBot"\nmax_write = 513\n', 6),
    ("bad service uuid", 'name = "RaftBot"\nservice_uuid = "nope"\n', 6),
    ("empty name", 'name = ""\n', 5),
]


def test_ble_config_errors(workdir):
    """`edgelink check` (exit 1) and `edgelink run` (exit 2) refuse each bad ble device
    table with FILE:LINE:COL; the good ones pass check."""
    import re
    for name, body, line in BAD_BLE:
        path = os.path.join(workdir, f"ble-{name.replace(' ', '-')}.toml")
        with open(path, "w") as f:
            f.write(BLE_HEAD + body)
        for cmd, code in (("check", 1), ("run", 2)):
            r = subprocess.run([EDGELINK_BIN, cmd, "-c", path], capture_output=True, text=True, timeout=10)
            assert r.returncode == code, (name, cmd, r.returncode, r.stdout, r.stderr)
            where = rf":{line}:\d+: " if line else r":\d+:\d+: "
            assert re.search(re.escape(path) + where, r.stderr + r.stdout), (name, cmd, r.stderr)
    good = ['address = "aa:bb:cc:dd:ee:01"\n', 'name = "RaftBot"\nadapter = "hci1"\n',
            'address = "AA:BB:CC:DD:EE:01"\nmax_write = 20\n', 'address = "AA:BB:CC:DD:EE:01"\nmax_write = 512\n',
            f'name = "RaftBot"\nservice_uuid = "{RAFT_SERVICE_ALT}"\ncommand_uuid = "{COMMAND_UUID}"\n'
            f'response_uuid = "{RESPONSE_UUID}"\n']
    for i, body in enumerate(good):
        path = os.path.join(workdir, f"ble-good-{i}.toml")
        with open(path, "w") as f:
            f.write(BLE_HEAD + body)
        r = subprocess.run([EDGELINK_BIN, "check", "-c", path], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (body, r.stdout, r.stderr)
