"""systemd integration: the unit file is valid, and the daemon speaks the notify protocol
(READY, WATCHDOG, RELOADING, STOPPING) on the socket systemd gives it."""
import os
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import EDGELINK_BIN, Edgelink, base_config, wait_for

# The template; `cmake --install` and the .deb install it with ExecStart set to their bin directory.
UNIT = os.path.join(os.path.dirname(__file__), "../../systemd/edgelink.service.in")


class NotifySocket:
    """The datagram socket systemd would listen on; collects what the daemon sends."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages = []

    def poll(self):
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def lines(self):
        return [line for m in self.poll() for line in m.split("\n")]

    def close(self):
        self.sock.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies(workdir):
    """systemd-analyze accepts edgelink.service (every directive known, Type=notify, watchdog)."""
    with open(UNIT) as f:
        text = f.read()
    assert "Type=notify" in text and "WatchdogSec=" in text and "DynamicUser=yes" in text
    assert "SupplementaryGroups=dialout" in text and "PrivateDevices=no" in text
    # verify needs the ExecStart binary to exist: point it at the one under test
    unit = os.path.join(workdir, "edgelink.service")
    with open(unit, "w") as f:
        f.write(text.replace("@EDGELINK_BINDIR@/edgelink", os.path.abspath(EDGELINK_BIN)))
    out = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=60)
    problems = [l for l in (out.stdout + out.stderr).splitlines() if "edgelink.service" in l]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_notify_ready_watchdog_reload_stopping(workdir, broker):
    """Under systemd the daemon reports READY once up, pings WATCHDOG, RELOADING/READY on SIGHUP, STOPPING on SIGTERM."""
    notify = NotifySocket(workdir)
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="200000")
    el = Edgelink(workdir, base_config(workdir, broker.port))
    try:
        el.start(env=env)
        wait_for(lambda: "READY=1" in notify.lines(), what="READY=1")
        # WatchdogSec=0.2 s: pinged every 0.1 s from the event loop
        wait_for(lambda: notify.lines().count("WATCHDOG=1") >= 3, timeout=5, what="three WATCHDOG=1 pings")
        before = len(notify.lines())
        el.signal(signal.SIGHUP)
        wait_for(lambda: "RELOADING=1" in notify.lines()[before:], what="RELOADING=1")
        after_reload = notify.lines()[before:]
        wait_for(lambda: "READY=1" in notify.lines()[before + after_reload.index("RELOADING=1"):],
                 what="READY=1 after the reload")
        assert el.stop() == 0
        assert "STOPPING=1" in notify.lines()
    finally:
        el.kill()
        notify.close()


def test_no_watchdog_pings_without_watchdog(workdir, broker):
    """Without WATCHDOG_USEC the daemon sends READY but no WATCHDOG pings."""
    notify = NotifySocket(workdir)
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    env.pop("WATCHDOG_USEC", None)
    el = Edgelink(workdir, base_config(workdir, broker.port))
    try:
        el.start(env=env)
        wait_for(lambda: "READY=1" in notify.lines(), what="READY=1")
        import time
        time.sleep(0.5)
        assert "WATCHDOG=1" not in notify.lines()
        assert el.stop() == 0
    finally:
        el.kill()
        notify.close()
