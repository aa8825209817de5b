"""Where the built binaries and generated Python modules are."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TALLY_BUILD_DIR", os.path.join(REPO, "build"))
BIN = os.path.join(BUILD, "bin")
KVD = os.path.join(BIN, "kvd")
LINCHECK = os.path.join(BIN, "lincheck")
PYTHON_PROTOS = os.path.join(BUILD, "python")


def import_protos():
    """Returns (kv_pb2, cluster_pb2), generated from rpc/ by the build."""
    if not os.path.exists(os.path.join(PYTHON_PROTOS, "rpc", "kv_pb2.py")):
        raise RuntimeError(
            f"{PYTHON_PROTOS}/rpc/kv_pb2.py is missing: run `make build` first")
    if PYTHON_PROTOS not in sys.path:
        sys.path.insert(0, PYTHON_PROTOS)
    from rpc import cluster_pb2, kv_pb2  # noqa: E402  (generated)
    return kv_pb2, cluster_pb2
