"""What the logical clients do, and what they must see.

A workload has `run(process, ctx)`, called in its own thread once per
logical client and returning when ctx.stop is set, and `final(ctx)`, run
after the faults have healed, to read back the final state.
"""
import itertools
import random
import signal
import subprocess
import threading
import time

from . import client as tc
from . import history as hist
from . import paths
from .client import FAIL, INFO, OK, crdt_pb2, idem_pb2, kv_pb2, lock_pb2, saga_pb2

OP_TIMEOUT = 2.0


def _int(b):
    return int(b.decode()) if b else None


class Context:
    """What every client process shares: the connection, the history, the
    nodes and the run's seed."""

    def __init__(self, conn, history, nodes, seed, stop, duration, cluster=None):
        self.cluster = cluster
        self.conn = conn
        self.history = history
        self.nodes = nodes  # node numbers clients are bound to
        self.seed = seed
        self.stop = stop
        self.duration = duration

    def rng(self, process):
        return random.Random(f"{self.seed}/{process}")

    def node_for(self, process):
        return self.nodes[process % len(self.nodes)]


def record(ctx, process, f, key, value, call, extra=None, node=None):
    """Invokes, runs call() -> (type, value, node), completes; returns the
    completion."""
    inv = ctx.history.invoke(process, f, key, value, **(extra or {}))
    type_, out, at, error = call()
    extra2 = {"node": f"n{at}"} if at else {}
    if error:
        extra2["error"] = error
    done = ctx.history.complete(inv, type_, out, **extra2)
    if type_ != OK and error and "compare failed" not in error:
        time.sleep(0.01)  # a refusing or dead node answers at once: no spinning
    return done


def read_back(ctx, f, key, service, method, req, value_of, extra=None):
    """A final read (after the faults healed) of `key` by process "final",
    from one node after another until one answers (at most 100 tries);
    value_of(response) is its value."""
    for attempt in range(100):
        node = ctx.nodes[attempt % len(ctx.nodes)]

        def call(node=node):
            r = ctx.conn.call(node, method, req, timeout=OP_TIMEOUT, service=service)
            if r.type != OK:
                return r.type, None, r.node, r.error
            return OK, value_of(r.response), r.node, None

        if record(ctx, "final", f, key, None, call,
                  dict({"final": True}, **(extra or {})))["type"] == OK:
            return
        time.sleep(0.2)


class CrdtTable:
    """A CRDT table that a workload's clients create once: the first tries
    node after node until one answers (or the run stops); the others wait.
    Each node's replica of the metadata group learns of the table a moment
    later: until then it answers NOT_FOUND (a fail, harmless)."""

    def __init__(self, name, columns):
        self.name = name
        self.columns = columns
        self._created = threading.Event()
        self._creating = threading.Lock()

    def create(self, ctx, node):
        with self._creating:
            while not self._created.is_set() and not ctx.stop.is_set():
                req = crdt_pb2.CrdtCreateTableRequest(name=self.name, columns=self.columns)
                r = ctx.conn.call(node, "CreateTable", req, timeout=OP_TIMEOUT,
                                  service="Crdt")
                if r.type == OK or (r.error and "already exists" in r.error):
                    self._created.set()
                else:
                    node = ctx.nodes[(ctx.nodes.index(node) + 1) % len(ctx.nodes)]
                    time.sleep(0.2)


class Register:
    """Read, write and compare-and-set on rotating keys, unique values.

    read_mode: linearizable, lease, serializable, or mixed (each read picks
    one). Linearizable and lease reads go to the linearizability checker,
    serializable ones to the staleness check."""

    name = "register"

    def __init__(self, read_mode="mixed", key_period=5.0, keys_at_once=3):
        self.read_mode = read_mode
        self.key_period = key_period
        self.keys_at_once = keys_at_once
        self._values = itertools.count(1)

    def _key(self, ctx, rng):
        epoch = int(ctx.history.now() / 1e9 / self.key_period)
        return f"r{epoch * self.keys_at_once + rng.randrange(self.keys_at_once)}"

    def run(self, process, ctx):
        rng = ctx.rng(process)
        node = ctx.node_for(process)
        self.setup(ctx, node)
        last_seen = {}
        while not ctx.stop.is_set():
            key = self._key(ctx, rng)
            x = rng.random()
            if x < 0.5:
                mode = self.read_mode
                if mode == "mixed":
                    mode = rng.choice(["linearizable", "lease", "serializable"])
                done = record(ctx, process, "read", key, None,
                              self.read_call(ctx, node, key, mode), {"mode": mode})
                if done["type"] == OK:
                    last_seen[key] = done["value"]
            elif x < 0.8:
                v = next(self._values)
                record(ctx, process, "write", key, v, self.write_call(ctx, node, key, v))
            else:
                old = last_seen.get(key)
                new = next(self._values)
                record(ctx, process, "cas", key, [old, new],
                       self.cas_call(ctx, node, key, old, new))

    def setup(self, ctx, node):
        pass

    # Each returns call() -> (type, value, node, error) for record().
    def read_call(self, ctx, node, key, mode):
        req = kv_pb2.GetRequest(key=key.encode(), read_mode=tc.READ_MODES[mode])

        def call():
            r = ctx.conn.call(node, "Get", req, timeout=OP_TIMEOUT)
            if r.type != OK:
                return r.type, None, r.node, r.error
            v = _int(r.response.kv.value) if r.response.found else None
            return OK, v, r.node, None

        return call

    def write_call(self, ctx, node, key, v):
        req = kv_pb2.PutRequest(key=key.encode(), value=str(v).encode())

        def call():
            r = ctx.conn.call(node, "Put", req, timeout=OP_TIMEOUT)
            return r.type, v, r.node, r.error

        return call

    def cas_call(self, ctx, node, key, old, new):
        if old is None:
            cmp = kv_pb2.Compare(key=key.encode(), target=kv_pb2.Compare.VERSION,
                                 op=kv_pb2.Compare.EQUAL, version=0)
        else:
            cmp = kv_pb2.Compare(key=key.encode(), target=kv_pb2.Compare.VALUE,
                                 op=kv_pb2.Compare.EQUAL, value=str(old).encode())
        req = kv_pb2.TxnRequest(compare=[cmp], success=[kv_pb2.TxnOp(
            put=kv_pb2.PutRequest(key=key.encode(), value=str(new).encode()))])

        def call():
            r = ctx.conn.call(node, "Txn", req, timeout=OP_TIMEOUT)
            if r.type == OK and not r.response.succeeded:
                return FAIL, [old, new], r.node, "compare failed"
            return r.type, [old, new], r.node, r.error

        return call

    def final(self, ctx):
        pass


class CrdtCas(Register):
    """The register workload on a CRDT table's cas_register column (rows
    for keys), through raft: reads with Crdt.CasGet, writes as a
    compare-and-set comparing nothing, compare-and-sets comparing the value
    last read (or that none is set). The same checkers: linearizable reads
    and compare-and-sets, staleness of serializable reads."""

    name = "crdt-cas"
    TABLE = "jepsen_cas"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.table = CrdtTable(self.TABLE, [
            crdt_pb2.CrdtColumn(name="v", type=crdt_pb2.CRDT_CAS_REGISTER)])

    def setup(self, ctx, node):
        self.table.create(ctx, node)

    def read_call(self, ctx, node, key, mode):
        req = crdt_pb2.CrdtCasGetRequest(table=self.TABLE, row=key.encode(),
                                         read_mode=tc.READ_MODES[mode])

        def call():
            r = ctx.conn.call(node, "CasGet", req, timeout=OP_TIMEOUT, service="Crdt")
            if r.type != OK:
                return r.type, None, r.node, r.error
            vals = [v.value for v in r.response.values if v.column == "v"]
            return OK, _int(vals[0]) if vals else None, r.node, None

        return call

    def _cas(self, ctx, node, key, compare, new, value):
        req = crdt_pb2.CrdtCasRequest(table=self.TABLE, row=key.encode(),
                                      compare=compare, set=[crdt_pb2.CrdtCasValue(
                                          column="v", value=str(new).encode())])

        def call():
            r = ctx.conn.call(node, "Cas", req, timeout=OP_TIMEOUT, service="Crdt")
            if r.type == OK and not r.response.succeeded:
                return FAIL, value, r.node, "compare failed"
            return r.type, value, r.node, r.error

        return call

    def write_call(self, ctx, node, key, v):
        return self._cas(ctx, node, key, [], v, v)

    def cas_call(self, ctx, node, key, old, new):
        cmp = crdt_pb2.CrdtCasValue(column="v", unset=old is None,
                                    value=b"" if old is None else str(old).encode())
        return self._cas(ctx, node, key, [cmp], new, [old, new])


class Append:
    """Unique elements appended to a few keys (read, then compare-and-set
    the longer list), and reads of the whole list."""

    name = "set"

    def __init__(self, key_period=10.0, keys_at_once=2):
        self.key_period = key_period
        self.keys_at_once = keys_at_once
        self._elements = itertools.count(1)
        self.keys = set()

    def run(self, process, ctx):
        rng = ctx.rng(process)
        node = ctx.node_for(process)
        while not ctx.stop.is_set():
            epoch = int(ctx.history.now() / 1e9 / self.key_period)
            key = f"s{epoch * self.keys_at_once + rng.randrange(self.keys_at_once)}"
            self.keys.add(key)
            if rng.random() < 0.3:
                record(ctx, process, "read", key, None,
                       lambda key=key: self._read(ctx, node, key, "linearizable"),
                       {"mode": "linearizable"})
            else:
                e = next(self._elements)
                record(ctx, process, "append", key, e,
                       lambda key=key, e=e: self._append(ctx, node, key, e))

    @staticmethod
    def _read(ctx, node, key, mode):
        r = ctx.conn.call(node, "Get", kv_pb2.GetRequest(
            key=key.encode(), read_mode=tc.READ_MODES[mode]), timeout=OP_TIMEOUT)
        if r.type != OK:
            return r.type, None, r.node, r.error
        raw = r.response.kv.value.decode() if r.response.found else ""
        return OK, [int(x) for x in raw.split(",") if x], r.node, None

    def _append(self, ctx, node, key, e):
        """Read-compare-write until it lands; info once a write's outcome is
        unknown (retrying then could add the element twice)."""
        deadline = time.monotonic() + 3 * OP_TIMEOUT
        last_error = None
        while time.monotonic() < deadline:
            t, cur, at, err = self._read(ctx, node, key, "linearizable")
            if t != OK:
                last_error = err
                time.sleep(0.05)
                continue
            if cur:
                cmp = kv_pb2.Compare(key=key.encode(), target=kv_pb2.Compare.VALUE,
                                     op=kv_pb2.Compare.EQUAL,
                                     value=",".join(map(str, cur)).encode())
            else:
                cmp = kv_pb2.Compare(key=key.encode(), target=kv_pb2.Compare.VERSION,
                                     op=kv_pb2.Compare.EQUAL, version=0)
            new = ",".join(map(str, cur + [e])).encode()
            r = ctx.conn.call(at, "Txn", kv_pb2.TxnRequest(
                compare=[cmp],
                success=[kv_pb2.TxnOp(put=kv_pb2.PutRequest(key=key.encode(), value=new))]),
                timeout=OP_TIMEOUT)
            if r.type == OK and r.response.succeeded:
                return OK, e, r.node, None
            if r.type == INFO:
                return INFO, e, r.node, r.error
            last_error = r.error or "compare failed"
        return FAIL, e, node, last_error

    def final(self, ctx):
        """Reads every key once more, through each node in turn, until one
        answers."""
        for key in sorted(self.keys):
            for _ in range(100):
                node = ctx.nodes[_ % len(ctx.nodes)]
                done = record(ctx, "final", "read", key, None,
                              lambda key=key, node=node: self._read(
                                  ctx, node, key, "linearizable"),
                              {"mode": "linearizable", "final": True})
                if done["type"] == OK:
                    break
                time.sleep(0.2)


class ExactlyOnce:
    """Each client puts to its own key under a session, retrying the same
    (client id, sequence) across timeouts, leader changes and nodes until it
    gets an answer. The key's version counts the puts applied: every
    acknowledged put exactly once, every failed one never, every
    indeterminate one at most once. A session that ends (the servers'
    --session-ttl, shortened for a run, against clients that idle past it)
    is replaced by a new one; the put it refused counts as failed if no
    earlier attempt of it may have been applied, else as indeterminate."""

    name = "exactly-once"

    def __init__(self, retry_for=10.0, idle_every=0, idle_for=0.0):
        self.retry_for = retry_for
        # Every idle_every-th put, the client first waits idle_for seconds.
        self.idle_every = idle_every
        self.idle_for = idle_for
        self.keys = set()

    def run(self, process, ctx):
        rng = ctx.rng(process)
        key = f"e{process}"
        self.keys.add(key)
        session = None
        n = 0  # the put's number: its value, increasing across sessions
        while not ctx.stop.is_set():
            if session is None:
                session = self._open(ctx, process, key, rng)
                if session is None:
                    continue
            n += 1
            idled = bool(self.idle_every) and n % self.idle_every == 0
            if idled:
                ctx.stop.wait(self.idle_for)
                if ctx.stop.is_set():
                    break
            client_id, group, seq = session
            seq += 1
            session = (client_id, group, seq)
            req = kv_pb2.PutRequest(key=key.encode(), value=str(n).encode(),
                                    session=kv_pb2.Session(client_id=client_id,
                                                           sequence=seq,
                                                           first_incomplete=seq,
                                                           group=group))
            done = record(ctx, process, "put", key, n,
                          lambda req=req: self._put(ctx, process, req, rng),
                          {"client_id": str(client_id), "seq": seq,
                           "after_idle": idled})
            if "session-expired" in (done.get("error") or ""):
                session = None

    def _open(self, ctx, process, key, rng):
        """A new session in the group of `key`: (client id, group, 0)."""
        deadline = time.monotonic() + self.retry_for
        node = ctx.node_for(process)
        while time.monotonic() < deadline and not ctx.stop.is_set():
            r = ctx.conn.call(node, "Ranges", tc.cluster_pb2.RangesRequest(),
                              timeout=OP_TIMEOUT, service="Cluster")
            group = None
            if r.type == OK:
                for rd in r.response.ranges:
                    if rd.start <= key.encode() and (not rd.end or key.encode() < rd.end):
                        group = rd.group
            if group is not None:
                r = ctx.conn.call(node, "OpenSession",
                                  kv_pb2.OpenSessionRequest(group=group),
                                  timeout=OP_TIMEOUT)
                if r.type == OK:
                    return (r.response.client_id, group, 0)
            node = rng.choice(ctx.nodes)
            time.sleep(0.05)
        return None

    def _put(self, ctx, process, req, rng):
        deadline = time.monotonic() + self.retry_for
        node = ctx.node_for(process)
        unknown = False
        last = None
        while time.monotonic() < deadline:
            r = ctx.conn.call(node, "Put", req, timeout=OP_TIMEOUT)
            if r.type == OK:
                prev = _int(r.response.prev.value) if r.response.had_prev else None
                return OK, [req.session.sequence, prev, r.response.header.replayed], r.node, None
            last = r.error
            if r.reason == "session-expired":
                # This attempt was not applied; an earlier one may have been.
                last = f"session-expired: {r.error}"
                break
            unknown = unknown or r.type == INFO
            node = rng.choice(ctx.nodes)  # try another node
            time.sleep(0.05)
        return (INFO if unknown else FAIL), [req.session.sequence, None, False], node, last

    def final(self, ctx):
        for key in sorted(self.keys):
            for attempt in range(100):
                node = ctx.nodes[attempt % len(ctx.nodes)]

                def call(key=key, node=node):
                    r = ctx.conn.call(node, "Get", kv_pb2.GetRequest(key=key.encode()),
                                      timeout=OP_TIMEOUT)
                    if r.type != OK:
                        return r.type, None, r.node, r.error
                    v = r.response.kv
                    return OK, ([_int(v.value), v.version] if r.response.found else
                                [None, 0]), r.node, None

                done = record(ctx, "final", "read-version", key, None, call,
                              {"final": True})
                if done["type"] == OK:
                    break
                time.sleep(0.2)


class Durability(Append):
    """The append workload; then every node is killed at once (-9) and
    restarted, and each node, on its own (serializable reads), must return
    every acknowledged element."""

    name = "durability"

    def final(self, ctx):
        ctx.history.invoke("nemesis", "start-kill-all-final")
        for n in ctx.cluster.nodes.values():
            n.kill()
        for n in ctx.cluster.nodes.values():
            n.start()
        ctx.history.append({"type": "info", "process": "nemesis",
                            "f": "start-kill-all-final", "key": None, "value": None})
        super().final(ctx)  # the expected lists, read through the leader
        expected = {}  # what the reads through the leader just returned
        for inv, done in hist.pairs(ctx.history.events, {"read"}):
            if inv.get("final") and done is not None and done["type"] == OK:
                expected[inv["key"]] = done["value"]
        for node in ctx.nodes:
            for key in sorted(self.keys):
                deadline = time.monotonic() + 30
                while True:
                    done = record(ctx, "final", "read", key, None,
                                  lambda key=key, node=node: self._read(
                                      ctx, node, key, "serializable"),
                                  {"mode": "serializable", "final": True,
                                   "from_node": node})
                    caught_up = done["type"] == OK and \
                        len(done["value"]) >= len(expected.get(key) or [])
                    if caught_up or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)


class _Highest:
    """The highest token seen so far, per key, which paused clients wait to
    see overtaken."""

    def __init__(self):
        self._cv = threading.Condition()
        self._values = {}

    def raise_to(self, value, key=None):
        with self._cv:
            if value > self._values.get(key, 0):
                self._values[key] = value
                self._cv.notify_all()

    def wait_above(self, value, timeout, stop, key=None):
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._values.get(key, 0) <= value and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(min(left, 0.1))


class Lock:
    """Clients take one lock with short leases, write to a register bound to
    it (a fence) with their token, and release it. Some clients pause past
    their lease while holding it (no keep-alives), then write anyway: the
    fence must refuse them once a successor has written.

    History: "acquire" (value: the token), "fenced-write" (value: the token;
    completion value: the shard revision of the write), "release"."""

    name = "lock"
    LOCK = "jepsen-lock"
    KEY = b"fenced/register"
    TTL_MS = 2000

    def __init__(self, pause_chance=0.1, pause_for=3.0, overtaken_within=7.0):
        self.pause_chance = pause_chance
        self.pause_for = pause_for
        # A pause lasts past the lease and then until a successor has
        # written (at most this much longer): one that ends first, on a
        # loaded machine where expiry and the next grant come late, would
        # find its token still the highest and test nothing of the fence.
        self.overtaken_within = overtaken_within
        self.highest_written = _Highest()

    def _bind(self, ctx, node):
        req = lock_pb2.BindFenceRequest(prefix=b"fenced/", lock=self.LOCK)
        while not ctx.stop.is_set():
            if ctx.conn.call(node, "BindFence", req, timeout=OP_TIMEOUT,
                             service="Locks").type == OK:
                return True
            time.sleep(0.2)
        return False

    def run(self, process, ctx):
        rng = ctx.rng(process)
        node = ctx.node_for(process)
        if not self._bind(ctx, node):
            return
        lease = None
        while not ctx.stop.is_set():
            if lease is None:
                r = ctx.conn.call(node, "Grant", lock_pb2.LeaseGrantRequest(ttl_ms=self.TTL_MS),
                                  timeout=OP_TIMEOUT, service="Leases")
                if r.type != OK:
                    time.sleep(0.1)
                    continue
                lease = r.response.id
            token = self._acquire(ctx, process, node, lease, rng)
            if token is None:
                lease = self._keep_alive(ctx, node, lease)
                continue
            for i in range(rng.randrange(1, 4)):
                if rng.random() < self.pause_chance:
                    # A client-side pause past the lease (a GC pause, a
                    # stopped VM): it writes with its old token afterwards.
                    time.sleep(self.pause_for)
                    self.highest_written.wait_above(token, self.overtaken_within, ctx.stop)
                    lease = None
                elif lease is not None:
                    lease = self._keep_alive(ctx, node, lease)
                self._write(ctx, process, node, token, f"{process}:{token}:{i}")
            req = lock_pb2.ReleaseRequest(name=self.LOCK, token=token)

            def call(req=req):
                r = ctx.conn.call(node, "Release", req, timeout=OP_TIMEOUT, service="Locks")
                return r.type, token, r.node, r.error

            if record(ctx, process, "release", self.LOCK, token, call)["type"] != OK:
                # The hold may still stand: keeping its lease alive would
                # keep the lock from everyone (this client's next acquire
                # too) for good. Let the lease lapse; a new one follows.
                lease = None

    def _keep_alive(self, ctx, node, lease):
        """The lease, or None once it has ended."""
        r = ctx.conn.call(node, "KeepAlive", lock_pb2.LeaseKeepAliveRequest(id=lease),
                          timeout=OP_TIMEOUT, service="Leases")
        if r.type == OK and r.response.ttl_ms == 0:
            return None
        return lease

    def _acquire(self, ctx, process, node, lease, rng):
        req = lock_pb2.AcquireRequest(name=self.LOCK, lease=lease,
                                      request_id=rng.getrandbits(63) + 1, wait_ms=1000)

        def call():
            r = ctx.conn.call(node, "Acquire", req, timeout=OP_TIMEOUT, service="Locks")
            if r.type == OK and not r.response.acquired:
                return FAIL, None, r.node, "held"
            if r.type == INFO and r.reason == "lock-wait-ended":
                # The wait was withdrawn through the log: certainly not held.
                return FAIL, None, r.node, r.error
            if r.type != OK:
                return r.type, None, r.node, r.error
            return OK, r.response.holder.token, r.node, None

        done = record(ctx, process, "acquire", self.LOCK, None, call)
        return done["value"] if done["type"] == OK else None

    def _write(self, ctx, process, node, token, value):
        req = kv_pb2.PutRequest(key=self.KEY, value=value.encode(), fence_token=token)

        def call():
            r = ctx.conn.call(node, "Put", req, timeout=OP_TIMEOUT)
            if r.type != OK:
                return r.type, None, r.node, r.error
            self.highest_written.raise_to(token)
            return OK, r.response.header.revision, r.node, None

        record(ctx, process, "fenced-write", self.KEY.decode(), token, call)

    def final(self, ctx):
        pass


class Idempotency:
    """Many clients retry the same few idempotency keys (a new handful every
    few seconds). The one whose Begin starts it completes with an effect, a
    put of its own committed with the completion, and a response naming its
    token; some owners pause past their claim first, so a retry takes over
    and their late Complete must be refused. Every other Begin finds the key
    in progress or replays the stored response.

    History: "begin" (completion value: [outcome, token or stored
    response]), "complete" (invoke value: the token; completion value: the
    stored response); finally "read-record" and "read-effects" per key."""

    name = "idempotency"
    SCOPE = "jepsen-idem/"
    CLAIM_MS = 1000
    _OUTCOMES = {v: k for k, v in idem_pb2.IdemBeginResponse.Outcome.items()}

    def __init__(self, keys=4, epoch_s=3.0, pause_chance=0.15, pause_for=1.6,
                 overtaken_within=3.0):
        self.keys = keys
        self.epoch_s = epoch_s
        self.pause_chance = pause_chance
        self.pause_for = pause_for
        # As the lock's: a pause lasts past the claim and then until a retry
        # has taken the key over (at most this much longer).
        self.overtaken_within = overtaken_within
        self.highest_started = _Highest()
        # Keys whose owner is paused, each with the owner: the others retry
        # these first (a client whose request timed out retries it).
        self.orphans = {}
        self._orphans_lock = threading.Lock()
        self.used = set()

    def _next_key(self, process, rng):
        with self._orphans_lock:
            for key, owner in self.orphans.items():
                if owner != process:
                    return key
        return f"e{int(time.monotonic() / self.epoch_s)}-k{rng.randrange(self.keys)}"

    def run(self, process, ctx):
        rng = ctx.rng(process)
        node = ctx.node_for(process)
        while not ctx.stop.is_set():
            key = self._next_key(process, rng)
            self.used.add(key)
            req = idem_pb2.IdemBeginRequest(scope=self.SCOPE, key=key.encode(),
                                            fingerprint=b"same request",
                                            claim_ttl_ms=self.CLAIM_MS,
                                            attempt_id=rng.getrandbits(63) + 1)

            def call(req=req):
                r = ctx.conn.call(node, "Begin", req, timeout=OP_TIMEOUT,
                                  service="Idempotency")
                if r.type != OK:
                    return r.type, None, r.node, r.error
                outcome = self._OUTCOMES[r.response.outcome]
                if outcome == "STARTED":
                    self.highest_started.raise_to(r.response.token, key)
                    return OK, [outcome, r.response.token], r.node, None
                if outcome == "FINISHED":
                    return OK, [outcome, r.response.record.response.decode()], r.node, None
                return OK, [outcome, r.response.retry_after_ms], r.node, None

            done = record(ctx, process, "begin", key, None, call)
            if done["type"] != OK:
                continue
            outcome, value = done["value"]
            if outcome == "STARTED":
                if rng.random() < self.pause_chance:
                    with self._orphans_lock:
                        self.orphans[key] = process
                    time.sleep(self.pause_for)  # past the claim: a retry takes over
                    self.highest_started.wait_above(value, self.overtaken_within, ctx.stop,
                                                    key)
                    with self._orphans_lock:
                        self.orphans.pop(key, None)
                self._complete(ctx, process, node, key, value)
            elif outcome == "IN_PROGRESS":
                time.sleep(min(value, 200) / 1000)

    def _complete(self, ctx, process, node, key, token):
        effect = kv_pb2.TxnOp(put=kv_pb2.PutRequest(
            key=f"{self.SCOPE}{key}/effect/{token}".encode(), value=str(process).encode()))
        req = idem_pb2.IdemCompleteRequest(scope=self.SCOPE, key=key.encode(), token=token,
                                           response=f"{process}:{token}".encode(),
                                           effects=[effect])

        def call():
            r = ctx.conn.call(node, "Complete", req, timeout=OP_TIMEOUT,
                              service="Idempotency")
            if r.type != OK:
                return r.type, None, r.node, r.error
            return OK, r.response.record.response.decode(), r.node, None

        record(ctx, process, "complete", key, token, call)

    def final(self, ctx):
        for key in sorted(self.used):
            prefix = f"{self.SCOPE}{key}/effect/".encode()
            reads = [
                ("read-record", "Idempotency", "Get",
                 idem_pb2.IdemGetRequest(scope=self.SCOPE, key=key.encode()),
                 lambda resp: ([idem_pb2.IdemState.Name(resp.record.state),
                                resp.record.response.decode()] if resp.found else None)),
                ("read-effects", "KV", "Range",
                 kv_pb2.RangeRequest(start=prefix, end=prefix[:-1] + b"0"),
                 lambda resp: sorted(int(kv.key[len(prefix):]) for kv in resp.kvs)),
            ]
            for f, service, method, req, value_of in reads:
                read_back(ctx, f, key, service, method, req, value_of)


class Saga:
    """Orders placed by sagas of three steps (reserve, charge, ship), each
    coordinated by a process of its own: examples/saga_order.cc, which runs
    the client library's SagaRunner. In a third of them shipping fails for
    good and the saga compensates. Coordinators are killed (kill -9) at
    random moments, after which another one resumes the saga; or paused
    past their lease (SIGSTOP) while another takes the saga over, and then
    continued, when the saga's fence must refuse them. Finally every saga is
    resumed until it ends, and its record and the effects its steps
    committed (one key per step run, saga/ID/STEP[/undo]/effect/TOKEN) are
    read back.

    History: "run" (a coordinator creating the saga or resuming it; invoke
    value: the fault done to it; completion value: the state it printed, or
    info when it was killed, replaced or could not tell), "read-saga" and
    "read-effects" per saga at the end."""

    name = "saga"
    STEPS = ("reserve", "charge", "ship")
    LOCK_TTL_MS = 1500

    def __init__(self, kill_chance=0.3, pause_chance=0.15, pause_for=2.5, fail_chance=0.3):
        self.kill_chance = kill_chance
        self.pause_chance = pause_chance
        self.pause_for = pause_for
        self.fail_chance = fail_chance
        self.sagas = {}  # id -> whether shipping fails

    def _command(self, ctx, f, saga_id, rng):
        endpoints = ",".join(ctx.cluster.node(n).client_address for n in ctx.nodes)
        cmd = [paths.SAGA_COORDINATOR, endpoints, f, saga_id,
               "--step-ms", str(rng.randrange(20, 150)),
               "--lock-ttl-ms", str(self.LOCK_TTL_MS)]
        return cmd + (["--fail-ship"] if self.sagas[saga_id] else [])

    @staticmethod
    def _ended(p):
        """How a coordinator process ended, as (type, value, node, error)."""
        try:
            out, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            return INFO, None, None, "coordinator still running after 90 s"
        if p.returncode in (0, 5):  # ended, or an incident
            return OK, out.strip().rsplit(" ", 1)[-1], None, None
        if p.returncode == -signal.SIGKILL:
            return INFO, None, None, "killed"
        return INFO, None, None, f"exit {p.returncode}: {err.strip()[-300:]}"

    def _coordinate(self, ctx, process, f, saga_id, rng, faults=True):
        """Runs one coordinator, perhaps killing or pausing it; its
        completion."""
        fault = None
        if faults:
            r = rng.random()
            fault = ("kill" if r < self.kill_chance else
                     "pause" if r < self.kill_chance + self.pause_chance else None)
        cmd = self._command(ctx, f, saga_id, rng)

        def call():
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            if fault == "kill":
                time.sleep(rng.uniform(0.05, 0.6))
                p.kill()
            elif fault == "pause":
                time.sleep(rng.uniform(0.05, 0.5))
                p.send_signal(signal.SIGSTOP)
                # Another coordinator takes the saga over once the paused
                # one's lease ends.
                taker = threading.Thread(target=self._coordinate, daemon=True,
                                         args=(ctx, f"{process}-takeover", "run",
                                               saga_id, random.Random(rng.random()), False))
                taker.start()
                time.sleep(self.pause_for)
                p.send_signal(signal.SIGCONT)
                taker.join(timeout=120)
            return self._ended(p)

        return record(ctx, process, f, saga_id, fault, call)

    def run(self, process, ctx):
        rng = ctx.rng(process)
        for n in itertools.count():
            if ctx.stop.is_set():
                return
            saga_id = f"p{process}-o{n}"
            self.sagas[saga_id] = rng.random() < self.fail_chance
            done = self._coordinate(ctx, process, "run", saga_id, rng)
            for _ in range(5):
                if done["type"] == OK or ctx.stop.is_set():
                    break
                # Creates the saga if the first never did, else resumes it.
                done = self._coordinate(ctx, process, "run", saga_id, rng)

    def final(self, ctx):
        rng = random.Random(f"{ctx.seed}/final")
        for saga_id in sorted(self.sagas):
            for _ in range(10):
                if self._coordinate(ctx, "final", "run", saga_id, rng,
                                    faults=False)["type"] == OK:
                    break
                time.sleep(0.5)
            prefix = f"saga/{saga_id}/".encode()

            def effects(resp, prefix=prefix):
                counts = {}
                for kv in resp.kvs:
                    phase = kv.key[len(prefix):].decode().split("/effect/")[0]
                    counts[phase] = counts.get(phase, 0) + 1
                return counts

            reads = [
                ("read-saga", "Sagas", "Get", saga_pb2.SagaGetRequest(id=saga_id),
                 lambda resp: (saga_pb2.SagaState.Name(resp.record.state)
                               if resp.found else None)),
                ("read-effects", "KV", "Range",
                 kv_pb2.RangeRequest(start=prefix, end=prefix[:-1] + b"0"), effects),
            ]
            for f, service, method, req, value_of in reads:
                read_back(ctx, f, saga_id, service, method, req, value_of,
                          {"fail_ship": self.sagas[saga_id]})


class Crdt:
    """CRDT table writes on whichever node a client is bound to, also on a
    node cut off from the others (no consensus round): increments of a
    pn_counter, adds of unique elements to a set and removes of elements
    this client added. Finally, once the faults have healed, every node's
    replica of every row is read until all agree (the seconds that took
    are recorded), and those final rows are checked.

    History: "incr" (value: the amount), "add" and "remove" (value: the
    element) per row; "converged" (value: seconds after healing until
    every node read the same); "final-read" per row and node (value:
    {"count", "set"})."""

    name = "crdt"
    TABLE = "jepsen"
    ROWS = 4
    CONVERGE_WITHIN = 60.0

    def __init__(self):
        self.table = CrdtTable(self.TABLE, [
            crdt_pb2.CrdtColumn(name="count", type=crdt_pb2.CRDT_PN_COUNTER),
            crdt_pb2.CrdtColumn(name="items", type=crdt_pb2.CRDT_SET)])

    def _update(self, ctx, process, node, f, row, value, op):
        req = crdt_pb2.CrdtUpdateRequest(table=self.TABLE, row=row.encode(), ops=[op])

        def call():
            r = ctx.conn.call(node, "Update", req, timeout=OP_TIMEOUT, service="Crdt")
            return r.type, None, r.node, r.error

        return record(ctx, process, f, row, value, call)

    def run(self, process, ctx):
        rng = ctx.rng(process)
        node = ctx.node_for(process)
        self.table.create(ctx, node)
        added = []  # elements of this client acknowledged and not removed
        for n in itertools.count():
            if ctx.stop.is_set():
                return
            row = f"r{rng.randrange(self.ROWS)}"
            r = rng.random()
            if r < 0.4:
                amount = rng.choice([1, 2, 3, -1, -2])
                self._update(ctx, process, node, "incr", row, amount, crdt_pb2.CrdtOp(
                    kind=crdt_pb2.CrdtOp.INCREMENT, column="count", amount=amount))
            elif r < 0.8 or not added:
                e = f"p{process}-{n}"
                done = self._update(ctx, process, node, "add", row, e, crdt_pb2.CrdtOp(
                    kind=crdt_pb2.CrdtOp.ADD, column="items", elements=[e.encode()]))
                if done["type"] == OK:
                    added.append((row, e))
            else:
                row, e = added.pop(rng.randrange(len(added)))
                self._update(ctx, process, node, "remove", row, e, crdt_pb2.CrdtOp(
                    kind=crdt_pb2.CrdtOp.REMOVE, column="items", elements=[e.encode()]))
            time.sleep(0.005)

    def _read(self, ctx, node, row):
        r = ctx.conn.call(node, "Get", crdt_pb2.CrdtGetRequest(table=self.TABLE,
                                                               row=row.encode()),
                          timeout=OP_TIMEOUT, service="Crdt")
        if r.type != OK:
            return None
        out = {"count": 0, "set": []}
        for v in r.response.values:
            if v.column == "count":
                out["count"] = v.count
            elif v.column == "items":
                out["set"] = sorted(e.decode() for e in v.values)
        return out

    def final(self, ctx):
        rows = [f"r{i}" for i in range(self.ROWS)]
        start = time.monotonic()
        inv = ctx.history.invoke("final", "converged")
        reads = {}
        while time.monotonic() - start < self.CONVERGE_WITHIN:
            reads = {(row, node): self._read(ctx, node, row)
                     for row in rows for node in ctx.nodes}
            if (None not in reads.values() and
                    all(len({str(reads[(row, n)]) for n in ctx.nodes}) == 1 for row in rows)):
                ctx.history.complete(inv, OK, round(time.monotonic() - start, 2))
                break
            time.sleep(0.2)
        else:
            ctx.history.complete(inv, FAIL, None,
                                 error=f"replicas differ after {self.CONVERGE_WITHIN} s")
        for (row, node), value in sorted(reads.items()):
            i = ctx.history.invoke("final", "final-read", row, None, final=True,
                                   from_node=f"n{node}")
            ctx.history.complete(i, OK if value is not None else FAIL, value,
                                 node=f"n{node}")


WORKLOADS = {"register": Register, "set": Append, "exactly-once": ExactlyOnce,
             "durability": Durability, "lock": Lock, "idempotency": Idempotency,
             "saga": Saga, "crdt": Crdt, "crdt-cas": CrdtCas}
