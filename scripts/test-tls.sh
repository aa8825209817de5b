#!/usr/bin/env bash
# The integration tests, kvctl's test and the jepsen smoke set against TLS
# clusters (make test-tls; about 14 minutes): every kvd gets one
# certificate from a fresh CA through KVD_TLS_*, every client (kvctl, the
# C++ and Python test clients, the examples) trusts that CA through
# KVCTL_TLS_CA. The certificate is valid for 127.0.0.1 and for the
# addresses of jepsen's network namespaces. TESTS (a ctest regex) picks
# other tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
JOBS=${JOBS:-2}
certs=$(mktemp -d /tmp/tally-tls-certs.XXXXXX)
trap 'rm -rf "$certs"' EXIT

sans="IP:10.77.0.254"
for i in $(seq 1 9); do sans="$sans,IP:10.77.0.$i"; done
TALLY_CERT_SANS=$sans "$ROOT/deploy/gen-certs.sh" "$certs" node >/dev/null
export KVD_TLS_CA=$certs/ca.pem KVD_TLS_CERT=$certs/node.pem
export KVD_TLS_KEY=$certs/node-key.pem KVCTL_TLS_CA=$certs/ca.pem
echo "test-tls: every node with $KVD_TLS_CERT, every client trusting $KVCTL_TLS_CA"
cd "$BUILD_DIR"
# tls_integration_test and compose_tls_integration_test make their own
# certificates; compose_integration_test runs plaintext.
ctest --output-on-failure -j "$JOBS" --timeout 900 \
  -R "${TESTS:-_integration_test\$|^kvctl_test\$|^jepsen_smoke_test\$}" \
  -E '^(compose|compose_tls|tls)_integration_test$'
