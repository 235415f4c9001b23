"""Per-stream order at the subscriber in every situation (issue 8, spec/mqtt.md: within one
stream, batches are published in order).

Each test checks the order in which points arrive at a real subscriber, not only that
they all arrived. QoS 1 allows duplicates after a reconnect: a point seen before is
skipped, and every first arrival must come after the points of its stream sent before it."""
import socket
import threading

from conftest import (ConfiguredBroker, DurableSubscriber, Edgelink, Subscriber, base_config, free_port, wait_for)
from test_spool import Load, lose_broker, send_points, wait_connected, wait_on_disk

PAD = "y" * 60


def out_of_order(sub, stream):
    """(sequences that arrived after a later one of the same stream, distinct sequences seen)."""
    seen, late, last = set(), [], 0
    for p in sub.points(stream):
        s = p["sequence"]
        if s in seen:
            continue
        seen.add(s)
        if s < last:
            late.append(s)
        last = max(last, s)
    return late, seen


def wait_points(sub, stream, n, timeout=60.0):
    """Waits for points 1..n of `stream`; returns out_of_order(). A timeout says what is missing."""
    try:
        wait_for(lambda: len(out_of_order(sub, stream)[1]) >= n, timeout, what=f"all {n} points of {stream}")
    except AssertionError:
        missing = sorted(set(range(1, n + 1)) - out_of_order(sub, stream)[1])
        raise AssertionError(f"{stream}: {n - len(missing)} of {n} points arrived in {timeout}s; "
                             f"missing {len(missing)}, the first {missing[:10]}") from None
    late, seen = out_of_order(sub, stream)
    assert seen == set(range(1, n + 1)), f"{stream}: unexpected sequences"
    return late, seen


def assert_in_order(sub, sent, timeout=60.0):
    """Every point 1..n of every stream arrived, each after the ones sent before it."""
    for stream, n in sent.items():
        late, _ = wait_points(sub, stream, n, timeout)
        assert not late, f"{stream}: {len(late)} points arrived after a later point, first {late[:5]}"


def blast(port, stream, count):
    """Sends `count` points as fast as the socket takes them (one sendall)."""
    lines = "".join(f'{{"stream":"{stream}","sequence":{i},"timestamp":{1700000000000 + i},"pad":"{PAD}"}}\n'
                    for i in range(1, count + 1)).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(lines)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        s.recv(1)  # edgelink closes only after reading everything: wait for the end of file


def test_burst_with_a_small_memory_budget_stays_in_order(workdir, broker):
    """4 apps send as fast as they can through a 64 KiB memory budget with the broker connected."""
    # A small in-flight window keeps most batches queued in edgelink rather than in flight.
    cfg = base_config(workdir, broker.port, tcpapps={f"a{i}": {"port": free_port()} for i in range(4)},
                      streams={f"s{i}": {"batch_size": 100} for i in range(4)},
                      spool={"max_memory_bytes": 65536}, log={"level": "info"})
    cfg["broker"]["max_inflight"] = 4
    sub = Subscriber(broker.port, topics=("/tenants/demo/devices/gw-001/events/#",))
    el = Edgelink(workdir, cfg).start()
    try:
        wait_connected(el)
        n = 20000
        threads = [threading.Thread(target=blast, args=(cfg["tcpapps"][f"a{i}"]["port"], f"s{i}", n))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert_in_order(sub, {f"s{i}": n for i in range(4)})
        st = el.status()
        # The budget was reached and the apps waited: the burst went through back-pressure.
        assert sum(a["pauses"] for a in st["apps"].values()) > 0, st["apps"]
        assert st["spool"]["dropped"] == 0
    finally:
        sub.close()
        el.kill()


class CutProxy:
    """A TCP proxy from a free port to the broker whose link can be cut (every connection
    closed, new ones closed as soon as they are accepted) and restored: a network outage
    with the broker itself up, so the order at the subscriber depends on edgelink alone."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.socks = []
        self.down = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self):
        with self.lock:
            self.down = True
            socks, self.socks = self.socks, []
        for s in socks:
            self._close(s)

    def restore(self):
        with self.lock:
            self.down = False

    def close(self):
        self.cut()
        self.listener.close()

    @staticmethod
    def _close(s):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.down:
                    self._close(client)
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_outage_with_live_load_stays_in_order(workdir, broker):
    """The link to the broker is cut for seconds under live load and comes back: the spooled batches
    go first, then the live ones, every stream in order."""
    proxy = CutProxy(broker.port)
    sub = Subscriber(broker.port, topics=("/tenants/demo/devices/gw-001/events/#",))
    el = Edgelink(workdir, base_config(workdir, proxy.port, log={"level": "info"},
                                       streams={"imu": {"batch_size": 20, "flush_period": 0.3},
                                                "gps": {"batch_size": 5, "flush_period": 0.3}})).start()
    try:
        wait_connected(el)
        load = Load(el.app_port(), streams=("imu", "gps"), rate=1500)
        wait_for(lambda: sub.points("imu"), what="the first batch")
        proxy.cut()
        wait_for(lambda: el.status()["spool"]["spooled"] > 20, what="batches written to the spool")
        proxy.restore()
        wait_connected(el)
        # Live points keep coming while the backlog drains.
        wait_for(lambda: el.status()["spool"]["records"] == 0, 30, what="the backlog to drain")
        sent = load.stop()
        assert_in_order(sub, sent)
        assert el.status()["spool"]["replayed"] > 20
    finally:
        sub.close()
        el.kill()
        proxy.close()


def test_kill9_with_a_backlog_then_new_live_data_stays_in_order(workdir):
    """SIGKILL with a backlog on disk; the next start gets new points at once, before and while it replays."""
    durable = ConfiguredBroker(workdir, persistent=True).start()
    cfg = base_config(workdir, durable.port, log={"level": "info"},
                      streams={"imu": {"batch_size": 10, "flush_period": 0.2}})
    el = Edgelink(workdir, cfg).start()
    lose_broker(el, durable)
    app = send_points(el.app_port(), "imu", 20000)
    wait_on_disk(el, {"imu": 20000})
    el.proc.kill()
    el.proc.wait(10)
    app.close()

    durable.start()
    sub = DurableSubscriber(durable.port, topics=("/tenants/demo/devices/gw-001/events/#",))
    el2 = Edgelink(workdir, cfg).start()
    try:
        # Sent at once, so the first reach edgelink before its broker connection; the
        # rest while the 2000 restored batches replay.
        app = send_points(el2.app_port(), "imu", 200, start=20001)
        wait_connected(el2)
        send_points(el2.app_port(), "imu", 4800, start=20201, app=app).close()
        assert_in_order(sub, {"imu": 25000})
        assert el2.status()["spool"]["restored"] == 2000
    finally:
        sub.close()
        el2.kill()
        durable.stop()


def test_points_sent_before_the_first_connection_stay_in_order(workdir):
    """An app that sends while edgelink has not connected yet (the broker comes later) and goes on after."""
    durable = ConfiguredBroker(workdir, persistent=True).start()
    sub = DurableSubscriber(durable.port, topics=("/tenants/demo/devices/gw-001/events/#",))
    durable.stop()
    cfg = base_config(workdir, durable.port, log={"level": "info"},
                      streams={"imu": {"batch_size": 10, "flush_period": 0.2}})
    el = Edgelink(workdir, cfg).start()
    try:
        app = send_points(el.app_port(), "imu", 10000)
        wait_for(lambda: el.status()["spool"]["spooled"] >= 900, what="batches written before the first connection")
        durable.start()
        wait_connected(el)
        send_points(el.app_port(), "imu", 5000, start=10001, app=app)
        assert_in_order(sub, {"imu": 15000})
        app.close()
    finally:
        sub.close()
        el.kill()
        durable.stop()


def test_prioritize_live_data_lets_live_batches_overtake_the_backlog(workdir, broker):
    """uplink's prioritize_live_data = true: after an outage, live batches alternate with the backlog, so
    a stream's new points arrive before its old ones have all gone out; nothing is lost either way."""
    proxy = CutProxy(broker.port)
    sub = Subscriber(broker.port, topics=("/tenants/demo/devices/gw-001/events/#",))
    cfg = base_config(workdir, proxy.port, log={"level": "info"}, prioritize_live_data=True,
                      streams={"imu": {"batch_size": 10, "flush_period": 0.2}})
    el = Edgelink(workdir, cfg).start()
    try:
        wait_connected(el)
        proxy.cut()
        wait_for(lambda: el.status()["broker"]["state"] != "connected", what="broker loss")
        app = send_points(el.app_port(), "imu", 20000)
        wait_on_disk(el, {"imu": 20000})
        load_from = 20001
        proxy.restore()
        wait_connected(el)
        send_points(el.app_port(), "imu", 3000, start=load_from, app=app).close()
        late, _ = wait_points(sub, "imu", 23000)
        assert late, "no live batch overtook the backlog"
    finally:
        sub.close()
        el.kill()
        proxy.close()
