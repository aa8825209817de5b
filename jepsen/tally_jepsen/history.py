"""The history of a run: JSON Lines, one event per line, Jepsen's vocabulary.

  {"type": "invoke", "process": 3, "f": "write", "key": "r12", "value": 41,
   "node": "n2", "time": 1234567890}
  {"type": "ok", "process": 3, "f": "write", "key": "r12", "value": 41, ...}

`time` is nanoseconds since the run began, from one monotonic clock. Faults
are events of process "nemesis" (an invoke when a fault starts, an info when
it is in place, and the same for the heal).
"""
import json
import threading
import time


class History:
    def __init__(self, path):
        self.path = path
        self._file = open(path, "w")
        self._lock = threading.Lock()
        self._start = time.monotonic_ns()
        self.events = []

    def now(self):
        return time.monotonic_ns() - self._start

    def append(self, event):
        with self._lock:
            event["time"] = self.now()
            event["index"] = len(self.events)
            self.events.append(event)
            self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        return event

    def invoke(self, process, f, key=None, value=None, **extra):
        ev = {"type": "invoke", "process": process, "f": f, "key": key, "value": value}
        ev.update(extra)
        return self.append(ev)

    def complete(self, invoke, type_, value=None, **extra):
        ev = {"type": type_, "process": invoke["process"], "f": invoke["f"],
              "key": invoke["key"], "value": value}
        for k in ("mode", "node"):
            if k in invoke and k not in extra:
                ev[k] = invoke[k]
        ev.update(extra)
        return self.append(ev)

    def close(self):
        with self._lock:
            self._file.close()


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pairs(events, fs=None):
    """(invoke, completion or None) per client operation, in invoke order."""
    open_ = {}
    out = []
    for ev in events:
        if ev["process"] == "nemesis" or (fs and ev["f"] not in fs):
            continue
        if ev["type"] == "invoke":
            open_[ev["process"]] = len(out)
            out.append([ev, None])
        else:
            i = open_.pop(ev["process"], None)
            if i is not None:
                out[i][1] = ev
    return out


def fault_windows(events):
    """[(start ns, end ns, label)] for each fault, from the nemesis events."""
    windows = []
    current = {}
    for ev in events:
        if ev["process"] != "nemesis" or ev["type"] != "info":
            continue
        f = ev["f"]
        if f.startswith("start-"):
            current[f[6:]] = (ev["time"], ev.get("value"))
        elif f.startswith("stop-") and f[5:] in current:
            t0, _ = current.pop(f[5:])
            windows.append((t0, ev["time"], f[5:]))
    end = events[-1]["time"] if events else 0
    for name, (t0, _) in current.items():
        windows.append((t0, end, name))
    return windows
