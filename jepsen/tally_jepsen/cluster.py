"""Real kvd processes: start, kill -9, pause, restart, wipe, fake clocks."""
import glob
import os
import shutil
import signal
import subprocess
import time

from . import paths

# Where Debian's faketime package puts the library, on any architecture.
FAKETIME_PATTERNS = (
    "/usr/lib/*-linux-gnu*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
)


def find_faketime_lib(patterns=FAKETIME_PATTERNS):
    """The path of libfaketimeMT, or None if it is not installed."""
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


FAKETIME_LIB = find_faketime_lib()


def faketime_available():
    return FAKETIME_LIB is not None


class Node:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.i = i
        self.name = f"n{i}"
        self.data_dir = os.path.join(cluster.run_dir, "data", self.name)
        self.log_path = os.path.join(cluster.run_dir, f"{self.name}.log")
        self.clock_path = os.path.join(cluster.run_dir, f"{self.name}.faketime")
        self.proc = None
        self.paused = False
        self.removed = False  # no longer a member: never restarted
        self.join = None  # client address to join through, for added nodes
        # The fake clock: offset (s) and rate, as of the process's start.
        self.clock_offset = 0.0
        self.clock_rate = 1.0
        self.started_at = time.time()
        self._write_clock()

    @property
    def client_address(self):
        return self.cluster.net.client_address(self.i)

    @property
    def peer_address(self):
        return self.cluster.net.peer_address(self.i)

    @property
    def http_address(self):
        return self.cluster.net.http_address(self.i)

    def argv(self):
        c = self.cluster
        argv = [paths.KVD, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client", self.client_address,
                "--listen-peer", self.peer_address,
                "--listen-http", self.http_address,
                "--tick-ms", str(c.tick_ms)] + list(c.kvd_args)
        if self.join:
            argv += ["--join", self.join]
        else:
            argv += ["--initial-cluster", c.initial_cluster()]
            if c.initial_ranges:
                argv += ["--initial-ranges", c.initial_ranges]
        return c.net.wrap(self.i, argv)

    def start(self):
        if self.running():
            return
        if self.proc is not None:
            # It ended without the harness (a crash, a fatal error).
            self._remove_clock_state()
        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ)
        if self.cluster.fake_clocks:
            # Each node reads its own clock file (re-read every second):
            # offsets and rates apply to the wall and monotonic clocks.
            env.update({
                "LD_PRELOAD": FAKETIME_LIB,
                "FAKETIME_TIMESTAMP_FILE": self.clock_path,
                "FAKETIME_CACHE_DURATION": "1",
            })
            if not self.cluster.fake_monotonic:
                # Only the wall clock moves, as when a clock is stepped.
                env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            else:
                # Without it, every wait until a steady-clock time would
                # last forever (tests/faketime/monotonic_waits.c).
                env["LD_PRELOAD"] += ":" + paths.MONOTONIC_WAITS
        log = open(self.log_path, "ab")
        log.write(f"--- harness: starting {self.name} at {time.time():.3f}\n".encode())
        log.flush()
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        log.close()
        self.paused = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """kill -9: nothing is flushed, nothing shut down cleanly."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
            self._remove_clock_state()
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def stop(self):
        """A clean stop (SIGTERM), then SIGKILL if it takes too long."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
            self._remove_clock_state()
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def _remove_clock_state(self):
        """Removes the semaphore and memory segment libfaketime keeps in
        /dev/shm for the process, which has ended: kvd leaves them behind
        (kill -9 always), and the faketime wrapper of any later process
        with the same pid then refuses to start."""
        if not self.cluster.fake_clocks:
            return
        for name in (f"sem.faketime_sem_{self.proc.pid}", f"faketime_shm_{self.proc.pid}"):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except FileNotFoundError:
                pass

    def pause(self):
        if self.running() and not self.paused:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.proc is not None and self.paused:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.paused = False

    def wipe(self):
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def set_clock(self, offset=None, rate=None):
        """Moves the clock by `offset` seconds from real time and/or sets
        its rate. libfaketime applies a rate to all the time since the
        process started, so a new rate comes with the offset that keeps the
        clock continuous: only offsets make it jump."""
        if rate is not None and rate != self.clock_rate:
            elapsed = time.time() - self.started_at
            self.clock_offset += (self.clock_rate - rate) * elapsed
            self.clock_rate = rate
        if offset is not None:
            self.clock_offset = offset
        self._write_clock()
        return self.clock_spec()

    def clock_spec(self):
        return f"{self.clock_offset:+.3f} x{self.clock_rate}"

    def _write_clock(self):
        tmp = self.clock_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.clock_spec() + "\n")
        os.replace(tmp, self.clock_path)


class Cluster:
    """n kvd nodes on the run's network, data on the real disk."""

    def __init__(self, run_dir, net, n=3, tick_ms=50, initial_ranges="",
                 fake_clocks=False, fake_monotonic=True, kvd_args=()):
        self.run_dir = run_dir
        self.fake_monotonic = fake_monotonic
        self.kvd_args = tuple(kvd_args)
        self.net = net
        self.tick_ms = tick_ms
        self.initial_ranges = initial_ranges
        self.fake_clocks = fake_clocks and faketime_available()
        self.initial = list(range(1, n + 1))
        self.nodes = {i: Node(self, i) for i in self.initial}

    def initial_cluster(self):
        return ",".join(f"n{i}={self.net.peer_address(i)}" for i in self.initial)

    def node(self, i):
        return self.nodes[i]

    def members(self):
        """Node numbers of the current members, in order."""
        return sorted(i for i, n in self.nodes.items() if not n.removed)

    def start(self):
        for n in self.nodes.values():
            n.start()

    def add_node(self, i, join_via):
        node = Node(self, i)
        node.join = join_via
        self.nodes[i] = node
        return node

    def pids(self):
        return {n.name: n.proc.pid for n in self.nodes.values() if n.running()}

    def heal_processes(self):
        """Resumes paused nodes and restarts dead ones. Clocks are the clock
        nemesis's to heal: rates back to 1, offsets kept, since setting a
        running clock back would make it run backwards."""
        for n in self.nodes.values():
            n.resume()
        for n in self.nodes.values():
            if not n.running() and not n.removed:
                n.start()

    def shutdown(self):
        for n in self.nodes.values():
            n.resume()
        for n in self.nodes.values():
            n.kill()
