#!/usr/bin/env bash
# Builds the provchain:local image without pulling anything: compiles provchaind and provchain
# on the host (release), stages a root filesystem with them and exactly the shared libraries they
# link (found with ldd, the dynamic loader included), and builds docker/Dockerfile.offline
# (FROM scratch) around it. Works with the legacy builder (no BuildKit needed).
#
#   docker/build-offline.sh [IMAGE_TAG]     (default provchain:local; prints the tag)
#
# Environment:
#   PROVCHAIN_BIN_DIR   use the binaries in this directory instead of running cargo build
#   CARGO_TARGET_DIR    honoured (the binaries are taken from $CARGO_TARGET_DIR/release)
#
# The image matches docker/Dockerfile: binaries in /usr/local/bin, uid/gid 10001, data volume
# /data, testnet configs in /etc/provchain/testnet, ports 8080/9090/30333, HEALTHCHECK with
# `provchaind --health-check`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-provchain:local}"
cd "$root"

if [ -n "${PROVCHAIN_BIN_DIR:-}" ]; then
  bindir="$PROVCHAIN_BIN_DIR"
else
  cargo build --release --locked --bin provchaind --bin provchain >&2
  target_dir="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  bindir="${target_dir:-${CARGO_TARGET_DIR:-$root/target}}/release"
fi
for b in provchaind provchain; do
  [ -x "$bindir/$b" ] || { echo "build-offline: $bindir/$b is missing" >&2; exit 1; }
done

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/usr/local/bin" "$stage/rootfs/etc/provchain" "$stage/rootfs/tmp" "$stage/data"
for b in provchaind provchain; do
  cp "$bindir/$b" "$stage/rootfs/usr/local/bin/$b"
  strip "$stage/rootfs/usr/local/bin/$b" 2>/dev/null || true
done
# Shared libraries, including the dynamic loader, at the paths the binaries ask for. A fully
# static binary has none ("not a dynamic executable"), which is fine too.
libs="$( (ldd "$bindir/provchaind"; ldd "$bindir/provchain") 2>/dev/null | grep -oE '/[^ ]+' | sort -u)"
for lib in $libs; do
  [ -e "$lib" ] || continue
  mkdir -p "$stage/rootfs$(dirname "$lib")"
  cp -L "$lib" "$stage/rootfs$lib"
done
cp -r configs/testnet "$stage/rootfs/etc/provchain/testnet"
# Name lookups: users for `id`-style tools, and "files dns" so glibc resolves the compose
# service names through the container's /etc/hosts and Docker's resolver.
printf 'root:x:0:0:root:/root:/sbin/nologin\nprovchain:x:10001:10001:provchain:/data:/sbin/nologin\n' >"$stage/rootfs/etc/passwd"
printf 'root:x:0:\nprovchain:x:10001:\n' >"$stage/rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$stage/rootfs/etc/nsswitch.conf"
chmod 1777 "$stage/rootfs/tmp"
cp docker/Dockerfile.offline "$stage/Dockerfile"
docker build -q -t "$tag" "$stage" >&2
echo "$tag"
