"""The harness's own handling of kvd processes (tally_jepsen/cluster.py)."""
import os
import random
import time

import pytest

from tally_jepsen.cluster import Cluster, faketime_available
from tally_jepsen.net import Network


def shm_files(pid):
    return [f"/dev/shm/sem.faketime_sem_{pid}", f"/dev/shm/faketime_shm_{pid}"]


@pytest.mark.skipif(not faketime_available(), reason="needs libfaketime (Debian package faketime)")
def test_nodes_under_fake_clocks_leave_nothing_in_dev_shm(tmp_path):
    """libfaketime keeps a semaphore and a memory segment in /dev/shm for
    each process it runs in and removes them when the process exits, which
    kill -9 skips. Left behind, they stop the faketime wrapper of any later
    process that gets the same pid ("sem_open: File exists")."""
    net = Network(1, port_base=20000 + random.randrange(12000))
    cluster = Cluster(str(tmp_path), net, n=1, fake_clocks=True)
    node = cluster.node(1)
    pids = []
    try:
        for end in (node.kill, node.stop):
            node.start()
            pids.append(node.proc.pid)
            deadline = time.monotonic() + 10
            while not os.path.exists(shm_files(pids[-1])[0]):
                assert time.monotonic() < deadline, "libfaketime made no semaphore"
                time.sleep(0.05)
            end()
    finally:
        cluster.shutdown()
        net.close()
    left = [f for pid in pids for f in shm_files(pid) if os.path.exists(f)]
    assert not left, left
