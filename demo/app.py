#!/usr/bin/env python3
"""A demo app for edgelink (standard library only; uplink apps look like this).

It connects to its app port, sends a point on stream `imu` every `--period` seconds,
and answers every action it receives with Progress 50 then Completed 100.
Line-safe: it reads until '\\n' however the bytes arrive, and reconnects when
edgelink restarts.

    python3 demo/app.py --port 5050
"""
import argparse
import json
import math
import selectors
import socket
import sys
import time


def now_ms():
    return int(time.time() * 1000)


class App:
    def __init__(self, host, port, stream):
        self.addr = (host, port)
        self.stream = stream
        self.sock = None
        self.buf = b""
        self.seq = 0
        self.status_seq = 0

    def connect(self):
        while True:
            try:
                self.sock = socket.create_connection(self.addr, timeout=5)
                self.sock.setblocking(False)
                self.buf = b""
                # Ask edgelink to tell us about lines it rejects (an edgelink extension).
                self.send({"edgelink": {"hello": {"errors": True}}})
                print(f"connected to {self.addr[0]}:{self.addr[1]}", flush=True)
                return
            except OSError as e:
                print(f"cannot connect to {self.addr[0]}:{self.addr[1]} ({e}); retrying", flush=True)
                time.sleep(1)

    def send(self, obj):
        data = json.dumps(obj).encode() + b"\n"
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def send_point(self):
        self.seq += 1
        t = self.seq / 10
        self.send({"stream": self.stream, "sequence": self.seq, "timestamp": now_ms(),
                   "ax": round(math.sin(t), 4), "ay": round(math.cos(t), 4), "az": 9.81})

    def send_status(self, action_id, state, progress, errors=()):
        self.status_seq += 1
        self.send({"stream": "action_status", "sequence": self.status_seq, "timestamp": now_ms(),
                   "action_id": action_id, "state": state, "progress": progress, "errors": list(errors)})

    def on_line(self, line):
        msg = json.loads(line)
        if "edgelink" in msg:
            print(f"edgelink says: {msg['edgelink']}", flush=True)
            return
        action_id, name = msg["action_id"], msg["name"]
        print(f"action {action_id}: {name} payload={msg.get('payload')!r}", flush=True)
        self.send_status(action_id, "Progress", 50)
        self.send_status(action_id, "Completed", 100)

    def read(self):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                self.on_line(line)
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5050)
    ap.add_argument("--stream", default="imu")
    ap.add_argument("--period", type=float, default=0.1, help="seconds between points (0: no points)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many points (0: run forever)")
    args = ap.parse_args()

    app = App(args.host, args.port, args.stream)
    app.connect()
    next_point = time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(app.sock, selectors.EVENT_READ)
    while True:
        timeout = max(0.0, next_point - time.monotonic()) if args.period > 0 else None
        for _ in sel.select(timeout):
            try:
                alive = app.read()
            except OSError:
                alive = False
            if not alive:
                print("edgelink closed the connection; reconnecting", flush=True)
                sel.unregister(app.sock)
                app.sock.close()
                app.connect()
                sel.register(app.sock, selectors.EVENT_READ)
        if args.period > 0 and time.monotonic() >= next_point:
            try:
                app.send_point()
            except OSError:
                continue  # the read side notices and reconnects
            next_point += args.period
            if args.count and app.seq >= args.count:
                time.sleep(0.2)
                return 0


if __name__ == "__main__":
    sys.exit(main())
