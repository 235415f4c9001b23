"""Small helpers shared by the Python benchmarks in bench/ (standard library only)."""
import os
import socket


def free_ports(n):
    """n distinct ports the kernel just handed out for port 0 (then released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def kib(pid, key):
    """A KiB figure of /proc/PID/status, e.g. kib(pid, "VmRSS")."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def finish(procs, failures, tmp):
    """End of a bench: stop its processes (newest first), print its failures, remove its
    temp dir unless KEEP=1. Returns the exit status (1 when a check failed)."""
    import shutil
    import subprocess
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    if failures:
        print("FAILED:", *failures, sep="\n  ")
    if os.environ.get("KEEP") == "1":
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0
