#!/usr/bin/python3
"""Fake Raft MCU on a serial device (spec/ricrest.md §9): the DEVICE side of RICSerial.

Usage:  mcu_sim.py /dev/pts/N [--framing hdlc|console] [--busy K] [--drop K]
                   [--corrupt K] [--idle-ms MS] [--stale] [--log-interval S] [--slice N]
                   [--block-size N] [--restart-delay-ms MS] [--record-input FILE]

Typical setup: `socat -d -d pty,raw,echo=0 pty,raw,echo=0`, this simulator on one end,
edgelink on the other. Test knobs are flags (initial values) and the simulator-only
REST URLs sim/busy, sim/drop, sim/corrupt, sim/crash, sim/idle, sim/say, sim/stale,
sim/blocksize?n=<bytes> and sim/streampos?id=<sid>&pos=<n> (presets a session's 32-bit
stream position, to test the 24-bit wrap without sending 16 MiB). Standard library only.
The URL `bledisconnect` (a BLE client's goodbye, ricrest.md §3.5) answers ok and logs
"sim: bledisconnect" on stderr (the BLE mock of tests/integration/bluez_mock.py drops the link).

Files (ricrest.md §5.5, §5.9; xstream.md §7.3): the rtstream endpoint `filesink` writes
each accepted block into an in-memory file named after the session's fileName at its
position (a block at 0 starts the file over); a ufStart with fileType fs/file/""/fw is
an OKTO upload into the same in-memory file system (stored when complete). The files
survive resets, like flash. sim/file?name=<n> -> {"req":…,"len":…,"sha256":…,"rslt":"ok"}
or {"req":…,"rslt":"fail","error":"notFound"}; sim/failwrite?n=<k> makes the next k
OKTO block writes fail (FileWriteFailed / OTAWriteFailed). sim/busy counts the chunk
callbacks of both rtstream endpoints (upyconsole and filesink). Stream and upload
events are logged on stderr ("sim: filesink open streamID=1 file=x", "sim: filesink
complete file=x len=N", "sim: busy streamID=1 pos=P len=N", "sim: okto start …",
"sim: okto end …") and, in console mode, as log lines on the port.

StatePublisher topics: devjson (index 0, the JSON shape of §9.4) and devbin (index 1, one
small devbin record), published at the subscribed rate (up to 1000 Hz). Every
subscription request is logged on stderr, one line per topic, e.g.
"sim: subscription update devjson rateHz=10 minMs=50".

Like the real firmware (ricrest.md §3.1, §7.5): its own receive limit is 5000 bytes, but
what it sends is sized to the message (with --block-size above 5000, a long REPL answer
is one frame that large, as from a board with PSRAM); the shutdown REPORT has no
"reason"; and after the REPORT the old boot runs on for --restart-delay-ms (1000, the
firmware's SYSTEM_RESTART_DELAY_MS), still answering, before it restarts.
"""
import argparse
import hashlib
import json
import os
import select
import sys
import termios
import time
import tty
import urllib.parse

FLAG, ESC = 0xE7, 0xD7
MAX_RX = 5000            # MaxRxMsgLen without PSRAM, CRC bytes included
MAX_SESSIONS = 4         # a new session is refused when more than 3 exist
MAX_BLOCK = 475          # device-to-client block size (--block-size)
RESTART_DELAY_MS = 1000  # SYSTEM_RESTART_DELAY_MS: the old boot's last second after its REPORT
MAX_REPL_LINE = 65536
CHANNEL = "serial"       # one channel per simulator process
CAPS = ["v", "caps", "reset", "subscription", "pubtopics", "upy", "sim"]
TOPICS = {"devjson": 0, "devbin": 1}  # StatePublisher topics and their indexes (_t, devbin byte 1)
RT_ENDPOINTS = ("upyconsole", "filesink")  # endpoints with a chunk callback
# OKTO upload (§5.9). The block size is clamped to 2/3 of the channel's inbound block
# length (1200 by default, so 800), a batch to 50000 bytes.
INBOUND_BLOCK_LEN = 1200
OKTO_BLOCK_DEFAULT, OKTO_BLOCK_MIN, OKTO_BATCH_DEFAULT, OKTO_BATCH_BYTES = 5000, 20, 40, 50000
OKTO_FIRST_WAIT, OKTO_WAIT, OKTO_RETRIES, OKTO_MAX_TIME = 5.0, 1.0, 5, 7200.0


def crc16(data, crc=0xFFFF):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def hdlc_encode(msg, corrupt=False):
    crc = crc16(msg) ^ (0x5A5A if corrupt else 0)
    out = bytearray([FLAG])
    for b in bytes(msg) + bytes([crc >> 8, crc & 0xFF]):
        out += bytes([ESC, b ^ 0x20]) if b in (FLAG, ESC) else bytes([b])
    out.append(FLAG)
    return bytes(out)


class HdlcDecoder:
    """The device receiver algorithm of §3.2, byte by byte."""

    def __init__(self, max_len=MAX_RX):
        self.buf, self.esc, self.max_len = bytearray(), False, max_len
        self.bad_crc = self.oversize = 0

    def feed(self, data):
        frames = []
        for b in data:
            if b == FLAG:
                self.esc = False  # a flag always ends a frame, even after an escape
                if len(self.buf) >= 2:
                    body, got = bytes(self.buf[:-2]), (self.buf[-2] << 8) | self.buf[-1]
                    if crc16(body) == got:
                        frames.append(body)
                    else:
                        self.bad_crc += 1
                self.buf.clear()
            elif b == ESC:
                self.esc = True
            else:
                self.buf.append(b ^ 0x20 if self.esc else b)
                self.esc = False
                if len(self.buf) > self.max_len:
                    self.oversize += 1
                    self.buf.clear()
        return frames


def over_ascii_encode(data):
    out = bytearray()
    for b in data:
        if b <= 0x0F:
            out += bytes([0x85, (b ^ 0x20) | 0x80])
        elif b <= 0x7F:
            out.append(b | 0x80)
        elif b <= 0x8F:
            out += bytes([0x8E, b ^ 0x20])
        else:
            out += bytes([0x8F, b])
    return bytes(out)


class OverAsciiDecoder:
    def __init__(self):
        self.esc = 0

    def push(self, b):
        esc, self.esc = self.esc, 0
        if esc == 0x85:
            return (b ^ 0x20) & 0x7F
        if esc == 0x8E:
            return b ^ 0x20
        if esc == 0x8F:
            return b
        if b in (0x85, 0x8E, 0x8F):
            self.esc = b
            return None
        return b & 0x7F


def jstr(s):
    """A JSON string the way the device writes `req`: \\" escaped, backslash and
    control characters as \\u00XX."""
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\" or ord(ch) < 0x20:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_query(url):
    path, _, query = url.partition("?")
    args = {}
    for part in query.split("&") if query else []:
        k, _, v = part.partition("=")
        args[urllib.parse.unquote(k)] = urllib.parse.unquote(v, errors="replace")
    return path, args


def cmdframe_to_rest(obj):
    """§4.9: every top-level key, cmdName too; raw values; nested JSON as text."""
    parts = []
    for k, v in obj.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"))
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        else:
            v = str(v)
        if v != "":
            parts.append("%s=%s" % (k, v))
    return "%s?%s" % (obj.get("cmdName", ""), "&".join(parts))


def as_int(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


class Session:
    def __init__(self, sid, file_name, endpoint, file_len, now):
        self.sid, self.file_name, self.endpoint = sid, file_name, endpoint
        self.file_len, self.pos, self.last = file_len, 0, now
        self.channel = CHANNEL
        self.okto = None          # an Upload when this session is an OKTO upload


class Upload:
    """The OKTO state of an upload session (§5.9)."""

    def __init__(self, firmware, block, batch, now):
        self.firmware, self.block, self.batch = firmware, block, batch
        self.start = now
        self.reset(now)

    def reset(self, now):
        self.expected = 0         # okto: the only position accepted next
        self.valid = 0            # blocks accepted
        self.in_batch = 0         # blocks received since the last okto, discarded ones too
        self.retries = 0          # timer oktos since the last block
        self.last_rx = now
        self.data = bytearray()


class Repl:
    """The inferred `upyconsole` endpoint: echoes each CR-terminated line like a REPL."""

    def __init__(self):
        self.sid = None          # streamID saved by the open callback
        self.tx_pos = 0          # device-to-client position, independent of the client's
        self.line = bytearray()
        self.history = bytearray()  # for upy/repl/output polling
        self.seq = 0             # total output bytes produced

    def feed(self, data):
        out = bytearray()
        for b in data:
            if b == 0x03:
                self.line.clear()
                out += b"\r\nKeyboardInterrupt\r\n>>> "
            elif b == 0x0D:
                out += bytes(self.line) + b"\r\nok\r\n>>> "
                self.line.clear()
            elif b != 0x0A and len(self.line) < MAX_REPL_LINE:
                self.line.append(b)
        return bytes(out)


class Device:
    def __init__(self, fd, args):
        self.fd, self.args = fd, args
        self.console = args.framing == "console"
        self.hdlc, self.oa = HdlcDecoder(), OverAsciiDecoder()
        self.text_line = bytearray()
        self.outq = bytearray()
        self.busy, self.drop, self.corrupt = args.busy, args.drop, args.corrupt
        self.idle_ms, self.stale = args.idle_ms, args.stale
        self.block_size = max(1, args.block_size)
        self.restart_at = None    # set by the REPORT: when the old boot's last second ends
        self.record = open(args.record_input, "ab", buffering=0) if args.record_input else None
        self.t0 = time.monotonic()
        self.pending = None
        self.next_log = self.t0 + args.log_interval if args.log_interval > 0 else None
        self.files = {}           # the in-memory file system: name -> bytearray; survives resets
        self.fail_write = 0       # sim/failwrite: the next k OKTO block writes fail
        self.boot()

    # ---- state -----------------------------------------------------------------
    def boot(self):
        self.sessions = []
        self.next_sid = 1
        self.subs = {}            # topic -> [interval_s, next_due]
        self.pub_counter = 0
        self.repl = Repl()
        if self.console:
            self.log("I", "SysManager", "SimMCU 1.0.0 booting")
            self.log("I", "SerialConsole", "protocol RICSerial baud 115200")

    def now_ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def log(self, level, tag, text):
        if self.console:
            self.queue(("%s (%d) %s: %s\n" % (level, self.now_ms(), tag, text)).encode())

    def event(self, tag, text):
        """A stream/upload event: "sim: <text>" on stderr for tests, a log line in console mode."""
        print("sim: " + text, file=sys.stderr, flush=True)
        self.log("I", tag, text)

    # ---- output ------------------------------------------------------------------
    def queue(self, data):
        self.outq += data

    def send_msg(self, msg):
        corrupt = self.corrupt > 0
        if corrupt:
            self.corrupt -= 1
        frame = hdlc_encode(msg, corrupt)
        self.queue(over_ascii_encode(frame) if self.console else frame)

    def reply(self, msg_num, text, header=0x42):
        self.send_msg(bytes([msg_num, header, 0x01]) + text.encode() + b"\x00")

    def run_pending(self):
        # Knobs and resets act after the reply to their own request has been queued.
        action, self.pending = self.pending, None
        if action:
            action()

    def flush(self):
        while self.outq:
            n = self.args.slice or len(self.outq)
            try:
                written = os.write(self.fd, self.outq[:n])
            except BlockingIOError:
                return
            except OSError:
                self.outq.clear()  # the other end is gone; run() notices on read
                return
            del self.outq[:written]

    # ---- input -------------------------------------------------------------------
    def on_bytes(self, data):
        if not self.console:
            for f in self.hdlc.feed(data):
                self.on_frame(f)
            return
        for b in data:
            if b >= 0x80:
                d = self.oa.push(b)
                if d is not None:
                    for f in self.hdlc.feed(bytes([d])):
                        self.on_frame(f)
                continue
            self.queue(bytes([b]))  # console echo
            if b in (0x0D, 0x0A):
                line = self.text_line.decode("latin-1").strip()
                self.text_line.clear()
                if line:
                    text = self.rest(line, line)
                    if text:
                        self.queue(text.encode() + b"\r\n")
                    self.run_pending()
            elif len(self.text_line) < 1000:
                self.text_line.append(b)

    def on_frame(self, msg):
        if self.drop > 0:
            self.drop -= 1
            return
        if len(msg) < 3 or (msg[1] & 0x3F) != 0x02:  # msgType is not checked
            return
        num, code, body = msg[0], msg[2], msg[3:]
        if code == 0:      # URL
            url = body.split(b"\x00", 1)[0].decode("latin-1")
            text = self.rest(url, url)
            if text:       # an empty reply string means no reply at all
                self.reply(num, text)
            self.run_pending()
        elif code == 3:    # COMMAND_FRAME
            try:
                obj = json.loads(body.split(b"\x00", 1)[0].decode("utf-8"))
                assert isinstance(obj, dict)
            except (ValueError, AssertionError, RecursionError):  # bad or absurdly nested JSON: no reply
                return
            name = str(obj.get("cmdName", ""))
            text = self.file_cmd(name, obj) if name[:2] in ("uf", "df") else self.rest(cmdframe_to_rest(obj), name)
            if text:
                self.reply(num, text)
            self.run_pending()
        elif code == 4 and len(body) >= 4:
            self.file_block(num, body[0], int.from_bytes(body[1:4], "big"), bytes(body[4:]))
        # CMDRESPJSON (1) and BODY (2) from a client get no reply

    # ---- REST endpoints (GET only) -------------------------------------------------
    def rest(self, url, req):
        path, args = parse_query(url)
        segs = path.split("/")
        ep = segs[0].lower()
        ok = '{"req":%s,"rslt":"ok"}' % jstr(req)
        if ep == "v":
            return ('{"req":%s,"rslt":"ok","SystemName":"SimMCU","SystemVersion":"1.0.0","Friendly":"",'
                    '"SerialNo":"0001","MAC":"","SysTypeVers":"1","HwRev":1}') % jstr(req)
        if ep == "caps":
            return '{"req":%s,"capsVersion":1,"caps":%s,"rslt":"ok"}' % (jstr(req), json.dumps(CAPS, separators=(",", ":")))
        if ep == "reset":
            self.pending = self.do_reset
            return ok
        if ep == "subscription":
            return self.subscription(req, args)
        if ep == "pubtopics":
            return '{"rslt":"ok","topics":[%s]}' % ",".join(
                '{"name":"%s","idx":%d}' % (name, idx) for name, idx in TOPICS.items())
        if ep == "upy":
            return self.upy(segs[1:], args, req)
        if ep == "sim":
            return self.sim(segs[1:], args, req, ok)
        if ep == "bledisconnect":  # §3.5: a BLE client's goodbye; the board then drops its link
            print("sim: bledisconnect", file=sys.stderr, flush=True)
            return ok
        return '{"req":%s,"rslt":"fail","error":"failUnknownAPI"}' % jstr(req)

    def subscription(self, req, args):
        action = args.get("action", "update")
        recs = []
        if "pubRecs" in args:
            try:
                recs = [r for r in json.loads(args["pubRecs"]) if isinstance(r, dict)]
            except (ValueError, TypeError, RecursionError):
                recs = []
        elif "topic" in args:  # single-topic URL form; trigger is ignored here
            recs = [{"topic": args["topic"], "rateHz": args.get("rateHz", 1.0), "minMs": args.get("minMs", 50)}]
        topics = []
        for r in recs:
            name = str(r.get("topic", r.get("name", "")))
            try:
                rate, min_ms = float(r.get("rateHz", 1.0)), float(r.get("minMs", 50))
            except (TypeError, ValueError):
                continue
            # What edgelink asked for, for tests to read (stderr, one line per topic).
            print("sim: subscription %s %s rateHz=%g minMs=%g" % (action, name, rate, min_ms), file=sys.stderr,
                  flush=True)
            if name not in TOPICS:
                continue  # unknown topics are skipped without an error
            if action == "unsubscribe" or rate <= 0:
                self.subs.pop(name, None)
            else:
                interval = max(1.0 / rate, min_ms / 1000.0)
                self.subs[name] = [interval, time.monotonic() + interval]
            topics.append('{"name":"%s","idx":%d}' % (name, TOPICS[name]))
        return '{"req":%s,"rslt":"ok","topics":[%s]}' % (jstr(req), ",".join(topics))

    def upy(self, segs, args, req):
        what = "/".join(segs[1:]).lower() if segs[:1] == ["repl"] else ""
        r = self.repl
        if what == "status":
            return ('{"req":%s,"rslt":"ok","running":true,"replEnabled":true,"replRunning":true,"mode":"repl",'
                    '"streamAttached":%s,"mirrorToSerial":false,"inputBuffered":%d,"outputBuffered":%d,'
                    '"outputSeq":%d,"inputDropped":0,"outputDropped":0}') % (
                jstr(req), "true" if self.find_sid(r.sid) else "false", len(r.line), len(r.history), r.seq)
        if what == "output":
            try:
                since = int(args.get("since", "0"))
            except ValueError:
                since = 0
            first = r.seq - len(r.history)
            missed = max(0, first - since)
            data = bytes(r.history[max(0, since - first):]).decode("utf-8", "replace")
            return '{"req":%s,"rslt":"ok","seq":%d,"missed":%d,"dropped":0,"data":%s}' % (
                jstr(req), r.seq, missed, json.dumps(data))
        if what == "input":
            data = args.get("data", "") + ("" if args.get("newline") == "0" else "\r")
            self.repl_output(r.feed(data.encode("utf-8")))
            return '{"req":%s,"rslt":"ok"}' % jstr(req)
        if what == "interrupt":
            self.repl_output(r.feed(b"\x03"))
            return '{"req":%s,"rslt":"ok"}' % jstr(req)
        return '{"req":%s,"rslt":"fail","error":"failUnknownAPI"}' % jstr(req)

    def sim(self, segs, args, req, ok):
        what = segs[0].lower() if segs else ""

        def num(key, default=1):
            try:
                return int(args.get(key, default))
            except ValueError:
                return default
        # Knobs take effect after this request's own reply has gone out.
        if what == "busy":
            self.busy = num("n")
        elif what == "drop":
            self.pending = lambda: setattr(self, "drop", num("n"))
        elif what == "corrupt":
            self.pending = lambda: setattr(self, "corrupt", num("n"))
        elif what == "crash":
            self.pending = self.crash
        elif what == "idle":
            self.idle_ms = num("ms", 10000)
        elif what == "say":
            self.pending = lambda: self.repl_output(args.get("text", "").encode("utf-8"))
        elif what == "stale":
            self.stale = num("on") != 0
        elif what == "blocksize":
            self.pending = lambda: setattr(self, "block_size", max(1, num("n", MAX_BLOCK)))
        elif what == "streampos":
            s = self.find_sid(num("id", 0))
            if not s:
                return '{"req":%s,"rslt":"fail","error":"SESSION_NOT_FOUND"}' % jstr(req)
            s.pos = num("pos", 0) & 0xFFFFFFFF
        elif what == "file":
            data = self.files.get(args.get("name", ""))
            if data is None:
                return '{"req":%s,"rslt":"fail","error":"notFound"}' % jstr(req)
            return '{"req":%s,"len":%d,"sha256":"%s","rslt":"ok"}' % (
                jstr(req), len(data), hashlib.sha256(data).hexdigest())
        elif what == "failwrite":
            self.fail_write = num("n")
        else:
            return '{"req":%s,"rslt":"fail","error":"failUnknownAPI"}' % jstr(req)
        return ok

    def do_reset(self):
        # The real REPORT (§7.5): no "reason". The restart itself comes from tick().
        self.reply(0, '{"msgType":"sysevent","msgName":"shutdown","isRestart":1}', header=0xC2)
        self.restart_at = time.monotonic() + self.args.restart_delay_ms / 1000.0

    def crash(self):
        self.restart_at = None
        self.hdlc, self.oa = HdlcDecoder(), OverAsciiDecoder()
        self.boot()

    # ---- file/stream sessions (§5, StreamDatagram) ---------------------------------
    def find_sid(self, sid):
        return next((s for s in self.sessions if sid and s.sid == sid), None)

    def lookup(self, sid, file_name):
        if sid:
            return self.find_sid(sid)  # a nonzero streamID matches alone, ignoring the channel
        return next((s for s in self.sessions if s.channel == CHANNEL and
                     (not file_name or s.file_name == file_name)), None)

    def file_cmd(self, name, obj):
        self.expire()
        lname, now = name.lower(), time.monotonic()
        try:
            sid = int(obj.get("streamID", 0) or 0)
        except (TypeError, ValueError):
            sid = 0
        file_name = str(obj.get("fileName", ""))
        file_len = as_int(obj.get("fileLen", 0) or 0) & 0xFFFFFFFF
        if lname in ("ufstart", "dfstart"):
            if lname == "dfstart":
                return ""  # downloads are not simulated, and dfStart without a session gets no reply
            # A restart matches on fileName and channel; the session type is not compared (§5.1).
            s = next((s for s in self.sessions if s.file_name == file_name and s.channel == CHANNEL), None)
            if s and s.okto:
                return self.okto_start(s, obj, file_len, now)
            if s:  # restart: same streamID, position 0, new fileLen, no open callback
                s.pos, s.last, s.file_len = 0, now, file_len
                return '{"req":"ufStart","streamID":%d,"rslt":"ok"}' % s.sid
            if str(obj.get("fileType", "")).lower() != "rtstream":
                return self.okto_start(None, obj, file_len, now)
            if len(self.sessions) > MAX_SESSIONS - 1:
                return '{"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"}'
            endpoint = str(obj.get("endpoint", "")).lower()
            s = self.new_session(file_name, endpoint, file_len, now)
            if endpoint == "upyconsole":  # open callback: save streamID, reset position
                self.repl.sid, self.repl.tx_pos = s.sid, 0
            elif endpoint == "filesink":  # open callback: accepts
                self.event("FileSink", "filesink open streamID=%d file=%s" % (s.sid, file_name))
            return '{"req":"ufStart","streamID":%d,"rslt":"ok"}' % s.sid
        if lname == "dfack":
            return ""
        s = self.lookup(sid, file_name)
        if s and s.okto:
            return self.okto_cmd(s, lname, name, obj)
        if s:
            s.last = now  # any command for the session resets its idle timer; nothing closes
            return '{"req":%s,"streamID":%d,"rslt":"ok"}' % (jstr(name), s.sid)
        return '{"req":%s,"rslt":"ok"}' % jstr(name)

    def new_session(self, file_name, endpoint, file_len, now):
        s = Session(self.next_sid, file_name, endpoint, file_len, now)
        self.next_sid = 1 if self.next_sid + 1 >= 255 else self.next_sid + 1
        self.sessions.append(s)
        return s

    def file_block(self, num, sid, pos, data):
        if not data:
            return self.reply(num, '{"req":"ufBlock","length":0,"reason":"INVALID_DATA","rslt":"fail"}')
        self.expire()
        s = self.lookup(sid, "")
        if not s:
            return self.reply(num, '{"req":"ufBlock","streamID":%d,"reason":"SESSION_NOT_FOUND","rslt":"fail"}' % sid)
        if s.okto:
            return self.okto_block(num, s, pos, data)
        if pos < s.pos:  # no idle reset for mismatches
            return self.reply(num, '{"req":"ufBlock","streamID":%d,"sokto":%d,"reason":"POS_MISMATCH","rslt":"ok"}'
                              % (sid, s.pos))
        is_final = s.file_len != 0 and pos + len(data) >= s.file_len
        if s.endpoint not in RT_ENDPOINTS:
            rc = "INVALID_OPERATION"  # unknown endpoint or no chunk callback
        elif self.busy > 0:
            self.busy -= 1
            rc = "BUSY"
            # stderr only: a log line on a console port would travel ahead of the BUSY reply
            # and could make it late for the gateway's block window.
            print("sim: busy streamID=%d pos=%d len=%d" % (sid, pos, len(data)), file=sys.stderr, flush=True)
        else:
            rc = "OK"
        s.pos = pos + len(data)  # whatever the callback returned
        s.last = time.monotonic()
        if rc == "OK":
            if s.endpoint == "filesink":
                self.filesink_chunk(s, pos, data)
            else:
                if self.record:  # what the endpoint accepted, across boots
                    self.record.write(data)
                self.repl_output(self.repl.feed(data))
            if is_final:
                if s.endpoint == "filesink":
                    self.event("FileSink", "filesink complete file=%s len=%d" % (
                        s.file_name, len(self.files[s.file_name])))
                self.reply(num, '{"req":"ufBlock","streamID":%d,"sokto":%d,"rslt":"ok"}' % (sid, s.pos))
                self.sessions.remove(s)
        elif rc == "BUSY":
            self.reply(num, '{"req":"ufBlock","streamID":%d,"sokto":%d,"reason":"BUSY","rslt":"ok"}' % (sid, s.pos))
        else:
            self.reply(num, '{"req":"ufBlock","streamID":%d,"reason":"%s","rslt":"fail"}' % (sid, rc))
            self.sessions.remove(s)

    def filesink_chunk(self, s, pos, data):
        """The filesink chunk callback: the block goes at filePos; firstBlock starts the file over."""
        f = self.files.get(s.file_name)
        if pos == 0 or f is None:
            f = self.files[s.file_name] = bytearray()
        if pos > len(f):
            f += bytes(pos - len(f))  # a forward gap reads as zeros
        f[pos:pos + len(data)] = data

    # ---- OKTO upload (§5.9) ----------------------------------------------------------
    def okto_start(self, s, obj, file_len, now):
        """ufStart for an OKTO upload: a new session (s None) or a restart of upload s."""
        other = next((o for o in self.sessions if o.okto and o is not s), None)
        busy = other or (s if s and s.okto.expected > 0 else None)
        if busy:  # one upload at a time, and a restart cannot rewind an upload under way
            return ('{"req":"ufStart","batchMsgSize":%d,"batchAckSize":%d,"streamID":%d,'
                    '"rslt":"fail","error":"transferInProgress"}' % (busy.okto.block, busy.okto.batch, busy.sid))
        block = as_int(obj.get("batchMsgSize", -1), -1)
        block = block if block > 0 else OKTO_BLOCK_DEFAULT
        block = max(OKTO_BLOCK_MIN, min(block, INBOUND_BLOCK_LEN * 2 // 3))
        batch = as_int(obj.get("batchAckSize", -1), -1)
        batch = batch if batch > 0 else OKTO_BATCH_DEFAULT
        if block * batch > OKTO_BATCH_BYTES:
            batch = max(1, OKTO_BATCH_BYTES // block)
        firmware = str(obj.get("fileType", "")).lower() in ("fw", "ricfw")
        if s:
            s.file_len, s.last = file_len, now
            s.okto.block, s.okto.batch, s.okto.firmware, s.okto.start = block, batch, firmware, now
            s.okto.reset(now)
        else:
            if len(self.sessions) > MAX_SESSIONS - 1:
                return '{"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"}'
            s = self.new_session(str(obj.get("fileName", "")), "", file_len, now)
            s.okto = Upload(firmware, block, batch, now)
        self.event("FileUpload", "okto start streamID=%d file=%s len=%d block=%d batch=%d" % (
            s.sid, s.file_name, file_len, block, batch))
        return '{"req":"ufStart","batchMsgSize":%d,"batchAckSize":%d,"streamID":%d,"rslt":"ok"}' % (
            block, batch, s.sid)

    def okto_cmd(self, s, lname, name, obj):
        s.last = time.monotonic()
        if lname == "ufend":  # an early end keeps what has arrived, as a file system would
            self.okto_close(s, "end")
            return '{"req":"ufEnd","rslt":"ok"}'
        if lname == "ufcancel":
            self.okto_close(s, "cancel", str(obj.get("reason", "")))
            return '{"req":%s,"rslt":"ok"}' % jstr(name)
        return '{"req":%s,"streamID":%d,"rslt":"ok"}' % (jstr(name), s.sid)

    def okto_close(self, s, how, reason=None):
        """Ends upload s: "end" stores what has arrived, "cancel" discards it. With a reason,
        the unsolicited ufCancel notice goes out (msgNum 0)."""
        u = s.okto
        if how == "end":
            self.files[s.file_name] = bytearray(u.data)
            self.event("FileUpload", "okto end file=%s len=%d" % (s.file_name, len(u.data)))
        else:
            self.event("FileUpload", "okto cancel file=%s reason=%s" % (s.file_name, reason or ""))
        if reason is not None:
            self.reply(0, '{"req":"","cmdName":"ufCancel","reason":%s,"rslt":"ok"}' % jstr(reason))
        if s in self.sessions:
            self.sessions.remove(s)

    def okto_block(self, num, s, pos, data):
        u, now = s.okto, time.monotonic()
        u.in_batch += 1       # discarded blocks count towards the batch too
        u.last_rx, u.retries = now, 0
        valid = pos == u.expected
        final = False
        if valid:
            s.last = now      # handed to the writer: the session is alive
            if self.fail_write > 0:
                self.fail_write -= 1
                self.reply(num, '{"req":"ufBlock","cmdName":"ufStatus","reason":"%s","rslt":"fail"}' % (
                    "OTAWriteFailed" if u.firmware else "FileWriteFailed"))
                why = ("failOTAStart" if pos == 0 else "failOTAWrite") if u.firmware else "failFileWrite"
                return self.okto_close(s, "cancel", why)
            u.data += data
            u.expected += len(data)
            u.valid += 1
            final = pos + len(data) >= s.file_len
        if u.in_batch >= u.batch or (valid and u.valid == 1) or final:
            u.in_batch = 0
            self.reply(num, '{"req":"ufBlock","okto":%d,"rslt":"ok"}' % u.expected)
        if final:             # the session closes; a later ufEnd still gets ok
            self.okto_close(s, "end")

    def okto_timers(self, now):
        for s in [s for s in self.sessions if s.okto]:
            u = s.okto
            if now - u.start > OKTO_MAX_TIME:
                self.okto_close(s, "cancel", "failTimeout")
            elif now - u.last_rx >= (OKTO_FIRST_WAIT if u.valid < 2 else OKTO_WAIT):
                if u.retries < OKTO_RETRIES:
                    u.retries += 1
                    u.last_rx = now
                    self.reply(0, '{"req":"ufBlock","okto":%d,"rslt":"ok"}' % u.expected)
                else:
                    self.okto_close(s, "cancel", "failRetries")

    def repl_output(self, out):
        r = self.repl
        if not out:
            return
        r.history += out
        r.seq += len(out)
        del r.history[:-4096]
        if r.sid is None or not (self.find_sid(r.sid) or self.stale):
            return  # the endpoint is never told its session closed; it just stops (unless stale)
        for i in range(0, len(out), self.block_size):
            chunk = out[i:i + self.block_size]
            self.send_msg(bytes([0x00, 0x02, 0x04, r.sid]) + (r.tx_pos & 0xFFFFFF).to_bytes(3, "big") + chunk)
            r.tx_pos += len(chunk)

    def expire(self):
        now = time.monotonic()
        for s in self.sessions:
            if s.okto and (now - s.last) * 1000 > self.idle_ms:
                self.event("FileUpload", "okto cancel file=%s reason=idle" % s.file_name)  # silent on the link
        self.sessions = [s for s in self.sessions if (now - s.last) * 1000 <= self.idle_ms]

    # ---- timers ------------------------------------------------------------------
    def tick(self):
        now = time.monotonic()
        if self.restart_at is not None and now >= self.restart_at:
            self.crash()  # the restart after the REPORT: everything of the old boot is gone
        self.expire()
        self.okto_timers(now)
        busy = bool(self.outq)  # output of earlier loops still queued; this loop's publishes do not count
        for name, sub in self.subs.items():
            if now >= sub[1]:
                # On schedule, without drifting by the loop's lateness; a long stall is not caught up.
                nxt = sub[1] + sub[0]
                sub[1] = nxt if nxt > now else now + sub[0]
                if busy:
                    continue  # like the device: skip a publish while the queue is busy
                self.pub_counter += 1
                self.send_msg(b"\x00\x80" + self.publish_payload(name))
        if self.next_log and now >= self.next_log:
            self.next_log = now + self.args.log_interval
            self.log("I", "SimMCU", "alive sessions=%d badCRC=%d" % (len(self.sessions), self.hdlc.bad_crc))

    def publish_payload(self, name):
        counter = self.pub_counter & 0xFFFF
        if name == "devbin":
            # §7.4 devbin: magic 0xDB, topic index, one record [len][bus|0x80 online][addr u32][devTypeIdx u16][data]
            record = bytes([0x81]) + (0x48).to_bytes(4, "big") + (0).to_bytes(2, "big") + counter.to_bytes(2, "big")
            return bytes([0xDB, TOPICS["devbin"]]) + len(record).to_bytes(2, "big") + record
        return ('{"_t":%d,"_v":1,"1":{"48":{"x":"%04x","_o":1,"_i":0}}}' % (TOPICS[name], counter)).encode()

    def select_timeout(self):
        # 20 ms, or less when a publish is due sooner (rateHz up to 1000 keeps its rate).
        if not self.subs:
            return 0.02
        due = min(sub[1] for sub in self.subs.values()) - time.monotonic()
        return min(0.02, max(0.0, due))

    def run(self):
        while True:
            wlist = [self.fd] if self.outq else []
            r, w, _ = select.select([self.fd], wlist, [], self.select_timeout())
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:
                    return 0  # the other end of the pty went away
                if not data:
                    return 0
                step = self.args.slice or len(data)
                for i in range(0, len(data), step):
                    self.on_bytes(data[i:i + step])
            self.tick()
            self.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("device", help="serial device path, e.g. one end of a socat pty pair")
    ap.add_argument("--framing", choices=["hdlc", "console"], default="hdlc")
    ap.add_argument("--busy", type=int, default=0, help="the next K chunk callbacks return BUSY")
    ap.add_argument("--drop", type=int, default=0, help="silently drop the next K incoming frames")
    ap.add_argument("--corrupt", type=int, default=0, help="corrupt the CRC of the next K outgoing frames")
    ap.add_argument("--idle-ms", type=int, default=10000, help="session idle timeout")
    ap.add_argument("--stale", action="store_true", help="keep sending on closed sessions")
    ap.add_argument("--log-interval", type=float, default=5.0, help="console mode: seconds between log lines (0=off)")
    ap.add_argument("--slice", type=int, default=0, help="BLE-like: process input and write output in N-byte slices")
    ap.add_argument("--block-size", type=int, default=MAX_BLOCK,
                    help="device-to-client block size; above 5000 a long answer is one frame that large (PSRAM)")
    ap.add_argument("--restart-delay-ms", type=int, default=RESTART_DELAY_MS,
                    help="after the shutdown REPORT the old boot runs on this long before it restarts")
    ap.add_argument("--record-input", metavar="FILE",
                    help="append every chunk the upyconsole endpoint accepts to FILE (exactly-once checks)")
    args = ap.parse_args()
    fd = os.open(args.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    dev = Device(fd, args)
    try:
        return dev.run()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
