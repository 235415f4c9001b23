#!/usr/bin/env python3
"""Helpers for bench/rtstream_bench.sh (standard library only). See bench/README.md.

  rtstream_bench.py echo PTY
      The raw baseline's device end: every byte read from PTY is written back unchanged.
  rtstream_bench.py client (--tcp PORT | --pty PATH) --expect repl|raw --label L [knobs]
      Throughput, then latency (back-to-back, then spaced). Prints `result L_KEY VALUE`
      lines on stdout, progress and problems on stderr. Exit 0 when every byte came back
      intact and in order, 3 on corruption, 4 on a stall/timeout, 5 on EOF.
  rtstream_bench.py summary FILE...
      The side-by-side table from the `result` lines in FILE... (labels `el` and `raw`).

--expect repl: the peer is demo/mcu_sim.py's `upyconsole` endpoint through edgelink. It
does not return bytes unchanged: for every CR it sends the line so far (LF dropped,
0x03 = KeyboardInterrupt) followed by "\\r\\nok\\r\\n>>> ". The payload is therefore
made of CR-terminated lines of printable ASCII, and the expected answer is computed per
line. --expect raw: the bytes come back as they were sent.
"""
import argparse
import os
import select
import socket
import sys
import termios
import time
import tty

REPL_TAIL = b"\r\nok\r\n>>> "
EXIT_CORRUPT, EXIT_STALL, EXIT_EOF = 3, 4, 5


def log(*a):
    print("rtstream_bench:", *a, file=sys.stderr, flush=True)


def pattern_line(i, length):
    """Line i of the payload: `length` bytes, printable ASCII, ending in CR. The number
    and a filler that depends on it make a dropped, duplicated or shifted line visible."""
    head = b"%08d " % (i % 100000000)
    body_len = length - len(head) - 1
    filler = bytes(0x21 + (i * 7 + j) % 94 for j in range(max(body_len, 0)))
    return (head + filler)[:length - 1] + b"\r"


def answer(line, expect):
    return line[:-1] + REPL_TAIL if expect == "repl" else line


class Peer:
    """A nonblocking byte pipe: the bridge's TCP port or a pty end."""

    def __init__(self, tcp_port=None, pty=None):
        if tcp_port:
            self.sock = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.setblocking(False)
            self.fd = self.sock.fileno()
            self._read = lambda: self.sock.recv(65536)
            self._write = self.sock.send
        else:
            self.sock = None
            self.fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(self.fd, termios.TCSANOW)
            self._read = lambda: os.read(self.fd, 65536)
            self._write = lambda b: os.write(self.fd, b)

    def read(self):
        """bytes, b"" on EOF, None when nothing is there."""
        try:
            return self._read()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:  # EIO on a pty whose other end went away, ECONNRESET
            log("read error:", e)
            return b""

    def write(self, b):
        try:
            return self._write(b)
        except (BlockingIOError, InterruptedError):
            return 0

    def drain(self, quiet=0.3, limit=3.0):
        """Reads and discards until nothing came for `quiet` s; returns the count."""
        n, end = 0, time.monotonic() + limit
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], quiet)
            if not r:
                break
            b = self.read()
            if not b:
                break
            n += len(b)
        return n


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


class Result:
    def __init__(self, label):
        self.label = label

    def __call__(self, key, value):
        print("result %s_%s %s" % (self.label, key, value), flush=True)


def round_trip(peer, line, want, timeout):
    """Sends one line, waits for `want`. (seconds, got bytes, problem or None)."""
    t0 = time.monotonic()
    mv = memoryview(line)
    got = bytearray()
    deadline = t0 + timeout
    while len(mv) or len(got) < len(want):
        now = time.monotonic()
        if now >= deadline:
            return None, bytes(got), "timeout"
        r, w, _ = select.select([peer.fd], [peer.fd] if len(mv) else [], [], deadline - now)
        if w:
            mv = mv[peer.write(mv):]
        if r:
            b = peer.read()
            if b == b"":
                return None, bytes(got), "eof"
            if b:
                got += b
                if got != want[:len(got)]:
                    return None, bytes(got), "mismatch"
    return time.monotonic() - t0, bytes(got), None


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def throughput(peer, args, res):
    n_lines = max(1, -(-args.bytes // args.line_len))
    lines = [pattern_line(i, args.line_len) for i in range(n_lines)]
    data = b"".join(lines)
    want = b"".join(answer(x, args.expect) for x in lines)
    res("tput_bytes", len(data))
    res("tput_expected_back", len(want))
    log("%s: throughput: %d bytes in %d lines of %d, expecting %d back" %
        (args.label, len(data), n_lines, args.line_len, len(want)))
    out = memoryview(data)
    sent = got = 0
    bad_at = None
    bad_got = bad_want = b""
    extra = 0
    watch = [(name, int(pid)) for name, pid in (w.split("=", 1) for w in args.watch)]
    cpu0 = {name: cpu_ticks(pid) for name, pid in watch}
    t0 = time.monotonic()
    t_first = t_last = None
    last_progress = next_report = t0
    status = "ok"
    while got < len(want):
        r, w, _ = select.select([peer.fd], [peer.fd] if sent < len(data) else [], [], 0.25)
        now = time.monotonic()
        if w:
            n = peer.write(out[sent:sent + 65536])
            if n:
                sent += n
                last_progress = now
        if r:
            b = peer.read()
            if b == b"":
                status = "eof"
                break
            if b:
                if t_first is None:
                    t_first = now
                t_last = now
                last_progress = now
                take = b[:len(want) - got]
                extra += len(b) - len(take)
                if bad_at is None and take != want[got:got + len(take)]:
                    i = first_diff(take, want[got:got + len(take)])
                    bad_at = got + i
                    bad_got = take[max(0, i - 40):i + 40]
                    bad_want = want[got + max(0, i - 40):got + i + 40]
                got += len(take)
        if now - last_progress > args.stall:
            status = "stalled"
            break
        if now - t0 > args.timeout:
            status = "timeout"
            break
        if now >= next_report:
            log("%s: throughput: sent %d/%d, back %d/%d" % (args.label, sent, len(data), got, len(want)))
            next_report = now + 2
    # Anything past the expected answer (a duplicate, say) shows up within a moment.
    if status == "ok":
        extra += peer.drain(quiet=0.3, limit=1.0)
    elapsed = (t_last or time.monotonic()) - t0
    wall = time.monotonic() - t0
    hz = os.sysconf("SC_CLK_TCK")
    for name, pid in watch:
        c1 = cpu_ticks(pid)
        if c1 is not None and cpu0[name] is not None and wall > 0:
            res("cpu_%s_pct" % name, "%.1f" % (100.0 * (c1 - cpu0[name]) / hz / wall))
    res("tput_status", status)
    res("tput_sent", sent)
    res("tput_back", got)
    res("tput_extra_bytes", extra)
    res("tput_seconds", "%.3f" % elapsed)
    res("tput_first_byte_ms", "%.1f" % (((t_first or t0) - t0) * 1000))
    # Payload bytes per second over the whole round trip; only for a complete run.
    if status == "ok" and elapsed > 0:
        res("tput_bps", "%.0f" % (len(data) / elapsed))
    if bad_at is not None:
        log("%s: CORRUPT: first wrong byte at offset %d of the answer (%d bytes back in all)" %
            (args.label, bad_at, got))
        log("  expected %r" % bad_want)
        log("  got      %r" % bad_got)
        res("tput_first_bad_offset", bad_at)
        res("tput_intact", "no")
        return EXIT_CORRUPT
    if status != "ok":
        log("%s: throughput %s: sent %d of %d bytes, %d of %d expected bytes came back, "
            "nothing moved for the last %.1f s" % (args.label, status.upper(), sent, len(data), got, len(want),
                                                   time.monotonic() - last_progress))
        res("tput_intact", "incomplete")
        return EXIT_EOF if status == "eof" else EXIT_STALL
    if extra:
        log("%s: %d bytes came back beyond the expected answer (duplicates?)" % (args.label, extra))
        res("tput_intact", "extra")
        return EXIT_CORRUPT
    res("tput_intact", "yes")
    log("%s: throughput: %d bytes back intact in %.2f s = %.0f B/s" % (args.label, got, elapsed, len(data) / elapsed))
    return 0


def latency(peer, args, res, key, gap):
    times = []
    for i in range(args.lat_warmup + args.lat_count):
        line = b"%0*d\r" % (args.lat_size - 1, i)
        dt, got, problem = round_trip(peer, line, answer(line, args.expect), args.lat_timeout)
        if problem:
            log("%s: latency %s: round trip %d: %s; sent %r, got %r" % (args.label, key, i, problem.upper(), line, got))
            res(key + "_status", problem)
            res(key + "_count", len(times))
            return EXIT_CORRUPT if problem == "mismatch" else (EXIT_EOF if problem == "eof" else EXIT_STALL)
        if i >= args.lat_warmup:
            times.append(dt * 1000)
        if gap:
            time.sleep(gap)
    times.sort()
    res(key + "_status", "ok")
    res(key + "_count", len(times))
    for name, p in (("p50", 50), ("p99", 99)):
        res("%s_%s_ms" % (key, name), "%.3f" % pct(times, p))
    res(key + "_max_ms", "%.3f" % times[-1])
    res(key + "_mean_ms", "%.3f" % (sum(times) / len(times)))
    log("%s: %s: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d" %
        (args.label, key, pct(times, 50), pct(times, 99), times[-1], len(times)))
    return 0


def cmd_client(args):
    res = Result(args.label)
    peer = Peer(tcp_port=args.tcp, pty=args.pty)
    if args.pty:
        stale = peer.drain(quiet=0.3)
        if stale:
            log("%s: discarded %d stale bytes on the pty" % (args.label, stale))
    # Warm-up: the first line opens the session (edgelink) and shows the path works.
    line = pattern_line(99999999, 32)
    dt, got, problem = round_trip(peer, line, answer(line, args.expect), args.open_timeout)
    if problem:
        log("%s: the first round trip failed (%s); got %r" % (args.label, problem, got))
        res("open_status", problem)
        return EXIT_STALL
    res("open_ms", "%.1f" % (dt * 1000))
    rc = throughput(peer, args, res)
    if rc:
        return rc  # the stream is out of step: the latency phase would measure nothing
    time.sleep(args.settle)
    rc = latency(peer, args, res, "lat", 0)
    if rc:
        return rc
    if args.lat_gap_ms > 0:
        rc = latency(peer, args, res, "latgap", args.lat_gap_ms / 1000.0)
    return rc


def cmd_echo(args):
    fd = os.open(args.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    buf = bytearray()
    while True:
        r, w, _ = select.select([fd] if len(buf) < (1 << 20) else [], [fd] if buf else [], [])
        if r:
            try:
                b = os.read(fd, 65536)
            except BlockingIOError:
                b = None
            except OSError:
                return 0
            if b == b"":
                return 0
            if b:
                buf += b
        if w and buf:
            try:
                n = os.write(fd, buf)
            except BlockingIOError:
                n = 0
            del buf[:n]


def load(files):
    vals = {}
    for f in files:
        try:
            with open(f) as fh:
                for line in fh:
                    parts = line.split(None, 2)
                    if len(parts) == 3 and parts[0] == "result":
                        vals[parts[1]] = parts[2].strip()
        except OSError:
            pass
    return vals


def cmd_summary(args):
    v = load(args.files)

    def num(k):
        try:
            return float(v[k])
        except (KeyError, ValueError):
            return None

    def fmt(x, unit):
        if x is None:
            return "-"
        return "{:,.0f} B/s".format(x) if unit == "bps" else "%.2f ms" % x

    rows = [("throughput, payload echoed", "tput_bps", "bps")]
    for key, what in (("lat", "back-to-back"), ("latgap", "spaced")):
        if num("el_%s_p50_ms" % key) is None and num("raw_%s_p50_ms" % key) is None:
            continue
        for p in ("p50", "p99", "max"):
            rows.append(("%s-byte line, %s, %s" % (v.get("size", "?"), what, p), "%s_%s_ms" % (key, p), "ms"))
    w0 = max(len(r[0]) for r in rows)
    print()
    print("rtstream bench: %s bytes in %s-byte lines; latency %s round trips (+%s warm-up), spaced by %s ms" %
          (v.get("bytes", "?"), v.get("line_len", "?"), v.get("lat_count", "?"), v.get("lat_warmup", "?"),
           v.get("lat_gap_ms", "?")))
    print("edgelink: framing %s, baud %s, block window %s ms (one block of <= 475 B per window: <= %s B/s)" %
          (v.get("framing", "?"), v.get("baud", "?"), v.get("el_block_window_ms", "?"),
           "{:,.0f}".format(475000 / num("el_block_window_ms")) if num("el_block_window_ms") else "?"))
    print()
    print("| %-*s | %16s | %16s | %20s |" % (w0, "measurement", "edgelink bridge", "raw pty", "edgelink vs raw"))
    print("|-%s-|-%s-|-%s-|-%s-|" % ("-" * w0, "-" * 16, "-" * 16, "-" * 20))
    for label, key, unit in rows:
        el, raw = num("el_" + key), num("raw_" + key)
        if el and raw:
            slower = raw / el if unit == "bps" else el / raw
            ratio = ("{:,.1f}x slower".format(slower)) if slower >= 1 else ("%.1fx faster" % (1 / slower))
        else:
            ratio = "-"
        print("| %-*s | %16s | %16s | %20s |" % (w0, label, fmt(el, unit), fmt(raw, unit), ratio))
    print()
    for side in ("el", "raw"):
        print("%-8s intact: %-10s status: throughput %s, latency %s / %s; %s s for the throughput run" % (
            "edgelink" if side == "el" else "raw pty", v.get(side + "_tput_intact", "-"),
            v.get(side + "_tput_status", "-"), v.get(side + "_lat_status", "-"), v.get(side + "_latgap_status", "-"),
            v.get(side + "_tput_seconds", "-")))
    extra = [k for k in ("el_cpu_edgelink_pct", "el_cpu_sim_pct", "raw_cpu_echo_pct") if k in v]
    if extra:
        print("CPU during the throughput run (%% of one core): %s" % ", ".join(
            "%s %s" % (k.split("_", 2)[2].replace("_pct", ""), v[k]) for k in extra))
    counters = [k for k in sorted(v) if k.startswith("el_rt_")]
    if counters:
        print("edgelink rtstream counters: " + ", ".join("%s %s" % (k[6:], v[k]) for k in counters))
    print("load average: %s -> %s on %s cores" % (v.get("load_start", "?"), v.get("load_end", "?"),
                                                  v.get("nproc", "?")))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("pty")
    c = sub.add_parser("client")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--tcp", type=int)
    g.add_argument("--pty")
    c.add_argument("--expect", choices=["repl", "raw"], required=True)
    c.add_argument("--label", required=True)
    c.add_argument("--bytes", type=int, default=256 * 1024)
    c.add_argument("--line-len", type=int, default=64)
    c.add_argument("--lat-size", type=int, default=16)
    c.add_argument("--lat-count", type=int, default=200)
    c.add_argument("--lat-warmup", type=int, default=20)
    c.add_argument("--lat-gap-ms", type=float, default=50)
    c.add_argument("--lat-timeout", type=float, default=5)
    c.add_argument("--open-timeout", type=float, default=10)
    c.add_argument("--stall", type=float, default=10, help="s without progress before giving up")
    c.add_argument("--timeout", type=float, default=90, help="s for the whole throughput run")
    c.add_argument("--settle", type=float, default=0.2)
    c.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                   help="report NAME's CPU (%% of one core) over the throughput run")
    s = sub.add_parser("summary")
    s.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.cmd == "client":
        if args.line_len < 12 or args.line_len > 4000:
            ap.error("--line-len must be 12..4000 (the REPL keeps at most 4096 bytes of a line)")
        if args.lat_size < 2:
            ap.error("--lat-size must be at least 2")
        return cmd_client(args)
    if args.cmd == "echo":
        return cmd_echo(args)
    return cmd_summary(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
