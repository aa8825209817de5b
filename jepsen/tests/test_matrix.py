"""Every nemesis with every workload (`make jepsen`). Each run lasts
--duration seconds (TALLY_JEPSEN_DURATION, default 60)."""
import pytest

from tally_jepsen.nemesis import NEMESES
from tally_jepsen.workloads import WORKLOADS

# Shapes that need more than three nodes.
FIVE_NODES = {"partition-bridge", "partition-ring"}


def cases():
    for w in sorted(WORKLOADS):
        for n in sorted(NEMESES):
            yield pytest.param(w, n, id=f"{w}-{n}")


@pytest.mark.matrix
@pytest.mark.parametrize("workload,nemesis", list(cases()))
def test_matrix(jepsen, workload, nemesis):
    kw = {"nodes": 5} if nemesis in FIVE_NODES else {}
    if workload in ("register", "crdt-cas") and nemesis in ("clock-bump", "clock-strobe"):
        # Clock jumps void the lease's drift bound: lease reads are not
        # promised there, so read with ReadIndex only.
        kw["read_mode"] = "linearizable"
    outcome = jepsen(workload, nemesis, **kw)
    bad = [v for v in outcome.verdicts if v["valid"] is not True]
    assert not bad, f"{outcome.run_dir}: {bad}"
