"""A plain linearizability checker for small register histories: tries every
order the real-time constraints allow, with no memoization. Slow, short and
obviously right; build/bin/lincheck is tested against it."""
from . import history as hist

INF = float("inf")


def operations(events, read_modes=("linearizable", "lease")):
    """Per key, a list of (kind, arg, invoke time, return time or INF)."""
    by_key = {}
    for inv, done in hist.pairs(events, {"read", "write", "cas"}):
        if inv["f"] == "read" and read_modes != "all" and inv.get("mode") not in read_modes:
            continue
        if done is not None and done["type"] == "fail":
            continue
        complete = done is not None and done["type"] == "ok"
        if inv["f"] == "read":
            if not complete:
                continue
            op = ("read", done["value"] or 0)
        elif inv["f"] == "write":
            op = ("write", inv["value"])
        else:
            old, new = inv["value"]
            op = ("cas", (old or 0, new))
        by_key.setdefault(inv["key"], []).append(
            (op[0], op[1], inv["time"], done["time"] if complete else INF))
    return by_key


def _step(state, kind, arg):
    if kind == "write":
        return True, arg
    if kind == "read":
        return arg == state, state
    old, new = arg
    return (True, new) if state == old else (False, state)


def register_linearizable(ops):
    """Whether one key's operations have a legal real-time order."""
    def search(remaining, state):
        if not remaining:
            return True
        # Only an operation invoked before every remaining one has returned
        # can go next.
        horizon = min(r for _, _, _, r in remaining)
        for i, (kind, arg, inv, ret) in enumerate(remaining):
            if inv > horizon:
                continue
            ok, nxt = _step(state, kind, arg)
            rest = remaining[:i] + remaining[i + 1:]
            if ok and search(rest, nxt):
                return True
            # An operation with unknown outcome may never have happened.
            if ret == INF and search(rest, state):
                return True
        return False

    return search(list(ops), 0)


def check(events, read_modes=("linearizable", "lease")):
    """{"valid": bool, "invalid_keys": [...]} over every key."""
    bad = [k for k, ops in sorted(operations(events, read_modes).items())
           if not register_linearizable(ops)]
    return {"valid": not bad, "invalid_keys": bad}
