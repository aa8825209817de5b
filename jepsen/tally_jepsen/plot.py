"""Pictures of a run: latency over time with faults shaded, and the
operations around a linearizability violation."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import history as hist  # noqa: E402

COLORS = {"ok": "#2a9d4a", "fail": "#d62728", "info": "#ff9f1c"}
MARKERS = {"read": "o", "write": "s", "cas": "^", "append": "D", "put": "v"}


def latency(events, path, title):
    fig, ax = plt.subplots(figsize=(11, 5))
    for t0, t1, label in hist.fault_windows(events):
        ax.axvspan(t0 / 1e9, t1 / 1e9, color="#bbbbbb", alpha=0.35, lw=0)
        ax.text(t0 / 1e9, 1.01, label, transform=ax.get_xaxis_transform(),
                fontsize=7, va="bottom")
    series = {}
    for inv, done in hist.pairs(events):
        if inv["process"] == "final" or done is None:
            continue
        key = (inv["f"], done["type"])
        xs, ys = series.setdefault(key, ([], []))
        xs.append(inv["time"] / 1e9)
        ys.append(max((done["time"] - inv["time"]) / 1e6, 0.01))
    for (f, type_), (xs, ys) in sorted(series.items()):
        ax.scatter(xs, ys, s=6, c=COLORS.get(type_, "black"), marker=MARKERS.get(f, "."),
                   label=f"{f} {type_}", alpha=0.6, linewidths=0)
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, pad=14)
    ax.legend(loc="upper right", fontsize=7, markerscale=2, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def violation(events, anomaly, path):
    """The operations on the key that cannot be ordered: one bar per
    operation from invoke to completion, by process; the partial order
    the checker found is green, the operation it could not place red."""
    key = anomaly["key"]
    prefix = set(anomaly.get("prefix_lines", []))
    bad = anomaly.get("op_line")
    ops = [(i, d) for i, d in hist.pairs(events, {"read", "write", "cas"}) if i["key"] == key]
    if bad is not None:
        t_bad = events[bad]["time"]
        ops = [(i, d) for i, d in ops if abs(i["time"] - t_bad) < 2e9] or ops
    procs = sorted({str(i["process"]) for i, _ in ops})
    row = {p: n for n, p in enumerate(procs)}
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(procs) + 1.5))
    end = max((d["time"] for _, d in ops if d), default=0)
    for inv, done in ops:
        t1 = done["time"] if done and done["type"] == "ok" else end
        color = "#d62728" if inv["index"] == bad else (
            "#2a9d4a" if inv["index"] in prefix else "#8888cc")
        y = row[str(inv["process"])]
        ax.barh(y, (t1 - inv["time"]) / 1e6, left=inv["time"] / 1e6, height=0.6,
                color=color, alpha=0.8)
        val = done["value"] if inv["f"] == "read" and done else inv["value"]
        ax.text(inv["time"] / 1e6, y, f" {inv['f']} {val}", va="center", fontsize=7)
    ax.set_yticks(range(len(procs)), [f"p{p}" for p in procs])
    ax.set_xlabel("time (ms)")
    ax.set_title(f"key {key}: {anomaly.get('message', '')}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
