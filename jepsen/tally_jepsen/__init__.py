"""Fault-injection runs against real kvd processes: see jepsen/README.md."""
