"""The broker link: no loss across broker restarts, reconnect backoff, presence and last
will, resubscription, username/password and TLS (spec/mqtt.md, spec/config.md [broker])."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (PRESENCE, TOPIC, App, ConfiguredBroker, DurableSubscriber, Edgelink, Subscriber, base_config, free_port,
                      publish_many, retained, wait_for, wait_online)
from tls_certs import make_pki





def start_edgelink(workdir, owned, port, broker=None, **overrides):
    """Edgelink against `port` with base_config + overrides; `broker` keys are merged into [broker]."""
    cfg = base_config(workdir, port, **overrides)
    cfg["broker"].update(broker or {})
    el = Edgelink(workdir, cfg)
    owned.append(el)
    return el.start()


def link(el):
    return el.status()["broker"]


def wait_connected(el, connects=1, timeout=10.0):
    wait_for(lambda: (lambda b: b["state"] == "connected" and b["connects"] >= connects)(link(el)), timeout,
             what=f"edgelink connected (connects >= {connects})")


def stream(app, seqs, interval):
    """The app streams points at a steady pace."""
    for s in seqs:
        app.point("imu", s, v=s)
        time.sleep(interval)


def wait_all_points(sub, n, timeout=20.0):
    """Waits until sequences 1..n all arrived; checks each stream's batches came in order."""
    wait_for(lambda: set(range(1, n + 1)) <= {p["sequence"] for p in sub.points("imu")}, timeout,
             what=f"all {n} points at the subscriber")
    seqs = [p["sequence"] for p in sub.points("imu")]
    assert set(seqs) == set(range(1, n + 1))
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen), "batches of one stream arrived out of order"
    return seqs


def durable_setup(workdir, owned, client_id, **imu):
    """A persistent broker, a durable subscriber to the event topics, and a connected edgelink
    (stream imu with the given settings) with an app client."""
    broker = ConfiguredBroker(workdir, persistent=True).start()
    owned.append(broker)
    sub = DurableSubscriber(broker.port, topics=(TOPIC + "/events/#",), client_id=client_id)
    owned.append(sub)
    el = start_edgelink(workdir, owned, broker.port, streams={"imu": imu})
    wait_connected(el)
    return broker, sub, el, App(el.app_port())


def test_broker_restart_while_streaming_loses_nothing(workdir, owned):
    """Points streamed before, during and after a 2 s broker outage all reach a subscriber; status counts the reconnect."""
    broker, sub, el, app = durable_setup(workdir, owned, "restart-sub", batch_size=10, flush_period=0.2)
    stream(app, range(1, 151), 0.005)
    broker.stop()
    assert os.path.exists(broker.store + "mosquitto.db"), "the broker must keep the subscriber's session"
    stream(app, range(151, 451), 0.006)
    assert link(el)["state"] != "connected"
    assert el.status()["outbox"]["queued"] > 0
    broker.start()
    stream(app, range(451, 601), 0.005)
    wait_all_points(sub, 600)
    b = link(el)
    assert b["disconnects"] >= 1 and b["connects"] >= 2 and b["state"] == "connected"
    wait_for(lambda: el.status()["outbox"]["queued"] + el.status()["outbox"]["in_flight"] == 0,
             what="the outbox drained")
    assert el.proc.poll() is None


def test_repeated_broker_restarts_under_load_lose_nothing(workdir, owned):
    """Three broker restarts while the app streams: every sequence still arrives."""
    broker, sub, el, app = durable_setup(workdir, owned, "restarts-sub", batch_size=5, flush_period=0.1)
    seq = 0
    for cycle in range(3):
        stream(app, range(seq + 1, seq + 61), 0.003)
        seq += 60
        broker.stop()
        stream(app, range(seq + 1, seq + 61), 0.006)
        seq += 60
        broker.start()
        wait_connected(el, connects=cycle + 2)
    stream(app, range(seq + 1, seq + 51), 0.002)
    seq += 50
    wait_all_points(sub, seq)
    b = link(el)
    assert b["connects"] == 4 and b["disconnects"] == 3


def test_reconnect_backs_off_while_broker_is_down(make_edgelink, broker):
    """While the broker is down connect_failures grows with exponential backoff (no tight loop), edgelink keeps running, and it reconnects when the broker returns."""
    el = make_edgelink(streams={"imu": {"batch_size": 2, "flush_period": 1}})
    wait_connected(el)
    broker.stop()
    t0 = time.monotonic()
    wait_for(lambda: link(el)["connect_failures"] >= 5, timeout=10, what="five connect failures")
    elapsed = time.monotonic() - t0
    # Delays of 0.2 s doubling up to 1 s, jittered to [d/2, d]: five attempts need >= 1.7 s.
    assert elapsed >= 1.5, f"five reconnect attempts in {elapsed:.2f}s: no backoff"
    f5 = link(el)["connect_failures"]
    wait_for(lambda: link(el)["connect_failures"] > f5, timeout=3, what="failures keep growing (capped delay)")
    b = link(el)
    assert b["state"] != "connected" and b["connects"] == 1 and b["disconnects"] == 1 and b["last_error"]
    assert el.proc.poll() is None

    app = App(el.app_port())
    app.point("imu", 1)
    app.point("imu", 2)
    wait_for(lambda: el.status()["outbox"]["queued"] == 1, what="a batch held while disconnected")
    broker.start()
    wait_connected(el, connects=2, timeout=5)
    wait_for(lambda: el.status()["outbox"]["acked"] >= 1, what="the held batch acknowledged")
    assert el.status()["outbox"]["queued"] == 0


def test_presence_online_retained_and_last_will_on_sigkill(make_edgelink, broker, sub):
    """After connecting edgelink's presence is a retained "online"; killed with SIGKILL, the broker publishes the will "offline"."""
    el = make_edgelink(broker={"host": "127.0.0.1", "port": broker.port, "keep_alive": 2, "reconnect_min": 0.2,
                               "reconnect_max": 1})
    wait_for(lambda: sub.on("/presence"), what="presence")
    assert retained(broker.port, PRESENCE) == [(PRESENCE, b"online", True)]
    el.proc.kill()
    el.proc.wait(5)
    t0 = time.monotonic()
    wait_for(lambda: len(sub.on("/presence")) >= 2, timeout=5, what="the last will")
    assert time.monotonic() - t0 < 2.0, "the will should fire when the socket closes, not after keep alive"
    assert [p for _, p in sub.on("/presence")] == [b"online", b"offline"]
    assert retained(broker.port, PRESENCE) == [(PRESENCE, b"offline", True)]


def test_orderly_stop_publishes_retained_offline(make_edgelink, broker, sub):
    """SIGTERM makes edgelink publish a retained "offline" itself and exit 0."""
    el = make_edgelink()
    wait_for(lambda: sub.on("/presence"), what="presence online")
    assert el.stop() == 0
    wait_for(lambda: len(sub.on("/presence")) >= 2, timeout=5, what="presence offline")
    assert [p for _, p in sub.on("/presence")] == [b"online", b"offline"]


def test_actions_reach_app_after_broker_restart(make_edgelink, broker):
    """After the broker restarts edgelink subscribes again, so actions still reach the app and Received is published."""
    el = make_edgelink()
    wait_connected(el)
    app = App(el.app_port())
    broker.stop()
    wait_for(lambda: link(el)["state"] != "connected", what="disconnect noticed")
    broker.start()
    wait_connected(el, connects=2)
    # A fresh broker has no retained "online": seeing one means the new session subscribed.
    sub = Subscriber(broker.port)
    try:
        wait_for(lambda: sub.on("/presence"), what="presence online from the new session")
        publish_many(broker.port, TOPIC + "/actions", [json.dumps({"action_id": "after", "name": "reboot",
                                                                   "payload": "{}"})])
        assert app.read_line() == {"action_id": "after", "name": "reboot", "payload": "{}"}
        wait_for(lambda: [s["state"] for s in sub.statuses()] == ["Received"], what="Received")
    finally:
        sub.close()


# --- username / password ---------------------------------------------------------


def password_broker(workdir, owned, user="gw", password="s3cret"):
    pwfile = os.path.join(workdir, "mosquitto.passwd")
    subprocess.run(["mosquitto_passwd", "-b", "-c", pwfile, user, password], check=True, capture_output=True)
    os.chmod(pwfile, 0o644)  # mosquitto may drop privileges before reading it
    broker = ConfiguredBroker(workdir, password_file=pwfile).start()
    owned.append(broker)
    return broker


@pytest.mark.parametrize("how", ["password", "password_file"])
def test_credentials_accepted(workdir, owned, how):
    """With the right user name and password (inline or from password_file) edgelink connects and publishes."""
    broker = password_broker(workdir, owned)
    sub = DurableSubscriber(broker.port, topics=(TOPIC + "/#",), username="gw", password="s3cret")
    owned.append(sub)
    creds = {"username": "gw"}
    if how == "password":
        creds["password"] = "s3cret"
    else:
        path = os.path.join(workdir, "edgelink.pass")
        with open(path, "w") as f:
            f.write("s3cret\n")  # the final newline is not part of the secret
        creds["password_file"] = path
    el = start_edgelink(workdir, owned, broker.port, broker=creds)
    wait_connected(el)
    app = App(el.app_port())
    for s in range(1, 11):
        app.point("imu", s)
    wait_for(lambda: len(sub.points("imu")) == 10, what="a batch through the authenticated link")
    assert link(el)["connect_failures"] == 0
    assert "s3cret" not in el.log_text() + json.dumps(el.status()), "the password must not be logged or shown"


@pytest.mark.parametrize("creds", [{"username": "gw", "password": "wrong"}, {"username": "nobody", "password": "s3cret"},
                                   {}], ids=["wrong-password", "unknown-user", "anonymous"])
def test_bad_credentials_refused_and_counted(workdir, owned, creds):
    """Refused credentials: edgelink stays up, logs the failure, counts connect_failures and is not connected."""
    broker = password_broker(workdir, owned)
    el = start_edgelink(workdir, owned, broker.port, broker=creds)
    wait_for(lambda: link(el)["connect_failures"] >= 2, what="repeated connect failures")
    b = link(el)
    assert b["state"] != "connected" and b["connects"] == 0
    # the broker's CONNACK refusal is named, not a bare return code
    assert b["last_error"].startswith("refused by the broker: "), b["last_error"]
    el.wait_log("cannot connect to tcp://127.0.0.1:")
    assert el.proc.poll() is None
    if creds.get("password"):
        assert creds["password"] not in el.log_text() + json.dumps(el.status())


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def tls_broker(workdir, owned, pki, cert="server"):
    broker = ConfiguredBroker(workdir, tls={"cafile": pki["ca"], "certfile": pki[f"{cert}_cert"],
                                            "keyfile": pki[f"{cert}_key"]}).start()
    owned.append(broker)
    return broker


def tls_edgelink(workdir, owned, broker, tls):
    return start_edgelink(workdir, owned, broker.port,
                          broker={"host": "localhost", "port": broker.tls_port, "tls": tls},
                          streams={"imu": {"batch_size": 3, "flush_period": 1}})


def send_batch(el):
    app = App(el.app_port())
    for s in range(1, 4):
        app.point("imu", s)
    return app


@pytest.mark.parametrize("trust", ["ca", "no-verify"])
def test_tls_connects_and_publishes(workdir, owned, pki, trust):
    """Over TLS edgelink connects and publishes when it trusts the broker's CA, or with verify = false and another CA."""
    broker = tls_broker(workdir, owned, pki)
    sub = Subscriber(broker.port, topics=(TOPIC + "/#",))  # on the plain listener
    owned.append(sub)
    tls = {"ca_file": pki["ca"]} if trust == "ca" else {"ca_file": pki["other_ca"], "verify": False}
    el = tls_edgelink(workdir, owned, broker, tls)
    wait_connected(el)
    assert link(el)["uri"] == f"ssl://localhost:{broker.tls_port}"
    send_batch(el)
    wait_for(lambda: len(sub.points("imu")) == 3, what="a batch over TLS")
    assert [p["sequence"] for p in sub.points("imu")] == [1, 2, 3]
    assert link(el)["connect_failures"] == 0


@pytest.mark.parametrize("case", ["other-ca", "wrong-host"])
def test_tls_verification_refuses_untrusted_broker(workdir, owned, pki, case):
    """With verification on, a broker certificate from another CA or for another host name is refused and counted; nothing is published."""
    broker = tls_broker(workdir, owned, pki, cert="server" if case == "other-ca" else "wrong_host")
    sub = Subscriber(broker.port, topics=(TOPIC + "/#",))
    owned.append(sub)
    ca = pki["other_ca"] if case == "other-ca" else pki["ca"]
    el = tls_edgelink(workdir, owned, broker, {"ca_file": ca})
    send_batch(el)
    wait_for(lambda: link(el)["connect_failures"] >= 2, what="TLS connect failures")
    b = link(el)
    assert b["state"] != "connected" and b["connects"] == 0
    assert "TLS handshake failed" in b["last_error"], b["last_error"]
    assert el.status()["outbox"]["queued"] == 1
    assert sub.messages == []
    el.wait_log(f"cannot connect to ssl://localhost:{broker.tls_port}")
    assert el.proc.poll() is None


def test_frozen_broker_detected_by_keep_alive_and_nothing_lost(workdir, owned):
    """A broker that stops answering (SIGSTOP, socket still open) is detected by keep alive; after it resumes every point arrives."""
    broker = ConfiguredBroker(workdir, persistent=True).start()
    owned.append(broker)
    sub = DurableSubscriber(broker.port, topics=(TOPIC + "/events/#",), client_id="frozen-sub")
    owned.append(sub)
    el = start_edgelink(workdir, owned, broker.port, broker={"keep_alive": 1},
                        streams={"imu": {"batch_size": 5, "flush_period": 0.1}})
    wait_connected(el)
    app = App(el.app_port())
    stream(app, range(1, 51), 0.002)
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        stream(app, range(51, 101), 0.002)
        wait_for(lambda: link(el)["disconnects"] >= 1, timeout=8, what="keep alive to declare the link dead")
        assert link(el)["state"] != "connected"
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    stream(app, range(101, 151), 0.002)
    wait_all_points(sub, 150)
    assert link(el)["connects"] >= 2


def test_status_emitted_while_broker_down_is_published_after_reconnect(workdir, owned):
    """An action that times out while the broker is down gets its Failed status published once the broker is back."""
    broker = ConfiguredBroker(workdir, persistent=True).start()
    owned.append(broker)
    sub = DurableSubscriber(broker.port, topics=(TOPIC + "/action/status",), client_id="status-sub")
    owned.append(sub)
    el = start_edgelink(workdir, owned, broker.port,
                        tcpapps={"app": {"port": free_port(), "actions": [{"name": "reboot", "timeout": 1}]}})
    wait_connected(el)
    app = App(el.app_port())
    publish_many(broker.port, TOPIC + "/actions", [json.dumps({"action_id": "offline-1", "name": "reboot",
                                                               "payload": ""})])
    assert app.read_line()["action_id"] == "offline-1"
    wait_for(lambda: sub.statuses(), what="Received")
    broker.stop()
    wait_for(lambda: el.status()["actions"]["timed_out"] == 1, timeout=5, what="the timeout while disconnected")
    assert el.status()["outbox"]["queued"] == 1
    broker.start()
    wait_for(lambda: len(sub.statuses()) >= 2, what="the Failed status after reconnect")
    got = sub.statuses()
    assert [(s["action_id"], s["state"], s["errors"]) for s in got] == [
        ("offline-1", "Received", []), ("offline-1", "Failed", ["Action timed out"])]


@pytest.mark.parametrize("with_cert", [True, False], ids=["client-cert", "no-client-cert"])
def test_tls_client_certificate(workdir, owned, pki, with_cert):
    """A broker that requires client certificates accepts edgelink with cert_file/key_file and refuses it without."""
    broker = ConfiguredBroker(workdir, tls={"cafile": pki["ca"], "certfile": pki["server_cert"],
                                            "keyfile": pki["server_key"], "require_certificate": True}).start()
    owned.append(broker)
    sub = Subscriber(broker.port, topics=(TOPIC + "/#",))
    owned.append(sub)
    tls = {"ca_file": pki["ca"]}
    if with_cert:
        tls.update(cert_file=pki["client_cert"], key_file=pki["client_key"])
    el = tls_edgelink(workdir, owned, broker, tls)
    send_batch(el)
    if with_cert:
        wait_connected(el)
        wait_for(lambda: len(sub.points("imu")) == 3, what="a batch over mutual TLS")
    else:
        wait_for(lambda: link(el)["connect_failures"] >= 2, what="refused without a client certificate")
        b = link(el)
        assert b["state"] != "connected" and b["connects"] == 0
        assert sub.messages == []


def test_sigterm_while_the_broker_dies_still_exits(make_edgelink, broker, sub):
    """SIGTERM with the broker killed during the goodbye: edgelink still exits 0 within a few seconds."""
    for _ in range(3):
        el = make_edgelink()
        wait_online(sub)
        el.signal(signal.SIGTERM)
        broker.kill()
        started = time.monotonic()
        assert el.proc.wait(15) == 0
        assert time.monotonic() - started < 10
        broker.start()
        sub.client.reconnect()
        sub.messages.clear()
