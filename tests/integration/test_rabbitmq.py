"""edgelink against a two-node RabbitMQ cluster with the MQTT plugin (issue 14 item 3):
QoS 1 batches, actions, retained presence and the last will unchanged, and failover
between the nodes ([broker] servers) with nothing lost. The nodes are real RabbitMQ 3.10
nodes started here (distinct names and ports, one Erlang cookie) and joined into one
cluster; about 30 s to start them, then about 20 s of tests. Skipped, with the reason,
only where RabbitMQ cannot start."""
import json
import tempfile
import time

import pytest

import rabbitmq
from conftest import PRESENCE, TOPIC, App, Edgelink, Subscriber, base_config, publish_many, wait_for

pytestmark = pytest.mark.skipif(not rabbitmq.available(), reason="rabbitmq-server is not installed")


@pytest.fixture(scope="module")
def cluster():
    c = rabbitmq.RabbitCluster(tempfile.mkdtemp(prefix="edgelink-rmq-"))
    try:
        if not c.start():
            pytest.skip(f"RabbitMQ cannot start here: {c.error}")
        yield c
    finally:
        c.close()


def start(workdir, owned, ports, **overrides):
    cfg = base_config(workdir, 0, **overrides)
    cfg["broker"] = {"servers": [f"127.0.0.1:{p}" for p in ports], "reconnect_min": 0.2, "reconnect_max": 1,
                     "keep_alive": 5}
    el = Edgelink(workdir, cfg)
    owned.append(el)
    return el.start()


def link(el):
    return el.status()["broker"]


def subscriber(owned, port, topics=(TOPIC + "/#",)):
    s = Subscriber(port, topics=topics)
    owned.append(s)
    wait_for(lambda: s.connected.is_set(), what="subscriber connected")
    time.sleep(0.3)  # RabbitMQ binds the subscription's queue after SUBACK; let it settle
    return s


def test_batches_actions_and_presence_through_the_cluster(cluster, workdir, owned):
    """Connected to node 1, with the subscriber on node 2: QoS 1 batches arrive, an action round-trips, presence is retained online on the node in use."""
    n1, n2 = cluster.nodes
    assert set(cluster.running_nodes()) == {n1.name, n2.name}
    sub = subscriber(owned, n2.mqtt_port)
    el = start(workdir, owned, [n1.mqtt_port, n2.mqtt_port], streams={"imu": {"batch_size": 5, "flush_period": 0.1}})
    wait_for(lambda: link(el)["state"] == "connected", timeout=15, what="connected to node 1")
    assert link(el)["server_index"] == 0
    app = App(el.app_port())
    for i in range(1, 101):
        app.point("imu", i, v=i)
    wait_for(lambda: sorted(p["sequence"] for p in sub.points("imu")) == list(range(1, 101)), timeout=15,
             what="100 points across the cluster")
    # Retained messages are stored per node: the one edgelink is on has "online".
    late = Subscriber(n1.mqtt_port, topics=(PRESENCE,))
    try:
        wait_for(lambda: late.messages, what="retained presence on node 1")
        assert late.messages[0][1:] == (b"online", 1)
    finally:
        late.close()
    publish_many(n2.mqtt_port, TOPIC + "/actions",
                 [json.dumps({"action_id": "r1", "name": "reboot", "payload": "{}"})])
    assert app.read_line() == {"action_id": "r1", "name": "reboot", "payload": "{}"}
    app.status("r1", "Completed", 100)
    wait_for(lambda: [s["state"] for s in sub.statuses()] == ["Received", "Completed"], timeout=10,
             what="Received and Completed through the cluster")


def test_last_will_through_the_cluster(cluster, workdir, owned):
    """SIGKILL: the node publishes the retained will "offline", seen by a subscriber on the other node."""
    n1, n2 = cluster.nodes
    sub = subscriber(owned, n2.mqtt_port, topics=(PRESENCE,))
    el = start(workdir, owned, [n1.mqtt_port])
    wait_for(lambda: [m[1] for m in sub.messages] == [b"online"], timeout=15, what="online")
    el.proc.kill()
    el.proc.wait(5)
    wait_for(lambda: [m[1] for m in sub.messages] == [b"online", b"offline"], timeout=15, what="the will")


def test_node_stopped_under_load_loses_nothing(cluster, workdir, owned):
    """Steady load through node 1, subscriber on node 2; node 1 stops: edgelink moves to node 2, every (stream, sequence) arrives, actions still round-trip, presence is online on node 2. Runs last: it stops node 1."""
    n1, n2 = cluster.nodes
    sub = subscriber(owned, n2.mqtt_port)
    el = start(workdir, owned, [n1.mqtt_port, n2.mqtt_port],
               streams={"imu": {"batch_size": 10, "flush_period": 0.1}, "gps": {"batch_size": 3, "flush_period": 0.1}})
    wait_for(lambda: link(el)["state"] == "connected" and link(el)["server_index"] == 0, timeout=15,
             what="connected to node 1")
    app = App(el.app_port())
    total = 600
    stopped = False
    for i in range(1, total + 1):
        app.point("imu", i, v=i)
        if i % 3 == 0:
            app.point("gps", i // 3)
        if i == 200:
            n1.stop()  # orderly: the node closes its MQTT connections
            stopped = True
        time.sleep(0.005)
    assert stopped
    want_imu, want_gps = set(range(1, total + 1)), set(range(1, total // 3 + 1))
    wait_for(lambda: want_imu <= {p["sequence"] for p in sub.points("imu")}
             and want_gps <= {p["sequence"] for p in sub.points("gps")}, timeout=40,
             what="every point after the node stopped")
    assert {p["sequence"] for p in sub.points("imu")} == want_imu
    s = link(el)
    assert s["state"] == "connected" and s["server_index"] == 1 and s["server_changes"] >= 1
    assert s["disconnects"] >= 1
    # Presence on node 2 (the node in use) is online: republished, retained, on connect.
    late = Subscriber(n2.mqtt_port, topics=(PRESENCE,))
    try:
        wait_for(lambda: late.messages, what="retained presence on node 2")
        assert late.messages[-1][1] == b"online"
    finally:
        late.close()
    publish_many(n2.mqtt_port, TOPIC + "/actions",
                 [json.dumps({"action_id": "after", "name": "reboot", "payload": "{}"})])
    assert app.read_line() == {"action_id": "after", "name": "reboot", "payload": "{}"}
    wait_for(lambda: "Received" in [st["state"] for st in sub.statuses() if st.get("action_id") == "after"], timeout=10,
             what="Received after the failover")
