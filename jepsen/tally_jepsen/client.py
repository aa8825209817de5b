"""A Python client for Tally's KV and Cluster gRPC services.

Each operation is one attempt at one node (following a leader redirect at
most a few times), and says how it ended, in Jepsen's terms:

- ok:   the server answered.
- fail: the operation certainly had no effect: the server rejected it
        before proposing it (not the leader, bad input, overloaded), a
        compare-and-set found another value, or the connection was never
        made.
- info: the outcome is unknown: a timeout, a connection that broke after
        the request went out, a node that shut down with the write in its
        log.
"""
import os

import grpc

from . import paths

kv_pb2, cluster_pb2 = paths.import_protos()
lock_pb2 = paths.import_lock_protos()
idem_pb2 = paths.import_idem_protos()
saga_pb2 = paths.import_saga_protos()
crdt_pb2 = paths.import_crdt_protos()

OK, FAIL, INFO = "ok", "fail", "info"


def channel(address, options=()):
    """A gRPC channel to a node: TLS when KVCTL_TLS_CA names the CA that
    issued the nodes' certificates (as for kvctl; KVCTL_TLS_CERT and
    KVCTL_TLS_KEY add a client certificate), plaintext otherwise."""
    ca = os.environ.get("KVCTL_TLS_CA")
    if not ca:
        return grpc.insecure_channel(address, options=list(options))

    def read(name):
        path = os.environ.get(name)
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        read("KVCTL_TLS_CA"), read("KVCTL_TLS_KEY"), read("KVCTL_TLS_CERT"))
    return grpc.secure_channel(address, creds, options=list(options))

READ_MODES = {
    "linearizable": kv_pb2.LINEARIZABLE,
    "lease": kv_pb2.LEASE,
    "serializable": kv_pb2.SERIALIZABLE,
}

_KV = {
    "OpenSession": (kv_pb2.OpenSessionRequest, kv_pb2.OpenSessionResponse),
    "Get": (kv_pb2.GetRequest, kv_pb2.GetResponse),
    "Put": (kv_pb2.PutRequest, kv_pb2.PutResponse),
    "Delete": (kv_pb2.DeleteRequest, kv_pb2.DeleteResponse),
    "Range": (kv_pb2.RangeRequest, kv_pb2.RangeResponse),
    "Txn": (kv_pb2.TxnRequest, kv_pb2.TxnResponse),
}
_CLUSTER = {
    "Status": (cluster_pb2.StatusRequest, cluster_pb2.StatusResponse),
    "Ranges": (cluster_pb2.RangesRequest, cluster_pb2.RangesResponse),
    "AddLearner": (cluster_pb2.AddLearnerRequest, cluster_pb2.MembershipResponse),
    "Promote": (cluster_pb2.PromoteRequest, cluster_pb2.MembershipResponse),
    "RemoveMember": (cluster_pb2.RemoveMemberRequest, cluster_pb2.MembershipResponse),
    "TransferLeader": (cluster_pb2.TransferLeaderRequest,
                       cluster_pb2.TransferLeaderResponse),
}
_LEASES = {
    "Grant": (lock_pb2.LeaseGrantRequest, lock_pb2.LeaseGrantResponse),
    "Revoke": (lock_pb2.LeaseRevokeRequest, lock_pb2.LeaseRevokeResponse),
    "TimeToLive": (lock_pb2.LeaseTimeToLiveRequest, lock_pb2.LeaseTimeToLiveResponse),
}
_LOCKS = {
    "Acquire": (lock_pb2.AcquireRequest, lock_pb2.AcquireResponse),
    "Release": (lock_pb2.ReleaseRequest, lock_pb2.ReleaseResponse),
    "Inspect": (lock_pb2.InspectRequest, lock_pb2.InspectResponse),
    "BindFence": (lock_pb2.BindFenceRequest, lock_pb2.BindFenceResponse),
}
_IDEM = {
    "Begin": (idem_pb2.IdemBeginRequest, idem_pb2.IdemBeginResponse),
    "Complete": (idem_pb2.IdemCompleteRequest, idem_pb2.IdemFinishResponse),
    "Get": (idem_pb2.IdemGetRequest, idem_pb2.IdemGetResponse),
}
_SAGAS = {
    "Get": (saga_pb2.SagaGetRequest, saga_pb2.SagaGetResponse),
}
_CRDT = {
    "CreateTable": (crdt_pb2.CrdtCreateTableRequest, crdt_pb2.CrdtTableResponse),
    "Update": (crdt_pb2.CrdtUpdateRequest, crdt_pb2.CrdtUpdateResponse),
    "Get": (crdt_pb2.CrdtGetRequest, crdt_pb2.CrdtGetResponse),
    "Status": (crdt_pb2.CrdtStatusRequest, crdt_pb2.CrdtStatusResponse),
    "Cas": (crdt_pb2.CrdtCasRequest, crdt_pb2.CrdtCasResponse),
    "CasGet": (crdt_pb2.CrdtCasGetRequest, crdt_pb2.CrdtCasGetResponse),
}
_SERVICES = {"KV": _KV, "Cluster": _CLUSTER, "Leases": _LEASES, "Locks": _LOCKS,
             "Idempotency": _IDEM, "Sagas": _SAGAS, "Crdt": _CRDT}


class _KeepAlive:
    """Leases.KeepAlive as a unary call: one request on a fresh stream."""

    def __init__(self, channel):
        self._call = channel.stream_stream(
            "/tally.rpc.Leases/KeepAlive",
            request_serializer=lock_pb2.LeaseKeepAliveRequest.SerializeToString,
            response_deserializer=lock_pb2.LeaseKeepAliveResponse.FromString)

    def __call__(self, request, timeout):
        responses = self._call(iter([request]), timeout=timeout)
        for resp in responses:
            return resp
        raise RuntimeError("keep-alive stream ended without an answer")


class Result:
    def __init__(self, type_, response=None, error=None, node=None, reason=None):
        self.type = type_
        self.response = response
        self.error = error
        self.node = node
        # The server's "tally-reason" for an error (e.g. "session-expired").
        self.reason = reason

    def __repr__(self):
        return f"Result({self.type}, node={self.node}, error={self.error!r})"


def classify(err):
    """fail or info for a gRPC error."""
    code = err.code()
    details = err.details() or ""
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND):
        return FAIL
    if code == grpc.StatusCode.UNAVAILABLE:
        # Our server's own refusals name the node ("node n2 cannot serve
        # group 2: ..."): nothing was proposed. A connection that could not
        # be made never carried the request. Anything else (a reset or
        # closed connection) may have come after the request went out.
        if details.startswith("node n") and "cannot serve" in details:
            return FAIL
        if "failed to connect" in details.lower() or "connection refused" in details.lower():
            return FAIL
        return INFO
    return INFO


class Connection:
    """Channels to every node, by node number; shared by many processes."""

    def __init__(self, addresses):
        self.addresses = dict(addresses)  # node -> client address
        self._channels = {}
        self._stubs = {}

    def set_address(self, node, address):
        self.addresses[node] = address

    def node_at(self, address):
        for n, a in self.addresses.items():
            if a == address:
                return n
        return None

    def _stub(self, node, service, method):
        key = (node, service, method)
        stub = self._stubs.get(key)
        if stub is None:
            ch = self._channels.get(node)
            if ch is None:
                ch = channel(self.addresses[node], options=[
                    ("grpc.initial_reconnect_backoff_ms", 50),
                    ("grpc.max_reconnect_backoff_ms", 300),
                ])
                self._channels[node] = ch
            if (service, method) == ("Leases", "KeepAlive"):
                stub = _KeepAlive(ch)
            else:
                req, resp = _SERVICES[service][method]
                stub = ch.unary_unary(f"/tally.rpc.{service}/{method}",
                                      request_serializer=req.SerializeToString,
                                      response_deserializer=resp.FromString)
            self._stubs[key] = stub
        return stub

    def call(self, node, method, request, timeout=2.0, service="KV", redirects=2):
        """One attempt at `node`, following up to `redirects` leader hints
        (a refusal with a hint had no effect, so the next try is safe)."""
        for _ in range(redirects + 1):
            try:
                resp = self._stub(node, service, method)(request, timeout=timeout)
                return Result(OK, resp, node=node)
            except grpc.RpcError as err:
                kind = classify(err)
                hint = reason = None
                for k, v in (err.trailing_metadata() or ()):
                    if k == "tally-leader":
                        hint = self.node_at(v)
                    elif k == "tally-reason":
                        reason = v
                if kind == FAIL and hint is not None and hint != node:
                    node = hint
                    continue
                return Result(kind, error=f"{err.code().name}: {err.details()}", node=node,
                              reason=reason)
        return Result(FAIL, error="too many redirects", node=node)

    def close(self):
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        self._stubs.clear()
