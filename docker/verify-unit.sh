#!/usr/bin/env bash
# Offline checks of docker/provchaind.service with the host's systemd tools (no running systemd
# needed): `systemd-analyze verify` in a scratch root holding the unit, the system units it
# orders against and the provchaind binary, then the offline `systemd-analyze security` score.
#
#   docker/verify-unit.sh path/to/provchaind
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:?usage: docker/verify-unit.sh path/to/provchaind}"
command -v systemd-analyze >/dev/null || { echo "verify-unit: systemd-analyze not installed; skipped"; exit 0; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/usr/local/bin" "$scratch/etc/systemd/system" "$scratch/usr/lib/systemd"
cp "$bin" "$scratch/usr/local/bin/provchaind"
cp "$root/docker/provchaind.service" "$scratch/etc/systemd/system/"
cp -r /usr/lib/systemd/system "$scratch/usr/lib/systemd/"
systemd-analyze verify --root="$scratch" /etc/systemd/system/provchaind.service
exposure="$(systemd-analyze security --offline=yes --root="$scratch" provchaind.service 2>/dev/null \
  | sed -n 's/.*Overall exposure level for provchaind.service: \([0-9.]*\).*/\1/p')"
echo "verify-unit: provchaind.service verifies; systemd security exposure ${exposure:-?} (lower is better)"
if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e > 3.0) }'; then
  echo "verify-unit: exposure $exposure is above 3.0: the hardening regressed" >&2; exit 1
fi
