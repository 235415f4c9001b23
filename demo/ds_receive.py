#!/usr/bin/env python3
"""Receive the data streams the cloud sends on a topic, one file per stream (spec/datastreams.md).

    python3 demo/ds_receive.py --port 5050 --topic config/blob --dir /tmp/received

The cloud publishes header, chunks and trailer on
/tenants/<project>/devices/<device>/datastreams-in/<topic>; edgelink hands them to the one
app subscribed to the topic as rx_open, rx_chunk and rx_close lines. Each stream is kept
in memory (a chunk may be replaced by a later version) and written when it ends, to
<dir>/<name> (the header's name, else the stream id); a stream that did not end with
reason "" is written as <file>.partial. Ctrl-C unsubscribes and exits. Standard library only.
"""
import argparse
import base64
import json
import os
import socket
import sys


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def read(self):
        """The next data-stream line (others, e.g. actions, are not ours)."""
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("edgelink closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "ds" in msg:
                return msg


def file_name(header):
    """The header's name without any directory part or leading dots, else the stream id."""
    name = os.path.basename(header.get("name") or "").lstrip(".")
    return name or header["stream_id"]


def receive(conn, outdir):
    streams = {}  # stream_id -> (rx_open line, {chunk_index: bytes})
    while True:
        msg = conn.read()
        kind, sid = msg["ds"], msg.get("stream_id")
        if kind == "rx_open":
            streams[sid] = (msg, {})
            print(f"rx_open {sid} topic={msg['topic']} kind={msg['kind']} name={msg.get('name', '')!r} "
                  f"mime_type={msg.get('mime_type')} total_length={msg.get('total_length', '?')} "
                  f"sender={msg.get('sender')} attributes={json.dumps(msg.get('attributes', {}))}", flush=True)
        elif kind == "rx_chunk" and sid in streams:
            data = msg["text"].encode() if "text" in msg else base64.b64decode(msg["data"])
            streams[sid][1][msg["chunk_index"]] = data  # a replacement ("replace": true) overwrites
        elif kind == "rx_close" and sid in streams:
            header, chunks = streams.pop(sid)
            data = b"".join(chunks[i] for i in sorted(chunks))
            path = os.path.join(outdir, file_name(header)) + ("" if msg["reason"] == "" else ".partial")
            with open(path, "wb") as f:
                f.write(data)
            print(f"rx_close {sid} reason={msg['reason']!r} bytes={len(data)} chunks={len(chunks)} -> {path}",
                  flush=True)
        elif kind == "error":
            print(f"edgelink: {json.dumps(msg)}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="the app's port")
    ap.add_argument("--topic", required=True, help="data-stream topic, e.g. config/blob")
    ap.add_argument("--dir", default=".", help="where to write received streams (default: here)")
    args = ap.parse_args()

    conn = Conn(args.host, args.port)
    conn.send({"ds": "subscribe", "req": 1, "topic": args.topic})
    reply = conn.read()
    if reply["ds"] != "subscribed":
        print(f"subscribe refused: {json.dumps(reply)}", file=sys.stderr)
        return 2
    print(f"subscribed {args.topic}", flush=True)
    try:
        receive(conn, args.dir)
    except KeyboardInterrupt:
        conn.send({"ds": "unsubscribe", "req": 2, "topic": args.topic})
        conn.sock.settimeout(5)
        try:
            while conn.read()["ds"] != "unsubscribed":  # an rx_close Cancelled may come first
                pass
            print(f"unsubscribed {args.topic}", flush=True)
        except (OSError, ConnectionError):
            pass
    except ConnectionError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
