#!/usr/bin/env bash
# Installs the Debian packages Tally needs to build, test and run, skipping
# those already present. Safe to run any number of times. Uses sudo when not
# run as root. Set TALLY_DEPS_QUIET=1 to print only what it installs.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  clang-format clang-tidy
  # fuzz/ (libFuzzer and the sanitizers come with clang's runtime)
  clang libclang-rt-14-dev
  # C++ libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libleveldb-dev libsnappy-dev libabsl-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libssl-dev libgoogle-perftools-dev
  # jepsen/ (Debian's interpreter, no pip)
  python3 python3-pytest python3-grpcio python3-protobuf python3-hypothesis
  python3-matplotlib python3-yaml python3-prometheus-client
  # network fault injection for jepsen/
  iproute2 nftables faketime
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  [ "${TALLY_DEPS_QUIET:-0}" = 1 ] || echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: missing packages (${missing[*]}) and not root; sudo is not available" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
