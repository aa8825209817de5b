"""Formats bench/compare-etcd.sh's results as Markdown tables and the
summary line. Usage: report.py results.jsonl [fsync.txt]"""
import json
import re
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by = {}
    for r in rows:
        by[(r["label"], r.get("target", "tally"))] = r
    out = []
    if len(sys.argv) > 2:
        m = re.search(r"copied, ([\d.]+) s", open(sys.argv[2]).read())
        if m:
            out.append(f"fsync: 500 synchronous 4 KiB writes in {m.group(1)} s "
                       f"({1000 * float(m.group(1)) / 500:.2f} ms each)\n")
    out.append("| workload | Tally ops/s | etcd ops/s | ratio | Tally p99 ms | etcd p99 ms |")
    out.append("|---|---:|---:|---:|---:|---:|")
    labels = [l for l, t in by if t == "tally" and not l.startswith(("ceiling", "ranges", "idle"))]
    for label in labels:
        t = by[(label, "tally")]
        e = by.get((label, "etcd"))
        if e:
            ratio = f"{t['ops_per_sec'] / e['ops_per_sec']:.2f}x" if e["ops_per_sec"] else "-"
            e_ops, e_p99 = f"{e['ops_per_sec']:.0f}", f"{e['p99_ms']:.1f}"
        else:
            ratio = e_ops = e_p99 = "-"
        out.append(f"| {label} | {t['ops_per_sec']:.0f} | {e_ops} | {ratio} | "
                   f"{t['p99_ms']:.1f} | {e_p99} |")
    out.append("")
    ceil_put = by.get(("ceiling-put-256", "tally"))
    ceil_get = by.get(("ceiling-serializable-get-256", "tally"))
    put = by.get(("put-256", "tally"))
    get = by.get(("get-256", "tally"))
    if ceil_put and ceil_get and put and get:
        out.append("| replicated | ops/s | ceiling (one node) | ops/s | fraction |")
        out.append("|---|---:|---|---:|---:|")
        out.append(f"| put-256 | {put['ops_per_sec']:.0f} | put-256, no replication | "
                   f"{ceil_put['ops_per_sec']:.0f} | "
                   f"{put['ops_per_sec'] / ceil_put['ops_per_sec']:.0%} |")
        out.append(f"| get-256 (linearizable) | {get['ops_per_sec']:.0f} | serializable get-256, "
                   f"one node | {ceil_get['ops_per_sec']:.0f} | "
                   f"{get['ops_per_sec'] / ceil_get['ops_per_sec']:.0%} |")
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

    def ratio(label, field):
        t, e = by.get((label, "tally")), by.get((label, "etcd"))
        if not t or not e or not e[field]:
            return "nan"
        return f"{t[field] / e[field]:.2f}"

    out.append(f"bench: write_ratio={ratio('put-256', 'ops_per_sec')} "
               f"read_ratio={ratio('get-256', 'ops_per_sec')} "
               f"p99_write_ratio={ratio('put-256', 'p99_ms')}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
