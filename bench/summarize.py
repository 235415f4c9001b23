#!/usr/bin/env python3
"""Summary tables for bench/run_bench.sh and bench/spool_bench.sh (stdlib only).

    summarize.py TMPDIR ROUNDS key=value...       (run_bench.sh)
    summarize.py spool TMPDIR key=value...        (spool_bench.sh)

Reads the "result KEY VALUE" lines relay_bench wrote to TMPDIR/relay-N.out,
ceiling-N.out and rtt.out, and edgelink's status after the relay runs; the key=value
arguments carry what the script measured itself (memory, load average).
"""
import json
import math
import os
import sys


def results(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "result":
                    out[parts[1]] = float(parts[2])
    except OSError:
        pass
    return out


def num(d, key):
    return d.get(key, math.nan)


def us_per_point(cpu_pct, points_per_s):
    """CPU time per point in microseconds: load-independent where the rate is not."""
    if not points_per_s or math.isnan(points_per_s) or math.isnan(cpu_pct):
        return math.nan
    return cpu_pct / 100.0 / points_per_s * 1e6


def main():
    tmp, rounds = sys.argv[1], int(sys.argv[2])
    env = dict(a.split("=", 1) for a in sys.argv[3:])
    relay = [results(os.path.join(tmp, f"relay-{i}.out")) for i in range(1, rounds + 1)]
    ceiling = [results(os.path.join(tmp, f"ceiling-{i}.out")) for i in range(1, rounds + 1)]
    rtt = results(os.path.join(tmp, "rtt.out"))

    print()
    print("per round                  relay points/s  edgelink CPU  µs CPU/point   ceiling points/s  "
          "publisher CPU  µs CPU/point   ratio")
    print("  (CPU: % of one core over the steady window; edgelink's includes Paho's two threads)")
    for i, (r, c) in enumerate(zip(relay, ceiling), 1):
        rp, cp = num(r, "relay_points_per_s"), num(c, "ceiling_points_per_s")
        ecpu, pcpu = num(r, "relay_cpu_pct_edgelink"), num(c, "ceiling_cpu_pct_publisher")
        print(f"  round {i:<19} {rp:>14,.0f} {ecpu:>12.0f}% {us_per_point(ecpu, rp):>13.2f}   {cp:>16,.0f} "
              f"{pcpu:>13.0f}% {us_per_point(pcpu, cp):>13.2f}   {100 * rp / cp:>4.0f}%")
        for name, d, mode in (("relay", r, "relay"), ("ceiling", c, "ceiling")):
            sent, recv = num(d, f"{mode}_points_sent"), num(d, f"{mode}_points_received")
            order = (f"{num(d, 'relay_reordered_points'):,.0f} out of order, "
                     f"{num(d, 'relay_duplicate_points'):,.0f} duplicates; ") if mode == "relay" else ""
            print(f"    {name:8} offered {num(d, f'{mode}_offered_points_per_s'):>11,.0f} points/s; "
                  f"sent {sent:,.0f}, received {recv:,.0f} ({sent - recv:,.0f} missing); {order}CPU % of a core: "
                  f"mosquitto {num(d, f'{mode}_cpu_pct_mosquitto'):.0f} (+{num(d, f'{mode}_wait_pct_mosquitto'):.0f} waiting), "
                  f"relay_bench {num(d, f'{mode}_cpu_pct_bench'):.0f} (+{num(d, f'{mode}_wait_pct_bench'):.0f} waiting)")

    if env.get("scrape") == "1":
        print()
        print("scraping /metrics (wrk, one keep-alive connection, as fast as it answers) during a relay round")
        for i in range(1, rounds + 1):
            r = relay[i - 1]
            rs = results(os.path.join(tmp, f"relay-scrape-{i}.out"))
            rp, sp = num(r, "relay_points_per_s"), num(rs, "relay_points_per_s")
            scrapes = math.nan
            try:
                for line in open(os.path.join(tmp, f"wrk-{i}.out")):
                    if line.startswith("Requests/sec:"):
                        scrapes = float(line.split()[1])
            except OSError:
                pass
            print(f"  round {i}: relay {rp:>11,.0f} points/s alone, {sp:>11,.0f} while scraped "
                  f"({100 * (sp - rp) / rp:+.1f} %), {scrapes:,.0f} scrapes/s, "
                  f"{num(rs, 'relay_reordered_points'):,.0f} out of order")

    best_r = max(relay, key=lambda d: num(d, "relay_points_per_s") if d else -1)
    best_c = max(ceiling, key=lambda d: num(d, "ceiling_points_per_s") if d else -1)
    rp, cp = num(best_r, "relay_points_per_s"), num(best_c, "ceiling_points_per_s")
    ecpu = num(best_r, "relay_cpu_pct_edgelink")
    worst = min(num(r, "relay_points_per_s") / num(c, "ceiling_points_per_s") for r, c in zip(relay, ceiling))
    reordered = sum(num(r, "relay_reordered_points") for r in relay)
    p99 = num(rtt, "rtt_p99_ms")
    mrun, mwait = num(best_r, "relay_main_cpu_pct_edgelink"), num(best_r, "relay_main_wait_pct_edgelink")
    idle, peak = float(env["idle_rss"] or "nan"), float(env["peak_rss"] or "nan")
    rows = [
        ("relay points/s (best round)", f"{rp:,.0f}", ">= 1,000,000", rp >= 1e6),
        ("ceiling points/s (best round)", f"{cp:,.0f}", "", None),
        ("relay / ceiling", f"{100 * rp / cp:.0f} %", ">= 75 %", rp >= 0.75 * cp),
        ("relay / ceiling, worst round", f"{100 * worst:.0f} %", ">= 75 %", worst >= 0.75),
        ("points out of order, all rounds", f"{reordered:,.0f}", "0", reordered == 0),
        ("action round trip p50", f"{num(rtt, 'rtt_p50_ms'):.3f} ms", "", None),
        ("action round trip p99", f"{p99:.3f} ms", "< 5 ms", p99 < 5),
        ("action round trip max", f"{num(rtt, 'rtt_max_ms'):.3f} ms", "", None),
        ("edgelink CPU, best relay window", f"{ecpu:.0f} % of a core", "", None),
        ("edgelink CPU per point", f"{us_per_point(ecpu, rp):.2f} µs", "", None),
        ("  main thread on a CPU", f"{mrun:.0f} % of the window", "", None),
        ("  main thread waiting for a CPU", f"{mwait:.0f} % of the window", "", None),
        ("  Paho's threads on a CPU", f"{ecpu - mrun:.0f} % of the window", "", None),
        ("edgelink CPU, all relay runs", f"{float(env['run_cpu']):.0f} % of a core", "", None),
        ("edgelink idle RSS", f"{idle:,.0f} KiB", "< 10,240 KiB", idle < 10 * 1024),
        ("edgelink peak RSS (VmHWM)", f"{peak:,.0f} KiB", "< 65,536 KiB", peak < 64 * 1024),
    ]
    print()
    print(f"edgelink relay benchmark: {env['apps']} apps, batch 100, in-flight 100, {rounds} x "
          f"{env['duration']} s per side ({env['warmup']} s warm-up excluded), {env['nproc']} cores, nice {env.get('nice', '0')}, "
          f"max_memory_bytes {env.get('memory', '16777216')}, prioritize_live_data {env.get('prioritize_live', 'false')}")
    print(f"  {'figure':34} {'measured':>18}  {'target':13} meets")
    for name, value, target, ok in rows:
        print(f"  {name:34} {value:>18}  {target:13} {'' if ok is None else ('yes' if ok else 'NO')}")
    if mrun > 0 and mrun + mwait >= 90:
        print(f"  The main thread always had work (on a CPU or waiting for one {mrun + mwait:.0f} % of the window):"
              f" edgelink is bound by its main thread, {mrun / 100 / rp * 1e6:.2f} µs of it per point; with a core"
              f" of its own it could do at most about {rp / (mrun / 100):,.0f} points/s (an extrapolation, not a"
              f" measurement).")
    print()
    print(f"idle memory: anon {float(env['idle_anon']) / 1024:.1f} MiB, file-backed (shared libraries) "
          f"{float(env['idle_file']) / 1024:.1f} MiB, PSS {float(env['idle_pss']) / 1024:.1f} MiB")
    print(f"rtt: {num(rtt, 'rtt_actions'):.0f} actions timed, {num(rtt, 'rtt_lost'):.0f} without a Completed "
          f"status within 2 s")
    try:
        with open(os.path.join(tmp, "status-after-relay.json")) as f:
            st = json.load(f)
        pauses = sum(a.get("pauses", 0) for a in st.get("apps", {}).values())
        b = st.get("broker", {})
        print(f"edgelink after the relay runs: published {b.get('published')}, acked {b.get('acked')}, "
              f"back-pressure pauses {pauses} (apps' sockets not read while the outbox was full)")
    except (OSError, ValueError):
        pass
    print(f"load average (1/5/15 min) at start {env['load_start']}, at end {env['load_end']}")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def spool_main():
    """spool_bench.sh: backlog drain and fsync policy cost."""
    tmp = sys.argv[2]
    env = dict(a.split("=", 1) for a in sys.argv[3:])
    phases = env.get("phases", "").split()
    out = {}  # result lines of the summary
    rows = []

    def fnum(key):
        try:
            return float(env.get(key, "nan") or "nan")
        except ValueError:
            return math.nan

    print()
    print(f"edgelink spool benchmark: {env['apps']} apps/streams, batch 100, in-flight 100, "
          f"max_memory_bytes {int(env['max_memory']):,}, {env['nproc']} cores, nice {env.get('nice', '0')}")
    if "drain" in phases:
        fill = results(os.path.join(tmp, "fill.out"))
        d = results(os.path.join(tmp, "drain.out"))
        filled = load_json(os.path.join(tmp, "status-filled.json")).get("spool", {})
        drained = load_json(os.path.join(tmp, "status-drained.json"))
        ds = drained.get("spool", {})
        backlog = int(env["backlog"])
        spool_bytes = filled.get("bytes", math.nan)
        fs = filled.get("fsync", {})
        fill_sent = int(float(env.get("fill_sent") or 0))
        out.update({
            "spool_backlog_points": backlog,
            "spool_fill_points_sent": fill_sent,
            "spool_fill_stalled": num(fill, "fill_stalled"),
            "spool_backlog_on_disk": int(env["on_disk"]),
            "spool_fill_points_per_s": num(fill, "fill_points_per_s"),
            "spool_fill_on_disk_s": fnum("on_disk_s"),
            "spool_bytes": spool_bytes,
            "spool_bytes_per_point": spool_bytes / backlog,
            "spool_dir_bytes": fnum("spool_du"),
            "spool_records": filled.get("records", math.nan),
            "spool_fill_fsync_count": fs.get("count", math.nan),
            "spool_fill_fsync_mean_ms": fs.get("mean_ms", math.nan),
            "spool_fill_fsync_max_ms": fs.get("max_ms", math.nan),
            "drain_complete": num(d, "drain_complete"),
            "drain_first_point_s": num(d, "drain_first_backlog_s"),
            "drain_s": num(d, "drain_last_backlog_s"),
            "drain_points_per_s": num(d, "drain_backlog_points_per_s"),
            "drain_points_per_s_from_resume": num(d, "drain_backlog_points_per_s_from_resume"),
            "drain_backlog_missing": num(d, "drain_backlog_missing"),
            "drain_backlog_duplicates": num(d, "drain_backlog_duplicates"),
            "drain_backlog_reordered": num(d, "drain_backlog_reordered"),
            "drain_live_offered_per_s": num(d, "drain_live_offered_per_s"),
            "drain_live_received_per_s": num(d, "drain_live_received_per_s"),
            "drain_live_min_per_s": num(d, "drain_live_min_per_s"),
            "drain_live_p50_ms": num(d, "drain_live_p50_ms"),
            "drain_live_p99_ms": num(d, "drain_live_p99_ms"),
            "drain_live_max_ms": num(d, "drain_live_max_ms"),
            "drain_live_missing": num(d, "drain_live_sent") - num(d, "drain_live_received"),
            "drain_cpu_pct_edgelink": num(d, "drain_cpu_pct_edgelink"),
            "drain_peak_rss_kib": fnum("drain_hwm"),
            "filled_rss_kib": fnum("filled_rss"),
            "drain_spool_bytes_after": ds.get("bytes", math.nan),
            "drain_dropped": ds.get("dropped", math.nan),
        })
        o = out
        rows += [
            ("BACKLOG DRAIN", "", ""),
            (f"backlog sent with the broker down", f"{backlog:,} points",
             f"{o['spool_fill_points_per_s']:,.0f} points/s into the spool (fsync {env['drain_fsync']})"),
            ("  sent by the apps", f"{fill_sent:,} points", "edgelink STOPPED READING the apps: the fill gave up"
             if o["spool_fill_stalled"] == 1 else f"paced at {int(env['fill_rate']):,} points/s (0: unpaced)"),
            ("  all on disk (records settled)", "yes" if o["spool_backlog_on_disk"] else "NO",
             f"{o['spool_fill_on_disk_s']:.1f} s after the first point; {o['spool_records']:,} records"),
            ("  spool size", f"{spool_bytes:,} B",
             f"{o['spool_bytes_per_point']:.1f} B/point; directory {o['spool_dir_bytes']:,.0f} B"),
            ("  fsyncs while filling", f"{o['spool_fill_fsync_count']:,}",
             f"mean {o['spool_fill_fsync_mean_ms']:.2f} ms, max {o['spool_fill_fsync_max_ms']:.2f} ms"),
            ("broker back (edgelink resumed) -> first point", f"{o['drain_first_point_s']:.2f} s", "includes edgelink's reconnect"),
            ("broker back -> last backlog point", f"{o['drain_s']:.2f} s",
             "complete" if o["drain_complete"] == 1 else "NOT COMPLETE"),
            ("drain rate (first -> last point)", f"{o['drain_points_per_s']:,.0f} points/s",
             f"{o['drain_points_per_s_from_resume']:,.0f} points/s counting from the broker's return"),
            ("backlog missing / duplicated", f"{o['drain_backlog_missing']:,.0f} / {o['drain_backlog_duplicates']:,.0f}",
             f"{o['drain_backlog_reordered']:,.0f} arrived after a later point of their stream"),
            ("live during the drain, offered", f"{o['drain_live_offered_per_s']:,.0f} points/s", ""),
            ("live during the drain, received", f"{o['drain_live_received_per_s']:,.0f} points/s",
             f"slowest 250 ms of the drain: {o['drain_live_min_per_s']:,.0f} points/s"),
            ("live latency p50 / p99 / max", f"{o['drain_live_p50_ms']:.0f} / {o['drain_live_p99_ms']:.0f} / "
             f"{o['drain_live_max_ms']:.0f} ms", "app write -> subscriber, during the drain (1 ms resolution)"),
            ("live points missing", f"{o['drain_live_missing']:,.0f}", "sent - received, after the run"),
            ("edgelink CPU during the drain", f"{o['drain_cpu_pct_edgelink']:.0f} % of a core", ""),
            ("edgelink RSS with the backlog spooled", f"{o['filled_rss_kib']:,.0f} KiB", ""),
            ("edgelink peak RSS (VmHWM)", f"{o['drain_peak_rss_kib']:,.0f} KiB", "fill and drain"),
            ("spool after the drain", f"{o['drain_spool_bytes_after']:,} B",
             f"dropped {o['drain_dropped']}, replayed {ds.get('replayed')}, reconnects "
             f"{drained.get('broker', {}).get('connects')}, resent {drained.get('outbox', {}).get('resent')}"),
        ]
    if "fsync" in phases:
        rows.append(("FSYNC POLICY (broker down: all to disk)", "", ""))
        for policy in env["fsync_policies"].split():
            r = results(os.path.join(tmp, f"fsync-{policy}.out"))
            st = load_json(os.path.join(tmp, f"status-fsync-{policy}.json")).get("spool", {})
            w0 = load_json(os.path.join(tmp, f"status-fsync-{policy}-w0.json")).get("spool", {})
            w1 = load_json(os.path.join(tmp, f"status-fsync-{policy}-w1.json")).get("spool", {})
            window = num(r, f"fsync_{policy}_window_s")
            try:  # batches of 100 points written to disk in the steady window
                written = (w1["spooled"] - w0["spooled"]) * 100 / window
                written_mb = (w1["bytes"] - w0["bytes"]) / window / 1e6
            except (KeyError, TypeError, ZeroDivisionError):
                written = written_mb = math.nan
            fs = st.get("fsync", {})
            pps = num(r, "relay_points_per_s")
            cpu = num(r, "relay_cpu_pct_edgelink")
            idle = num(r, "relay_sender_idle_s")
            k = f"fsync_{policy}"
            out.update({
                f"{k}_points_per_s": pps,
                f"{k}_written_points_per_s": written,
                f"{k}_written_mb_per_s": written_mb,
                f"{k}_sender_idle_s": idle,
                f"{k}_count": fs.get("count", math.nan),
                f"{k}_mean_ms": fs.get("mean_ms", math.nan),
                f"{k}_max_ms": fs.get("max_ms", math.nan),
                f"{k}_spool_bytes": st.get("bytes", math.nan),
                f"{k}_dropped": st.get("dropped", math.nan),
                f"{k}_cpu_pct_edgelink": cpu,
                f"{k}_peak_rss_kib": num(r, f"fsync_{policy}_vmhwm_kib"),
                f"{k}_stop_s": num(r, f"fsync_{policy}_stop_s"),
            })
            rows.append((f"  fsync = {policy}: apps -> edgelink", f"{pps:,.0f} points/s",
                         "" if not idle >= 1 else f"STALLED: edgelink read nothing for the last {idle:.1f} s"))
            rows.append((f"  fsync = {policy}: written to the spool", f"{written:,.0f} points/s",
                         f"{written_mb:.0f} MB/s; {fs.get('count', 0):,} fsyncs, mean {fs.get('mean_ms', math.nan):.2f} ms, max "
                         f"{fs.get('max_ms', math.nan):.2f} ms; CPU {cpu:.0f} %, "
                         f"{us_per_point(cpu, pps):.2f} µs/point; spool {st.get('bytes', 0) / 2**20:,.0f} MiB, "
                         f"dropped {st.get('dropped')}, write failures {st.get('write_failures')}; "
                         f"peak RSS {num(r, f'fsync_{policy}_vmhwm_kib'):,.0f} KiB; stop "
                         f"{num(r, f'fsync_{policy}_stop_s'):.1f} s"))
        m = results(os.path.join(tmp, "memory.out"))
        ms = load_json(os.path.join(tmp, "status-memory.json")).get("spool", {})
        mp, mc = num(m, "relay_points_per_s"), num(m, "relay_cpu_pct_edgelink")
        out.update({"memory_points_per_s": mp, "memory_cpu_pct_edgelink": mc,
                    "memory_points_missing": num(m, "relay_points_sent") - num(m, "relay_points_received"),
                    "memory_spooled": ms.get("spooled", math.nan)})
        rows.append(("  in memory (broker up)", f"{mp:,.0f} points/s",
                     f"CPU {mc:.0f} %, {us_per_point(mc, mp):.2f} µs/point; batches spooled {ms.get('spooled')}; "
                     f"missing {out['memory_points_missing']:,.0f}; peak RSS {num(m, 'memory_vmhwm_kib'):,.0f} KiB"))
        print(f"  fsync runs: {env['duration']} s each ({env['warmup']} s warm-up excluded), max_memory_bytes "
              f"{int(env['fsync_max_memory']):,}; with the broker down there is no subscriber: 'apps -> edgelink' is"
              f" what edgelink read from the apps, 'written to the spool' the batches its disk writer wrote")
    print(f"  {'figure':42} {'measured':>22}  notes")
    for name, value, note in rows:
        if not value:
            print(f"  {name}")
        else:
            print(f"  {name:42} {value:>22}  {note}")
    try:
        with open(os.path.join(tmp, "drain-log-tail.txt")) as f:
            tail = f.read().strip()
        if tail:
            print("edgelink log of the drain phase (last spool/broker/warn lines):")
            for line in tail.splitlines():
                print("  " + line)
    except OSError:
        pass
    print(f"load average (1/5/15 min) at start {env['load_start']}, at end {env['load_end']}")
    print()
    for key, value in out.items():
        print(f"result {key} {value:.6g}" if isinstance(value, float) else f"result {key} {value}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "spool":
        spool_main()
    else:
        main()
