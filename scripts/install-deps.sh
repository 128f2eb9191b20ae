#!/usr/bin/env bash
# install-deps.sh: installs everything needed to build, test, lint and measure
# coverage of kvstore on Debian bookworm (or a close relative).
#
# Idempotent: packages already present are skipped, so running it twice costs
# one dpkg query. Uses sudo only when not already root. Set
# KV_DEPS_FORCE_UPDATE=1 to run `apt-get update` even when nothing is missing.
set -euo pipefail

PACKAGES=(
    build-essential
    cmake
    pkg-config
    libczmq-dev
    libzmq3-dev
    libmicrohttpd-dev
    libjansson-dev
    libcriterion-dev
    libcurl4-openssl-dev
    clang-format
    clang-tidy
    cppcheck
    gcovr
    curl
    procps
    ca-certificates
    wrk redis-server redis-tools webdis linux-perf # make bench (tools/bench/bench.sh)
    iproute2 iptables                              # make partition-test (tests/it_partition.c)
)

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-deps: not root and sudo is not installed" >&2
    exit 1
fi

# --- partition tests (issue 12): the Go module of kv-lincheck --------------
# tools/linearizability (Go, porcupine) checks it_partition's histories; its
# module is fetched here, before the early exit below, so that
# tools/linearizability/build.sh builds offline. Go is in /usr/local/go/bin.
if [ -x /usr/local/go/bin/go ] || command -v go >/dev/null 2>&1; then
    (cd "$(dirname "${BASH_SOURCE[0]}")/../tools/linearizability" &&
        PATH=$PATH:/usr/local/go/bin go mod download) &&
        echo "install-deps: Go module of kv-lincheck downloaded"
else
    echo "install-deps: Go not found: kv-lincheck (make partition-test) cannot be built" >&2
fi
# --- end of the partition tests' block ----------------------------------------

# A package counts as present only when dpkg reports it fully installed.
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ] && [ "${KV_DEPS_FORCE_UPDATE:-0}" != "1" ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]:-(none missing, refreshing lists)}"
"${SUDO[@]}" apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: done"
