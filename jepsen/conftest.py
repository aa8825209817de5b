"""pytest configuration for jepsen/: options, the network namespace, and
the summary line.

Options (also as environment variables, for `make jepsen`):
  --seed N            the run's seed (TALLY_JEPSEN_SEED); printed, reproduces
                      the plan of every run
  --duration S        seconds of faults and clients per run, matrix runs
                      (TALLY_JEPSEN_DURATION, default 60)
  --jepsen-out DIR    where the run folders go (default build/jepsen)

As root, pytest re-executes itself under `unshare --net`: every node address,
bridge and firewall rule of the run lives in namespaces that end with it.
"""
import os
import random
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tally_jepsen import paths  # noqa: E402

OUTCOMES = []


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None)
    parser.addoption("--duration", type=float, default=None)
    parser.addoption("--jepsen-out", default=None)


def _in_own_netns():
    if os.geteuid() != 0 or os.environ.get("TALLY_JEPSEN_NETNS") == "1":
        return
    if not shutil.which("unshare"):
        return
    os.environ["TALLY_JEPSEN_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, "-m", "pytest"]
              + sys.argv[1:])


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    _in_own_netns()
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every run's
    # teardown still stops its nodes and removes its namespaces.
    signal.signal(signal.SIGTERM, _interrupt)
    config.addinivalue_line("markers", "smoke: the short runs `make test` includes")
    config.addinivalue_line("markers", "matrix: every nemesis with every workload")
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("TALLY_JEPSEN_SEED", random.randrange(1, 1 << 31)))
    config.jepsen_seed = seed
    dur = config.getoption("--duration") or float(os.environ.get("TALLY_JEPSEN_DURATION", 60))
    config.jepsen_duration = dur
    config.jepsen_out = config.getoption("--jepsen-out") or os.path.join(paths.BUILD, "jepsen")


def pytest_report_header(config):
    return [f"jepsen: seed={config.jepsen_seed} (--seed {config.jepsen_seed} reproduces "
            f"the plan) out={config.jepsen_out}"]


def pytest_terminal_summary(terminalreporter, config):
    if not OUTCOMES:
        return
    for o in OUTCOMES:
        for line in o.summary_lines():
            terminalreporter.write_line(line)
    valid = sum(1 for o in OUTCOMES if o.valid)
    terminalreporter.write_line(
        f"jepsen: runs={len(OUTCOMES)} valid={valid} invalid={len(OUTCOMES) - valid} "
        f"ops={sum(o.ops for o in OUTCOMES)}")


@pytest.fixture
def jepsen(request):
    """Runs a plan and records its outcome for the summary."""
    from tally_jepsen import runner
    from tally_jepsen.net import can_partition
    from tally_jepsen.cluster import faketime_available

    config = request.config

    def run(workload, nemesis, duration=None, **kw):
        if (nemesis.startswith(("partition", "clock", "slow", "delay"))) and \
                not can_partition():
            pytest.skip(f"{nemesis}: network faults need root (network namespaces and "
                        "nftables); run as root")
        if nemesis.startswith("clock") and not faketime_available():
            pytest.skip(f"{nemesis}: needs libfaketime (Debian package faketime)")
        plan = runner.Plan(workload, nemesis, seed=config.jepsen_seed,
                           duration=duration or config.jepsen_duration, **kw)
        outcome = runner.execute(plan, config.jepsen_out)
        OUTCOMES.append(outcome)
        return outcome

    return run
