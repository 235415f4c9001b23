"""A mock BlueZ (bluetoothd on the system bus) with a Raft MCU behind it, for edgelink's
BLE transport tests. Only real processes:

* a private dbus-daemon (its own config, a unix socket in the work directory) that plays
  the system bus: edgelink is started with DBUS_SYSTEM_BUS_ADDRESS=<bus_address>
  (BlueZMock.env());
* the real python-dbusmock server owning org.bluez, with the template
  bluez_raft_template.py (adapter hci0, one LE device, its Raft GATT service with the
  command and response characteristics; see that file for what is modelled);
* the real simulator demo/mcu_sim.py (raw HDLC framing, run like test_devices.Sim) on the
  slave end of a pty pair. The master end is bridged inside the mock process: what a
  client writes with WriteValue goes to the simulator, what the simulator sends comes back
  as notifications of at most MTU-12 bytes (ricrest.md §3.5), only while the client has
  StartNotify'd and the device is connected (otherwise it is dropped and counted). This
  process keeps both pty ends open, so the simulator (the powered board) keeps running
  across connects, disconnects and restarts of the mock bluetoothd.

The test controls are D-Bus methods on a private object of the mock
(/org/edgelinktest/mock, org.edgelinktest.BlueZMock), called here with dbus-python.

    mock = BlueZMock(workdir).start()
    ... edgelink started with env=mock.env() ...
    mock.writes(), mock.events(), mock.state(), mock.disconnect_from_device(), ...
    mock.stop()
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tty

import dbus
import pytest

from conftest import wait_for
from test_devices import DEMO, DEVICE_PRIORITY, Sim

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "bluez_raft_template.py")

RAFT_SERVICE = "aa76677e-9cfd-4626-a510-0d305be57c8d"
RAFT_SERVICE_ALT = "da903f65-d5c2-4f4d-a065-d1aade7af874"
COMMAND_UUID = "aa76677e-9cfd-4626-a510-0d305be57c8e"
RESPONSE_UUID = "aa76677e-9cfd-4626-a510-0d305be57c8f"
ADAPTER_PATH = "/org/bluez/hci0"
CTRL_PATH = "/org/edgelinktest/mock"
CTRL_IFACE = "org.edgelinktest.BlueZMock"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">33554432</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"""


class BlueZMock:
    """See the module doc. Parameters:
    address, name, mtu, service_uuid: the device;
    sim_args: extra mcu_sim.py arguments (raw HDLC framing is always used);
    gatt: "always" (the GATT objects stay exported) or "connected" (exported on connect,
          removed at disconnect, as bluetoothd does for an unbonded device without a cache);
    present: False = the device is unknown until discovery is started;
    reachable, powered: initial state (set_reachable, power_adapter);
    drop_on_bledisconnect: the device drops the link after its reply to the URL request
          bledisconnect, as the firmware does;
    mtu_property: False = the characteristics have no MTU property (bluetoothd < 5.62)."""

    def __init__(self, workdir, address="AA:BB:CC:DD:EE:01", name="RaftBot", mtu=517, service_uuid=RAFT_SERVICE,
                 sim_args=(), gatt="always", present=True, reachable=True, powered=True,
                 drop_on_bledisconnect=False, mtu_property=True):
        self.workdir = workdir
        self.address, self.name, self.mtu, self.service_uuid = address, name, mtu, service_uuid
        self.sim_args = tuple(sim_args)
        self.gatt, self.present, self.reachable, self.powered = gatt, present, reachable, powered
        self.drop_on_bledisconnect = drop_on_bledisconnect
        self.mtu_property = mtu_property
        self.device_path = ADAPTER_PATH + "/dev_" + address.replace(":", "_").upper()
        # A unix socket path is limited to 107 bytes: fall back to a short private directory.
        self.sockdir = workdir if len(workdir) < 60 else tempfile.mkdtemp(prefix="bluez-")
        self.socket = os.path.join(self.sockdir, "system_bus_socket")
        self.bus_address = f"unix:path={self.socket}"
        self.sim_log = os.path.join(workdir, "sim.log")
        self.mock_log = os.path.join(workdir, "bluez-mock.log")
        self.daemon = self.mock = self.sim = None
        self.master = self.slave = None
        self.conn = None
        self._old_writes, self._old_events = [], []  # of earlier mock instances (restart_bluez)
        self.restarts = 0

    # ---- processes ---------------------------------------------------------------------
    def start(self):
        conf = os.path.join(self.workdir, "system-bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG.format(socket=self.socket))
        self.daemon = subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={conf}"],
                                       stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.workdir, "dbus-daemon.log"), "ab"))
        wait_for(lambda: os.path.exists(self.socket) or self.daemon.poll() is not None, what="the dbus-daemon socket")
        assert self.daemon.poll() is None, "dbus-daemon exited"
        self.conn = dbus.bus.BusConnection(self.bus_address)

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline, from the first byte on
        self.start_sim()
        self.start_bluez()
        return self

    def start_sim(self):
        self.sim = Sim(os.ttyname(self.slave), "--framing", "hdlc", *self.sim_args, log=self.sim_log)

    def reset_sim(self, *sim_args):
        """The board is power-cycled: the simulator is started again (fresh state)."""
        self.sim.kill()
        if sim_args:
            self.sim_args = tuple(sim_args)
        self.start_sim()

    def start_bluez(self):
        params = dict(pty_fd=self.master, address=self.address, name=self.name, mtu=self.mtu,
                      service_uuid=self.service_uuid, gatt=self.gatt, present=self.present,
                      reachable=self.reachable, powered=self.powered,
                      drop_on_bledisconnect=self.drop_on_bledisconnect, mtu_property=self.mtu_property,
                      demo_dir=DEMO)
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        with open(self.mock_log, "ab") as log:
            log.write(b"---- mock bluetoothd start\n")
        # The mock stands for bluetoothd, the controller and the device's radio: like the
        # simulator (see test_devices.DEVICE_PRIORITY) it runs at a higher priority as root.
        self.mock = subprocess.Popen([*DEVICE_PRIORITY, sys.executable, "-m", "dbusmock", "--system", "--template",
                                      TEMPLATE, "-l", self.mock_log + ".calls", "-p", json.dumps(params)],
                                     env=env, pass_fds=(self.master,), stdout=open(self.mock_log, "ab"),
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.mock.poll() is not None:
                raise AssertionError(f"the mock bluetoothd exited:\n{self.log_tail()}")
            try:
                return self._ctrl().Ping() == "pong"
            except dbus.exceptions.DBusException:
                return False
        wait_for(ready, timeout=20, interval=0.05, what="the mock bluetoothd on the bus")
        return self

    def restart_bluez(self, sig=signal.SIGKILL):
        """bluetoothd dies (org.bluez leaves the bus: NameOwnerChanged) and is started again
        with the device known but not connected. The simulator keeps running."""
        try:
            self._old_writes += self.writes(current_only=True)
            self._old_events += self.events(current_only=True)
        except dbus.exceptions.DBusException:
            pass
        self.mtu = self.state()["mtu"]
        self.mock.send_signal(sig)
        self.mock.wait(10)
        wait_for(lambda: not self.conn.name_has_owner("org.bluez"), what="org.bluez to leave the bus")
        self.restarts += 1
        self.present = True
        self.start_bluez()

    def stop(self):
        for p in (self.mock,):
            if p and p.poll() is None:
                p.kill()
                p.wait(10)
        if self.sim:
            self.sim.kill()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(10)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        if self.sockdir != self.workdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    kill = stop

    def env(self, base=None):
        """The environment for edgelink: the mock bus as its system bus."""
        env = dict(base if base is not None else os.environ)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        return env

    # ---- controls ----------------------------------------------------------------------
    def _ctrl(self):
        # A new proxy each time: after restart_bluez org.bluez has another owner.
        obj = self.conn.get_object("org.bluez", CTRL_PATH, introspect=False)
        return dbus.Interface(obj, CTRL_IFACE)

    def set_mtu(self, n):
        self._ctrl().SetMtu(dbus.UInt16(n))
        self.mtu = n

    def writes(self, current_only=False):
        """[(length, type)] of every accepted WriteValue, in order ("" when no type was given)."""
        now = [(int(n), str(t)) for n, t in self._ctrl().GetWrites()]
        return now if current_only else self._old_writes + now

    def events(self, current_only=False):
        """What clients did, in order: "Connect", "StartNotify", "WriteValue" (a run of writes
        is one entry), "Disconnect", "StopNotify", "StartDiscovery", "bledisconnect", ..."""
        now = [str(e) for e in self._ctrl().GetEvents()]
        return now if current_only else self._old_events + now

    def state(self):
        """connected, notifying, services_resolved, powered, present, mtu, bytes_dropped,
        notifications, bytes_notified, bytes_written, connects, disconnects, ..."""
        return json.loads(str(self._ctrl().GetState()))

    def notifying(self):
        return self.state()["notifying"]

    def connected(self):
        return self.state()["connected"]

    def disconnect_from_device(self):
        """The device drops the link (out of range): ServicesResolved false, Notifying false,
        Connected false."""
        self._ctrl().LinkLoss()

    def remove_device(self):
        """bluetoothd forgets the device: link down, then InterfacesRemoved for the GATT
        objects and the device."""
        self._ctrl().RemoveDevice()

    def add_device(self):
        """The device is seen again: InterfacesAdded for it (and its GATT objects)."""
        self._ctrl().AddDevice()

    def set_reachable(self, on):
        """False: Connect() fails after a moment, as for a device out of range."""
        self._ctrl().SetReachable(bool(on))

    def fail_writes(self, n=1):
        """The next n WriteValue calls fail (org.bluez.Error.Failed, an ATT error) while
        the link stays up."""
        self._ctrl().FailWrites(dbus.UInt32(n))

    def power_adapter(self, on):
        self._ctrl().SetPowered(bool(on))

    def sim_stderr(self):
        try:
            with open(self.sim_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=3000):
        try:
            with open(self.mock_log, errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def pid(self):
        return self.mock.pid


@pytest.fixture
def make_bluez(workdir):
    """make_bluez(**BlueZMock kwargs) -> a started BlueZMock; everything stopped at teardown."""
    mocks = []

    def make(**kw):
        m = BlueZMock(workdir, **kw)
        mocks.append(m)
        return m.start()

    yield make
    for m in reversed(mocks):
        m.stop()
