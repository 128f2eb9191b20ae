#!/usr/bin/env bash
# make-base-image.sh: makes sure the image `debian:bookworm-slim` exists
# locally, building it with debootstrap when no registry can supply it.
#
# Every Dockerfile in compose/ starts FROM debian:bookworm-slim and stays an
# ordinary Dockerfile: with a registry, `docker compose build` pulls the
# official image and this script is never needed. On a machine without one,
# this script bootstraps a minimal bookworm root file system from the Debian
# mirror the host itself uses (read from /etc/apt/sources.list*), trims it the
# way the official slim image is trimmed (no docs, man pages or locales; apt
# lists and .deb files cleaned after every install), and imports it under that
# name.
#
# Usage: compose/make-base-image.sh [--force]
#   --force              rebuild even when the image already exists
# Environment:
#   KV_BASE_IMAGE        image name to produce [debian:bookworm-slim]
#   KV_DEBIAN_MIRROR     Debian mirror [the host's, else http://deb.debian.org/debian]
#   KV_DEBIAN_SECURITY   security mirror [the host's, else http://deb.debian.org/debian-security]
#
# Needs root (debootstrap) and installs debootstrap with apt-get if missing.
set -euo pipefail

IMAGE=${KV_BASE_IMAGE:-debian:bookworm-slim}
SUITE=bookworm
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

say() { printf '[base-image] %s\n' "$*"; }

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already present: nothing to do"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "debootstrap needs root"
    exit 1
fi

# Prints the first URI of the host's apt sources whose path ends in $1
# (debian or debian-security), from deb822 .sources files or one-line lists.
host_mirror() {
    local suffix=$1 files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    # Deb822: "URIs: a b"; one-line: "deb [opts] URI suite comps".
    awk '
        /^[[:space:]]*#/ { next }
        /^URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }
    ' "${files[@]}" 2>/dev/null | sed 's:/*$::' |
        awk -v sfx="$suffix" '{ n = split($0, p, "/"); if (p[n] == sfx) { print; exit } }'
}

MIRROR=${KV_DEBIAN_MIRROR:-$(host_mirror debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${KV_DEBIAN_SECURITY:-$(host_mirror debian-security)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

ROOTFS=$(mktemp -d /tmp/kv-rootfs.XXXXXX)
cleanup() { rm -rf "$ROOTFS"; }
trap cleanup EXIT

start=$SECONDS
say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    say "debootstrap failed (full log: $ROOTFS.log)"
    exit 1
}
rm -f "$ROOTFS.log"

# The same sources the official image ships: main, updates and security.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF

# The official slim image's trimming: no documentation, man pages or
# translations are unpacked, and apt leaves no lists or archives behind in a
# layer.
mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d" "$ROOTFS/etc/apt/apt.conf.d"
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$ROOTFS/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$ROOTFS/etc/apt/apt.conf.d/docker-autoremove-suggests"

# A host whose mirror serves a frozen snapshot tells apt not to reject its
# expired Release files; the image needs the same to reach the same mirror.
if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
    printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
        >"$ROOTFS/etc/apt/apt.conf.d/99snapshot-mirror"
    say "host mirror is a snapshot: Release expiry checks disabled in the image"
fi

rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: >"$ROOTFS/etc/machine-id"
hostname_file="$ROOTFS/etc/hostname"
[ -f "$hostname_file" ] && rm -f "$hostname_file"

say "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $SUITE $MIRROR" \
        - "$IMAGE" >/dev/null
say "$IMAGE ready in $((SECONDS - start))s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
