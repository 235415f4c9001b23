#!/usr/bin/python3
"""Self-check for demo/mcu_sim.py: starts socat, runs the simulator on one pty and
plays the gateway on the other with its own minimal HDLC/OverAscii codec.
Runs the checks in both framings; exit code 0 when everything passes.
Standard library only."""
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import termios
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(msg):
    crc = crc16(msg)
    out = bytearray([0xE7])
    for b in msg + bytes([crc >> 8, crc & 0xFF]):
        out += bytes([0xD7, b ^ 0x20]) if b in (0xE7, 0xD7) else bytes([b])
    return bytes(out + b"\xE7")


def over_ascii(data):
    out = bytearray()
    for b in data:
        out += (bytes([0x85, (b ^ 0x20) | 0x80]) if b < 0x10 else bytes([b | 0x80]) if b < 0x80
                else bytes([0x8E, b ^ 0x20]) if b < 0x90 else bytes([0x8F, b]))
    return bytes(out)


class Gateway:
    def __init__(self, path, console):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.console = console
        self.buf, self.esc, self.oa_esc = bytearray(), False, 0
        self.msgs, self.text, self.bad = [], bytearray(), 0

    def send(self, msg):
        f = frame(msg)
        data = over_ascii(f) if self.console else f
        while data:  # a pty holds a few KiB: wait for room, reading meanwhile
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                self.pump(0)
                select.select([], [self.fd], [], 0.05)

    def url(self, num, text):
        self.send(bytes([num, 0x02, 0x00]) + text.encode() + b"\x00")

    def cmd(self, num, obj):
        self.send(bytes([num, 0x02, 0x03]) + json.dumps(obj, separators=(",", ":")).encode() + b"\x00")

    def block(self, sid, pos, data):
        self.send(bytes([0x00, 0x02, 0x04, sid]) + pos.to_bytes(3, "big") + data)

    def _hdlc(self, b):
        if b == 0xE7:
            if len(self.buf) >= 2:
                body = bytes(self.buf[:-2])
                if crc16(body) == (self.buf[-2] << 8) | self.buf[-1]:
                    self.msgs.append(body)
                else:
                    self.bad += 1
            self.buf.clear()
            self.esc = False
        elif b == 0xD7:
            self.esc = True
        else:
            self.buf.append(b ^ 0x20 if self.esc else b)
            self.esc = False

    def pump(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return
        for b in os.read(self.fd, 65536):
            if not self.console:
                self._hdlc(b)
            elif b < 0x80:
                self.text.append(b)
            else:
                esc, self.oa_esc = self.oa_esc, 0
                if esc:
                    self._hdlc((b ^ 0x20) & 0x7F if esc == 0x85 else b ^ 0x20 if esc == 0x8E else b)
                elif b in (0x85, 0x8E, 0x8F):
                    self.oa_esc = b
                else:
                    self._hdlc(b & 0x7F)

    def wait(self, pred, what, timeout=3.0):
        """Returns the first received message matching pred (and drops it)."""
        end = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.msgs):
                if pred(m):
                    del self.msgs[i]
                    return m
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for " + what)
            self.pump(min(left, 0.05))

    def reply(self, num, what, timeout=3.0):
        m = self.wait(lambda m: m[0] == num and m[1] == 0x42 and m[2] == 0x01, what, timeout)
        return m[3:].split(b"\x00", 1)[0].decode()

    def notice(self, what, timeout=3.0):
        return self.reply(0, what, timeout)

    def stream_data(self, sid, want, what):
        got = bytearray()
        end = time.monotonic() + 3.0
        while want not in got:
            m = self.wait(lambda m: m[:3] == b"\x00\x02\x04" and m[3] == sid, what, max(0.01, end - time.monotonic()))
            got += m[7:]
        return bytes(got)

    def quiet(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(0.05)


def eq(got, want):
    if got != want:
        raise AssertionError("got %r, want %r" % (got, want))


def ufstart(gw, num, name, endpoint="upyconsole"):
    gw.cmd(num, {"cmdName": "ufStart", "reqStr": "ufStart", "fileType": "rtstream", "fileName": name,
                 "endpoint": endpoint, "fileLen": 0})
    return gw.reply(num, "ufStart reply " + name)


def scenario(gw, console):
    gw.url(1, "v")
    v = json.loads(gw.reply(1, "v reply"))
    eq((v["req"], v["rslt"], v["SystemName"]), ("v", "ok", "SimMCU"))

    eq(ufstart(gw, 2, "upyconsole"), '{"req":"ufStart","streamID":1,"rslt":"ok"}')
    gw.block(1, 0, b"print(1)\r")
    gw.stream_data(1, b"print(1)\r\nok\r\n>>> ", "REPL echo")

    # BUSY: the block is dropped, sokto = pos+len, resend at sokto goes through.
    gw.url(3, "sim/busy?n=1")
    eq(gw.reply(3, "sim/busy"), '{"req":"sim/busy?n=1","rslt":"ok"}')
    gw.block(1, 9, b"x\r")
    eq(gw.notice("BUSY sokto"), '{"req":"ufBlock","streamID":1,"sokto":11,"reason":"BUSY","rslt":"ok"}')
    gw.block(1, 11, b"y\r")
    gw.stream_data(1, b"y\r\nok\r\n>>> ", "echo after BUSY resend")
    gw.block(1, 0, b"z")
    eq(gw.notice("POS_MISMATCH"), '{"req":"ufBlock","streamID":1,"sokto":13,"reason":"POS_MISMATCH","rslt":"ok"}')

    eq(ufstart(gw, 4, "upyconsole"), '{"req":"ufStart","streamID":1,"rslt":"ok"}')  # restart, same ID
    gw.cmd(5, {"cmdName": "ufEnd", "reqStr": "ufEnd", "streamID": 1})
    eq(gw.reply(5, "ufEnd reply"), '{"req":"ufEnd","streamID":1,"rslt":"ok"}')
    gw.block(9, 0, b"a")
    eq(gw.notice("SESSION_NOT_FOUND"), '{"req":"ufBlock","streamID":9,"reason":"SESSION_NOT_FOUND","rslt":"fail"}')
    gw.block(1, 13, b"")
    eq(gw.notice("INVALID_DATA"), '{"req":"ufBlock","length":0,"reason":"INVALID_DATA","rslt":"fail"}')

    # Session limit: 4 at once.
    for i, name in enumerate(["a", "b", "c"]):
        eq(ufstart(gw, 6 + i, name), '{"req":"ufStart","streamID":%d,"rslt":"ok"}' % (2 + i))
    eq(ufstart(gw, 9, "d"), '{"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"}')

    # Unknown endpoint: ufStart ok, the first block is a hard failure that closes it.
    gw.url(10, "nosuch/thing")
    eq(gw.reply(10, "unknown API"), '{"req":"nosuch/thing","rslt":"fail","error":"failUnknownAPI"}')

    # Subscription publishes.
    gw.cmd(11, {"cmdName": "subscription", "action": "update",
                "pubRecs": [{"name": "devjson", "trigger": "timeorchange", "rateHz": 20, "minMs": 10}]})
    eq(json.loads(gw.reply(11, "subscription"))["topics"], [{"name": "devjson", "idx": 0}])
    pub = gw.wait(lambda m: m[:2] == b"\x00\x80", "publish")
    eq(json.loads(pub[2:].decode())["_t"], 0)
    # devbin (index 1) at 200 Hz, faster than the 20 ms select loop; then both off.
    gw.cmd(40, {"cmdName": "subscription", "action": "update",
                "pubRecs": [{"name": "devbin", "trigger": "timeorchange", "rateHz": 200, "minMs": 0}]})
    eq(json.loads(gw.reply(40, "devbin subscription"))["topics"], [{"name": "devbin", "idx": 1}])
    first = gw.wait(lambda m: m[:4] == b"\x00\x80\xDB\x01", "devbin publish")
    eq(len(first), 15)  # header, magic, index, one record of 2 + 9 bytes
    start, count = time.monotonic(), 0
    while time.monotonic() - start < 0.5:
        gw.wait(lambda m: m[:4] == b"\x00\x80\xDB\x01", "devbin publish")
        count += 1
    if count < 40:  # 100 due; the device skips a publish while its queue is busy
        raise AssertionError("only %d devbin publishes in 0.5 s at 200 Hz" % count)
    gw.cmd(41, {"cmdName": "subscription", "action": "update",
                "pubRecs": [{"name": "devbin", "rateHz": 0}, {"name": "devjson", "rateHz": 0}]})
    eq(json.loads(gw.reply(41, "subscriptions off"))["topics"], [{"name": "devbin", "idx": 1}, {"name": "devjson", "idx": 0}])
    gw.quiet(0.1)
    gw.msgs = [m for m in gw.msgs if m[:2] != b"\x00\x80"]

    # Orderly reset: reply, then the shutdown REPORT as the real firmware sends it (no
    # "reason"); the old boot runs on for its restart delay, then streamIDs restart at 1.
    gw.url(12, "reset")
    eq(gw.reply(12, "reset reply"), '{"req":"reset","rslt":"ok"}')
    rep = gw.wait(lambda m: m[:3] == b"\x00\xC2\x01", "shutdown report")
    eq(rep[3:-1].decode(), '{"msgType":"sysevent","msgName":"shutdown","isRestart":1}')
    # Still the old boot, with its 4 sessions.
    eq(ufstart(gw, 13, "other"), '{"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"}')
    end = time.monotonic() + 5
    while ufstart(gw, 13, "other") != '{"req":"ufStart","streamID":1,"rslt":"ok"}':
        if time.monotonic() > end:
            raise AssertionError("the simulator did not restart after its REPORT")
        gw.quiet(0.1)
    gw.cmd(14, {"cmdName": "ufStart", "reqStr": "ufStart", "fileType": "rtstream", "fileName": "x",
                "endpoint": "nosuch", "fileLen": 0})
    eq(gw.reply(14, "ufStart unknown endpoint"), '{"req":"ufStart","streamID":2,"rslt":"ok"}')
    gw.block(2, 0, b"q")
    eq(gw.notice("INVALID_OPERATION"), '{"req":"ufBlock","streamID":2,"reason":"INVALID_OPERATION","rslt":"fail"}')

    # Idle timeout, then the crash knob: no report, IDs from 1 again.
    gw.url(15, "sim/idle?ms=300")
    gw.reply(15, "sim/idle")
    gw.quiet(0.6)
    gw.block(1, 0, b"late")
    eq(gw.notice("SESSION_NOT_FOUND after idle"),
       '{"req":"ufBlock","streamID":1,"reason":"SESSION_NOT_FOUND","rslt":"fail"}')
    gw.url(16, "sim/crash")
    gw.reply(16, "sim/crash")
    gw.url(17, "sim/idle?ms=10000")
    gw.reply(17, "sim/idle")
    eq(ufstart(gw, 18, "upyconsole"), '{"req":"ufStart","streamID":1,"rslt":"ok"}')

    # Frames sized to the message: with a large block size a long answer is one frame
    # above the 5000 bytes the device itself accepts (a board with PSRAM).
    gw.url(22, "sim/blocksize?n=65536")
    gw.reply(22, "sim/blocksize")
    line = b"s = '" + b"p" * 6000 + b"'\r"
    for pos in range(0, len(line), 475):
        gw.block(1, pos, line[pos:pos + 475])
    big = gw.wait(lambda m: m[:3] == b"\x00\x02\x04" and m[3] == 1 and len(m) > 5000, "one large answer frame")
    eq(big[7:], line[:-1] + b"\r\nok\r\n>>> ")
    gw.url(23, "sim/blocksize?n=475")
    gw.reply(23, "sim/blocksize")

    # 24-bit wrap: with streamPos preset past 2^24, a wrapped position is a mismatch.
    gw.url(21, "sim/streampos?id=1&pos=16777216")
    gw.reply(21, "sim/streampos")
    gw.block(1, 0, b"w")
    eq(gw.notice("wrap POS_MISMATCH"),
       '{"req":"ufBlock","streamID":1,"sokto":16777216,"reason":"POS_MISMATCH","rslt":"ok"}')

    # Corrupted replies are dropped by the receiver (bad CRC), the retry gets through.
    gw.url(19, "sim/corrupt?n=1")
    gw.reply(19, "sim/corrupt")
    bad = gw.bad
    gw.url(20, "v")
    gw.quiet(0.3)
    eq(gw.bad, bad + 1)
    gw.url(20, "v")
    eq(json.loads(gw.reply(20, "v retry"))["req"], "v")

    if console:
        # A typed console line runs as a REST request; its JSON reply comes back as text.
        os.write(gw.fd, b"v\r")
        gw.quiet(0.3)
        text = gw.text.decode("latin-1")
        if 'v\r{"req":"v","rslt":"ok","SystemName":"SimMCU"' not in text:
            raise AssertionError("console line command not echoed/answered: %r" % text[-300:])
        if not re.search(r"I \(\d+\) SysManager: SimMCU 1.0.0 booting\n", text):
            raise AssertionError("no boot banner in console text: %r" % text[:200])


def sim_file(gw, num, name):
    gw.url(num, "sim/file?name=" + name)
    return json.loads(gw.reply(num, "sim/file " + name))


def want_file(gw, num, name, data):
    eq(sim_file(gw, num, name), {"req": "sim/file?name=" + name, "len": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), "rslt": "ok"})


def notices(gw):
    """Every unsolicited reply (msgNum 0, CMDRESPJSON) received so far, in order."""
    gw.quiet(0.2)
    out = [m[3:].split(b"\x00", 1)[0].decode() for m in gw.msgs if m[:3] == b"\x00\x42\x01"]
    gw.msgs = [m for m in gw.msgs if m[:3] != b"\x00\x42\x01"]
    return out


def sink_start(gw, num, name, length):
    gw.cmd(num, {"cmdName": "ufStart", "reqStr": "ufStart", "fileType": "rtstream", "fileName": name,
                 "endpoint": "filesink", "fileLen": length})
    return gw.reply(num, "filesink ufStart " + name)


def sink_send(gw, sid, data, start=0, step=475):
    for pos in range(start, len(data), step):
        gw.block(sid, pos, data[pos:pos + step])


def okto_start(gw, num, name, length, block=500, batch=10, file_type="fs"):
    gw.cmd(num, {"cmdName": "ufStart", "reqStr": "fileupload", "fileType": file_type, "fileName": name,
                 "fileLen": length, "batchMsgSize": block, "batchAckSize": batch})
    return gw.reply(num, "OKTO ufStart " + name)


def okto(pos):
    return '{"req":"ufBlock","okto":%d,"rslt":"ok"}' % pos


def okto_upload(gw, sid, data, block, batch):
    """The reference client's pacing (§5.9): one block, then batches, go-back-N from each okto."""
    pos, first = 0, True
    while pos < len(data):
        n = 1 if first else batch
        first = False
        for i in range(n):
            p = pos + i * block
            if p >= len(data):
                break
            gw.block(sid, p, data[p:p + block])
        m = json.loads(gw.notice("okto after pos %d" % pos))
        eq((m["req"], m["rslt"]), ("ufBlock", "ok"))
        if m["okto"] <= pos:
            raise AssertionError("okto %d did not move on from %d" % (m["okto"], pos))
        pos = m["okto"]
    eq(pos, len(data))


def file_scenario(gw, timers):
    """filesink (rtstream into a file), sim/busy, sim/file and OKTO uploads (ricrest.md §5.5,
    §5.9; xstream.md §12 item 10)."""
    gw.url(100, "sim/crash")  # a clean boot: streamIDs from 1, no sessions
    gw.reply(100, "sim/crash")
    gw.quiet(0.1)
    gw.msgs.clear()
    eq(sim_file(gw, 101, "nosuch.bin"), {"req": "sim/file?name=nosuch.bin", "rslt": "fail", "error": "notFound"})

    # 200 KiB in 475-byte blocks: no reply until the end-of-stream sokto, then the session is closed.
    data = bytes((i * 7 + (i >> 9)) & 0xFF for i in range(200 * 1024))
    eq(sink_start(gw, 102, "sink.bin", len(data)), '{"req":"ufStart","streamID":1,"rslt":"ok"}')
    sink_send(gw, 1, data)
    eq(gw.notice("end-of-stream sokto"), '{"req":"ufBlock","streamID":1,"sokto":%d,"rslt":"ok"}' % len(data))
    eq(notices(gw), [])
    want_file(gw, 103, "sink.bin", data)
    gw.block(1, len(data), b"x")
    eq(gw.notice("closed after final"), '{"req":"ufBlock","streamID":1,"reason":"SESSION_NOT_FOUND","rslt":"fail"}')

    # sim/busy?n=1: exactly one BUSY sokto (pos+len), the block is dropped and the rest goes on;
    # a ufStart restart (same streamID, position 0, no open callback) and a resend from 0 repair it.
    small = data[:5000]
    eq(sink_start(gw, 104, "busy.bin", len(small)), '{"req":"ufStart","streamID":2,"rslt":"ok"}')
    sink_send(gw, 2, small[:950])
    gw.url(105, "sim/busy?n=1")
    eq(gw.reply(105, "sim/busy"), '{"req":"sim/busy?n=1","rslt":"ok"}')
    sink_send(gw, 2, small, start=950)
    eq(notices(gw), ['{"req":"ufBlock","streamID":2,"sokto":1425,"reason":"BUSY","rslt":"ok"}',
                     '{"req":"ufBlock","streamID":2,"sokto":5000,"rslt":"ok"}'])
    eq(sim_file(gw, 106, "busy.bin")["len"], 5000)  # the dropped block reads as zeros
    want_file(gw, 107, "busy.bin", small[:950] + bytes(475) + small[1425:])
    eq(sink_start(gw, 108, "busy.bin", len(small)), '{"req":"ufStart","streamID":3,"rslt":"ok"}')  # closed: new
    sink_send(gw, 3, small[:2000])
    eq(sink_start(gw, 109, "busy.bin", len(small)), '{"req":"ufStart","streamID":3,"rslt":"ok"}')  # restart
    sink_send(gw, 3, small)  # pos 0 accepted again and starts the file over
    eq(notices(gw), ['{"req":"ufBlock","streamID":3,"sokto":5000,"rslt":"ok"}'])
    want_file(gw, 110, "busy.bin", small)

    # POS_MISMATCH behind the stream position; a forward gap is accepted; fileLen 0 never ends.
    eq(sink_start(gw, 111, "open.bin", 0), '{"req":"ufStart","streamID":4,"rslt":"ok"}')
    gw.block(4, 0, b"abc")
    gw.block(4, 10, b"xyz")
    gw.block(4, 5, b"late")
    eq(notices(gw), ['{"req":"ufBlock","streamID":4,"sokto":13,"reason":"POS_MISMATCH","rslt":"ok"}'])
    want_file(gw, 112, "open.bin", b"abc" + bytes(7) + b"xyz")
    eq(sink_start(gw, 112, "open.bin", 0), '{"req":"ufStart","streamID":4,"rslt":"ok"}')  # restart
    gw.block(4, 0, b"hi")  # firstBlock: the file starts over
    want_file(gw, 112, "open.bin", b"hi")

    # OKTO upload of 200 KiB at 500/10: okto reaches the length, ufEnd ok after the close.
    eq(okto_start(gw, 113, "up.bin", len(data)),
       '{"req":"ufStart","batchMsgSize":500,"batchAckSize":10,"streamID":5,"rslt":"ok"}')
    okto_upload(gw, 5, data, 500, 10)
    gw.cmd(114, {"cmdName": "ufEnd", "reqStr": "fileupload", "streamID": 5, "fileName": "up.bin",
                 "fileType": "fs", "fileLen": len(data)})
    eq(gw.reply(114, "OKTO ufEnd"), '{"req":"ufEnd","rslt":"ok"}')
    eq(notices(gw), [])
    want_file(gw, 115, "up.bin", data)

    # Negotiation: defaults 5000/40 → 800 (2/3 of 1200) and 40 (800*40 <= 50000); 20 minimum;
    # a batch above 50000 bytes is cut. Each start is cancelled again (notice, then reply).
    for num, (b, a), want in ((116, (0, 0), (800, 40)), (117, (5, 3), (20, 3)), (118, (700, 100), (700, 71)),
                              (119, (-1, 1), (800, 1))):
        r = json.loads(okto_start(gw, num, "neg.bin", 100, b, a))
        eq((r["batchMsgSize"], r["batchAckSize"], r["rslt"]), want + ("ok",))
        gw.cmd(num, {"cmdName": "ufCancel", "streamID": r["streamID"], "reason": "negotiated"})
        eq(gw.reply(num, "ufCancel"), '{"req":"ufCancel","rslt":"ok"}')
        eq(notices(gw), ['{"req":"","cmdName":"ufCancel","reason":"negotiated","rslt":"ok"}'])

    # Out of order: blocks at the wrong position are discarded but count towards the batch;
    # the batch's okto shows where to go back to.
    body = data[:3000]
    sid = json.loads(okto_start(gw, 120, "ooo.bin", len(body), 500, 4))["streamID"]
    gw.block(sid, 0, body[:500])
    eq(gw.notice("first okto"), okto(500))
    for p in (500, 1500, 2000, 2500):  # 1000 missing
        gw.block(sid, p, body[p:p + 500])
    eq(notices(gw), [okto(1000)])
    for p in (1000, 1500, 2000, 2500):
        gw.block(sid, p, body[p:p + 500])
    eq(notices(gw), [okto(3000)])
    want_file(gw, 121, "ooo.bin", body)
    gw.cmd(122, {"cmdName": "ufEnd", "streamID": sid})
    eq(gw.reply(122, "ufEnd after close"), '{"req":"ufEnd","rslt":"ok"}')

    # One upload at a time; a restart before the first block is fine, after it is not.
    a = json.loads(okto_start(gw, 123, "a.bin", 1000, 500, 10))
    eq(okto_start(gw, 124, "a.bin", 1000, 500, 10), json.dumps(a, separators=(",", ":")))  # same streamID
    fail = ('{"req":"ufStart","batchMsgSize":500,"batchAckSize":10,"streamID":%d,"rslt":"fail",'
            '"error":"transferInProgress"}' % a["streamID"])
    eq(okto_start(gw, 125, "b.bin", 1000, 200, 5), fail)
    gw.block(a["streamID"], 0, data[:500])
    eq(gw.notice("first okto a.bin"), okto(500))
    eq(okto_start(gw, 126, "a.bin", 1000, 500, 10), fail)
    gw.cmd(127, {"cmdName": "ufCancel", "streamID": a["streamID"], "reason": "userCancel"})
    eq(gw.reply(127, "ufCancel a.bin"), '{"req":"ufCancel","rslt":"ok"}')
    eq(notices(gw), ['{"req":"","cmdName":"ufCancel","reason":"userCancel","rslt":"ok"}'])
    eq(sim_file(gw, 128, "a.bin")["rslt"], "fail")  # cancelled: not stored
    b = json.loads(okto_start(gw, 129, "b.bin", 100, 200, 5))
    eq(b["rslt"], "ok")
    gw.block(b["streamID"], 0, data[:100])  # the first block is also the final one
    eq(notices(gw), [okto(100)])
    want_file(gw, 130, "b.bin", data[:100])

    # sim/failwrite: the write-failure reply, then the ufCancel notice; nothing stored.
    gw.url(131, "sim/failwrite?n=1")
    eq(gw.reply(131, "sim/failwrite"), '{"req":"sim/failwrite?n=1","rslt":"ok"}')
    f = json.loads(okto_start(gw, 132, "f.bin", 1000))
    gw.block(f["streamID"], 0, data[:500])
    eq(notices(gw), ['{"req":"ufBlock","cmdName":"ufStatus","reason":"FileWriteFailed","rslt":"fail"}',
                     '{"req":"","cmdName":"ufCancel","reason":"failFileWrite","rslt":"ok"}'])
    eq(sim_file(gw, 133, "f.bin")["error"], "notFound")
    gw.block(f["streamID"], 500, data[500:1000])
    eq(gw.notice("closed after write failure"),
       '{"req":"ufBlock","streamID":%d,"reason":"SESSION_NOT_FOUND","rslt":"fail"}' % f["streamID"])

    # fileType "fw" is an upload too (firmware: OTAWriteFailed); "" and "file" are files.
    gw.url(134, "sim/failwrite?n=1")
    gw.reply(134, "sim/failwrite")
    w = json.loads(okto_start(gw, 135, "fw.bin", 1000, file_type="fw"))
    gw.block(w["streamID"], 0, data[:500])
    eq(notices(gw), ['{"req":"ufBlock","cmdName":"ufStatus","reason":"OTAWriteFailed","rslt":"fail"}',
                     '{"req":"","cmdName":"ufCancel","reason":"failOTAStart","rslt":"ok"}'])
    for num, ft in ((136, ""), (137, "file")):
        sid = json.loads(okto_start(gw, num, "plain.bin", 600, file_type=ft))["streamID"]
        gw.block(sid, 0, data[:500])
        gw.block(sid, 500, data[500:600])
        eq(notices(gw), [okto(500), okto(600)])
        want_file(gw, num, "plain.bin", data[:600])

    if timers:
        # Stalled after 2 blocks: an unsolicited okto every 1 s, 5 times, then the failRetries cancel.
        t = json.loads(okto_start(gw, 140, "t.bin", 5000, 500, 10))
        gw.block(t["streamID"], 0, data[:500])
        gw.block(t["streamID"], 500, data[500:1000])
        eq(gw.notice("first okto t.bin"), okto(500))
        start = time.monotonic()
        for i in range(5):
            eq(gw.notice("timer okto %d" % (i + 1)), okto(1000))
        eq(gw.notice("failRetries"), '{"req":"","cmdName":"ufCancel","reason":"failRetries","rslt":"ok"}')
        took = time.monotonic() - start
        if not 5.0 <= took <= 7.5:
            raise AssertionError("5 timer oktos and the cancel took %.1f s, want about 6" % took)
        # Fewer than 2 blocks: the first wait is 5 s.
        t = json.loads(okto_start(gw, 141, "t.bin", 5000, 500, 10))
        start = time.monotonic()
        eq(gw.notice("first timer okto", timeout=6.5), okto(0))
        if time.monotonic() - start < 4.5:
            raise AssertionError("the first timer okto came before 5 s")
        gw.cmd(142, {"cmdName": "ufCancel", "streamID": t["streamID"]})
        eq(gw.reply(142, "ufCancel t.bin"), '{"req":"ufCancel","rslt":"ok"}')
        eq(notices(gw), ['{"req":"","cmdName":"ufCancel","reason":"","rslt":"ok"}'])


def check_log(path):
    with open(path, errors="replace") as f:
        lines = [ln.rstrip("\n") for ln in f if ln.startswith("sim: ") and "subscription" not in ln]
    for want in ("sim: filesink open streamID=1 file=sink.bin",
                 "sim: filesink complete file=sink.bin len=204800",
                 "sim: busy streamID=2 pos=950 len=475",
                 "sim: okto start streamID=5 file=up.bin len=204800 block=500 batch=10",
                 "sim: okto end file=up.bin len=204800",
                 "sim: okto cancel file=a.bin reason=userCancel"):
        if want not in lines:
            raise AssertionError("no %r in the simulator's log: %r" % (want, lines))
    # The restart of busy.bin's second session did not call the open callback again.
    eq(len([ln for ln in lines if ln.startswith("sim: filesink open") and "file=busy.bin" in ln]), 2)


def run(framing, extra=(), timers=False):
    socat = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                             stderr=subprocess.PIPE, text=True)
    sim = None
    try:
        ptys = []
        while len(ptys) < 2:
            line = socat.stderr.readline()
            if not line:
                raise AssertionError("socat did not start")
            m = re.search(r"PTY is (\S+)", line)
            if m:
                ptys.append(m.group(1))
        log = tempfile.NamedTemporaryFile(prefix="mcu_sim_selftest.", suffix=".log")
        sim = subprocess.Popen([sys.executable, os.path.join(HERE, "mcu_sim.py"), ptys[0], "--framing", framing,
                                "--log-interval", "0.2", *extra], stderr=log)
        time.sleep(0.3)
        gw = Gateway(ptys[1], framing == "console")
        scenario(gw, framing == "console")
        file_scenario(gw, timers)
        check_log(log.name)
        if framing == "console" and not re.search(r"I \(\d+\) FileSink: filesink complete file=sink.bin len=204800\n",
                                                  gw.text.decode("latin-1")):
            raise AssertionError("no filesink log line in the console text")
        if sim.poll() is not None:
            raise AssertionError("simulator exited with %s" % sim.returncode)
        print("mcu_sim selftest (%s%s): ok" % (framing, " " + " ".join(extra) if extra else ""))
    finally:
        for p in (sim, socat):
            if p and p.poll() is None:
                p.terminate()
                p.wait(5)


def main():
    try:
        run("hdlc", timers=True)
        run("console")
        run("hdlc", ("--slice", "20"))  # BLE-sized writes: frames span many reads
    except AssertionError as e:
        print("mcu_sim selftest FAILED: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
