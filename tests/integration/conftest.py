"""Fixtures for integration tests: a real mosquitto on a free port, the real edgelink
binary with a config written by the test, TCP app clients and an MQTT subscriber.

Run through ctest (which sets EDGELINK_BIN), or by hand:
    EDGELINK_BIN=build/edgelink /usr/bin/python3 -m pytest -q tests/integration
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
import pytest

EDGELINK_BIN = os.environ.get("EDGELINK_BIN", os.path.join(os.path.dirname(__file__), "../../build/edgelink"))


def free_port():
    """A port the kernel just handed out for port 0 (then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_port(port, timeout=10.0):
    def ok():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_for(ok, timeout, what=f"port {port} to accept connections")


NO_QUEUE_LIMIT = "max_queued_messages 0\nmax_queued_bytes 0"


class Broker:
    """A mosquitto started on a free port; stop()/start() keep the same port."""

    def __init__(self, workdir, extra_conf=""):
        self.port = free_port()
        self.workdir = workdir
        self.extra_conf = extra_conf
        self.proc = None
        self.conf = os.path.join(workdir, f"mosquitto-{self.port}.conf")
        self.log = os.path.join(workdir, f"mosquitto-{self.port}.log")

    def start(self):
        with open(self.conf, "w") as f:
            # No queue limit: by default mosquitto drops QoS 1 messages for a subscriber
            # more than 1000 behind, which a test's subscriber on a loaded machine can be.
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"set_tcp_nodelay true\npersistence false\n{NO_QUEUE_LIMIT}\n{self.extra_conf}\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """Collects every message on the given topic filters (QoS 1). With clean_session=False
    and a fixed client id it also reconnects quickly, so against a persistent broker it
    misses nothing across broker restarts."""

    def __init__(self, port, topics=("#",), client_id=None, clean_session=True, username=None, password=None):
        self.messages = []  # (topic, payload bytes, retain)
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(client_id=client_id or f"sub-{os.getpid()}-{id(self)}",
                                  clean_session=clean_session)
        self.topics = topics
        if not clean_session:
            self.client.reconnect_delay_set(0.1, 0.5)
            self.client.max_inflight_messages_set(1000)
        if username is not None:
            self.client.username_pw_set(username, password)

        def on_connect(client, userdata, flags, rc):
            if rc != 0:
                return
            for t in self.topics:
                client.subscribe(t, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, msg.retain))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber could not connect"
        time.sleep(0.1)  # let the SUBACK arrive before the test starts publishing

    def on(self, topic_suffix):
        with self.lock:
            return [(t, p) for (t, p, _) in self.messages if t.endswith(topic_suffix)]

    def json_on(self, topic_suffix):
        return [json.loads(p) for (_, p) in self.on(topic_suffix)]

    def statuses(self):
        """Every action status published so far, flattened."""
        return [s for arr in self.json_on("/action/status") for s in arr]

    def points(self, stream):
        return [p for arr in self.json_on(f"/events/{stream}/jsonarray") for p in arr]

    def close(self):
        self.client.disconnect()  # first, so loop_stop need not wait out a select timeout
        self.client.loop_stop()


def publish(port, topic, payload, qos=1, retain=False):
    c = mqtt.Client(client_id=f"pub-{os.getpid()}-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


class App:
    """A local app: a TCP client of one app port speaking JSON lines."""

    def __init__(self, port, hello=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        if hello:
            self.send({"edgelink": {"hello": {"errors": True}}})

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def send_raw(self, data):
        self.sock.sendall(data)

    def point(self, stream, seq, **cols):
        self.send(dict(stream=stream, sequence=seq, timestamp=1700000000000 + seq, **cols))

    def status(self, action_id, state, progress=0, errors=None, seq=1, use_id=False):
        msg = {"stream": "action_status", "sequence": seq, "timestamp": 1700000000000 + seq,
               ("id" if use_id else "action_id"): action_id, "state": state, "progress": progress}
        if errors is not None:
            msg["errors"] = errors
        self.send(msg)

    def read_line(self, timeout=10.0):
        """Next line from edgelink as parsed JSON, or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def to_toml(cfg):
    """dict -> TOML text: top-level scalars first, then [tables] and [a.b] tables."""
    lines, tables = [], []
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {toml_value(v)}")
    def emit(prefix, table):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {toml_value(v)}")
        for k, v in subs.items():
            emit(f"{prefix}.{k}", v)
    for k, v in tables:
        if all(isinstance(x, dict) for x in v.values()) and v and k in ("tcpapps", "streams"):
            for name, t in v.items():
                emit(f"{k}.{name}", t)
        else:
            emit(k, v)
    return "\n".join(lines) + "\n"


class Edgelink:
    """The real binary with a config built from a dict (see base_config)."""

    def __init__(self, workdir, config):
        self.workdir = workdir
        self.config = config
        self.path = os.path.join(workdir, "edgelink.toml")
        self.log = os.path.join(workdir, "edgelink.log")
        self.proc = None
        self.write_config(config)

    def write_config(self, config):
        self.config = config
        with open(self.path, "w") as f:
            f.write(to_toml(config))

    def start(self, wait_apps=True, env=None):
        self.proc = subprocess.Popen([EDGELINK_BIN, "run", "-c", self.path], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, env=env)
        if wait_apps:
            for app in self.config.get("tcpapps", {}).values():
                wait_port(app["port"])
        return self

    def run_expecting_failure(self, timeout=10):
        """Start it with a config it must refuse; returns the exit code (killed on timeout)."""
        self.start(wait_apps=False)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def app_port(self, name="app"):
        return self.config["tcpapps"][name]["port"]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def status(self):
        out = subprocess.run([EDGELINK_BIN, "status", "-c", self.path, "--json"], capture_output=True, text=True,
                             timeout=10)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10.0):
        wait_for(lambda: text in self.log_text(), timeout, what=f"log line containing {text!r}")


def base_config(workdir, broker_port, **overrides):
    """A small valid config: one app `app` with action `reboot`, stream `imu` batch 10."""
    cfg = {
        "project_id": "demo",
        "device_id": "gw-001",
        "persistence_path": os.path.join(workdir, "state"),
        "shutdown_timeout": 5,
        "broker": {"host": "127.0.0.1", "port": broker_port, "reconnect_min": 0.2, "reconnect_max": 1},
        "tcpapps": {"app": {"port": free_port(), "actions": [{"name": "reboot", "timeout": 5}]}},
        "streams": {"imu": {"batch_size": 10, "flush_period": 1}},
        "log": {"level": "debug"},
    }
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


TOPIC = "/tenants/demo/devices/gw-001"
PRESENCE = TOPIC + "/presence"


def retained(port, topic):
    """What a subscriber that connects now receives on `topic`: [(topic, payload, retain)]."""
    late = Subscriber(port, topics=(topic,))
    try:
        wait_for(lambda: late.messages, what=f"the retained message on {topic}")
        return list(late.messages)
    finally:
        late.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="edgelink-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker(workdir):
    b = Broker(workdir).start()
    yield b
    b.kill()


@pytest.fixture
def sub(broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


@pytest.fixture
def owned(workdir):
    """Brokers, subscribers and edgelinks a test starts itself; all stopped at teardown."""
    things = []
    yield things
    for t in reversed(things):
        if hasattr(t, "kill"):
            t.kill()
        else:
            t.close()


@pytest.fixture
def make_edgelink(workdir, broker):
    """make_edgelink(**config overrides) -> started Edgelink; killed at teardown."""
    started = []

    def make(start=True, **overrides):
        e = Edgelink(workdir, base_config(workdir, broker.port, **overrides))
        started.append(e)
        return e.start() if start else e

    yield make
    for e in started:
        e.kill()
        if os.environ.get("EDGELINK_IT_VERBOSE"):
            print(e.log_text())


# --- helpers for test_apps / test_streams / test_operations -------------------------

def peer_eof(app, timeout=5.0):
    """True only if the peer really closed the connection (EOF or reset) within timeout;
    False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        app.sock.settimeout(remaining)
        try:
            chunk = app.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if not chunk:
            return True
        app.buf += chunk  # data before the close (e.g. an action) is kept for read_line


def app_status(el, name="app"):
    """The entry for app `name` in `edgelink status --json` (apps are keyed by name)."""
    return el.status()["apps"][name]


def stream_status(el, name):
    """The entry for stream `name`, or None while the stream does not exist."""
    return el.status()["streams"].get(name)


def read_errors(app, count, timeout=5.0):
    """The next `count` error reports sent to a hello'd app (the inner error objects)."""
    errors = []
    for _ in range(count):
        msg = app.read_line(timeout)
        assert msg is not None, f"expected {count} error reports, got {errors}"
        errors.append(msg["edgelink"]["error"])
    return errors


def app_config(port=None, **extra):
    """A [tcpapps.x] table on a fresh port."""
    cfg = {"port": port or free_port()}
    cfg.update(extra)
    return cfg


# --- Helpers for action and broker-link tests (appended; nothing above changed) ---


def publish_many(port, topic, payloads, qos=1, retain=False):
    """Publishes every payload in order from one client and waits for all PUBACKs."""
    c = mqtt.Client(client_id=f"pubm-{os.getpid()}-{time.monotonic_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=qos, retain=retain) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
    # Disconnecting first wakes the network thread at once (loop_stop alone waits for
    # its 1 s select timeout).
    c.disconnect()
    c.loop_stop()


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ConfiguredBroker(Broker):
    """A mosquitto with a config written here in full: a plain listener on `port`,
    optionally a TLS listener on `tls_port` (tls = dict(cafile=, certfile=, keyfile=, and
    require_certificate=True to demand client certificates signed by cafile)),
    a password file with anonymous access off, and persistence (sessions of
    clean_session=False clients and their queued QoS 1 messages survive stop()/start())."""

    def __init__(self, workdir, password_file=None, tls=None, persistent=False, extra_conf=""):
        super().__init__(workdir, extra_conf)
        self.password_file = password_file
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.persistent = persistent
        self.store = os.path.join(workdir, f"mosquitto-{self.port}-store") + "/"

    def start(self):
        lines = ["per_listener_settings false", "set_tcp_nodelay true", f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to user `mosquitto`, which cannot read the
            # password file nor write the store inside the private (0700) workdir.
            lines.append("user root")
        if self.tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.tls['cafile']}",
                      f"certfile {self.tls['certfile']}", f"keyfile {self.tls['keyfile']}"]
            if self.tls.get("require_certificate"):
                lines.append("require_certificate true")
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines += ["allow_anonymous true"]
        if self.persistent:
            os.makedirs(self.store, exist_ok=True)
            lines += ["persistence true", f"persistence_location {self.store}"]
        else:
            lines += ["persistence false"]
        lines.append(NO_QUEUE_LIMIT)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + f"\n{self.extra_conf}\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or _port_open(self.port), what=f"mosquitto on {self.port}")
        if self.proc.poll() is not None:
            with open(self.log, errors="replace") as f:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{f.read()[-2000:]}")
        if self.tls_port:
            wait_port(self.tls_port)
        return self


class DurableSubscriber(Subscriber):
    """A Subscriber with a fixed client id and clean_session=False (see Subscriber)."""

    def __init__(self, port, topics=("#",), client_id=None, username=None, password=None):
        super().__init__(port, topics, client_id or f"durable-{os.getpid()}-{id(self)}", clean_session=False,
                         username=username, password=password)


def wait_online(sub, timeout=10.0):
    """Wait until edgelink's presence "online" reached `sub` (a "#" subscriber). edgelink sends it
    right after SUBSCRIBE on the same connection, so its action subscription is in place by then."""
    wait_for(lambda: any(p == b"online" for (_, p) in sub.on("/presence")), timeout, what="presence online")
