#!/usr/bin/python3
"""Self-check for demo/mcu_sim.py: starts socat, runs the simulator on one pty and
plays the gateway on the other with its own minimal HDLC/OverAscii codec.
Runs the checks in both framings; exit code 0 when everything passes.
Standard library only."""
import json
import os
import re
import select
import subprocess
import sys
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
        os.write(self.fd, over_ascii(f) if self.console else f)

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

    def reply(self, num, what):
        m = self.wait(lambda m: m[0] == num and m[1] == 0x42 and m[2] == 0x01, what)
        return m[3:].split(b"\x00", 1)[0].decode()

    def notice(self, what):
        return self.reply(0, what)

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


def run(framing, extra=()):
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
        sim = subprocess.Popen([sys.executable, os.path.join(HERE, "mcu_sim.py"), ptys[0], "--framing", framing,
                                "--log-interval", "0.2", *extra])
        time.sleep(0.3)
        gw = Gateway(ptys[1], framing == "console")
        scenario(gw, framing == "console")
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
        run("hdlc")
        run("console")
        run("hdlc", ("--slice", "20"))  # BLE-sized writes: frames span many reads
    except AssertionError as e:
        print("mcu_sim selftest FAILED: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
