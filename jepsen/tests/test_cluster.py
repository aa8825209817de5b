"""The harness's own handling of kvd processes (tally_jepsen/cluster.py)."""
import os
import random
import signal
import time

import pytest

from tally_jepsen.cluster import Cluster, faketime_available, find_faketime_lib
from tally_jepsen.net import Network


def shm_files(pid):
    return [f"/dev/shm/sem.faketime_sem_{pid}", f"/dev/shm/faketime_shm_{pid}"]


def wait_for_semaphore(pid):
    deadline = time.monotonic() + 10
    while not os.path.exists(shm_files(pid)[0]):
        assert time.monotonic() < deadline, "libfaketime made no semaphore"
        time.sleep(0.05)


def test_libfaketime_is_found_under_any_architectures_directory(tmp_path):
    lib = tmp_path / "usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    patterns = (str(tmp_path / "usr/lib/*-linux-gnu*/faketime/libfaketimeMT.so.1"),
                str(tmp_path / "usr/lib/faketime/libfaketimeMT.so.1"))
    assert find_faketime_lib(patterns) == str(lib)
    lib.unlink()
    assert find_faketime_lib(patterns) is None


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
            wait_for_semaphore(pids[-1])
            end()
    finally:
        cluster.shutdown()
        net.close()
    left = [f for pid in pids for f in shm_files(pid) if os.path.exists(f)]
    assert not left, left


@pytest.mark.skipif(not faketime_available(), reason="needs libfaketime (Debian package faketime)")
def test_a_node_that_ended_on_its_own_leaves_nothing_once_restarted(tmp_path):
    """A node that ended without the harness (a crash, a fatal error) is
    started again by heal_processes: what libfaketime kept for the ended
    process goes then."""
    net = Network(1, port_base=20000 + random.randrange(12000))
    cluster = Cluster(str(tmp_path), net, n=1, fake_clocks=True)
    node = cluster.node(1)
    try:
        node.start()
        ended = node.proc.pid
        wait_for_semaphore(ended)
        os.kill(ended, signal.SIGKILL)
        node.proc.wait(timeout=10)
        cluster.heal_processes()
        assert node.running()
    finally:
        cluster.shutdown()
        net.close()
    left = [f for f in shm_files(ended) if os.path.exists(f)]
    assert not left, left
