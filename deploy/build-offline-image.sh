#!/usr/bin/env bash
# Builds the tally/kvd image without pulling anything: packs the locally
# built kvd and kvctl, the shared libraries they load and the dynamic loader
# into an image built FROM scratch. For machines with no registry access;
# with one, deploy/Dockerfile is the conventional build.
#   deploy/build-offline-image.sh [TAG]     (default tally/kvd:local)
set -euo pipefail
tag=${1:-tally/kvd:local}
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
for b in kvd kvctl; do
  [ -x "$bin/$b" ] || { echo "build-offline-image: $bin/$b missing; run make build first" >&2; exit 1; }
done
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
cp "$bin/kvd" "$bin/kvctl" "$ctx/rootfs/usr/bin/"
# Every library either binary loads, at the path the loader looks for it.
for lib in $(ldd "$bin/kvd" "$bin/kvctl" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | sort -u); do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
# Resolving peer names (kvd1:7101) needs the resolver's files.
mkdir -p "$ctx/rootfs/etc"
printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
for lib in /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
  [ -e "$lib" ] && cp -L "$lib" "$ctx/rootfs$lib"
done
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
VOLUME /data
EXPOSE 7001 7101
ENTRYPOINT ["/usr/bin/kvd"]
DOCKERFILE
if ! docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.log"; then
  cat "$ctx/build.log" >&2
  exit 1
fi
echo "built $tag ($(du -sh "$ctx/rootfs" | cut -f1) of binaries and libraries)"
