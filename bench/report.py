"""Formats bench/compare-etcd.sh's results as Markdown tables and the
summary line. Usage: report.py results.jsonl [fsync.txt [rtt.txt]]

Each (workload, store) ran in several rounds: the table shows the median
ops/s with the lowest and highest, the median p99, and the median CPU time
per 10,000 operations of the three server processes and of kvbench."""
import json
import os
import re
import statistics
import sys


def median(rows, field):
    values = [r[field] for r in rows if r.get(field) is not None and r[field] >= 0]
    return statistics.median(values) if values else None


def cpu_per_10k(rows, field):
    values = [10000 * r[field] / r["ops"] for r in rows
              if r.get(field) is not None and r[field] >= 0 and r.get("ops")]
    return statistics.median(values) if values else None


def fmt(x, digits=0):
    return "-" if x is None else f"{x:.{digits}f}"


def ops_cell(rows):
    if not rows:
        return "-"
    ops = [r["ops_per_sec"] for r in rows]
    if len(ops) == 1:
        return f"{ops[0]:.0f}"
    return f"{statistics.median(ops):.0f} ({min(ops):.0f}-{max(ops):.0f})"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["label"], r.get("target", "tally")), []).append(r)
    mode = next((r["endpoints"] for r in rows if "endpoints" in r), "leader")
    rounds = max((r.get("round", 1) for r in rows), default=1)
    out = []
    fsync_ms = rtt_ms = None
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        m = re.search(r"copied, ([\d.]+) s", open(sys.argv[2]).read())
        if m:
            fsync_ms = 1000 * float(m.group(1)) / 500
            out.append(f"fsync: 500 synchronous 4 KiB writes in {m.group(1)} s "
                       f"({fsync_ms:.2f} ms each)\n")
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        m = re.search(r"rtt_ms=([\d.]+)", open(sys.argv[3]).read())
        rtt_ms = float(m.group(1)) if m else None
    put1 = {t: median(by.get(("put-1", t), []), "p50_ms") for t in ("tally", "etcd")}
    if fsync_ms and rtt_ms:
        floor = fsync_ms + rtt_ms
        line = (f"floor of a one-client put: loopback round trip {rtt_ms:.3f} ms "
                f"+ one fsync {fsync_ms:.2f} ms = {floor:.2f} ms")
        if put1["tally"] and put1["etcd"]:
            line += (f"; put-1 p50: Tally {put1['tally']:.2f} ms "
                     f"({put1['tally'] / floor:.1f}x the floor), "
                     f"etcd {put1['etcd']:.2f} ms ({put1['etcd'] / floor:.1f}x)")
        out.append(line + "\n")
    where = ("every request to a leader (Tally: each range's; etcd: its leader's endpoint)"
             if mode == "leader" else
             "etcd spread over its three endpoints; Tally to each range's leader")
    labels = []
    for label, target in by:
        if target == "tally" and label not in labels and not label.startswith(
                ("ceiling", "ranges", "idle", "rss")):
            labels.append(label)
    if labels:
        out.append(f"Endpoints: {where}. Medians of {rounds} interleaved rounds "
                   "(lowest-highest); CPU: seconds per 10,000 operations.\n")
        out.append("| workload | Tally ops/s | etcd ops/s | ratio | Tally p99 ms "
                   "| etcd p99 ms | servers' CPU Tally / etcd | kvbench CPU Tally / etcd |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label in labels:
        t, e = by[(label, "tally")], by.get((label, "etcd"), [])
        t_ops, e_ops = median(t, "ops_per_sec"), median(e, "ops_per_sec")
        ratio = f"{t_ops / e_ops:.2f}x" if t_ops and e_ops else "-"
        out.append(
            f"| {label} | {ops_cell(t)} | {ops_cell(e)} | {ratio} | "
            f"{fmt(median(t, 'p99_ms'), 1)} | {fmt(median(e, 'p99_ms'), 1)} | "
            f"{fmt(cpu_per_10k(t, 'server_cpu_s'), 2)} / {fmt(cpu_per_10k(e, 'server_cpu_s'), 2)} | "
            f"{fmt(cpu_per_10k(t, 'client_cpu_s'), 2)} / {fmt(cpu_per_10k(e, 'client_cpu_s'), 2)} |")
    if labels:
        out.append("")

    def one(label):
        r = by.get((label, "tally"))
        return median(r, "ops_per_sec") if r else None

    ceil_put, ceil_get = one("ceiling-put-256"), one("ceiling-serializable-get-256")
    put, get = one("put-256"), one("get-256")
    if ceil_put and ceil_get and put and get:
        out.append("| replicated | ops/s | ceiling (one node) | ops/s | fraction |")
        out.append("|---|---:|---|---:|---:|")
        out.append(f"| put-256 | {put:.0f} | put-256, no replication | {ceil_put:.0f} | "
                   f"{put / ceil_put:.0%} |")
        out.append(f"| get-256 (linearizable) | {get:.0f} | serializable get-256, "
                   f"one node | {ceil_get:.0f} | {get / ceil_get:.0%} |")
        out.append("")
    scale = [r for r in rows if r["label"].startswith("ranges-")]
    if scale:
        out.append("| ranges | put-256 ops/s | p99 ms |")
        out.append("|---:|---:|---:|")
        for r in scale:
            out.append(f"| {r['label'].split('-')[1]} | {r['ops_per_sec']:.0f} | {r['p99_ms']:.1f} |")
        out.append("")
    for r in rows:
        if r["label"].startswith("idle-"):
            out.append(f"idle cluster with {r['label'][5:]} ranges per node: "
                       f"{r['cpu_percent_of_core']}% of one core (3 nodes together), "
                       f"{r['rss_mb']} MB resident\n")

    rss = {r["target"]: r for r in rows if r["label"].startswith("rss-")}
    if rss:
        puts = next(iter(rss.values()))["puts"]
        out.append(f"| after {puts:,} puts of 256 random bytes, each to its own key "
                   "| resident MB per node "
                   "| data dir MB per node | seconds to write |")
        out.append("|---|---|---|---:|")
        for target in ("tally", "etcd"):
            if target in rss:
                r = rss[target]
                out.append(f"| {'Tally' if target == 'tally' else 'etcd'} | "
                           f"{' / '.join(map(str, r['rss_mb']))} | "
                           f"{' / '.join(map(str, r['disk_mb']))} | {r['seconds']} |")
        out.append("")

    def ratio(label, field):
        t = median(by.get((label, "tally"), []), field)
        e = median(by.get((label, "etcd"), []), field)
        return f"{t / e:.2f}" if t and e else "nan"

    def cpu_ratio(label):
        t = cpu_per_10k(by.get((label, "tally"), []), "server_cpu_s")
        e = cpu_per_10k(by.get((label, "etcd"), []), "server_cpu_s")
        return f"{t / e:.2f}" if t and e else "nan"

    out.append(f"bench: write_ratio={ratio('put-256', 'ops_per_sec')} "
               f"read_ratio={ratio('get-256', 'ops_per_sec')} "
               f"p99_write_ratio={ratio('put-256', 'p99_ms')} "
               f"cpu_per_write_ratio={cpu_ratio('put-256')} "
               f"cpu_per_read_ratio={cpu_ratio('get-256')} "
               f"endpoints={mode} rounds={rounds}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
