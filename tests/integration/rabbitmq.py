"""Private RabbitMQ nodes with the MQTT plugin (Debian rabbitmq-server), for the cluster
tests and the fleet benchmark. Each node has its own name, ports, Mnesia and log
directories under a temp dir; all share one Erlang cookie (HOME) so they can cluster.
The epmd they start is stopped again when nobody else was using it."""
import os
import shutil
import socket
import subprocess
import time

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def available():
    return os.path.exists(SERVER) and os.path.exists(CTL)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _epmd_running():
    return subprocess.run(["pgrep", "-x", "epmd"], capture_output=True).returncode == 0


class RabbitNode:
    def __init__(self, root, name, home):
        self.name = f"{name}@localhost"
        self.dir = os.path.join(root, name)
        self.home = home
        self.mqtt_port = _free_port()
        self.amqp_port = _free_port()
        self.dist_port = _free_port()
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = {self.amqp_port}\n"
                    f"mqtt.listeners.tcp.default = {self.mqtt_port}\n"
                    "mqtt.allow_anonymous = true\nloopback_users = none\n"
                    # edgelink's fleets publish as fast as the broker takes it; the default
                    # memory watermark (40 % of RAM) would block publishers on a test box.
                    "vm_memory_high_watermark.relative = 0.8\n"
                    "disk_free_limit.absolute = 50MB\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")

    def env(self):
        e = dict(os.environ)
        e.update({
            "HOME": self.home,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "pid"),
        })
        return e

    def start(self):
        self.proc = subprocess.Popen([SERVER], env=self.env(), stdout=open(os.path.join(self.dir, "out.log"), "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_up(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _port_open(self.mqtt_port):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.3)
        return False

    def ctl(self, *args, timeout=60):
        return subprocess.run([CTL, "-n", self.name, *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def stop(self):
        """An orderly stop of the node (its clients are disconnected)."""
        if self.proc and self.proc.poll() is None:
            self.ctl("stop")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, n=3000):
        try:
            with open(os.path.join(self.dir, "out.log"), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class RabbitCluster:
    """Two (or more) nodes started together; the others join the first."""

    def __init__(self, root, nodes=2):
        self.root = root
        self.home = os.path.join(root, "home")
        os.makedirs(self.home, exist_ok=True)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write("EDGELINKTESTCLUSTERCOOKIE")
        os.chmod(cookie, 0o400)
        self.had_epmd = _epmd_running()
        tag = str(os.getpid())
        self.nodes = [RabbitNode(root, f"edgelink{tag}n{i + 1}", self.home) for i in range(nodes)]
        self.error = ""

    def start(self):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            if not n.wait_up():
                self.error = f"{n.name} did not start:\n{n.log_tail()}"
                return False
        first = self.nodes[0]
        for n in self.nodes[1:]:
            for args in (("stop_app",), ("join_cluster", first.name), ("start_app",)):
                r = n.ctl(*args)
                if r.returncode != 0:
                    self.error = f"{n.name} {' '.join(args)}: {r.stdout}{r.stderr}"
                    return False
            if not n.wait_up():
                self.error = f"{n.name} did not come back after joining:\n{n.log_tail()}"
                return False
        return True

    def running_nodes(self, via=0):
        r = self.nodes[via].ctl("cluster_status", "--formatter", "json")
        import json
        try:
            return json.loads(r.stdout).get("running_nodes", [])
        except ValueError:
            return []

    def close(self):
        for n in self.nodes:
            n.kill()
        if not self.had_epmd:
            # epmd refuses while it still lists a node that just died: a few tries.
            for _ in range(20):
                subprocess.run(["epmd", "-kill"], capture_output=True)
                if subprocess.run(["epmd", "-names"], capture_output=True).returncode != 0:
                    break
                time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
