"""Broker failover: [broker] servers = ["host:port", ...] (issue 14 item 2). Two real
mosquittos stand for two nodes of one broker; edgelink uses the first that answers and
moves to the next when its server goes away, losing and reordering nothing the outbox
holds. The RabbitMQ cluster test is elsewhere; this one shows the link's own behaviour."""
import json
import time

from conftest import (PRESENCE, TOPIC, App, Broker, Edgelink, Subscriber, base_config, free_port, publish_many,
                      retained, wait_for)


def start(workdir, owned, servers, **overrides):
    cfg = base_config(workdir, 0, **overrides)
    cfg["broker"] = {"servers": servers, "reconnect_min": 0.2, "reconnect_max": 1}
    el = Edgelink(workdir, cfg)
    owned.append(el)
    return el.start()


def link(el):
    return el.status()["broker"]


def brokers(workdir, owned, n=2):
    out = []
    for _ in range(n):
        b = Broker(workdir).start()
        owned.append(b)
        out.append(b)
    return out


def subscriber(owned, port):
    s = Subscriber(port, topics=(TOPIC + "/#",))
    owned.append(s)
    return s


def seqs(sub):
    return [p["sequence"] for p in sub.points("imu")]


def test_connects_to_the_first_and_fails_over_to_the_second_losing_nothing(workdir, owned):
    """Points before the first server stops arrive there; those after (and any not acknowledged) at the second, in order; status says which server and how often it changed."""
    a, b = brokers(workdir, owned)
    sub_a, sub_b = subscriber(owned, a.port), subscriber(owned, b.port)
    el = start(workdir, owned, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
               streams={"imu": {"batch_size": 5, "flush_period": 0.1}})
    wait_for(lambda: link(el)["state"] == "connected", what="connected")
    s = link(el)
    assert s["server"] == f"127.0.0.1:{a.port}" and s["server_index"] == 0 and s["server_changes"] == 0
    assert s["servers"] == [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
    app = App(el.app_port())
    for i in range(1, 101):
        app.point("imu", i, v=i)
    wait_for(lambda: set(range(1, 101)) <= set(seqs(sub_a)), what="the first 100 points on the first server")
    assert sub_b.points("imu") == []

    a.stop()
    for i in range(101, 301):
        app.point("imu", i, v=i)
        time.sleep(0.002)
    wait_for(lambda: set(range(101, 301)) <= set(seqs(sub_b)), timeout=20,
             what="the points after the failover on the second server")
    assert set(seqs(sub_a)) | set(seqs(sub_b)) == set(range(1, 301))
    first_seen = list(dict.fromkeys(seqs(sub_b)))
    assert first_seen == sorted(first_seen), "batches reordered across the failover"
    s = link(el)
    assert s["state"] == "connected" and s["server"] == f"127.0.0.1:{b.port}" and s["server_index"] == 1
    assert s["server_changes"] >= 1 and s["disconnects"] == 1
    # Presence is retained "online" on the node in use.
    assert retained(b.port, PRESENCE) == [(PRESENCE, b"online", True)]
    # Actions come through the second server.
    publish_many(b.port, TOPIC + "/actions", [json.dumps({"action_id": "fo", "name": "reboot", "payload": "{}"})])
    assert app.read_line() == {"action_id": "fo", "name": "reboot", "payload": "{}"}
    wait_for(lambda: [st["state"] for st in sub_b.statuses()] == ["Received"], what="Received via the second server")
    metrics = el.status()
    assert metrics["broker"]["server_changes"] >= 1


def test_first_server_down_at_start_uses_the_next(workdir, owned):
    """A server that does not answer is skipped: edgelink connects to the next one."""
    (b,) = brokers(workdir, owned, 1)
    dead = free_port()
    sub_b = subscriber(owned, b.port)
    el = start(workdir, owned, [f"127.0.0.1:{dead}", f"localhost:{b.port}"])
    wait_for(lambda: link(el)["state"] == "connected", what="connected to the second server")
    s = link(el)
    assert s["server"] == f"localhost:{b.port}" and s["connect_failures"] >= 1 and s["server_changes"] >= 1
    app = App(el.app_port())
    for i in range(1, 11):
        app.point("imu", i)
    wait_for(lambda: seqs(sub_b) == list(range(1, 11)), what="points through the second server")


def test_back_to_the_first_when_the_second_goes_too(workdir, owned):
    """With the first back and the second gone, the link goes round to the first again."""
    a, b = brokers(workdir, owned)
    el = start(workdir, owned, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    wait_for(lambda: link(el)["server_index"] == 0 and link(el)["state"] == "connected", what="on the first")
    a.stop()
    wait_for(lambda: link(el)["server_index"] == 1 and link(el)["state"] == "connected", what="on the second")
    a.start()
    b.stop()
    wait_for(lambda: link(el)["server_index"] == 0 and link(el)["state"] == "connected", timeout=15,
             what="round to the first again")
    sub_a = subscriber(owned, a.port)
    app = App(el.app_port())
    for i in range(1, 11):
        app.point("imu", i)
    wait_for(lambda: seqs(sub_a) == list(range(1, 11)), what="points through the first server again")


def test_servers_config_errors(workdir):
    """servers with host or port, an empty list, a bad entry or a duplicate: FILE:LINE:COL errors from check."""
    import subprocess
    from conftest import EDGELINK_BIN
    cases = [
        ('servers = ["127.0.0.1:1883"]\nhost = "x"\n', "broker.host: cannot be combined with broker.servers"),
        ('servers = ["127.0.0.1:1883"]\nport = 1884\n', "broker.port: cannot be combined with broker.servers"),
        ("servers = []\n", 'broker.servers: needs at least one "host:port"'),
        ('servers = ["a:1", "a:0"]\n', "broker.servers[1]: the port must be a number 1..65535"),
        ('servers = ["::1:1883"]\n', "an IPv6 address goes in brackets"),
        ('servers = ["a:1", "a:1"]\n', 'broker.servers[1]: "a:1" is listed twice'),
        ('servers = "a:1"\n', "broker.servers: must be an array"),
    ]
    for body, want in cases:
        path = f"{workdir}/bad.toml"
        with open(path, "w") as f:
            f.write('project_id = "p"\ndevice_id = "d"\n[broker]\n' + body)
        out = subprocess.run([EDGELINK_BIN, "check", "-c", path], capture_output=True, text=True)
        assert out.returncode != 0, body
        assert want in out.stderr + out.stdout, (body, out.stderr)
        assert "bad.toml:" in out.stderr + out.stdout
    # The good forms, with IPv6 brackets and a default port, are printed back as a list.
    with open(f"{workdir}/good.toml", "w") as f:
        f.write('project_id = "p"\ndevice_id = "d"\n[broker]\nservers = ["n1:1883", "[::1]:1884", "n3"]\n')
    out = subprocess.run([EDGELINK_BIN, "check", "-c", f"{workdir}/good.toml"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'servers = ["n1:1883", "[::1]:1884", "n3:1883"]' in out.stdout
