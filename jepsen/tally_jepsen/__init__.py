"""Fault-injection runs against real kvd processes: see jepsen/README.md."""
import os

# gRPC advances a connection attempt only from a call waiting on it or from
# its backup poller, every 5 s by default. The clients here fail fast, so a
# channel that met a refused connection took one handshake step per backup
# poll: a TLS handshake finished 15-20 s after the node was up. Set before
# gRPC initialises, which is why it is here, ahead of any import of grpc.
os.environ.setdefault("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50")
