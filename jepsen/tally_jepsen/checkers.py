"""Checkers: each takes the history and returns a verdict dict
{"checker", "valid", "ok", "fail", "info", "anomalies": [...]}."""
import collections
import json
import subprocess

from . import history as hist
from . import paths


def _counts(ps):
    c = collections.Counter(done["type"] if done else "info" for _, done in ps)
    return {"ok": c["ok"], "fail": c["fail"], "info": c["info"]}


def linearizable(history_path, read_modes="linearizable,lease"):
    """The C++ checker (build/bin/lincheck) on the register operations."""
    r = subprocess.run([paths.LINCHECK, "--history", history_path,
                        "--read-modes", read_modes],
                       capture_output=True, text=True, timeout=600)
    if r.returncode not in (0, 1, 2) or not r.stdout.strip():
        return {"checker": "linearizable", "valid": "unknown",
                "anomalies": [{"error": r.stderr.strip()}]}
    out = json.loads(r.stdout)
    out["read_modes"] = read_modes
    return out


def staleness(events):
    """Serializable reads may be stale but must return a value that was
    written to that key (or nothing); reports how stale they were: how long
    before the read began its value had already been overwritten."""
    writes = {}  # key -> {value: (invoke time, completion time or None)}
    ps = hist.pairs(events, {"write", "cas", "read"})
    for inv, done in ps:
        if inv["f"] in ("write", "cas") and (done is None or done["type"] != "fail"):
            v = inv["value"] if inv["f"] == "write" else inv["value"][1]
            writes.setdefault(inv["key"], {})[v] = (inv["time"],
                                                  done["time"] if done and done["type"] == "ok" else None)
    reads = [(i, d) for i, d in ps if i["f"] == "read" and i.get("mode") == "serializable"]
    anomalies = []
    worst = 0
    for inv, done in reads:
        if not done or done["type"] != "ok":
            continue
        v = done["value"]
        known = writes.get(inv["key"], {})
        if v is not None and v not in known:
            anomalies.append({"kind": "phantom", "key": inv["key"], "value": v,
                              "op_index": inv["index"]})
            continue
        # The newest write that completed before this read began.
        newer = [t for (ti, t) in known.values() if t is not None and t < inv["time"]
                 and (v is None or ti > known[v][0])]
        if newer:
            worst = max(worst, inv["time"] - min(newer))
    out = {"checker": "staleness", "valid": not anomalies, "reads": len(reads),
           "max_staleness_ms": round(worst / 1e6, 1), "anomalies": anomalies}
    out.update(_counts(reads))
    return out


def append_set(events):
    """Appends: every acknowledged element in the final read, nothing twice,
    nothing never attempted, and reads in real-time order extend each
    other (no element lost or reordered in between)."""
    ps = hist.pairs(events, {"append", "read"})
    anomalies = []
    by_key = collections.defaultdict(list)
    for inv, done in ps:
        by_key[inv["key"]].append((inv, done))
    for key, ops in sorted(by_key.items()):
        attempted = {i["value"] for i, d in ops if i["f"] == "append"}
        acked = {i["value"] for i, d in ops if i["f"] == "append" and d and d["type"] == "ok"}
        failed = {i["value"] for i, d in ops if i["f"] == "append" and d and d["type"] == "fail"}
        reads = [(i, d) for i, d in ops if i["f"] == "read" and d and d["type"] == "ok"]
        finals = [(i, d) for i, d in reads if i.get("final")]
        for i, d in reads:
            seen = d["value"]
            dup = sorted(e for e, c in collections.Counter(seen).items() if c > 1)
            if dup:
                anomalies.append({"kind": "duplicated", "key": key, "elements": dup,
                                  "op_index": i["index"]})
            if set(seen) - attempted:
                anomalies.append({"kind": "unexpected", "key": key,
                                  "elements": sorted(set(seen) - attempted),
                                  "op_index": i["index"]})
            if set(seen) & failed:
                anomalies.append({"kind": "failed-but-present", "key": key,
                                  "elements": sorted(set(seen) & failed),
                                  "op_index": i["index"]})
        for i, d in finals:
            lost = sorted(acked - set(d["value"]))
            if lost:
                anomalies.append({"kind": "lost", "key": key, "elements": lost,
                                  "node": i.get("from_node"), "op_index": i["index"]})
        # Real-time order: a read that completed before another began is a
        # prefix of it.
        ordered = sorted(reads, key=lambda p: p[1]["time"])
        for a in range(len(ordered)):
            ia, da = ordered[a]
            for b in range(a + 1, len(ordered)):
                ib, db = ordered[b]
                if ib["time"] <= da["time"] or ib.get("mode") == "serializable":
                    continue
                if db["value"][:len(da["value"])] != da["value"]:
                    anomalies.append({"kind": "reordered", "key": key,
                                      "earlier": da["value"], "later": db["value"],
                                      "op_indexes": [ia["index"], ib["index"]]})
                break  # the next later read is enough: the rest follows
        if not finals and ops:
            anomalies.append({"kind": "no-final-read", "key": key})
    out = {"checker": "set", "valid": not anomalies, "keys": len(by_key),
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies)}
    out.update(_counts([p for p in ps if p[0]["f"] == "append"]))
    return out


def exactly_once(events, session_ttl_s=None):
    """Per client key: acknowledged <= applied <= acknowledged + unknown,
    where applied is the key's final version; an acknowledged put never
    reports itself as the previous value (that would be a second run); a
    session ends only when no request of it got through for its TTL: a put
    refused as "session-expired" must come right after an idle wait, or
    have gone unanswered for longer than the TTL itself (its session then
    saw no request applied for that long; the cluster was unavailable to
    it, which is not this checker's property)."""
    ps = hist.pairs(events, {"put", "read-version"})
    anomalies = []
    ended_after_idle = 0
    ended_unanswered = 0
    by_key = collections.defaultdict(list)
    for inv, done in ps:
        by_key[inv["key"]].append((inv, done))
    for key, ops in sorted(by_key.items()):
        puts = [(i, d) for i, d in ops if i["f"] == "put"]
        ok = sum(1 for _, d in puts if d and d["type"] == "ok")
        unknown = sum(1 for _, d in puts if not d or d["type"] == "info")
        finals = [d for i, d in ops if i["f"] == "read-version" and d and d["type"] == "ok"]
        if not finals:
            anomalies.append({"kind": "no-final-read", "key": key})
            continue
        version = finals[-1]["value"][1]
        if not ok <= version <= ok + unknown:
            anomalies.append({"kind": "applied-count", "key": key, "version": version,
                              "acknowledged": ok, "indeterminate": unknown})
        for i, d in puts:
            if d and "session-expired" in (d.get("error") or ""):
                if i.get("after_idle"):
                    ended_after_idle += 1
                elif session_ttl_s and d["time"] - i["time"] > session_ttl_s * 1e9:
                    ended_unanswered += 1
                else:
                    anomalies.append({"kind": "live-session-ended", "key": key,
                                      "op_index": i["index"], "error": d["error"]})
            if d and d["type"] == "ok" and d["value"][1] is not None and \
                    d["value"][1] >= i["value"]:
                anomalies.append({"kind": "applied-twice", "key": key, "seq": i["value"],
                                  "prev": d["value"][1], "op_index": i["index"]})
    out = {"checker": "exactly-once", "valid": not anomalies, "keys": len(by_key),
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies),
           "sessions_ended_after_idle": ended_after_idle,
           "sessions_ended_unanswered": ended_unanswered}
    out.update(_counts([p for p in ps if p[0]["f"] == "put"]))
    return out


def fenced_lock(events):
    """Every acquisition's token is unique; accepted fenced writes, in the
    order the shard applied them (their revisions), carry non-decreasing
    tokens: none was accepted with a token below one accepted before it.
    Overlapping holds (a paused holder that still believes it holds the
    lock) are reported, not failures: the fence is what protects the data."""
    acquired = [(i, d) for i, d in hist.pairs(events, {"acquire"})
                if d and d["type"] == "ok"]
    anomalies = []
    seen = {}
    for inv, done in acquired:
        t = done["value"]
        if t in seen:
            anomalies.append({"kind": "duplicate-token", "token": t,
                              "op_indexes": [seen[t], inv["index"]]})
        seen[t] = inv["index"]
    writes = sorted(((d["value"], i["value"], i["index"])
                     for i, d in hist.pairs(events, {"fenced-write"})
                     if d and d["type"] == "ok"))
    highest = 0
    for revision, token, index in writes:
        if token < highest:
            anomalies.append({"kind": "stale-token-accepted", "token": token,
                              "highest_before": highest, "revision": revision,
                              "op_index": index})
        highest = max(highest, token)
    refused = sum(1 for _, d in hist.pairs(events, {"fenced-write"})
                  if d and "is stale" in (d.get("error") or ""))
    # Holds: from the grant's answer to the release's invocation.
    holds = []
    releases = {i["value"]: i["time"] for i, _ in hist.pairs(events, {"release"})}
    end = max((e["time"] for e in events), default=0)
    for inv, done in acquired:
        holds.append((done["time"], releases.get(done["value"], end)))
    holds.sort()
    overlaps = sum(1 for a, b in zip(holds, holds[1:]) if b[0] < a[1])
    out = {"checker": "fenced-lock", "valid": not anomalies,
           "grants": len(acquired), "accepted_writes": len(writes),
           "stale_writes_refused": refused, "mutual_exclusion_overlaps": overlaps,
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies)}
    out.update(_counts(hist.pairs(events, {"acquire", "fenced-write", "release"})))
    return out


def idempotency(events):
    """Per key: at most one owner's Complete succeeded (one token); the
    final record is completed with that owner's response exactly when it
    did, or when a Complete of unknown outcome took effect; the effects
    committed with completions are exactly the completing owner's, one; every
    replay returned the stored response. Stale completions refused are
    counted (the paused owners)."""
    anomalies = []
    completed = collections.defaultdict(set)  # key -> tokens completed (ok)
    replays = collections.defaultdict(set)  # key -> responses replayed
    refused = 0
    for inv, done in hist.pairs(events, {"begin", "complete"}):
        if not done:
            continue
        if inv["f"] == "complete":
            if done["type"] == "ok":
                completed[inv["key"]].add(inv["value"])
            elif "no longer owns" in (done.get("error") or ""):
                refused += 1
        elif done["type"] == "ok" and done["value"][0] == "FINISHED":
            replays[inv["key"]].add(done["value"][1])
    finals = {}
    for inv, done in hist.pairs(events, {"read-record", "read-effects"}):
        if done and done["type"] == "ok":
            finals[(inv["key"], inv["f"])] = done["value"]
    keys = {k for k, _ in finals} | set(completed) | set(replays)
    for key in sorted(keys):
        rec = finals.get((key, "read-record"), "unread")
        effects = finals.get((key, "read-effects"), "unread")
        if rec == "unread" or effects == "unread":
            anomalies.append({"kind": "final-read-failed", "key": key})
            continue
        tokens = completed.get(key, set())
        if len(tokens) > 1:
            anomalies.append({"kind": "completed-twice", "key": key,
                              "tokens": sorted(tokens)})
        done_token = None
        if rec is not None and rec[0] == "IDEM_COMPLETED":
            done_token = int(rec[1].rsplit(":", 1)[1])
            if tokens and tokens != {done_token}:
                anomalies.append({"kind": "stored-response-not-the-completer", "key": key,
                                  "stored": rec[1], "completed": sorted(tokens)})
            bad = replays.get(key, set()) - {rec[1]}
            if bad:
                anomalies.append({"kind": "replay-differs", "key": key,
                                  "stored": rec[1], "replayed": sorted(bad)})
        elif tokens or replays.get(key):
            anomalies.append({"kind": "completion-lost", "key": key, "record": rec,
                              "completed": sorted(tokens)})
        expected = [done_token] if done_token is not None else []
        if effects != expected:
            anomalies.append({"kind": "effects-not-exactly-once", "key": key,
                              "effects": effects, "expected": expected})
    out = {"checker": "idempotency", "valid": not anomalies, "keys": len(keys),
           "completed": sum(len(t) for t in completed.values()),
           "replays": sum(1 for _, d in hist.pairs(events, {"begin"})
                          if d and d["type"] == "ok" and d["value"][0] == "FINISHED"),
           "stale_completions_refused": refused,
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies)}
    out.update(_counts(hist.pairs(events, {"begin", "complete"})))
    return out


def saga(events, steps=("reserve", "charge", "ship")):
    """Per saga: it ended done or compensated, done exactly when its
    shipping did not fail; no step's work (nor its undoing) committed twice;
    a done saga's steps each committed once and none undone; a compensated
    one's undoings exactly the steps that committed. Coordinators killed,
    paused, and refused afterwards are counted."""
    anomalies = []
    finals = {}
    for inv, done in hist.pairs(events, {"read-saga", "read-effects"}):
        if done and done["type"] == "ok":
            finals[(inv["key"], inv["f"])] = (done["value"], inv.get("fail_ship"))
    ids = sorted({k for k, _ in finals})
    states = collections.Counter()
    for saga_id in ids:
        state, fail_ship = finals.get((saga_id, "read-saga"), ("unread", None))
        effects, _ = finals.get((saga_id, "read-effects"), ("unread", None))
        if state == "unread" or effects == "unread":
            anomalies.append({"kind": "final-read-failed", "saga": saga_id})
            continue
        states[state] += 1
        want = "SAGA_COMPENSATED" if fail_ship else "SAGA_DONE"
        if state != want:
            anomalies.append({"kind": "wrong-end", "saga": saga_id, "state": state,
                              "expected": want})
        twice = {p: n for p, n in effects.items() if n > 1}
        if twice:
            anomalies.append({"kind": "applied-twice", "saga": saga_id, "effects": twice})
        for s in steps:
            did, undid = effects.get(s, 0), effects.get(f"{s}/undo", 0)
            if state == "SAGA_DONE" and (did, undid) != (1, 0):
                anomalies.append({"kind": "done-but-not-once", "saga": saga_id, "step": s,
                                  "effects": effects})
            if state == "SAGA_COMPENSATED" and undid != did:
                anomalies.append({"kind": "not-compensated", "saga": saga_id, "step": s,
                                  "effects": effects})
    coordinators = hist.pairs(events, {"run"})
    out = {"checker": "saga", "valid": not anomalies and bool(ids), "sagas": len(ids),
           "done": states["SAGA_DONE"], "compensated": states["SAGA_COMPENSATED"],
           "coordinators_killed": sum(1 for inv, _ in coordinators if inv["value"] == "kill"),
           "coordinators_paused": sum(1 for inv, _ in coordinators if inv["value"] == "pause"),
           "paused_coordinators_refused": sum(
               1 for inv, done in coordinators
               if inv["value"] == "pause" and done and "another coordinator" in
               (done.get("error") or "")),
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies)}
    out.update(_counts(coordinators))
    return out


def crdt(events):
    """CRDT rows after healing: every node read the same (the replicas
    converged, within the recorded seconds); each counter is the sum of
    the acknowledged increments plus some of those whose outcome is
    unknown; each set holds every acknowledged add not removed, no element
    whose remove was acknowledged, and nothing never added."""
    anomalies = []
    ps = hist.pairs(events, {"incr", "add", "remove"})
    by_row = collections.defaultdict(lambda: {"acked": 0, "unknown": [], "added": set(),
                                              "maybe_added": set(), "removed": set(),
                                              "maybe_removed": set()})
    for inv, done in ps:
        r = by_row[inv["key"]]
        t = done["type"] if done else "info"
        if inv["f"] == "incr":
            if t == "ok":
                r["acked"] += inv["value"]
            elif t == "info":
                r["unknown"].append(inv["value"])
        elif inv["f"] == "add":
            (r["added"] if t == "ok" else r["maybe_added"] if t == "info" else set()).add(
                inv["value"])
        elif inv["f"] == "remove":
            (r["removed"] if t == "ok" else r["maybe_removed"] if t == "info" else set()).add(
                inv["value"])
    converged = None
    for inv, done in hist.pairs(events, {"converged"}):
        if done and done["type"] == "ok":
            converged = done["value"]
        else:
            anomalies.append({"kind": "not-converged",
                              "error": done.get("error") if done else None})
    finals = collections.defaultdict(dict)
    for inv, done in hist.pairs(events, {"final-read"}):
        if done and done["type"] == "ok":
            finals[inv["key"]][inv.get("from_node")] = done["value"]
        else:
            anomalies.append({"kind": "final-read-failed", "row": inv["key"],
                              "node": inv.get("from_node")})
    for row, spec in sorted(by_row.items()):
        reads = finals.get(row, {})
        if not reads:
            anomalies.append({"kind": "no-final-read", "row": row})
            continue
        values = list(reads.values())
        if any(v != values[0] for v in values):
            anomalies.append({"kind": "replicas-differ", "row": row, "reads": reads})
        value = values[0]
        lo = spec["acked"] + sum(a for a in spec["unknown"] if a < 0)
        hi = spec["acked"] + sum(a for a in spec["unknown"] if a > 0)
        if not lo <= value["count"] <= hi:
            anomalies.append({"kind": "wrong-count", "row": row, "count": value["count"],
                              "acked": spec["acked"], "unknown": spec["unknown"]})
        present = set(value["set"])
        lost = spec["added"] - spec["removed"] - spec["maybe_removed"] - present
        if lost:
            anomalies.append({"kind": "lost-add", "row": row, "elements": sorted(lost)})
        back = spec["removed"] & present
        if back:
            anomalies.append({"kind": "removed-but-present", "row": row,
                              "elements": sorted(back)})
        phantom = present - spec["added"] - spec["maybe_added"]
        if phantom:
            anomalies.append({"kind": "never-added", "row": row,
                              "elements": sorted(phantom)})
    out = {"checker": "crdt", "valid": not anomalies and bool(by_row),
           "rows": len(by_row), "converged_after_s": converged,
           "acked_increments": sum(1 for i, d in ps if i["f"] == "incr" and d and
                                   d["type"] == "ok"),
           "unknown_increments": sum(len(r["unknown"]) for r in by_row.values()),
           "anomalies": anomalies[:50], "anomaly_count": len(anomalies)}
    out.update(_counts(ps))
    return out


def stalled(verdicts):
    """A run in which no operation was acknowledged checks nothing: a
    verdict that says so (invalid), or None when something was."""
    if any(v.get("ok", 0) > 0 for v in verdicts):
        return None
    return {"checker": "progress", "valid": False, "ok": 0, "fail": 0, "info": 0,
            "anomalies": [{"kind": "no-progress",
                           "message": "no operation was acknowledged: the run "
                                      "shows nothing about its faults"}]}


def for_workload(name, history_path, events, read_modes, session_ttl_s=None):
    if name in ("register", "crdt-cas"):
        return [linearizable(history_path, read_modes), staleness(events)]
    if name in ("set", "durability"):
        return [append_set(events)]
    if name == "exactly-once":
        return [exactly_once(events, session_ttl_s)]
    if name == "lock":
        return [fenced_lock(events)]
    if name == "idempotency":
        return [idempotency(events)]
    if name == "saga":
        return [saga(events)]
    if name == "crdt":
        return [crdt(events)]
    raise ValueError(name)
