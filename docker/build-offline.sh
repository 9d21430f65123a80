#!/usr/bin/env bash
# Builds the provchain:local image without pulling anything: compiles provchaind and provchain
# on the host (release), stages a root filesystem with them and the shared libraries they need
# (found with ldd), and builds docker/Dockerfile.offline (FROM scratch) around it.
#
#   docker/build-offline.sh [IMAGE_TAG]     (default provchain:local)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-provchain:local}"
cd "$root"

cargo build --release --locked --bin provchaind --bin provchain >&2
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/usr/local/bin" "$stage/rootfs/etc/provchain" "$stage/rootfs/tmp" "$stage/data"
for b in provchaind provchain; do
  cp "target/release/$b" "$stage/rootfs/usr/local/bin/$b"
  strip "$stage/rootfs/usr/local/bin/$b" 2>/dev/null || true
done
# Shared libraries, including the dynamic loader, at their original paths.
for lib in $(ldd target/release/provchaind target/release/provchain | grep -oE '/[^ ]+' | sort -u); do
  [ -e "$lib" ] || continue
  mkdir -p "$stage/rootfs$(dirname "$lib")"
  cp -L "$lib" "$stage/rootfs$lib"
done
cp -r configs/testnet "$stage/rootfs/etc/provchain/testnet"
printf 'root:x:0:0:root:/root:/sbin/nologin\nprovchain:x:10001:10001:provchain:/data:/sbin/nologin\n' >"$stage/rootfs/etc/passwd"
printf 'root:x:0:\nprovchain:x:10001:\n' >"$stage/rootfs/etc/group"
chmod 1777 "$stage/rootfs/tmp"
cp docker/Dockerfile.offline "$stage/Dockerfile"
docker build -q -t "$tag" "$stage" >&2
echo "$tag"
