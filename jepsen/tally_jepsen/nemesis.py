"""Faults, and the schedule that applies them.

Every fault is one `start` and one `stop` (its heal); the schedule applies
one fault at a time, for a drawn duration, after a drawn quiet interval,
all from the run's seed. Each start and stop is logged in the history as
events of process "nemesis".
"""
import random
import time

from .client import OK, cluster_pb2
from .cluster import Node


def _ranges(conn, nodes):
    for n in nodes:
        r = conn.call(n, "Ranges", cluster_pb2.RangesRequest(), timeout=1.0,
                      service="Cluster", redirects=0)
        if r.type == OK and r.response.ranges:
            return r.response
    return None


def first_data_group(conn, nodes):
    """The group of the first range, as the cluster names it."""
    r = _ranges(conn, nodes)
    return r.ranges[0].group if r else None


def meta_group(conn, nodes):
    """The metadata group, as the cluster names it."""
    r = _ranges(conn, nodes)
    return r.meta_group if r else None


def leader_of(conn, nodes, group=None):
    """The node that leads `group` (default: the first data group), by asking
    every node; None when none says so."""
    if group is None:
        group = first_data_group(conn, nodes)
    for n in nodes:
        r = conn.call(n, "Status", cluster_pb2.StatusRequest(), timeout=1.0,
                      service="Cluster", redirects=0)
        if r.type != OK:
            continue
        for g in r.response.groups:
            if g.group == group and g.role == "LEADER":
                return n
    return None


class Nemesis:
    name = "none"

    def __init__(self, cluster, conn, rng):
        self.cluster = cluster
        self.net = cluster.net
        self.conn = conn
        self.rng = rng

    def nodes(self):
        return self.cluster.members()

    def pick(self, target):
        nodes = self.nodes()
        if target == "leader":
            leader = leader_of(self.conn, nodes)
            return [leader if leader is not None else self.rng.choice(nodes)]
        if target == "one":
            return [self.rng.choice(nodes)]
        if target == "minority":
            return self.rng.sample(nodes, (len(nodes) - 1) // 2)
        if target == "majority":
            return self.rng.sample(nodes, len(nodes) // 2 + 1)
        if target == "all":
            return nodes
        raise ValueError(f"unknown target {target}")

    def start(self):
        """Applies the fault; returns a description for the history."""
        return None

    def stop(self):
        return None

    def heal(self):
        """Undoes everything, whatever state the fault is in."""


class Partition(Nemesis):
    """shape: one (isolate a random node), leader, halves (random majority
    and minority), bridge (two halves joined by one node), ring (each node
    sees its two neighbours: a majority, but no two the same; 5 nodes)."""

    def __init__(self, cluster, conn, rng, shape="one"):
        super().__init__(cluster, conn, rng)
        self.shape = shape
        self.name = f"partition-{shape}"

    def start(self):
        nodes = self.nodes()
        if self.shape in ("one", "leader"):
            cut = self.pick(self.shape)[0]
            comps = [[cut], [n for n in nodes if n != cut]]
            self.net.partition(comps)
            return {"components": comps}
        shuffled = nodes[:]
        self.rng.shuffle(shuffled)
        if self.shape == "halves":
            k = len(nodes) // 2
            comps = [shuffled[:k], shuffled[k:]]
            self.net.partition(comps)
            return {"components": comps}
        if self.shape == "bridge":
            k = len(nodes) // 2
            bridge = shuffled[k]
            left, right = shuffled[:k], shuffled[k + 1:]
            blocked = {n: set(right) for n in left}
            blocked.update({n: set(left) for n in right})
            self.net.block(blocked)
            return {"bridge": bridge, "left": left, "right": right}
        if self.shape == "ring":
            m = len(shuffled)
            blocked = {}
            for pos, n in enumerate(shuffled):
                near = {shuffled[(pos - 1) % m], shuffled[(pos + 1) % m], n}
                blocked[n] = set(nodes) - near
            self.net.block(blocked)
            return {"ring": shuffled}
        raise ValueError(f"unknown partition shape {self.shape}")

    def stop(self):
        self.net.heal()

    def heal(self):
        self.net.heal()


class SlowLinks(Nemesis):
    """Through the per-link proxies: one node's links (both ways) delayed by
    0.1-1 s and throttled to 16-256 KiB/s ("slow-node"), or every link
    delayed by 20-200 ms ("delay-all")."""

    def __init__(self, cluster, conn, rng, shape="slow-node"):
        super().__init__(cluster, conn, rng)
        self.shape = shape
        self.name = shape

    def start(self):
        nodes = self.nodes()
        if self.shape == "slow-node":
            n = self.rng.choice(nodes)
            links = [(n, m) for m in nodes if m != n] + [(m, n) for m in nodes if m != n]
            delay = round(self.rng.uniform(0.1, 1.0), 3)
            rate = self.rng.choice([16, 64, 256]) * 1024
            self.net.slow(links, delay, rate)
            return {"node": n, "delay_s": delay, "rate_bytes_per_s": rate}
        links = [(a, b) for a in nodes for b in nodes if a != b]
        delay = round(self.rng.uniform(0.02, 0.2), 3)
        self.net.slow(links, delay)
        return {"delay_s": delay}

    def stop(self):
        self.net.heal()

    def heal(self):
        self.net.heal()


class ProcessFault(Nemesis):
    """kill -9 the target (one, leader, minority, all) and restart it at the
    heal, or pause it with SIGSTOP (held longer than an election timeout)
    and SIGCONT it."""

    ACTIONS = {"kill": (Node.kill, Node.start), "pause": (Node.pause, Node.resume)}

    def __init__(self, cluster, conn, rng, action, target="one"):
        super().__init__(cluster, conn, rng)
        self.target = target
        self.name = f"{action}-{target}"
        self.fault, self.undo = self.ACTIONS[action]
        self.hit = []

    def start(self):
        self.hit = self.pick(self.target)
        for n in self.hit:
            self.fault(self.cluster.node(n))
        return {"nodes": self.hit}

    def stop(self):
        for n in self.hit:
            self.undo(self.cluster.node(n))
        done, self.hit = self.hit, []
        return {"nodes": done}

    def heal(self):
        self.stop()


class Clock(Nemesis):
    """Clock faults under libfaketime, with the leader cut off at the same
    time to attack lease reads.

    mode "drift": every node's clock runs at its own rate within the drift
    the lease tolerates (lease = election timeout - 3 ticks: rates within
    +-8% keep any two clocks within a ratio of 1.17, under the 9/7 the
    lease allows). mode "bump":
    clocks jump forward by up to 5 s, and "strobe" flips a clock between
    two offsets several times; those break the lease's assumption, so runs
    with them read in linearizable mode."""

    def __init__(self, cluster, conn, rng, mode="drift", with_partition=True):
        super().__init__(cluster, conn, rng)
        self.mode = mode
        self.with_partition = with_partition and self.net.isolated
        self.name = f"clock-{mode}"

    def start(self):
        nodes = self.nodes()
        plan = {}
        for n in nodes:
            node = self.cluster.node(n)
            if self.mode == "drift":
                plan[n] = node.set_clock(rate=round(self.rng.uniform(0.92, 1.08), 3))
            elif self.rng.random() < 0.5:  # bump or strobe: jump forward
                plan[n] = node.set_clock(
                    offset=node.clock_offset + round(self.rng.uniform(0.1, 5.0), 3))
        if self.mode == "strobe":
            victim = self.cluster.node(self.rng.choice(nodes))
            base = victim.clock_offset
            for k in range(6):
                victim.set_clock(offset=base + (k % 2) * 0.5)
                time.sleep(1.1)  # libfaketime re-reads the file each second
            plan[victim.i] = f"strobe around {base:+.3f}"
        desc = {"clocks": {f"n{n}": s for n, s in plan.items()}}
        if self.with_partition:
            cut = self.pick("leader")[0]
            self.net.partition([[cut], [n for n in nodes if n != cut]])
            desc["isolated"] = cut
        return desc

    def stop(self):
        # Rates back to 1; offsets stay (a clock never runs backwards).
        for n in self.nodes():
            self.cluster.node(n).set_clock(rate=1.0)
        if self.with_partition:
            self.net.heal()

    def heal(self):
        self.stop()


class ClockJump(Nemesis):
    """Steps the leader's wall clock forward by `jump` seconds (15 minutes by
    default), as a bad NTP server or a VM resume does; monotonic clocks are
    left alone (the cluster runs with fake wall clocks only). Nothing that
    depends on time, session TTLs included, may move with it."""

    WALL_CLOCK_ONLY = True

    def __init__(self, cluster, conn, rng, jump=900.0):
        super().__init__(cluster, conn, rng)
        self.jump = jump
        self.name = "clock-jump-leader"

    def start(self):
        n = self.pick("leader")[0]
        node = self.cluster.node(n)
        return {"clocks": {f"n{n}": node.set_clock(offset=node.clock_offset + self.jump)}}

    def stop(self):
        pass  # a clock never runs backwards

    def heal(self):
        pass


class TransferLeader(Nemesis):
    """Moves leadership of every group the leader leads to another voter."""

    name = "transfer-leader"

    def start(self):
        nodes = self.nodes()
        leader = leader_of(self.conn, nodes)
        if leader is None:
            return {"skipped": "no leader"}
        target = self.rng.choice([n for n in nodes if n != leader])
        r = self.conn.call(leader, "TransferLeader",
                           cluster_pb2.TransferLeaderRequest(group=0, target=target),
                           timeout=5.0, service="Cluster", redirects=0)
        return {"from": leader, "to": target, "result": r.type, "error": r.error}


class Membership(Nemesis):
    """Replaces a voter (random, or the leader) with a new, empty node while
    clients run, through the Cluster API (each change sent once for every
    group, driven by the node that takes it): remove it, kill it and wipe
    its data; then add a new member as a learner, start it with --join, and
    promote it.
    Removed ids are never reused, so each replacement takes a spare node
    number; clients bound to the old node move to the new one."""

    SPARES = 6

    def __init__(self, cluster, conn, rng, target="one"):
        super().__init__(cluster, conn, rng)
        self.target = target
        self.name = f"replace-{target}"
        self.client_nodes = None  # the clients' node list, updated in place

    def _change(self, method, request, via, deadline):
        """Sends a change of every group (group 0) to a node, which drives it
        through every group; sends it again (to another node) while it
        fails, until the deadline: a change stopped part-way is finished by
        the same request."""
        while True:
            left = max(1.0, deadline - time.monotonic())
            r = self.conn.call(via, method, request, timeout=min(left, 65.0),
                               service="Cluster", redirects=0)
            if r.type == OK:
                return None
            if time.monotonic() > deadline:
                return f"{method}: {r.error}"
            via = self.rng.choice(self.nodes())
            time.sleep(0.3)

    def start(self):
        members = self.nodes()
        victim = self.pick(self.target)[0]
        new = max(self.cluster.nodes) + 1
        if new > self.net.n:
            return {"skipped": "no spare node numbers left"}
        via = self.rng.choice([m for m in members if m != victim])
        deadline = time.monotonic() + 30
        err = self._change("RemoveMember", cluster_pb2.RemoveMemberRequest(id=victim),
                           via, deadline)
        if err:
            return {"removing": victim, "error": err}
        old = self.cluster.node(victim)
        old.wipe()
        old.removed = True
        node = self.cluster.add_node(new, join_via=self.cluster.node(via).client_address)
        self.conn.set_address(new, node.client_address)
        member = cluster_pb2.Member(id=new, name=node.name, peer_address=node.peer_address,
                                    client_address=node.client_address)
        err = self._change("AddLearner", cluster_pb2.AddLearnerRequest(member=member),
                           via, deadline)
        if err:
            return {"removed": victim, "adding": new, "error": err}
        node.start()
        err = self._change("Promote", cluster_pb2.PromoteRequest(id=new), via,
                           deadline + 30)
        if self.client_nodes is not None:
            self.client_nodes[:] = [new if n == victim else n for n in self.client_nodes]
        return {"removed": victim, "added": new, "error": err}


NEMESES = {
    "none": lambda c, conn, rng: Nemesis(c, conn, rng),
    "partition-one": lambda c, conn, rng: Partition(c, conn, rng, "one"),
    "partition-leader": lambda c, conn, rng: Partition(c, conn, rng, "leader"),
    "partition-halves": lambda c, conn, rng: Partition(c, conn, rng, "halves"),
    "partition-bridge": lambda c, conn, rng: Partition(c, conn, rng, "bridge"),
    "partition-ring": lambda c, conn, rng: Partition(c, conn, rng, "ring"),
    "kill-one": lambda c, conn, rng: ProcessFault(c, conn, rng, "kill", "one"),
    "kill-leader": lambda c, conn, rng: ProcessFault(c, conn, rng, "kill", "leader"),
    "kill-minority": lambda c, conn, rng: ProcessFault(c, conn, rng, "kill", "minority"),
    "kill-all": lambda c, conn, rng: ProcessFault(c, conn, rng, "kill", "all"),
    "pause-one": lambda c, conn, rng: ProcessFault(c, conn, rng, "pause", "one"),
    "pause-leader": lambda c, conn, rng: ProcessFault(c, conn, rng, "pause", "leader"),
    "clock-drift": lambda c, conn, rng: Clock(c, conn, rng, "drift"),
    "clock-bump": lambda c, conn, rng: Clock(c, conn, rng, "bump"),
    "clock-strobe": lambda c, conn, rng: Clock(c, conn, rng, "strobe"),
    "clock-jump-leader": lambda c, conn, rng: ClockJump(c, conn, rng),
    "transfer-leader": lambda c, conn, rng: TransferLeader(c, conn, rng),
    "slow-node": lambda c, conn, rng: SlowLinks(c, conn, rng, "slow-node"),
    "delay-all": lambda c, conn, rng: SlowLinks(c, conn, rng, "delay-all"),
    "replace-one": lambda c, conn, rng: Membership(c, conn, rng, "one"),
    "replace-leader": lambda c, conn, rng: Membership(c, conn, rng, "leader"),
}


def run_schedule(nemesis, history, stop, rng, quiet=(2.0, 5.0), hold=(5.0, 10.0)):
    """Applies the fault again and again until `stop` is set; always heals."""
    try:
        while not stop.wait(rng.uniform(*quiet)):
            name = nemesis.name
            history.invoke("nemesis", f"start-{name}")
            desc = nemesis.start()
            history.append({"type": "info", "process": "nemesis", "f": f"start-{name}",
                            "key": None, "value": desc})
            stop.wait(rng.uniform(*hold))
            history.invoke("nemesis", f"stop-{name}")
            desc = nemesis.stop()
            history.append({"type": "info", "process": "nemesis", "f": f"stop-{name}",
                            "key": None, "value": desc})
    finally:
        nemesis.heal()


# Nemeses whose clusters fake wall clocks only (monotonic clocks stay true).
WALL_CLOCK_ONLY = {"clock-jump-leader"}


def make(name, cluster, conn, seed):
    if name not in NEMESES:
        raise ValueError(f"unknown nemesis {name}; known: {', '.join(sorted(NEMESES))}")
    return NEMESES[name](cluster, conn, random.Random(f"{seed}/nemesis"))

# Nemeses whose runs route node-to-node traffic through the link proxies.
PROXIED = {"slow-node", "delay-all"}
