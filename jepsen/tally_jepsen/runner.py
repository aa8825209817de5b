"""One run: a fresh cluster, clients and one fault schedule for a while,
then heal, read back, check, and write the run's folder:

  history.jsonl  n1.log ...  plan.json  verdict.json  latency.png
  violation-<key>.png  (when a key is not linearizable)
"""
import json
import os
import random
import threading
import time

from . import checkers, cluster as tcluster, history as hist, nemesis as tnem, plot
from . import workloads
from .client import OK, Connection, kv_pb2
from .net import Network


class Plan:
    def __init__(self, workload, nemesis, seed, duration=30.0, nodes=3, clients=10,
                 read_mode="mixed", check_read_modes="linearizable,lease",
                 ranges="", tick_ms=50, session_ttl=None, idle_every=0, idle_for=0.0):
        self.workload = workload
        self.nemesis = nemesis
        self.seed = seed
        self.duration = duration
        self.nodes = nodes
        self.clients = clients
        self.read_mode = read_mode
        self.check_read_modes = check_read_modes
        self.ranges = ranges
        self.tick_ms = tick_ms
        # kvd --session-ttl (seconds), and exactly-once clients that idle
        # idle_for seconds before every idle_every-th put.
        self.session_ttl = session_ttl
        self.idle_every = idle_every
        self.idle_for = idle_for

    @property
    def name(self):
        return f"{self.workload}-{self.nemesis}"

    def to_json(self):
        return dict(self.__dict__, name=self.name)


class Outcome:
    def __init__(self, plan, run_dir, verdicts, ops):
        self.plan = plan
        self.run_dir = run_dir
        self.verdicts = verdicts
        self.ops = ops

    @property
    def valid(self):
        return all(v["valid"] is True for v in self.verdicts)

    def summary_lines(self):
        lines = []
        for v in self.verdicts:
            n = len(v.get("anomalies", []))
            lines.append(f"{self.plan.name} seed={self.plan.seed} {v['checker']}: "
                         f"valid={v['valid']} ok={v.get('ok', 0)} fail={v.get('fail', 0)} "
                         f"info={v.get('info', 0)} anomalies={v.get('anomaly_count', n)}")
        return lines


def wait_ready(conn, nodes, timeout=60.0):
    """Until some node answers a linearizable read: the cluster has a leader
    for the first data group and can serve."""
    deadline = time.monotonic() + timeout
    req = kv_pb2.GetRequest(key=b"jepsen-probe")
    while time.monotonic() < deadline:
        for n in nodes:
            if conn.call(n, "Get", req, timeout=1.0).type == OK:
                return True
        time.sleep(0.2)
    return False


def execute(plan, out_root):
    """Runs the plan; returns its Outcome. Always stops what it started."""
    # A new folder each time: a rerun with the same seed must not start its
    # cluster on the data of the previous one.
    base = os.path.join(out_root, f"{plan.name}-{plan.seed}")
    run_dir, n = base, 1
    while os.path.exists(run_dir):
        n += 1
        run_dir = f"{base}-{n}"
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "plan.json"), "w") as f:
        json.dump(plan.to_json(), f, indent=2)
    workload = workloads.WORKLOADS[plan.workload]()
    if plan.workload in ("register", "crdt-cas"):
        workload.read_mode = plan.read_mode
    if plan.workload == "exactly-once":
        workload.idle_every, workload.idle_for = plan.idle_every, plan.idle_for
    net = Network(plan.nodes, spares=tnem.Membership.SPARES
                  if plan.nemesis.startswith("replace") else 0,
                  proxied=plan.nemesis in tnem.PROXIED)
    cluster = None
    conn = None
    history = hist.History(os.path.join(run_dir, "history.jsonl"))
    try:
        cluster = tcluster.Cluster(run_dir, net, plan.nodes, tick_ms=plan.tick_ms,
                                   initial_ranges=plan.ranges,
                                   fake_clocks=plan.nemesis.startswith("clock"),
                                   fake_monotonic=plan.nemesis not in tnem.WALL_CLOCK_ONLY,
                                   kvd_args=(["--session-ttl", str(plan.session_ttl)]
                                             if plan.session_ttl else []))
        cluster.start()
        conn = Connection({i: n.client_address for i, n in cluster.nodes.items()})
        nodes = sorted(cluster.nodes)
        if not wait_ready(conn, nodes):
            raise RuntimeError(f"the cluster did not become ready; see the logs in {run_dir}")
        nemesis = tnem.make(plan.nemesis, cluster, conn, plan.seed)
        nemesis.client_nodes = nodes
        stop = threading.Event()
        ctx = workloads.Context(conn, history, nodes, plan.seed, stop, plan.duration,
                                cluster=cluster)
        threads = [threading.Thread(target=workload.run, args=(p, ctx), daemon=True)
                   for p in range(plan.clients)]
        nem_thread = threading.Thread(
            target=tnem.run_schedule,
            args=(nemesis, history, stop, random.Random(f"{plan.seed}/schedule")),
            daemon=True)
        for t in threads:
            t.start()
        nem_thread.start()
        stop.wait(plan.duration)
        stop.set()
        nem_thread.join(timeout=60)
        for t in threads:
            t.join(timeout=60)
        # Heal everything, then read back the final state.
        nemesis.heal()
        net.heal()
        cluster.heal_processes()
        nodes[:] = [n for n in nodes if not cluster.node(n).removed]
        if not wait_ready(conn, nodes):
            raise RuntimeError(f"the cluster did not recover after healing; see {run_dir}")
        workload.final(ctx)
    finally:
        history.close()
        if conn is not None:
            conn.close()
        if cluster is not None:
            cluster.shutdown()
        net.close()

    events = history.events
    verdicts = checkers.for_workload(plan.workload, history.path, events,
                                     plan.check_read_modes, plan.session_ttl)
    nothing = checkers.stalled(verdicts)
    if nothing is not None:
        verdicts.append(nothing)
    ops = sum(1 for e in events if e["type"] == "invoke" and e["process"] != "nemesis")
    outcome = Outcome(plan, run_dir, verdicts, ops)
    with open(os.path.join(run_dir, "verdict.json"), "w") as f:
        json.dump({"plan": plan.to_json(), "valid": outcome.valid, "ops": ops,
                   "checkers": verdicts}, f, indent=2)
    plot.latency(events, os.path.join(run_dir, "latency.png"),
                 f"{plan.name} seed {plan.seed}")
    for v in verdicts:
        if v["checker"] == "linearizable":
            for a in v.get("anomalies", [])[:3]:
                if "key" in a:
                    plot.violation(events, a, os.path.join(run_dir, f"violation-{a['key']}.png"))
    return outcome
