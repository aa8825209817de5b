"""The checkers themselves: saved good and bad histories, and the C++
checker against the Python reference on random small histories."""
import glob
import json
import os
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from tally_jepsen import checkers, history as hist, paths, reference

DATA = os.path.join(os.path.dirname(__file__), "data")


def lincheck_valid(path, modes="linearizable,lease"):
    r = subprocess.run([paths.LINCHECK, "--history", path, "--read-modes", modes],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)["valid"]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(DATA, "*.jsonl"))),
                         ids=os.path.basename)
def test_saved_histories(path):
    expected = os.path.basename(path).startswith("good-")
    assert lincheck_valid(path) is expected
    assert reference.check(hist.load(path))["valid"] is expected


def write_events(tmp_path, events):
    path = os.path.join(tmp_path, "h.jsonl")
    with open(path, "w") as f:
        for e in sorted(events, key=lambda e: e["time"]):
            f.write(json.dumps(e) + "\n")
    return path


@st.composite
def small_histories(draw):
    """Up to 3 processes, each a sequence of operations on one key; values
    read from a small set so that both verdicts come up often."""
    events = []
    next_value = iter(range(1, 100))
    for p in range(draw(st.integers(1, 3))):
        t = draw(st.integers(0, 5))
        for _ in range(draw(st.integers(0, 3))):
            f = draw(st.sampled_from(["read", "write", "cas"]))
            dur = draw(st.integers(0, 20))
            if f == "read":
                value, out = None, draw(st.sampled_from([None, 1, 2, 3]))
                outcome = draw(st.sampled_from(["ok", "ok", "ok", "info"]))
            elif f == "write":
                value = out = next(next_value)
                outcome = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
            else:
                value = out = [draw(st.sampled_from([None, 1, 2])), next(next_value)]
                outcome = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
            events.append({"type": "invoke", "process": p, "f": f, "key": "k",
                           "value": value, "time": t, "mode": "linearizable"})
            events.append({"type": outcome, "process": p, "f": f, "key": "k",
                           "value": out, "time": t + dur, "mode": "linearizable"})
            t += dur + draw(st.integers(1, 10))
            if outcome == "info":
                break  # a process whose op timed out does not go on
    return events


@settings(max_examples=300, deadline=None)
@given(small_histories())
def test_lincheck_agrees_with_reference(tmp_path_factory, events):
    path = write_events(tmp_path_factory.mktemp("h"), events)
    events = hist.load(path)
    assert lincheck_valid(path) == reference.check(events)["valid"], events


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(2, 6), st.integers(5, 40))
def test_histories_of_an_atomic_register_are_linearizable(tmp_path_factory, rnd,
                                                          clients, steps):
    """Operations that take effect at one instant inside their interval:
    both checkers must accept every such history."""
    state, value, now = None, 0, 0
    open_ = {}
    events = []
    for _ in range(steps * 3):
        now += 1
        c = rnd.randrange(clients)
        if c not in open_:
            f = rnd.choice(["read", "write", "cas"])
            value += 1
            arg = None if f == "read" else value if f == "write" else [state, value]
            open_[c] = [f, arg, False, None]
            events.append({"type": "invoke", "process": c, "f": f, "key": "k",
                           "value": arg, "time": now, "mode": "linearizable"})
        elif not open_[c][2]:
            f, arg, _, _ = open_[c]
            if f == "read":
                open_[c][3] = state
            elif f == "write":
                state = arg
            elif state == arg[0]:
                state = arg[1]
            else:
                open_[c][3] = "failed"
            open_[c][2] = True
        else:
            f, arg, _, out = open_.pop(c)
            type_ = "fail" if out == "failed" else "ok"
            events.append({"type": type_, "process": c, "f": f, "key": "k",
                           "value": out if f == "read" else arg, "time": now,
                           "mode": "linearizable"})
    path = write_events(tmp_path_factory.mktemp("h"), events)
    assert lincheck_valid(path) is True
    assert reference.check(hist.load(path))["valid"] is True


def test_append_checker_finds_lost_and_duplicated():
    def op(p, f, v, ty, out, t0, t1, **kw):
        return [dict(type="invoke", process=p, f=f, key="s", value=v, time=t0, index=t0, **kw),
                dict(type=ty, process=p, f=f, key="s", value=out, time=t1, **kw)]
    events = (op(0, "append", 1, "ok", 1, 0, 1) + op(1, "append", 2, "ok", 2, 2, 3)
              + op(2, "read", None, "ok", [1, 1], 4, 5)
              + op("final", "read", None, "ok", [1], 6, 7, final=True))
    kinds = {a["kind"] for a in checkers.append_set(events)["anomalies"]}
    assert {"duplicated", "lost"} <= kinds


def test_exactly_once_checker_counts_applications():
    def op(p, f, v, ty, out, t0, t1):
        return [dict(type="invoke", process=p, f=f, key="e0", value=v, time=t0, index=t0),
                dict(type=ty, process=p, f=f, key="e0", value=out, time=t1)]
    acked = op(0, "put", 1, "ok", [1, None, False], 0, 1) + \
        op(0, "put", 2, "ok", [2, 1, False], 2, 3)
    good = acked + op("final", "read-version", None, "ok", [2, 2], 4, 5)
    assert checkers.exactly_once(good)["valid"]
    twice = acked + op("final", "read-version", None, "ok", [2, 3], 4, 5)
    assert not checkers.exactly_once(twice)["valid"]


def test_exactly_once_checker_allows_a_session_ended_while_unanswered():
    """A session ends when none of its requests got through for its TTL: a
    refusal as expired is fine after an idle wait, or for a put that itself
    went unanswered for longer than the TTL; otherwise a live session
    ended."""
    def put(out_time_s, after_idle=False):
        inv = dict(type="invoke", process=0, f="put", key="e0", value=1,
                   time=0, index=0, after_idle=after_idle)
        done = dict(type="info", process=0, f="put", key="e0", value=None,
                    time=int(out_time_s * 1e9),
                    error="session-expired: FAILED_PRECONDITION: session 7 has ended")
        return [inv, done, dict(type="invoke", process="final", f="read-version",
                                key="e0", value=None, time=10**10, index=1),
                dict(type="ok", process="final", f="read-version", key="e0",
                     value=[0, 0], time=10**10 + 1)]
    assert checkers.exactly_once(put(0.5, after_idle=True), 4)["valid"]
    unanswered = checkers.exactly_once(put(7.0), 4)
    assert unanswered["valid"] and unanswered["sessions_ended_unanswered"] == 1
    assert not checkers.exactly_once(put(0.5), 4)["valid"]
    assert not checkers.exactly_once(put(7.0))["valid"]  # no TTL given


def test_fenced_lock_checker_finds_stale_and_duplicate_tokens():
    def op(p, f, v, ty, out, t0, t1):
        return [dict(type="invoke", process=p, f=f, key="L", value=v, time=t0, index=t0),
                dict(type=ty, process=p, f=f, key="L", value=out, time=t1)]
    # A holds token 5, pauses; B gets 9 and writes (revision 11); A's write
    # with 5 is refused. Holds overlap, which is information only.
    good = (op(0, "acquire", None, "ok", 5, 0, 1) + op(0, "fenced-write", 5, "ok", 10, 2, 3)
            + op(1, "acquire", None, "ok", 9, 4, 5) + op(1, "fenced-write", 9, "ok", 11, 6, 7)
            + op(0, "fenced-write", 5, "fail", None, 8, 9))
    v = checkers.fenced_lock(good)
    assert v["valid"] and v["mutual_exclusion_overlaps"] == 1
    # The same write accepted after B's: a stale token was accepted.
    stale = good[:-2] + op(0, "fenced-write", 5, "ok", 12, 8, 9)
    assert {a["kind"] for a in checkers.fenced_lock(stale)["anomalies"]} == \
        {"stale-token-accepted"}
    twice = good + op(2, "acquire", None, "ok", 9, 10, 11)
    assert {a["kind"] for a in checkers.fenced_lock(twice)["anomalies"]} == \
        {"duplicate-token"}


def test_idempotency_checker_finds_double_completions_and_effects():
    def op(p, f, key, v, ty, out, t0, error=None):
        done = dict(type=ty, process=p, f=f, key=key, value=out, time=t0 + 1)
        if error:
            done["error"] = error
        return [dict(type="invoke", process=p, f=f, key=key, value=v, time=t0, index=t0), done]

    def final(key, record, effects, t0):
        return (op("final", "read-record", key, None, "ok", record, t0)
                + op("final", "read-effects", key, None, "ok", effects, t0 + 2))
    # A owns k under 5, pauses; B takes over under 9 and completes; A's
    # Complete is refused; C replays B's response.
    good = (op(0, "begin", "k", None, "ok", ["STARTED", 5], 0)
            + op(1, "begin", "k", None, "ok", ["STARTED", 9], 2)
            + op(1, "complete", "k", 9, "ok", "1:9", 4)
            + op(0, "complete", "k", 5, "fail", None, 6,
                 error="FAILED_PRECONDITION: token 5 no longer owns ...")
            + op(2, "begin", "k", None, "ok", ["FINISHED", "1:9"], 8)
            + final("k", ["IDEM_COMPLETED", "1:9"], [9], 10))
    v = checkers.idempotency(good)
    assert v["valid"] and v["stale_completions_refused"] == 1 and v["replays"] == 1, v
    # A's late Complete accepted as well, its effect committed too.
    twice = (good[:6] + op(0, "complete", "k", 5, "ok", "0:5", 6) + good[8:-4]
             + final("k", ["IDEM_COMPLETED", "1:9"], [5, 9], 10))
    assert {a["kind"] for a in checkers.idempotency(twice)["anomalies"]} == \
        {"completed-twice", "stored-response-not-the-completer", "effects-not-exactly-once"}
    # A replay that does not match what is stored.
    odd = good[:8] + op(2, "begin", "k", None, "ok", ["FINISHED", "0:5"], 8) + good[10:]
    assert {a["kind"] for a in checkers.idempotency(odd)["anomalies"]} == {"replay-differs"}
    # A completion acknowledged, then gone.
    lost = good[:-4] + final("k", None, [], 10)
    assert {a["kind"] for a in checkers.idempotency(lost)["anomalies"]} == \
        {"completion-lost"}


def test_saga_checker_finds_sagas_applied_twice_or_left_undone():
    def op(p, f, key, v, ty, out, t0, error=None, **extra):
        done = dict(type=ty, process=p, f=f, key=key, value=out, time=t0 + 1)
        if error:
            done["error"] = error
        inv = dict(type="invoke", process=p, f=f, key=key, value=v, time=t0, index=t0)
        inv.update(extra)
        return [inv, done]

    def final(key, state, effects, fail_ship, t0):
        return (op("final", "read-saga", key, None, "ok", state, t0, fail_ship=fail_ship)
                + op("final", "read-effects", key, None, "ok", effects, t0 + 2,
                     fail_ship=fail_ship))
    did = {"reserve": 1, "charge": 1, "ship": 1}
    undone = {"reserve": 1, "charge": 1, "reserve/undo": 1, "charge/undo": 1}
    # s1's coordinator is paused, another takes over, the first is refused;
    # s2's shipping fails and it compensates.
    good = (op(0, "run", "s1", "pause", "info", None, 0,
               error="exit 6: ABORTED: another coordinator took saga \"s1\" over")
            + op("0-takeover", "run", "s1", None, "ok", "DONE", 1)
            + op(1, "run", "s2", "kill", "info", None, 4, error="killed")
            + op(1, "run", "s2", None, "ok", "COMPENSATED", 6)
            + final("s1", "SAGA_DONE", did, False, 10)
            + final("s2", "SAGA_COMPENSATED", undone, True, 14))
    v = checkers.saga(good)
    assert v["valid"] and v["paused_coordinators_refused"] == 1, v
    assert v["coordinators_killed"] == 1 and v["compensated"] == 1, v
    # A step run twice; a saga left running; a compensation that missed one.
    bad = (final("s1", "SAGA_DONE", dict(did, charge=2), False, 0)
           + final("s2", "SAGA_RUNNING", {"reserve": 1}, False, 4)
           + final("s3", "SAGA_COMPENSATED", dict(undone, **{"charge/undo": 0}), True, 8))
    assert {a["kind"] for a in checkers.saga(bad)["anomalies"]} == \
        {"applied-twice", "done-but-not-once", "wrong-end", "not-compensated"}


def test_a_run_that_acknowledged_nothing_is_not_valid():
    # What the CRDT checker said of a run whose every update timed out.
    quiet = [{"checker": "crdt", "valid": True, "ok": 0, "fail": 0, "info": 100}]
    verdict = checkers.stalled(quiet)
    assert verdict is not None and verdict["valid"] is False
    assert verdict["anomalies"][0]["kind"] == "no-progress"
    busy = [{"checker": "linearizable", "valid": True, "ok": 0},
            {"checker": "staleness", "valid": True, "ok": 12}]
    assert checkers.stalled(busy) is None
