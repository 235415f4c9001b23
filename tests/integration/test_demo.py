"""The demo app (demo/app.py) works against the daemon as the README walkthrough says:
its points arrive in batches, and it answers an action with Progress then Completed."""
import os
import subprocess
import sys

from conftest import TOPIC, publish, wait_for, wait_online

DEMO_APP = os.path.join(os.path.dirname(__file__), "../../demo/app.py")


def test_demo_app_streams_points_and_answers_actions(make_edgelink, broker, sub):
    """demo/app.py: points reach the broker, an action gets Received, Progress 50, Completed 100."""
    el = make_edgelink()
    wait_online(sub)
    app = subprocess.Popen([sys.executable, DEMO_APP, "--port", str(el.app_port()), "--period", "0.01"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(sub.points("imu")) >= 20, what="20 demo points")
        seqs = [p["sequence"] for p in sub.points("imu")]
        assert seqs[:20] == list(range(1, 21))
        assert {"ax", "ay", "az", "timestamp"} <= set(sub.points("imu")[0])

        publish(broker.port, TOPIC + "/actions", '{"action_id": "d1", "name": "reboot", "payload": "{\\"delay\\": 5}"}')
        wait_for(lambda: [s["state"] for s in sub.statuses() if s["action_id"] == "d1"]
                 == ["Received", "Progress", "Completed"], what="Received, Progress, Completed")
        progress = [s["progress"] for s in sub.statuses() if s["action_id"] == "d1"]
        assert progress == [0, 50, 100]
    finally:
        app.terminate()
        out, _ = app.communicate(timeout=10)
    assert "action d1: reboot" in out


def test_demo_app_reconnects_after_daemon_restart(make_edgelink, broker, sub):
    """demo/app.py reconnects when edgelink restarts and its points keep flowing."""
    el = make_edgelink()
    app = subprocess.Popen([sys.executable, DEMO_APP, "--port", str(el.app_port()), "--period", "0.01"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(sub.points("imu")) >= 10, what="first points")
        assert el.stop() == 0
        el.start()
        count = len(sub.points("imu"))
        wait_for(lambda: len(sub.points("imu")) >= count + 20, timeout=15, what="points after the restart")
    finally:
        app.terminate()
        out, _ = app.communicate(timeout=10)
    assert "reconnecting" in out


def test_shipped_configs_are_valid():
    """config/edgelink.toml and demo/mcu.toml, as the READMEs use them, pass `edgelink check`."""
    from conftest import EDGELINK_BIN
    root = os.path.join(os.path.dirname(__file__), "../..")
    for path in ("config/edgelink.toml", "demo/mcu.toml"):
        r = subprocess.run([EDGELINK_BIN, "check", "-c", os.path.join(root, path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, (path, r.stdout, r.stderr)
