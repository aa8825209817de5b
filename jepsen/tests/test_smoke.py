"""The short runs `make test` includes: one partition, kill and pause
schedule each on the register workload, and the proof that the checker can
fail."""
import pytest

SMOKE_SECONDS = 30


def assert_valid(outcome):
    bad = [v for v in outcome.verdicts if v["valid"] is not True]
    assert not bad, f"{outcome.run_dir}: {bad}"


@pytest.mark.smoke
@pytest.mark.parametrize("nemesis", ["partition-leader", "kill-leader", "pause-one"])
def test_register_smoke(jepsen, nemesis):
    assert_valid(jepsen("register", nemesis, duration=SMOKE_SECONDS))


@pytest.mark.smoke
def test_serializable_reads_checked_as_linearizable_are_stale(jepsen):
    """Serializable reads from a cut-off follower are allowed to be stale;
    checked as linearizable they must be reported, or the checker is blind."""
    outcome = jepsen("register", "partition-one", duration=SMOKE_SECONDS,
                     read_mode="serializable", check_read_modes="all")
    lin = next(v for v in outcome.verdicts if v["checker"] == "linearizable")
    assert lin["valid"] is False, f"{outcome.run_dir}: no stale read found"
    assert lin["anomalies"], lin
    # ...while the staleness check, which knows they may be stale, accepts them.
    stale = next(v for v in outcome.verdicts if v["checker"] == "staleness")
    assert stale["valid"] is True, stale


@pytest.mark.smoke
def test_sessions_outlive_leader_clock_jumps_and_end_only_when_idle(jepsen):
    """Sessions with a 4 s TTL; clients that idle 6 s before every 4th put;
    the leader's wall clock stepped 15 minutes forward again and again.
    Every put applies at most once, none is lost, and only the idle clients'
    sessions end (each then opens a new one)."""
    outcome = jepsen("exactly-once", "clock-jump-leader", duration=SMOKE_SECONDS,
                     session_ttl=4, idle_every=4, idle_for=6.0)
    assert_valid(outcome)
    check = next(v for v in outcome.verdicts if v["checker"] == "exactly-once")
    assert check["sessions_ended_after_idle"] > 0, f"{outcome.run_dir}: no session ended"
