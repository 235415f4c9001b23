#!/usr/bin/env python3
"""Send a file (or stdin) to the cloud as a data stream over an app port (spec/datastreams.md).

    python3 demo/ds_send.py --port 5050 --topic camera/snapshot --mime-type image/jpeg snap.jpg
    journalctl -b | python3 demo/ds_send.py --port 5050 --topic logs/boot --text -

edgelink answers `open` with the stream id, cuts what is written into chunks and publishes
header, chunks and trailer on /tenants/<project>/devices/<device>/datastreams/<topic>.
Writes get no reply: when edgelink cannot take more it stops reading and sendall waits.
Prints edgelink's `opened` and `closed` lines. Exit code: 0 when the stream ended with
reason "", 1 when it ended otherwise, 2 when the open was refused. Standard library only.
"""
import argparse
import base64
import codecs
import json
import os
import select
import socket
import sys

BLOCK = 48 * 1024  # bytes per write line; edgelink merges or splits them into chunks anyway


class Conn:
    """JSON lines over one TCP connection."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("edgelink closed the connection")
        self.buf += chunk

    def read(self):
        """The next line that concerns data streams (others, e.g. actions, are not ours)."""
        while True:
            while b"\n" not in self.buf:
                self._recv()
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "ds" in msg:
                return msg

    def ready(self):
        """The data-stream lines that have already arrived, without waiting."""
        while select.select([self.sock], [], [], 0)[0]:
            self._recv()
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "ds" in msg:
                out.append(msg)
        return out


def blocks(f, text):
    """The input as write payloads: bytes, or str for --text (decoded incrementally, so a
    character split between two reads is not broken)."""
    decoder = codecs.getincrementaldecoder("utf-8")() if text else None
    while True:
        block = f.read(BLOCK)
        if decoder:
            part = decoder.decode(block, final=not block)
            if part:
                yield part
        elif block:
            yield block
        if not block:
            return


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="the file to send, or - for stdin")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="the app's port")
    ap.add_argument("--topic", required=True, help="data-stream topic, e.g. camera/snapshot")
    ap.add_argument("--text", action="store_true", help="a text stream (the input must be UTF-8)")
    ap.add_argument("--mime-type", help="default text/plain or application/octet-stream")
    ap.add_argument("--name", help="the stream's name (byte streams only)")
    args = ap.parse_args()
    if args.text and args.name:
        ap.error("--name is for byte streams only")

    request = {"ds": "open", "req": 1, "topic": args.topic, "kind": "text" if args.text else "byte"}
    if args.mime_type:
        request["mime_type"] = args.mime_type
    if args.name:
        request["name"] = args.name
    if args.file != "-":
        request["total_length"] = os.path.getsize(args.file)  # the UTF-8 byte count for text, too

    conn = Conn(args.host, args.port)
    conn.send(request)
    opened = conn.read()
    print(json.dumps(opened), flush=True)
    if opened["ds"] != "opened":
        print(f"open refused: {opened.get('reason')}", file=sys.stderr)
        return 2
    sid = opened["stream_id"]

    final = None
    with (sys.stdin.buffer if args.file == "-" else open(args.file, "rb")) as f:
        for payload in blocks(f, args.text):
            key, value = ("text", payload) if args.text else ("data", base64.b64encode(payload).decode())
            conn.send({"ds": "write", "stream_id": sid, key: value})
            # edgelink may end the stream early (e.g. LengthExceeded, Timeout): stop writing then.
            final = next((m for m in conn.ready() if m["ds"] == "closed" and m["stream_id"] == sid), None)
            if final:
                break
    if final is None:
        conn.send({"ds": "close", "stream_id": sid})
        final = conn.read()
        while not (final["ds"] == "closed" and final["stream_id"] == sid):
            if final["ds"] == "error":
                print(f"edgelink: {json.dumps(final)}", file=sys.stderr)
            final = conn.read()
    print(json.dumps(final), flush=True)
    print(f"stream {sid}: {final['bytes']} bytes in {final['chunks']} chunks, reason {final['reason']!r}",
          file=sys.stderr)
    return 0 if final["reason"] == "" else 1


if __name__ == "__main__":
    sys.exit(main())
