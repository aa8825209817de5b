"""kvctl as a user drives it: every command against a real three-node
cluster (two data shards) on 127.0.0.1, its text output, its -o json
envelope and its exit code.

  TALLY_BIN=build/bin /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/kvctl

Every -o json line must be {"command", "headers", "result"}, with "command"
naming the subcommands given and each header a full ResponseHeader. Exit
codes: 0 done, 1 not found / compare failed / refused, 2 bad input,
3 unavailable (cmd/kvctl/output.h).
"""
import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TALLY_BIN", os.path.join(ROOT, "build", "bin"))
KVCTL = os.path.join(BIN, "kvctl")
HEADER_FIELDS = {"revision", "group", "raft_index", "node", "read_mode", "replayed"}
TIMEOUT_S = 30


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tally-kvctl.")
        self.base = 20000 + random.randrange(12000)
        self.endpoints = [f"127.0.0.1:{self.base + i}" for i in (1, 2, 3)]
        self.env = dict(os.environ, TALLY_BIN=BIN, TALLY_PORT_BASE=str(self.base),
                        TALLY_INITIAL_RANGES="m",
                        TALLY_KVD_ARGS="--max-txn-bytes 200000")
        for k in [k for k in self.env
                  if k.startswith("KVCTL_") and not k.startswith("KVCTL_TLS_")]:
            del self.env[k]
        self.env["KVCTL_ENDPOINTS"] = ",".join(self.endpoints)

    def script(self, cmd):
        subprocess.run([os.path.join(ROOT, "deploy", "local-cluster.sh"), cmd, self.dir],
                       env=self.env, check=True, stdout=subprocess.DEVNULL,
                       timeout=60)

    def pid(self, node):
        with open(os.path.join(self.dir, f"n{node}.pid")) as f:
            return int(f.read())


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    c.script("start")
    try:
        yield c
    finally:
        c.script("stop")
        shutil.rmtree(c.dir, ignore_errors=True)


class Run:
    def __init__(self, p):
        self.rc, self.out, self.err = p.returncode, p.stdout, p.stderr

    def __repr__(self):
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


def kvctl(cluster, *args, stdin=None, env=None):
    e = dict(cluster.env, **(env or {}))
    p = subprocess.run([KVCTL, *args], input=stdin, env=e, capture_output=True,
                       text=True, timeout=TIMEOUT_S)
    return Run(p)


def envelope(line, command, headers=None):
    """One -o json line, checked for the common shape; its result."""
    doc = json.loads(line)
    assert sorted(doc) == ["command", "headers", "result"], line
    assert doc["command"] == command, line
    assert isinstance(doc["result"], dict), line
    assert isinstance(doc["headers"], list), line
    for h in doc["headers"]:
        assert set(h) == HEADER_FIELDS, line
        assert int(h["node"]) in (1, 2, 3), line
    if headers is not None:
        assert len(doc["headers"]) == headers, line
    return doc


def one(cluster, command, *args, rc=0, headers=None, stdin=None, env=None):
    """Runs `kvctl -o json COMMAND ARGS`; expects exit `rc` and one envelope."""
    r = kvctl(cluster, "-o", "json", *command.split(), *args, stdin=stdin, env=env)
    assert r.rc == rc, r
    lines = r.out.splitlines()
    assert len(lines) == 1, r
    return envelope(lines[0], command, headers)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def test_version():
    for prog in ("kvctl", "kvd"):
        p = subprocess.run([os.path.join(BIN, prog), "--version"], capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        assert p.returncode == 0 and p.stdout.startswith(prog + " "), p


def test_put_get_del(cluster):
    assert kvctl(cluster, "put", "a", "1").out == "OK\n"
    assert kvctl(cluster, "put", "z", stdin="from\tstdin\n").rc == 0
    r = kvctl(cluster, "get", "z")
    assert (r.rc, r.out) == (0, "from\tstdin\n\n"), r
    doc = one(cluster, "get", "a", headers=1)
    assert doc["result"]["found"] is True
    assert doc["result"]["kv"]["value"] == b64("1")
    assert doc["headers"][0]["read_mode"] == "LINEARIZABLE"
    # Missing: exit 1, text on stderr, JSON says found: false.
    r = kvctl(cluster, "get", "missing")
    assert (r.rc, r.out) == (1, ""), r
    assert "not found" in r.err
    assert one(cluster, "get", "missing", rc=1, headers=1)["result"]["found"] is False
    doc = one(cluster, "put", "a", "2", headers=1)
    assert doc["result"]["had_prev"] is True
    assert doc["result"]["prev"]["value"] == b64("1")
    assert one(cluster, "del", "a", headers=1)["result"]["deleted"] is True
    r = kvctl(cluster, "del", "a")
    assert (r.rc, r.out) == (1, "not found\n"), r
    r = kvctl(cluster, "get", "a", "--read-mode", "serializable")
    assert r.rc == 1 and "may be stale" in r.err, r


def test_listings_span_shards(cluster):
    for k in ("l/a", "l/b", "m/a", "n/a"):
        assert kvctl(cluster, "put", k, "v" + k).rc == 0
    # [l/, o) crosses the split at "m": one header per shard read.
    doc = one(cluster, "scan", "l/", "o", headers=2)
    assert [base64.b64decode(kv["key"]).decode() for kv in doc["result"]["kvs"]] == \
        ["l/a", "l/b", "m/a", "n/a"]
    assert doc["result"]["count"] == "4"
    assert len({h["group"] for h in doc["headers"]}) == 2
    r = kvctl(cluster, "scan", "l/", "o", "--limit", "3", "--keys-only")
    assert r.out == "l/a\nl/b\nm/a\n", r
    doc = one(cluster, "get", "l/", "--prefix", "--keys-only", headers=1)
    assert doc["result"]["kvs"] == [{"key": b64("l/a")}, {"key": b64("l/b")}]
    assert kvctl(cluster, "get", "l/", "--prefix").out == "l/a\tvl/a\nl/b\tvl/b\n"
    r = kvctl(cluster, "get", "none/", "--prefix")
    assert (r.rc, r.out) == (0, ""), r
    assert one(cluster, "del", "l/", "--prefix", headers=1)["result"]["count"] == "2"
    r = kvctl(cluster, "del", "m/", "o")
    assert (r.rc, r.out) == (0, "2 deleted\n"), r
    r = kvctl(cluster, "del", "l/", "--prefix")
    assert (r.rc, r.out) == (1, "0 deleted\n"), r


def test_hex_and_escaping(cluster):
    assert kvctl(cluster, "put", "h/k", stdin="a\tb\nc").rc == 0
    assert kvctl(cluster, "get", "h/", "--prefix").out == "h/k\ta\\tb\\nc\n"
    assert kvctl(cluster, "--hex", "get", "h/k").out == "6109620a63\n"
    assert kvctl(cluster, "--hex", "scan", "h/", "h0").out == "682f6b\t6109620a63\n"
    assert kvctl(cluster, "get", "h/k", env={"KVCTL_HEX": "true"}).out == "6109620a63\n"
    # A key that is not UTF-8.
    p = subprocess.run([KVCTL, "put", b"h/\xff", "v"], env=cluster.env, timeout=TIMEOUT_S)
    assert p.returncode == 0
    doc = one(cluster, "get", "h/", "--prefix", "--keys-only", headers=1)
    assert doc["result"]["kvs"][1]["key"] == base64.b64encode(b"h/\xff").decode()
    assert kvctl(cluster, "--hex", "get", "h/", "--prefix", "--keys-only").out == \
        "682f6b\n682fff\n"


def test_cas_and_txn(cluster):
    assert kvctl(cluster, "put", "c", "old").rc == 0
    r = kvctl(cluster, "cas", "c", "wrong", "new")
    assert r.rc == 1 and '"c" is "old"' in r.err, r
    assert kvctl(cluster, "cas", "c", "old", "new").out == "OK\n"
    doc = one(cluster, "txn", "--if", "c=new", "--then", "put c newer", "--then", "get c",
              headers=1)
    assert doc["result"]["succeeded"] is True
    r = kvctl(cluster, "txn", "--if", "c@0", "--then", "del c", "--else", "get c")
    assert (r.rc, r.out) == (1, "FAILURE\nnewer\n"), r
    r = kvctl(cluster, "txn", "--if", "c", "--then", "del c")
    assert r.rc == 2 and "KEY=VALUE or KEY@VERSION" in r.err, r
    r = kvctl(cluster, "txn", "--then", "frob c")
    assert r.rc == 2, r
    assert kvctl(cluster, "get", "c").out == "newer\n"


def test_transaction_limits(cluster):
    # kvd --max-txn-ops (default 1000) and --max-txn-bytes (200,000 here).
    ops = [a for i in range(1001) for a in ("--then", f"put t/{i} v")]
    r = kvctl(cluster, "txn", *ops)
    assert r.rc == 2 and "1001 operations" in r.err and "--max-txn-ops" in r.err, r
    big = "x" * 60000
    ops = [a for i in range(4) for a in ("--then", f"put t/{i} {big}")]
    r = kvctl(cluster, "txn", *ops)
    assert r.rc == 2 and "--max-txn-bytes" in r.err, r
    assert kvctl(cluster, "get", "t/", "--prefix", "--keys-only").out == ""
    assert kvctl(cluster, "txn", *ops[:6]).rc == 0
    assert kvctl(cluster, "get", "t/", "--prefix", "--keys-only").out == "t/0\nt/1\nt/2\n"


def test_bad_input_exits_2_and_applies_nothing(cluster):
    r = kvctl(cluster, "put", "", "x")
    assert r.rc == 2 and "INVALID_ARGUMENT" in r.err, r
    assert kvctl(cluster, "frobnicate").rc == 2
    assert kvctl(cluster, "get").rc == 2
    assert kvctl(cluster, "-o", "yaml", "get", "x").rc == 2
    r = kvctl(cluster, "member", "add", "bogus", "127.0.0.1:1")
    assert r.rc == 2 and "n<number>" in r.err, r
    r = kvctl(cluster, "--help")
    assert r.rc == 0 and "Exit codes:" in r.out and "=5000" in r.out, r


def test_leases_locks_fences(cluster):
    lease = int(kvctl(cluster, "lease", "grant", "10s").out)
    doc = one(cluster, "lease grant", "10s", headers=1)
    other = int(doc["result"]["id"])
    assert one(cluster, "lease ttl", str(lease), headers=1)["result"]["ttl_ms"] == "10000"
    ids = {int(l["id"]) for l in one(cluster, "lease list", headers=1)["result"]["leases"]}
    assert {lease, other} <= ids
    r = kvctl(cluster, "lease", "list")
    assert r.out.splitlines()[0].split() == ["ID", "TTL", "LEFT"], r
    assert re.search(rf"^{lease} +10000 ms +\d+ ms$", r.out, re.M), r
    assert kvctl(cluster, "lease", "keep-alive", str(lease), "--once").rc == 0
    doc = one(cluster, "lease keep-alive", str(lease), "--once", headers=0)
    assert doc["result"]["leases"][0]["lease"] == str(lease)
    r = kvctl(cluster, "put", "leased", "v", "--lease", str(lease))
    assert r.rc == 0, r

    token = int(kvctl(cluster, "lock", "acquire", "L", "--lease", str(lease)).out)
    r = kvctl(cluster, "lock", "acquire", "L", "--lease", str(other), "--try")
    assert r.rc == 1 and "is held" in r.err, r
    doc = one(cluster, "lock inspect", "L", headers=1)
    assert int(doc["result"]["holder"]["token"]) == token
    assert kvctl(cluster, "fence", "bind", "f/", "L").out == "OK\n"
    r = kvctl(cluster, "put", "f/x", "1")
    assert r.rc == 1 and "must carry the lock's fence token" in r.err, r
    assert kvctl(cluster, "put", "f/x", "1", "--fence-token", str(token)).rc == 0
    r = kvctl(cluster, "put", "f/x", "2", "--fence-token", str(token - 1))
    assert r.rc == 1 and "FAILED_PRECONDITION" in r.err and str(token) in r.err, r
    assert kvctl(cluster, "get", "f/x").out == "1\n"
    r = kvctl(cluster, "lock", "release", "L", str(token + 1))
    assert r.rc == 1, r
    doc = one(cluster, "lock release", "L", str(token), headers=0)
    assert doc["result"] == {"lock": "L", "token": str(token), "released": True}
    assert one(cluster, "fence unbind", "f/", headers=1)
    assert kvctl(cluster, "put", "f/x", "3").rc == 0

    # kvctl lock NAME -- CMD: the command's exit code, the token in its env.
    r = kvctl(cluster, "lock", "L", "--", "sh", "-c", 'test -n "$TALLY_FENCE_TOKEN"; exit 7')
    assert r.rc == 7, r
    assert kvctl(cluster, "lease", "revoke", str(lease)).out == "OK\n"
    # The key's shard deletes it once it sees the lease end (within 100 ms).
    deadline = time.time() + 5
    while (r := kvctl(cluster, "get", "leased")).rc == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert r.rc == 1, r
    r = kvctl(cluster, "lease", "ttl", str(lease))
    assert r.rc == 1, r
    assert one(cluster, "lease revoke", str(other), headers=0)["result"]["revoked"]


def test_election(cluster):
    env = dict(cluster.env)
    leader = subprocess.Popen([KVCTL, "-o", "json", "elect", "E", "alpha", "--ttl", "5s"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        doc = envelope(leader.stdout.readline(), "elect")
        assert doc["result"]["value"] == "alpha" and int(doc["result"]["token"]) > 0
        listen = subprocess.Popen([KVCTL, "-o", "json", "elect", "E", "--listen"],
                                  env=env, stdout=subprocess.PIPE, text=True)
        try:
            doc = envelope(listen.stdout.readline(), "elect", headers=1)
            assert doc["result"]["holder"]["value"] == b64("alpha")
        finally:
            listen.terminate()
            listen.wait(TIMEOUT_S)
        leader.send_signal(signal.SIGINT)  # resigns
        assert leader.wait(TIMEOUT_S) == 0
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        leader.stdout.close()
    r = kvctl(cluster, "elect", "E")
    assert r.rc == 2 and "usage" in r.err, r


def test_idempotency_and_sagas(cluster):
    cmd = ["idem", "run", "pay/", "k1", "--", "sh", "-c", "echo charged"]
    assert kvctl(cluster, *cmd).out == "charged\n"
    r = kvctl(cluster, "idem", "run", "pay/", "k1", "--", "sh", "-c", "echo again")
    assert (r.rc, r.out) == (2, ""), r  # the key was used for another command
    assert kvctl(cluster, *cmd).out == "charged\n"  # the first run's output
    doc = one(cluster, "idem get", "pay/", "k1", headers=1)
    assert doc["result"]["found"] is True
    doc = one(cluster, "idem list", "pay/", headers=2)  # one per data shard
    assert [r["key"] for r in doc["result"]["records"]] == [b64("k1")]
    assert one(cluster, "idem purge", "pay/", "k1", headers=0)["result"]["purged"]
    assert kvctl(cluster, "idem", "get", "pay/", "k1").rc == 1
    assert kvctl(cluster, "idem", "purge", "pay/", "k1").rc == 1
    doc = one(cluster, "saga list", headers=2)
    assert doc["result"]["sagas"] == []
    assert kvctl(cluster, "saga", "show", "nope").rc == 1
    r = kvctl(cluster, "saga", "list", "--state", "sleeping")
    assert r.rc == 2 and "unknown saga state" in r.err, r


def test_crdt(cluster):
    assert kvctl(cluster, "crdt", "create", "t", "hits:g_counter", "tags:set").out == "OK\n"
    r = kvctl(cluster, "crdt", "create", "t2", "x:nonsense")
    assert r.rc == 2, r
    doc = one(cluster, "crdt tables", headers=0)
    assert [t["name"] for t in doc["result"]["tables"]] == ["t"]
    assert kvctl(cluster, "crdt", "incr", "t", "r", "hits", "5").rc == 0
    assert one(cluster, "crdt add", "t", "r", "tags", "x", "y", headers=0)
    # A write on any node is read back on that node (local read).
    deadline = time.time() + 10
    while True:
        r = kvctl(cluster, "--endpoints", cluster.endpoints[0], "crdt", "get", "t", "r")
        if "hits\tg_counter\t5" in r.out or time.time() > deadline:
            break
        time.sleep(0.1)
    assert r.rc == 0 and "hits\tg_counter\t5" in r.out, r
    assert kvctl(cluster, "crdt", "get", "t", "empty").rc == 1
    doc = one(cluster, "crdt status", headers=0)
    assert len(doc["result"]["endpoints"]) == 3
    assert one(cluster, "crdt drop", "t", headers=0)["result"]["dropped"] is True


def test_watch_and_compact(cluster):
    w = subprocess.Popen([KVCTL, "-o", "json", "watch", "w/", "--prefix", "--count", "2"],
                         env=cluster.env, stdout=subprocess.PIPE, text=True)
    try:
        created = envelope(w.stdout.readline(), "watch", headers=1)
        assert created["result"]["created"] is True
        start = str(int(created["headers"][0]["revision"]) + 1)
        for k in ("w/1", "w/2"):
            assert kvctl(cluster, "put", k, "v").rc == 0
        out, _ = w.communicate(timeout=TIMEOUT_S)
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()
    assert w.returncode == 0
    keys = [base64.b64decode(e["kv"]["key"]).decode()
            for line in out.splitlines()
            for e in envelope(line, "watch", headers=1)["result"].get("events", [])]
    assert keys == ["w/1", "w/2"]
    # From a revision: the history since, in text.
    r = kvctl(cluster, "watch", "w/", "--prefix", "--rev", start, "--count", "2")
    assert r.rc == 0 and [l.split("\t")[2] for l in r.out.splitlines()] == \
        ["w/1", "w/2"], r
    doc = one(cluster, "compact", start, "--key", "w/", headers=1)
    assert int(doc["result"]["shards"][0]["compacted"]) >= 1
    r = kvctl(cluster, "watch", "w/", "--prefix", "--rev", "1", "--count", "1")
    assert r.rc == 4 and "OUT_OF_RANGE" in r.err and "oldest revision" in r.err, r
    assert kvctl(cluster, "compact", "0").rc == 2


def test_snapshot(cluster, tmp_path):
    assert kvctl(cluster, "put", "s/k", "v").rc == 0
    path = str(tmp_path / "backup.tally")
    doc = one(cluster, "snapshot save", path, headers=0)
    assert doc["result"]["range_count"] == "2" and len(doc["result"]["sha256"]) == 64
    doc = one(cluster, "snapshot status", path, headers=0)
    assert doc["result"]["checksum"] == "ok"
    with open(path, "r+b") as f:
        f.seek(len("tally-snapshot 1\n") + 6)  # in the first record
        f.write(b"\xff")
    r = kvctl(cluster, "snapshot", "status", path)
    assert r.rc == 4 and "DATA_LOSS" in r.err and "damaged" in r.err, r
    r = kvctl(cluster, "snapshot", "restore", path)
    assert r.rc != 0, r  # damaged, and this cluster is not empty


def test_cluster_commands(cluster):
    r = kvctl(cluster, "member", "list")
    lines = r.out.splitlines()
    assert r.rc == 0 and len(lines) == 4, r
    assert lines[0].split() == ["NAME", "ROLE", "PEER", "ADDRESS", "CLIENT", "ADDRESS"], r
    assert len({line.index("127.0.0.1") for line in lines[1:]}) == 1, r  # aligned
    doc = one(cluster, "member list", headers=0)
    assert sorted((m["name"], m["role"]) for m in doc["result"]["members"]) == \
        [("n1", "voter"), ("n2", "voter"), ("n3", "voter")]
    for command in ("cluster status", "endpoint status", "endpoint health", "health"):
        doc = one(cluster, command, headers=0)
        eps = doc["result"]["endpoints"]
        assert [e["endpoint"] for e in eps] == cluster.endpoints, doc
        assert not any("error" in e for e in eps), doc
    r = kvctl(cluster, "endpoint", "status")
    assert r.out.splitlines()[0].split()[:2] == ["ENDPOINT", "NODE"], r
    r = kvctl(cluster, "cluster", "status")
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["ENDPOINT", "NODE", "GROUP", "ROLE"], r
    assert len(lines) == 1 + 3 * 3, r  # three nodes, three groups each
    assert sum(l.split()[3] == "LEADER" for l in lines[1:]) == 3, r  # one per group
    doc = one(cluster, "leader transfer", "n2", headers=0)
    r = kvctl(cluster, "leader", "transfer", "n9")
    assert r.rc != 0, r


def test_auth(cluster):
    """Enables auth, works as root and as a user with one role, disables it."""
    r = kvctl(cluster, "auth", "status")
    assert r.rc == 0 and r.out == "auth disabled\n", r
    r = kvctl(cluster, "auth", "enable")
    assert r.rc == 0 and r.out.startswith("auth enabled. token "), r
    root = r.out.splitlines()[-1]
    assert root.startswith("tly-"), r
    try:
        r = kvctl(cluster, "get", "a")
        assert r.rc == 4 and "UNAUTHENTICATED" in r.err and "--token" in r.err, r
        as_root = {"KVCTL_TOKEN": root}
        for cmd in (["user", "add", "alice"], ["role", "add", "app"],
                    ["role", "grant", "app", "key", "app/", "readwrite"],
                    ["role", "grant", "app", "lock", "", "read"],
                    ["user", "grant-role", "alice", "app"]):
            r = kvctl(cluster, *cmd, env=as_root)
            assert r.rc == 0 and r.out == "OK\n", (cmd, r)
        r = kvctl(cluster, "role", "grant", "app", "nothing", "x", env=as_root)
        assert r.rc == 2, r
        r = kvctl(cluster, "role", "list", env=as_root)
        assert r.out.splitlines() == [
            "ROLE  KIND  PREFIX  ACCESS",
            "app   key   app/    readwrite",
            "app   lock  (all)   read"], r
        r = kvctl(cluster, "user", "list", env=as_root)
        assert r.out.splitlines()[1:] == ["alice  app", "root   root"], r
        doc = one(cluster, "auth token issue", "alice", "--ttl", "1h", env=as_root)
        alice = doc["result"]["token"]
        assert doc["result"]["token_info"]["user"] == "alice", doc
        as_alice = {"KVCTL_TOKEN": alice}
        assert kvctl(cluster, "put", "app/k", "v", env=as_alice).rc == 0
        assert kvctl(cluster, "get", "--prefix", "app/", env=as_alice).out == "app/k\tv\n"
        r = kvctl(cluster, "put", "b", "v", env=as_alice)
        assert r.rc == 4 and "PERMISSION_DENIED" in r.err and "alice" in r.err, r
        r = kvctl(cluster, "user", "add", "eve", env=as_alice)
        assert r.rc == 4 and "PERMISSION_DENIED" in r.err, r
        r = kvctl(cluster, "auth", "status", env=as_alice)
        assert r.out == "auth enabled; you are alice\n", r
        # A user who is not root sees its own tokens only; root sees all.
        mine = one(cluster, "auth token list", env=as_alice)["result"]["tokens"]
        assert mine and {t["user"] for t in mine} == {"alice"}, mine
        every = one(cluster, "auth token list", env=as_root)["result"]["tokens"]
        assert {t["user"] for t in every} >= {"alice", "root"}, every
        ids = [t["id"] for t in one(cluster, "auth token list", env=as_root)
               ["result"]["tokens"] if t["user"] == "alice"]
        assert len(ids) == 1, ids
        assert kvctl(cluster, "auth", "token", "revoke", ids[0], env=as_root).rc == 0
        deadline = time.time() + 1
        while kvctl(cluster, "get", "app/k", env=as_alice).rc == 0:
            assert time.time() < deadline, "revoked token still accepted"
        r = kvctl(cluster, "get", "app/k", env=as_alice)
        assert "UNAUTHENTICATED" in r.err and "revoked" in r.err, r
    finally:
        r = kvctl(cluster, "auth", "disable", env={"KVCTL_TOKEN": root})
        assert r.rc == 0, r
    assert kvctl(cluster, "get", "app/k").rc == 0


def test_unreachable_node_exits_3(cluster):
    """Last: kills n3."""
    r = kvctl(cluster, "--endpoints", "127.0.0.1:1", "--timeout-ms", "500", "get", "a")
    assert r.rc == 3 and "Connection refused" in r.err, r
    os.kill(cluster.pid(3), signal.SIGKILL)
    for command in ("endpoint health", "endpoint status", "cluster status", "health"):
        r = kvctl(cluster, "--timeout-ms", "1000", "-o", "json", *command.split())
        assert r.rc == 3, (command, r)
        eps = envelope(r.out, command)["result"]["endpoints"]
        assert ["error" in e for e in eps] == [False, False, True], (command, r)
    # Writes still go through with n3 down.
    assert kvctl(cluster, "put", "after", "kill").rc == 0
