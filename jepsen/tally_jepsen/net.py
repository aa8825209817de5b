"""The run's network: one network namespace per node, joined by a bridge.

The harness runs in a network namespace of its own (conftest.py re-executes
pytest under `unshare --net` when it is root), which holds a bridge with the
address 10.77.0.254. Each node gets a namespace `tj<harness pid>-n<i>` with one
veth into the bridge and the address 10.77.0.<i>, so the packets between two
nodes cross the bridge and nftables rules inside a node's namespace can drop
them. Nothing here touches the machine's own namespace.

With `proxied`, every node-to-node connection goes through a userspace
proxy per link (tally_jepsen/proxy.py), redirected by DNAT rules in the
sender's namespace, so links can also be delayed and throttled; partitions
then cut links in the proxy.

Without root there are no namespaces: nodes listen on 127.0.0.1 and network
faults are not available (the tests that need them are skipped). A proxy
alone cannot stand in: every node's traffic comes from 127.0.0.1 and gRPC
cannot bind a connection's source address, so a link cannot be told apart
from the others.
"""
import os
import subprocess

SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.254"


def run(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def can_partition():
    """Whether this process may create namespaces and firewall rules."""
    return os.geteuid() == 0 and os.environ.get("TALLY_JEPSEN_NETNS") == "1"


class Network:
    """Addresses for n nodes, and partitions between them."""

    def __init__(self, n, port_base=23000, spares=0, proxied=False):
        # Addresses for n nodes and `spares` more that may join later.
        self.n = n + spares
        self.proxy = None
        self.isolated = can_partition()
        self.prefix = f"tj{os.getpid()}"
        self.port_base = port_base
        self._blocked = {}  # node -> set of nodes it cannot reach
        if self.isolated:
            self._setup()
            if proxied:
                self._setup_proxy()

    # Addresses ------------------------------------------------------------
    def host(self, i):
        return f"{SUBNET}.{i}" if self.isolated else "127.0.0.1"

    def client_address(self, i):
        return f"{self.host(i)}:{2379 if self.isolated else self.port_base + i}"

    def peer_address(self, i):
        return f"{self.host(i)}:{2380 if self.isolated else self.port_base + 100 + i}"

    def http_address(self, i):
        """Health and metrics over HTTP (kvd --listen-http)."""
        return f"{self.host(i)}:{2381 if self.isolated else self.port_base + 200 + i}"

    def namespace(self, i):
        return f"{self.prefix}-n{i}" if self.isolated else None

    def wrap(self, i, argv):
        """The command line that runs argv as node i's process."""
        if not self.isolated:
            return argv
        return ["ip", "netns", "exec", self.namespace(i)] + argv

    # Setup and teardown ---------------------------------------------------
    def _setup(self):
        self._remove_stale()
        run("ip", "link", "set", "lo", "up")
        if run("ip", "link", "show", "tjbr", check=False).returncode != 0:
            run("ip", "link", "add", "tjbr", "type", "bridge")
            run("ip", "addr", "add", f"{HUB_ADDRESS}/24", "dev", "tjbr")
            run("ip", "link", "set", "tjbr", "up")
        for i in range(1, self.n + 1):
            ns = self.namespace(i)
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", f"tjv{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            run("ip", "link", "set", f"tjv{i}", "master", "tjbr", "up")
            run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            self._nft(i, "add table inet tally")
            self._nft(i, "add chain inet tally out { type filter hook output priority 0 ; }")
            self._nft(i, "add chain inet tally in { type filter hook input priority 0 ; }")

    def _setup_proxy(self):
        from .proxy import LinkProxy
        links = [(i, j) for i in range(1, self.n + 1) for j in range(1, self.n + 1) if i != j]
        self.proxy = LinkProxy(HUB_ADDRESS, self.link_port,
                               lambda j: (f"{SUBNET}.{j}", 2380), links)
        for i in range(1, self.n + 1):
            self._nft(i, "add table ip tallynat")
            self._nft(i, "add chain ip tallynat out { type nat hook output priority -100 ; }")
            for j in range(1, self.n + 1):
                if j != i:
                    self._nft(i, f"add rule ip tallynat out ip daddr {SUBNET}.{j} tcp dport 2380 "
                                 f"dnat to {HUB_ADDRESS}:{self.link_port(i, j)}")

    @staticmethod
    def link_port(i, j):
        return 31000 + 100 * i + j

    def _remove_stale(self):
        """Namespaces of harness processes that died without cleaning up."""
        out = run("ip", "netns", "list", check=False).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith("tj") or "-n" not in name:
                continue
            pid = name[2:].split("-")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                run("ip", "netns", "del", name, check=False)

    def close(self):
        if self.proxy is not None:
            self.proxy.close()
        if not self.isolated:
            return
        for i in range(1, self.n + 1):
            run("ip", "netns", "del", self.namespace(i), check=False)
            run("ip", "link", "del", f"tjv{i}", check=False)

    def _nft(self, i, rule):
        run("ip", "netns", "exec", self.namespace(i), "nft", rule)

    # Faults ---------------------------------------------------------------
    def partition(self, components):
        """Lets nodes talk only within their component: a list of lists of
        node numbers (a node in no component is cut off from all others).
        Clients (the bridge address) still reach every node."""
        self.heal()
        where = {}
        for c, members in enumerate(components):
            for m in members:
                where[m] = c
        blocked = {}
        for i in range(1, self.n + 1):
            blocked[i] = {j for j in range(1, self.n + 1)
                          if j != i and (i not in where or where.get(j) != where[i])}
        self.block(blocked)

    def block(self, blocked):
        """Drops every packet from node i to each node in blocked[i] (and
        their answers). Not symmetric by itself: bridges need that."""
        self.heal()
        if self.proxy is not None:
            for i, others in blocked.items():
                for j in others:
                    self.proxy.set((i, j), cut=True)
                    self.proxy.set((j, i), cut=True)
            self._blocked = {i: set(o) for i, o in blocked.items() if o}
            return
        for i, others in blocked.items():
            if not others:
                continue
            addrs = ", ".join(f"{SUBNET}.{j}" for j in sorted(others))
            self._nft(i, f"add rule inet tally out ip daddr {{ {addrs} }} drop")
            self._nft(i, f"add rule inet tally in ip saddr {{ {addrs} }} drop")
        self._blocked = {i: set(o) for i, o in blocked.items() if o}

    def heal(self):
        if self.proxy is not None:
            self.proxy.reset()
        if not self.isolated:
            return
        for i in range(1, self.n + 1):
            self._nft(i, "flush chain inet tally out")
            self._nft(i, "flush chain inet tally in")
        self._blocked = {}

    def slow(self, links, delay, rate=0):
        """Delays (seconds, each direction) and throttles (bytes a second)
        the links [(i, j)], in a proxied run."""
        for ij in links:
            self.proxy.set(ij, delay=delay, rate=rate)

    def blocked(self):
        return {i: sorted(o) for i, o in self._blocked.items()}
