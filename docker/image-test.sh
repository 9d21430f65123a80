#!/usr/bin/env bash
# Checks a ProvChain runtime image (from docker/Dockerfile or docker/build-offline.sh):
#   - `docker run IMAGE --version` works (the binary and its libraries are all there);
#   - it runs as uid/gid 10001, exposes 8080/9090/30333, declares the /data volume;
#   - a dev node (`--dev`) in it serves the API on all interfaces, its HEALTHCHECK turns
#     healthy, and the node process runs as uid 10001;
#   - the testnet configs are baked in at /etc/provchain/testnet.
# Removes the container it started on any exit (the image is left alone).
#
#   docker/image-test.sh [IMAGE]     (default provchain:local)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/testnet/lib.sh"
image="${1:-provchain:local}"
name="provchain-image-test-$$"
started=$(date +%s)

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then docker logs --tail 40 "$name" >&2 2>/dev/null; fi
  docker rm -f -v "$name" >/dev/null 2>&1
  [ $rc -eq 0 ] && log "image test passed in $(( $(date +%s) - started ))s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

version="$(docker run --rm "$image" --version)" || fail "docker run $image --version failed"
log "ok: $version"
docker run --rm --entrypoint provchain "$image" --version >/dev/null || fail "the provchain CLI does not run"
log "ok: provchain CLI runs"

[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = "10001:10001" ] || fail "image does not run as 10001:10001"
ports="$(docker image inspect -f '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$image")"
for p in 8080/tcp 9090/tcp 30333/tcp; do [[ " $ports" == *" $p "* ]] || fail "port $p not exposed ($ports)"; done
docker image inspect -f '{{json .Config.Volumes}}' "$image" | grep -q '"/data"' || fail "no /data volume"
[ -n "$(docker image inspect -f '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}' "$image")" ] || fail "no HEALTHCHECK"
log "ok: user 10001:10001, ports $ports, volume /data, HEALTHCHECK"

# The testnet configs must load inside the image (they are what the compose file runs).
for i in 1 2 3; do
  docker run --rm "$image" --config "/etc/provchain/testnet/node$i.toml" --dump-config >/dev/null \
    || fail "/etc/provchain/testnet/node$i.toml does not load in the image"
done
log "ok: testnet configs load"

docker run -d --name "$name" -p 127.0.0.1::8080 "$image" --dev >/dev/null
status() { docker inspect -f '{{.State.Health.Status}}' "$name"; }
healthy() { [ "$(status)" = healthy ]; }
wait_until 60 "HEALTHCHECK reports healthy" healthy
uid="$(docker top "$name" -eo pid,uid,comm | awk '$3 == "provchaind" { print $2; exit }')"
[ "$uid" = 10001 ] || fail "provchaind runs as uid '$uid', not 10001"
log "ok: provchaind runs as uid 10001"
port="$(docker port "$name" 8080/tcp | head -n1 | sed 's/.*://')"
api() { curl -fsS --max-time 5 "http://127.0.0.1:$port$1"; }
final_ok() { [ "$(api /api/status | jq .finalized_height)" -ge 1 ]; }
wait_until 30 "the dev node in the container finalizes blocks (API published on :$port)" final_ok
