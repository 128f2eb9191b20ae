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
)

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-deps: not root and sudo is not installed" >&2
    exit 1
fi

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
