#!/usr/bin/env python3
"""Summary table for bench/run_bench.sh (stdlib only).

    summarize.py TMPDIR ROUNDS key=value...

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
            print(f"    {name:8} offered {num(d, f'{mode}_offered_points_per_s'):>11,.0f} points/s; "
                  f"sent {sent:,.0f}, received {recv:,.0f} ({sent - recv:,.0f} missing); CPU % of a core: "
                  f"mosquitto {num(d, f'{mode}_cpu_pct_mosquitto'):.0f} (+{num(d, f'{mode}_wait_pct_mosquitto'):.0f} waiting), "
                  f"relay_bench {num(d, f'{mode}_cpu_pct_bench'):.0f} (+{num(d, f'{mode}_wait_pct_bench'):.0f} waiting)")

    best_r = max(relay, key=lambda d: num(d, "relay_points_per_s") if d else -1)
    best_c = max(ceiling, key=lambda d: num(d, "ceiling_points_per_s") if d else -1)
    rp, cp = num(best_r, "relay_points_per_s"), num(best_c, "ceiling_points_per_s")
    ecpu = num(best_r, "relay_cpu_pct_edgelink")
    p99 = num(rtt, "rtt_p99_ms")
    mrun, mwait = num(best_r, "relay_main_cpu_pct_edgelink"), num(best_r, "relay_main_wait_pct_edgelink")
    idle, peak = float(env["idle_rss"] or "nan"), float(env["peak_rss"] or "nan")
    rows = [
        ("relay points/s (best round)", f"{rp:,.0f}", ">= 1,000,000", rp >= 1e6),
        ("ceiling points/s (best round)", f"{cp:,.0f}", "", None),
        ("relay / ceiling", f"{100 * rp / cp:.0f} %", ">= 75 %", rp >= 0.75 * cp),
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
          f"{env['duration']} s per side ({env['warmup']} s warm-up excluded), {env['nproc']} cores, nice {env.get('nice', '0')}")
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
        pauses = sum(a.get("pauses", 0) for a in st.get("apps", []))
        b = st.get("broker", {})
        print(f"edgelink after the relay runs: published {b.get('published')}, acked {b.get('acked')}, "
              f"back-pressure pauses {pauses} (apps' sockets not read while the outbox was full)")
    except (OSError, ValueError):
        pass
    print(f"load average (1/5/15 min) at start {env['load_start']}, at end {env['load_end']}")


if __name__ == "__main__":
    main()
