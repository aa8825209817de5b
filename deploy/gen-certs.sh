#!/usr/bin/env bash
# Makes a cluster CA and certificates for TLS (docs/security.md), with
# openssl: EC P-256 keys, SHA-256 signatures.
#
#   deploy/gen-certs.sh DIR [NAME...]
#
# DIR/ca.pem, ca-key.pem  the cluster CA (made once; kept if present, so
#                          that running again adds certificates it signs)
# DIR/NAME.pem, -key.pem  a node's certificate (NAME: n<number>; default
#                          n1 n2 n3), for serving and for dialling peers,
#                          valid for NAME, localhost, 127.0.0.1 and the
#                          extra names in TALLY_CERT_SANS (comma-separated,
#                          DNS:name or IP:address)
# DIR/client.pem, -key.pem a client certificate (CN client), for nodes run
#                          with --tls-client-auth
#
# TALLY_CERT_DAYS (default 365) sets how long they are valid.
set -euo pipefail
dir=${1:?usage: gen-certs.sh DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(n1 n2 n3)
days=${TALLY_CERT_DAYS:-365}
mkdir -p "$dir"
umask 077

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days "$days" \
    -subj "/CN=Tally cluster CA $(date +%Y%m%d%H%M%S)-$RANDOM" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# issue NAME SANS EKU
issue() {
  local ext
  ext=$(mktemp)
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=$3" >"$ext"
  [ -n "$2" ] && echo "subjectAltName=$2" >>"$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/$1-key.pem" -out "$dir/$1.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" \
    -CAkey "$dir/ca-key.pem" -CAcreateserial -out "$dir/$1.pem" \
    -days "$days" -sha256 -extfile "$ext" 2>/dev/null
  rm -f "$dir/$1.csr" "$ext"
}

for n in "${names[@]}"; do
  sans="DNS:$n,DNS:localhost,IP:127.0.0.1"
  [ -n "${TALLY_CERT_SANS:-}" ] && sans="$sans,$TALLY_CERT_SANS"
  issue "$n" "$sans" "serverAuth,clientAuth"
done
issue client "" "clientAuth"
# Certificates readable by all, keys by their owner only.
for f in "$dir"/*.pem; do
  case $f in *-key.pem) chmod 600 "$f" ;; *) chmod 644 "$f" ;; esac
done
echo "gen-certs: CA and certificates for ${names[*]} and client in $dir"
