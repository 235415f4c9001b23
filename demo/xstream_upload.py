#!/usr/bin/env python3
"""Upload a file to edgelink over an app port, resumably (spec/xstream.md).

    python3 demo/xstream_upload.py --port 5050 --route /upload-file fw.bin
    python3 demo/xstream_upload.py --port 5050 --route /upload-file fw.bin --key q3JxVb0cT1m2Yk8wZr7e4A

One JSON line announces the upload, the raw bytes follow, one JSON line ends it. If the
connection is lost, or edgelink granted only part of the file (short of spool space), it
prints the upload's key: run the same command with --key KEY and it goes on from the last
byte edgelink stored durably. Exit code: the status edgelink answered (0 = done, 10 = only
part stored, others see spec/xstream.md §4), or 75 when the connection was lost (130 after Ctrl-C).
Standard library only.
"""
import argparse
import hashlib
import json
import os
import select
import socket
import sys

RESUMABLE = {4, 6, 9, 10}  # NoSpace, Timeout, Internal, Partial: the key keeps the bytes stored so far


class Conn:
    """One TCP connection to the app port that reads JSON lines however the bytes arrive."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = b""
        self.closed = False

    def send_json(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _recv(self):
        chunk = self.sock.recv(65536)
        self.closed = not chunk
        self.buf += chunk

    def lines_ready(self):
        """The complete lines that arrived so far, without waiting (edgelink may talk mid-upload)."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            self._recv()
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(ln) for ln in lines if ln.strip()]

    def read_json(self):
        while b"\n" not in self.buf:
            if self.closed:
                raise ConnectionError("edgelink closed the connection")
            self._recv()
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def show(msg):
    """Prints a progress line; returns the final reply when msg is one (it has a "status")."""
    if "status" in msg:
        return msg
    p = msg.get("edgelink", {}).get("progress")
    if p:
        print(f"{p['phase']} {p['percent']:3d}% ({p['bytes']}/{p['total']} bytes)", flush=True)
    return None


def resume_hint(key):
    """This command line with --key KEY (replacing an earlier --key)."""
    argv, skip = [], False
    for a in sys.argv:
        if skip or a.startswith("--key="):
            skip = False
        elif a == "--key":
            skip = True
        else:
            argv.append(a)
    return f"resume with: {' '.join(argv)} --key {key}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="the app's port (or its upload_port)")
    ap.add_argument("--route", required=True, help="an upload route of the app, e.g. /upload-file")
    ap.add_argument("--name", help="name to store the file under (default: the file's base name)")
    ap.add_argument("--key", help="resume the upload with this x-stream-key")
    ap.add_argument("--bufsize", type=int, default=65536, help="bytes per send (edgelink's advice wins)")
    ap.add_argument("--hello", action="store_true", help="ask edgelink for progress lines")
    args = ap.parse_args()

    total = os.path.getsize(args.file)
    if total == 0:
        sys.exit("nothing to upload: the file is empty")
    request = {"route": args.route, "x-stream": f"{total}:{args.bufsize}", "data-format": "bytes",
               "name": args.name or os.path.basename(args.file), "sha256": sha256_of(args.file)}
    if args.key:
        request["x-stream-key"] = args.key  # a resume: route and total must be the original's

    key = args.key
    try:
        conn = Conn(args.host, args.port)
        if args.hello:
            conn.send_json({"edgelink": {"hello": {"errors": True}}})
        conn.send_json(request)
        reply = conn.read_json()  # read the answer before sending a single raw byte
        while "status" not in reply:  # e.g. an action queued for the app: not ours
            reply = conn.read_json()
        if reply["x-stream"] == "-1":
            print(f"refused: {json.dumps(reply)}", file=sys.stderr)
            return reply["status"]
        key = reply["x-stream-key"]
        offset = reply["x-stream-offset"]
        grant, bufsize = (int(x) for x in reply["x-stream"].split(":"))
        to_send = grant or total - offset  # "n:bufsize" = only n bytes now; "0:bufsize" = all the rest
        print(f"key {key}: sending {to_send} bytes from offset {offset} of {total}", flush=True)

        final = None
        with open(args.file, "rb") as f:
            f.seek(offset)
            while to_send > 0 and final is None:
                block = f.read(min(bufsize, to_send))
                if not block:
                    sys.exit("the file got shorter while uploading")
                try:
                    conn.sock.sendall(block)
                except OSError:
                    break  # edgelink stopped reading: its final reply, if any, says why
                to_send -= len(block)
                # Progress lines, or an early final reply (an error in the raw phase).
                for msg in conn.lines_ready():
                    final = final or show(msg)
        while final is None:  # the rest of the progress, then the final reply
            final = show(conn.read_json())
    except (OSError, KeyboardInterrupt) as e:
        print(f"connection lost: {e!r}" if isinstance(e, OSError) else "interrupted", file=sys.stderr)
        if key:
            print(resume_hint(key), file=sys.stderr)  # edgelink keeps what it stored durably
        return 75 if isinstance(e, OSError) else 130

    print(json.dumps(final), flush=True)
    if final["status"] == 0:
        print(f"done: sha256 {final['sha256']}" + (f", stored as {final['path']}" if "path" in final else ""))
    elif final["status"] in RESUMABLE:
        print(f"not finished ({final.get('error')}); {resume_hint(key)}", file=sys.stderr)
    return final["status"]


if __name__ == "__main__":
    sys.exit(main())
