# -*- coding: utf-8 -*-
"""python-dbusmock template: a BlueZ 5 bluetoothd with one adapter (hci0) and one Raft
MCU reachable over BLE GATT (spec/ricrest.md §3.5), for edgelink's BLE transport tests.

Loaded by tests/integration/bluez_mock.py as
    python3 -m dbusmock --system --template THIS_FILE -p '{...json...}'
with DBUS_SYSTEM_BUS_ADDRESS pointing at a private dbus-daemon. Parameters (JSON):
    pty_fd            the master end of the pty whose other end the simulator (demo/mcu_sim.py)
                      has open; inherited from the harness (pass_fds)
    address, name     the device's Address and advertised Name/Alias
    mtu               ATT MTU (the characteristics' MTU property)
    mtu_property      false: no MTU property (bluetoothd before 5.62); the link's MTU is
                      still `mtu`
    service_uuid      the Raft command/response service UUID
    gatt              "always": the GATT objects stay exported (a cached database);
                      "connected": exported when a connection is made, before
                      ServicesResolved, and removed at disconnect (BlueZ without a cache for
                      an unbonded device)
    present           false: the device is not known yet; it appears (InterfacesAdded)
                      once discovery is started, as after an LE scan
    reachable         false: Connect() fails (le-connection-abort-by-local)
    powered           the adapter's Powered
    drop_on_bledisconnect  true: like the firmware, the device drops the link right after
                      its reply to the RICREST URL request `bledisconnect` was notified
    demo_dir          where mcu_sim.py lives (its HDLC decoder spots `bledisconnect` in the
                      writes: the event "bledisconnect")

What is faithful to BlueZ (org.bluez.Device1 / GattService1 / GattCharacteristic1 as
bluetoothd exports them): an ObjectManager at / with InterfacesAdded/Removed; Connect()
sets Connected then (later, from the main loop) ServicesResolved; a link loss or
Disconnect() sends ServicesResolved false, Connected false. WriteValue, ReadValue,
StartNotify and StopNotify answer as bluetoothd's gatt-client.c does: not connected ->
org.bluez.Error.Failed "Not connected"; a write command above MTU-3 -> Failed "Failed to
initiate write" (a write request above MTU-3 is a long write, up to 512 bytes, else
InvalidValueLength); StartNotify makes a per-client session that outlives a disconnect
while the GATT objects exist (gatt="always", BlueZ's default Cache=always: Notifying stays
true, the session is registered again at the next connection, and a StartNotify between
is InProgress; once registered a repeated StartNotify succeeds); the session ends with
StopNotify, with its client leaving the bus, or with the objects (gatt="connected").
Notifications are PropertiesChanged(GattCharacteristic1, {Value: ay}) on the response
characteristic, at most MTU-12 bytes each, and only while a session is registered on
the current connection (the device's CCCD is written); otherwise the device's output is
dropped and counted (bytes_dropped). WriteValue
is answered from the main loop, so a client that sends the next write before the reply to
the previous one shows up in the counter max_writes_in_flight.

Test controls live on /org/edgelinktest/mock, interface org.edgelinktest.BlueZMock (not
part of GetManagedObjects).
"""
import json
import os
import sys
import time

import dbus
import dbus.service
from gi.repository import GLib

from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5 as _bluez5

BUS_NAME = "org.bluez"
MAIN_OBJ = "/"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
CTRL_IFACE = "org.edgelinktest.BlueZMock"
CTRL_PATH = "/org/edgelinktest/mock"

COMMAND_UUID = "aa76677e-9cfd-4626-a510-0d305be57c8e"
RESPONSE_UUID = "aa76677e-9cfd-4626-a510-0d305be57c8f"
ADAPTER_PATH = "/org/bluez/hci0"

ERR = "org.bluez.Error."


def _err(name, text):
    return dbus.exceptions.DBusException(text, name=ERR + name)


class State:
    """Everything the mock knows, one instance per process."""

    def __init__(self, params):
        self.fd = int(params["pty_fd"])
        self.address = params.get("address", "AA:BB:CC:DD:EE:01")
        self.name = params.get("name", "RaftBot")
        self.mtu = int(params.get("mtu", 517))
        self.mtu_property = bool(params.get("mtu_property", True))
        self.service_uuid = params.get("service_uuid", "aa76677e-9cfd-4626-a510-0d305be57c8d")
        self.gatt_mode = params.get("gatt", "always")
        self.present = bool(params.get("present", True))
        self.reachable = bool(params.get("reachable", True))
        self.powered = bool(params.get("powered", True))
        self.drop_on_bledisconnect = bool(params.get("drop_on_bledisconnect", False))
        self.dev_path = ADAPTER_PATH + "/dev_" + self.address.replace(":", "_").upper()
        self.svc_path = self.dev_path + "/service0010"
        self.cmd_path = self.svc_path + "/char0011"
        self.rsp_path = self.svc_path + "/char0012"
        self.connected = False
        # Notify sessions as bluetoothd keeps them (gatt-client.c): one per D-Bus client,
        # sender -> [name watch, registered on the current connection (notify_id != 0)].
        # They outlive a disconnect while the GATT objects exist (Cache=always) and are
        # registered again (the CCCD written) at the next connection; they end with
        # StopNotify, with their client leaving the bus, or with the objects.
        self.sessions = {}
        self.notifying = False        # the Notifying property (chrc->notifying)
        self.writes = []              # (length, type)
        self.events = []              # "Connect", "StartNotify", "WriteValue" (runs collapsed), ...
        self.counters = dict(bytes_written=0, notifications=0, bytes_notified=0, bytes_dropped=0,
                             connects=0, connect_failures=0, disconnects=0, link_losses=0, write_errors=0,
                             max_writes_in_flight=0)
        self.resolve_source = None
        self.in_flight = 0
        self.fail_writes = 0          # FailWrites: the next k WriteValue calls fail
        # The simulator's HDLC decoder, to spot the URL request bledisconnect in the writes.
        sys.path.insert(0, params["demo_dir"])
        import mcu_sim  # pylint: disable=import-outside-toplevel
        self.decoder = mcu_sim.HdlcDecoder()
        self.out_decoder = mcu_sim.HdlcDecoder(max_len=1 << 20)  # the device's output, while drop_after_reply
        self.drop_after_reply = False

    def event(self, what):
        if what == "WriteValue" and self.events and self.events[-1] == "WriteValue":
            return
        self.events.append(what)


S = None  # the State
ROOT = None  # the root mock object (ObjectManager)
CONTROL = None


def _emit_props_changed(obj, iface, changed, invalidated=()):
    sig = dbus.lowlevel.SignalMessage(obj.path, dbus.PROPERTIES_IFACE, "PropertiesChanged")
    sig.append(iface, dbus.Dictionary(changed, signature="sv"), dbus.Array(invalidated, signature="s"),
               signature="sa{sv}as")
    for location in obj.locations:
        location[0].send_message(sig)


def _set_props(path, iface, changed):
    obj = mockobject.objects.get(path)
    if obj is None:
        return
    for k, v in changed.items():
        obj.props[iface][k] = v
    _emit_props_changed(obj, iface, changed)


def _interfaces_added(path):
    obj = mockobject.objects[path]
    ROOT.EmitSignal(OBJECT_MANAGER_IFACE, "InterfacesAdded", "oa{sa{sv}}",
                    [dbus.ObjectPath(path), dbus.Dictionary(obj.props, signature="sa{sv}")])


def _interfaces_removed(path):
    obj = mockobject.objects[path]
    ROOT.EmitSignal(OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas",
                    [dbus.ObjectPath(path), dbus.Array(list(obj.props.keys()), signature="s")])


def _remove(path):
    if path in mockobject.objects:
        _interfaces_removed(path)
        mockobject.objects[path].remove_from_connection()
        del mockobject.objects[path]


def _register(cls, path, iface, props):
    obj = cls(ROOT.bus_name, path, iface, props)
    obj.logfile = ROOT.logfile
    obj.is_logfile_owner = False
    obj.object_manager = ROOT
    mockobject.objects[path] = obj
    _interfaces_added(path)
    return obj


# ---- objects ---------------------------------------------------------------------------

class Adapter(mockobject.DBusMockObject):
    @dbus.service.method(ADAPTER_IFACE, in_signature="", out_signature="")
    def StartDiscovery(self):
        S.event("StartDiscovery")
        if not S.powered:
            raise _err("NotReady", "Resource Not Ready")
        if self.props[ADAPTER_IFACE]["Discovering"]:
            raise _err("InProgress", "Operation already in progress")
        _set_props(self.path, ADAPTER_IFACE, {"Discovering": dbus.Boolean(True, variant_level=1)})
        if not S.present:
            # an advertisement is seen a little later
            GLib.timeout_add(200, lambda: (add_device(), False)[1])

    @dbus.service.method(ADAPTER_IFACE, in_signature="", out_signature="")
    def StopDiscovery(self):
        S.event("StopDiscovery")
        if not self.props[ADAPTER_IFACE]["Discovering"]:
            raise _err("Failed", "No discovery started")
        _set_props(self.path, ADAPTER_IFACE, {"Discovering": dbus.Boolean(False, variant_level=1)})

    @dbus.service.method(ADAPTER_IFACE, in_signature="a{sv}", out_signature="")
    def SetDiscoveryFilter(self, flt):
        S.event("SetDiscoveryFilter")
        for key in flt:
            if key not in ("UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"):
                raise _err("InvalidArguments", "Invalid arguments in method call")

    @dbus.service.method(ADAPTER_IFACE, in_signature="", out_signature="as")
    def GetDiscoveryFilters(self):
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]

    @dbus.service.method(ADAPTER_IFACE, in_signature="o", out_signature="")
    def RemoveDevice(self, path):
        S.event("RemoveDevice")
        if path != S.dev_path or path not in mockobject.objects:
            raise _err("DoesNotExist", "Does Not Exist")
        remove_device()


class Device(mockobject.DBusMockObject):
    @dbus.service.method(DEVICE_IFACE, in_signature="", out_signature="", async_callbacks=("ok", "fail"))
    def Connect(self, ok, fail):
        S.event("Connect")
        if not S.powered:
            S.counters["connect_failures"] += 1
            return fail(_err("NotReady", "Resource Not Ready"))
        if S.connected:
            return ok()  # LE: already connected is success
        if not S.reachable:
            S.counters["connect_failures"] += 1
            # the controller gives up on the connection attempt after a while
            GLib.timeout_add(300, lambda: (fail(_err("Failed", "le-connection-abort-by-local")), False)[1])
            return None
        S.connected = True
        S.counters["connects"] += 1
        _set_props(S.dev_path, DEVICE_IFACE, {"Connected": dbus.Boolean(True, variant_level=1)})
        _register_sessions()  # btd_gatt_client_connected: sessions of the cached objects
        ok()
        # GATT discovery (or the cache) after the reply, then ServicesResolved
        S.resolve_source = GLib.timeout_add(50, _resolve_services)
        return None

    @dbus.service.method(DEVICE_IFACE, in_signature="", out_signature="")
    def Disconnect(self):
        S.event("Disconnect")
        if S.connected:
            link_down(local=True)

    @dbus.service.method(DEVICE_IFACE, in_signature="s", out_signature="")
    def ConnectProfile(self, uuid):
        raise _err("NotAvailable", "Operation currently not available")

    @dbus.service.method(DEVICE_IFACE, in_signature="s", out_signature="")
    def DisconnectProfile(self, uuid):
        raise _err("NotSupported", "Operation is not supported")

    @dbus.service.method(DEVICE_IFACE, in_signature="", out_signature="")
    def Pair(self):
        raise _err("AuthenticationFailed", "Authentication Failed")

    @dbus.service.method(DEVICE_IFACE, in_signature="", out_signature="")
    def CancelPairing(self):
        raise _err("DoesNotExist", "Does Not Exist")


class Service(mockobject.DBusMockObject):
    pass


class Characteristic(mockobject.DBusMockObject):
    """The command or the response characteristic (self.role)."""

    role = None

    @dbus.service.method(CHAR_IFACE, in_signature="aya{sv}", out_signature="", byte_arrays=True,
                         async_callbacks=("ok", "fail"))
    def WriteValue(self, value, options, ok, fail):
        if self.role != "command":
            raise _err("NotPermitted", "Write not permitted")
        S.event("WriteValue")
        wtype = str(options.get("type", ""))
        try:
            _check_write(len(value), wtype.lower())
        except dbus.exceptions.DBusException:
            S.counters["write_errors"] += 1
            raise
        S.writes.append((len(value), wtype))
        S.counters["bytes_written"] += len(value)
        data = bytes(value)
        view = memoryview(data)
        while view:
            n = os.write(S.fd, view)
            view = view[n:]
        for frame in S.decoder.feed(data):
            if len(frame) > 3 and frame[2] == 0 and frame[3:].split(b"\0", 1)[0].lower() == b"bledisconnect":
                S.event("bledisconnect")
                if S.drop_on_bledisconnect:  # the device answers, then drops the link (_on_pty)
                    S.drop_after_reply = True
        # The reply goes out from the main loop, after any call that is already waiting on
        # the bus: a client that does not wait for it shows up as writes in flight.
        S.in_flight += 1
        S.counters["max_writes_in_flight"] = max(S.counters["max_writes_in_flight"], S.in_flight)
        GLib.idle_add(_write_done, ok)

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="ay", byte_arrays=True)
    def ReadValue(self, options):
        if not S.connected:
            raise _err("Failed", "Not connected")
        if self.role != "response":
            raise _err("NotPermitted", "Read not permitted")
        return dbus.ByteArray(b"")

    @dbus.service.method(CHAR_IFACE, in_signature="", out_signature="", sender_keyword="sender")
    def StartNotify(self, sender=None):
        if self.role != "response":
            raise _err("NotSupported", "Operation is not supported")
        S.event("StartNotify")
        session = S.sessions.get(sender)
        if session is not None:  # each client has one session
            if session[1]:
                return  # already registered: success
            raise _err("InProgress", "In Progress")  # registered again at the next connection
        watch = ROOT.bus_name.get_bus().watch_name_owner(sender, lambda owner: _client_gone(sender, owner))
        S.sessions[sender] = [watch, False]
        if S.connected:  # else success now, registered when a connection is made
            _register_sessions()

    @dbus.service.method(CHAR_IFACE, in_signature="", out_signature="", sender_keyword="sender")
    def StopNotify(self, sender=None):
        if self.role != "response":
            raise _err("NotSupported", "Operation is not supported")
        S.event("StopNotify")
        if sender not in S.sessions:
            raise _err("Failed", "No notify session started")
        _drop_session(sender)
        _update_notifying()

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="hq")
    def AcquireWrite(self, options):
        raise _err("NotSupported", "Operation is not supported")

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="hq")
    def AcquireNotify(self, options):
        raise _err("NotSupported", "Operation is not supported")


class Control(dbus.service.Object):
    """Test controls; not a BlueZ object."""

    methods = {}
    interface = CTRL_IFACE

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="s")
    def Ping(self):
        return "pong"

    @dbus.service.method(CTRL_IFACE, in_signature="q", out_signature="")
    def SetMtu(self, mtu):
        S.mtu = int(mtu)
        for path in (S.cmd_path, S.rsp_path) if S.mtu_property else ():
            _set_props(path, CHAR_IFACE, {"MTU": dbus.UInt16(S.mtu, variant_level=1)})

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="a(us)")
    def GetWrites(self):
        return dbus.Array([dbus.Struct((dbus.UInt32(n), t), signature="us") for n, t in S.writes], signature="(us)")

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="as")
    def GetEvents(self):
        return dbus.Array(S.events, signature="s")

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="s")
    def GetState(self):
        st = dict(S.counters, connected=S.connected, notifying=S.notifying, subscribed=_cccd(),
                  sessions=len(S.sessions), powered=S.powered,
                  present=S.dev_path in mockobject.objects, reachable=S.reachable, mtu=S.mtu,
                  services_resolved=bool(S.dev_path in mockobject.objects and
                                         mockobject.objects[S.dev_path].props[DEVICE_IFACE]["ServicesResolved"]),
                  gatt_exported=S.svc_path in mockobject.objects, pid=os.getpid())
        return json.dumps(st)

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="")
    def LinkLoss(self):
        if S.connected:
            link_down(local=False)

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="")
    def RemoveDevice(self):
        remove_device()

    @dbus.service.method(CTRL_IFACE, in_signature="", out_signature="")
    def AddDevice(self):
        add_device()

    @dbus.service.method(CTRL_IFACE, in_signature="b", out_signature="")
    def SetPowered(self, on):
        set_powered(bool(on))

    @dbus.service.method(CTRL_IFACE, in_signature="u", out_signature="")
    def FailWrites(self, n):
        S.fail_writes = int(n)

    @dbus.service.method(CTRL_IFACE, in_signature="b", out_signature="")
    def SetReachable(self, on):
        S.reachable = bool(on)


# ---- behaviour -------------------------------------------------------------------------

def _write_done(ok):
    S.in_flight -= 1
    ok()
    return False


def _check_write(n, wtype):
    """What bluetoothd's characteristic_write_value answers for an n-byte write of this
    type to the command characteristic (flags write and write-without-response)."""
    if not S.connected:
        raise _err("Failed", "Not connected")
    if S.fail_writes > 0:  # an ATT error from the device (test control FailWrites)
        S.fail_writes -= 1
        raise _err("Failed", "Operation failed with ATT error: 0x0e")
    if wtype in ("", "request"):  # write request, or a long write above MTU-3
        if n > 512:
            raise _err("InvalidValueLength", "Invalid Attribute Value Length")  # ATT error 0x0d
        return
    if wtype != "command":
        raise _err("NotSupported", "Operation is not supported")
    if n > S.mtu - 3:  # the ATT PDU would not fit: bt_att_send refuses it
        raise _err("Failed", "Failed to initiate write")


def _cccd():
    """The device sends notifications: a session is registered on this connection."""
    return S.connected and any(active for _, active in S.sessions.values())


def _register_sessions():
    """Every session is (re)registered on the connection; Notifying turns true."""
    for session in S.sessions.values():
        session[1] = True
    if S.sessions and not S.notifying and S.rsp_path in mockobject.objects:
        S.notifying = True
        _set_props(S.rsp_path, CHAR_IFACE, {"Notifying": dbus.Boolean(True, variant_level=1)})


def _update_notifying():
    if S.notifying and not any(active for _, active in S.sessions.values()):
        S.notifying = False
        _set_props(S.rsp_path, CHAR_IFACE, {"Notifying": dbus.Boolean(False, variant_level=1)})


def _drop_session(sender):
    session = S.sessions.pop(sender, None)
    if session is not None:
        session[0].cancel()


def _client_gone(sender, owner):
    if not owner and sender in S.sessions:
        S.event("NotifyClientGone")
        _drop_session(sender)
        _update_notifying()


def _resolve_services():
    S.resolve_source = None
    if not S.connected:
        return False
    if S.gatt_mode == "connected":
        add_gatt()
    _set_props(S.dev_path, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True, variant_level=1)})
    return False


def link_down(local):
    """The connection ends: asked for (Disconnect) or lost (out of range, power off)."""
    if S.resolve_source is not None:
        GLib.source_remove(S.resolve_source)
        S.resolve_source = None
    S.connected = False
    S.counters["disconnects"] += 1
    if not local:
        S.counters["link_losses"] += 1
    _set_props(S.dev_path, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(False, variant_level=1)})
    for session in S.sessions.values():  # kept, but no longer registered (Notifying unchanged)
        session[1] = False
    S.decoder.buf.clear()
    S.out_decoder.buf.clear()
    S.drop_after_reply = False
    if S.gatt_mode == "connected":
        remove_gatt()
    _set_props(S.dev_path, DEVICE_IFACE, {"Connected": dbus.Boolean(False, variant_level=1)})
    return False


def set_powered(on):
    if on == S.powered:
        return
    if not on and S.connected:
        link_down(local=False)
    S.powered = on
    adapter = mockobject.objects[ADAPTER_PATH]
    changed = {"Powered": dbus.Boolean(on, variant_level=1)}
    if not on and adapter.props[ADAPTER_IFACE]["Discovering"]:
        changed["Discovering"] = dbus.Boolean(False, variant_level=1)
    _set_props(ADAPTER_PATH, ADAPTER_IFACE, changed)


def char_props(uuid, flags, extra):
    props = {
        "UUID": dbus.String(uuid, variant_level=1),
        "Service": dbus.ObjectPath(S.svc_path, variant_level=1),
        "Value": dbus.Array([], signature="y", variant_level=1),
        "Flags": dbus.Array(flags, signature="s", variant_level=1),
    }
    if S.mtu_property:
        props["MTU"] = dbus.UInt16(S.mtu, variant_level=1)
    props.update(extra)
    return props


def add_gatt():
    if S.svc_path in mockobject.objects:
        return
    _register(Service, S.svc_path, SERVICE_IFACE, {
        "UUID": dbus.String(S.service_uuid, variant_level=1),
        "Device": dbus.ObjectPath(S.dev_path, variant_level=1),
        "Primary": dbus.Boolean(True, variant_level=1),
        "Includes": dbus.Array([], signature="o", variant_level=1),
        "Handle": dbus.UInt16(0x0010, variant_level=1),
    })
    cmd = _register(Characteristic, S.cmd_path, CHAR_IFACE, char_props(
        COMMAND_UUID, ["write", "write-without-response"],
        {"WriteAcquired": dbus.Boolean(False, variant_level=1), "Handle": dbus.UInt16(0x0011, variant_level=1)}))
    cmd.role = "command"
    rsp = _register(Characteristic, S.rsp_path, CHAR_IFACE, char_props(
        RESPONSE_UUID, ["read", "notify", "indicate"],
        {"Notifying": dbus.Boolean(S.notifying, variant_level=1),
         "NotifyAcquired": dbus.Boolean(False, variant_level=1), "Handle": dbus.UInt16(0x0012, variant_level=1)}))
    rsp.role = "response"


def remove_gatt():
    for sender in list(S.sessions):  # the notify sessions go with the characteristic
        _drop_session(sender)
    S.notifying = False
    for path in (S.rsp_path, S.cmd_path, S.svc_path):  # children first, as bluetoothd does
        _remove(path)


def add_device():
    if S.dev_path in mockobject.objects:
        return
    _register(Device, S.dev_path, DEVICE_IFACE, {
        "Address": dbus.String(S.address, variant_level=1),
        "AddressType": dbus.String("public", variant_level=1),
        "Name": dbus.String(S.name, variant_level=1),
        "Alias": dbus.String(S.name, variant_level=1),
        "Appearance": dbus.UInt16(0, variant_level=1),
        "UUIDs": dbus.Array([S.service_uuid], signature="s", variant_level=1),
        "Paired": dbus.Boolean(False, variant_level=1),
        "Bonded": dbus.Boolean(False, variant_level=1),
        "Connected": dbus.Boolean(False, variant_level=1),
        "Trusted": dbus.Boolean(False, variant_level=1),
        "Blocked": dbus.Boolean(False, variant_level=1),
        "LegacyPairing": dbus.Boolean(False, variant_level=1),
        "Adapter": dbus.ObjectPath(ADAPTER_PATH, variant_level=1),
        "RSSI": dbus.Int16(-60, variant_level=1),
        "ServicesResolved": dbus.Boolean(False, variant_level=1),
    })
    if S.gatt_mode == "always":
        add_gatt()


def remove_device():
    """The device goes away (bluetoothd forgets it): the link drops first, then the GATT
    objects and the device are removed (InterfacesRemoved, children first)."""
    if S.dev_path not in mockobject.objects:
        return
    if S.connected:
        link_down(local=False)
    remove_gatt()
    _remove(S.dev_path)


def _on_pty(fd, condition):
    if condition & (GLib.IO_HUP | GLib.IO_ERR | GLib.IO_NVAL):
        if not condition & GLib.IO_IN:
            time.sleep(0.01)  # the simulator end is closed for the moment; keep watching
            return True
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return True
    except OSError:
        time.sleep(0.01)
        return True
    if not data:
        return True
    if not (_cccd() and S.rsp_path in mockobject.objects):
        S.counters["bytes_dropped"] += len(data)  # the device does not send before the CCCD is written
        return True
    rsp = mockobject.objects[S.rsp_path]
    step = max(1, S.mtu - 12)
    for i in range(0, len(data), step):
        chunk = data[i:i + step]
        value = dbus.ByteArray(chunk, variant_level=1)
        rsp.props[CHAR_IFACE]["Value"] = dbus.ByteArray(chunk, variant_level=1)
        _emit_props_changed(rsp, CHAR_IFACE, {"Value": value})
        S.counters["notifications"] += 1
        S.counters["bytes_notified"] += len(chunk)
    if S.drop_after_reply:
        for frame in S.out_decoder.feed(data):
            if b'"req":"bledisconnect"' in frame:
                S.drop_after_reply = False
                S.event("link dropped after bledisconnect")
                GLib.idle_add(lambda: (S.connected and link_down(local=False), False)[1])
    return True


def load(mock, parameters):
    global S, ROOT, CONTROL  # pylint: disable=global-statement
    S = State(parameters)
    ROOT = mock
    _bluez5.load(mock, {})  # /org/bluez: AgentManager1, ProfileManager1

    adapter = _register(Adapter, ADAPTER_PATH, ADAPTER_IFACE, {
        "Address": dbus.String("00:1A:7D:DA:71:13", variant_level=1),
        "AddressType": dbus.String("public", variant_level=1),
        "Name": dbus.String("edgelink-gw", variant_level=1),
        "Alias": dbus.String("edgelink-gw", variant_level=1),
        "Class": dbus.UInt32(0, variant_level=1),
        "Powered": dbus.Boolean(S.powered, variant_level=1),
        "Discoverable": dbus.Boolean(False, variant_level=1),
        "Pairable": dbus.Boolean(True, variant_level=1),
        "Discovering": dbus.Boolean(False, variant_level=1),
        "UUIDs": dbus.Array([], signature="s", variant_level=1),
        "Roles": dbus.Array(["central", "peripheral"], signature="s", variant_level=1),
    })
    del adapter
    if S.present:
        add_device()
    CONTROL = Control(mock.bus_name, CTRL_PATH)
    GLib.io_add_watch(S.fd, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, _on_pty)
