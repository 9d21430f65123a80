#!/usr/bin/env bash
# Tests docker/docker-compose.node.yml (one node per VM) the way docs/DEPLOYMENT.md uses it: two
# "VMs", each a directory with the compose file, a .env made from docker/node.env.example, a
# node config rendered from configs/production.toml and a key from `provchain keygen` (owned by
# uid 10001, mode 0600). Each runs as its own compose project on its own Docker network; they
# reach each other only through their published P2P ports on the host (docker0's address),
# like VMs through their firewalls. Checks: both healthy, connected, a transaction POSTed to
# vm1 final on vm2, the same final chain; `provchain status/peers` through the published API.
# Cleans up containers, volumes, networks, files (and the image, when it built one) on any exit.
#
#   testnet/node-compose-test.sh        (PROVCHAIN_IMAGE: an existing image to test)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. testnet/lib.sh
for t in docker jq curl python3 ip; do command -v "$t" >/dev/null || fail "needs $t"; done

started=$(date +%s)
work="$(mktemp -d /tmp/provchain-vms.XXXXXX)"
read -r -a compose_bin <<<"$(compose_cmd)"
vm() { local n=$1; shift; (cd "$work/vm$n" && "${compose_bin[@]}" -p "provchain-vm$n-$$" "$@"); }
built_image=""

cleanup() {
  local rc=$?
  set +e
  for n in 1 2; do
    [ -f "$work/vm$n/docker-compose.yml" ] || continue
    [ $rc -ne 0 ] && vm "$n" logs --no-color --tail=40 >&2
    vm "$n" down -v --remove-orphans -t 5 >/dev/null 2>&1
  done
  [ -n "$built_image" ] && docker rmi -f "$PROVCHAIN_IMAGE" >/dev/null 2>&1
  rm -rf "$work"
  [ $rc -eq 0 ] && log "per-node compose test passed in $(( $(date +%s) - started ))s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${PROVCHAIN_IMAGE:-}" ]; then
  export PROVCHAIN_IMAGE="provchain:test-$$"
  built_image=1
  log "building $PROVCHAIN_IMAGE with docker/build-offline.sh"
  docker/build-offline.sh "$PROVCHAIN_IMAGE" >/dev/null
fi
docker image inspect "$PROVCHAIN_IMAGE" >/dev/null 2>&1 || fail "no image $PROVCHAIN_IMAGE"

# The host address both "VMs" reach each other's published P2P port on.
host_ip="$(ip -4 -o addr show docker0 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')"
[ -n "$host_ip" ] || fail "cannot find docker0's address"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -a p2p api
keys=()
for n in 1 2; do
  d="$work/vm$n"; mkdir -p "$d"
  p2p[$n]=$(free_port); api[$n]=$(free_port)
  # Keys with the image's own CLI; the container user (10001) must own them, mode 0600.
  keys+=("$(docker run --rm --user 0 -v "$d:/out" --entrypoint provchain "$PROVCHAIN_IMAGE" \
    keygen --out /out/node.key --json | jq -r .public_key)")
  chown 10001:10001 "$d/node.key"
  [ "$(stat -c %a "$d/node.key")" = 600 ] || fail "keygen did not write mode 0600"
done
for n in 1 2; do
  d="$work/vm$n"; other=$(( 3 - n ))
  cp docker/docker-compose.node.yml "$d/docker-compose.yml"
  render_production_config "vm$n" compose-node-test 0.0.0.0 /var/lib/provchain /etc/provchain/node.key \
    "${keys[@]}" >"$d/node.toml"
  sed -e "s|^PROVCHAIN_PEERS=.*|PROVCHAIN_PEERS=$host_ip:${p2p[$other]}|" \
      -e "s|^NODE_CONFIG=.*|NODE_CONFIG=./node.toml|" \
      -e "s|^NODE_KEY=.*|NODE_KEY=./node.key|" \
      -e "s|^PROVCHAIN_IMAGE=.*|PROVCHAIN_IMAGE=$PROVCHAIN_IMAGE|" \
      -e "s|^P2P_PUBLISH=.*|P2P_PUBLISH=$host_ip:${p2p[$n]}|" \
      -e "s|^API_PUBLISH=.*|API_PUBLISH=127.0.0.1:${api[$n]}|" \
      -e "s|^METRICS_PUBLISH=.*|METRICS_PUBLISH=127.0.0.1:$(free_port)|" \
      docker/node.env.example >"$d/.env"
  grep -q "^PROVCHAIN_PEERS=$host_ip" "$d/.env" || fail "docker/node.env.example has no PROVCHAIN_PEERS line"
done

log "starting vm1 and vm2 ($PROVCHAIN_IMAGE; P2P on $host_ip:${p2p[1]} and :${p2p[2]}; $(compose_cmd))"
for n in 1 2; do vm "$n" up -d --no-build; done

get() { local n=$1 path=$2; shift 2; curl -fsS --max-time 5 "http://127.0.0.1:${api[$n]}$path" "$@"; }
has_peer() { [ "$(get "$1" /api/peers | jq 'length')" -ge 1 ]; }
healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(vm "$1" ps -q provchaind)")" = healthy ]; }
tx_final() { [ "$(get "$1" "/api/transactions/$2" | jq -r .status)" = final ]; }
final_hash() { get "$1" "/api/blocks/$2" | jq -er 'select(.final == true) | .hash'; }
same_final() { local a; a="$(final_hash 1 "$1")" && [ "$a" = "$(final_hash 2 "$1")" ]; }

for n in 1 2; do wait_until 60 "vm$n connected to the other" has_peer "$n"; done
for n in 1 2; do wait_until 30 "vm$n container healthy" healthy "$n"; done
[ "$(get 1 /api/status | jq -r .network_id)" = compose-node-test ] || fail "vm1 is not on the rendered network"
tx=$(get 1 /api/transactions -X POST -H "Content-Type: application/json" \
  -d '{"data":"<http://test> <http://p> \"v\" ."}' | jq -r .tx_id)
[ ${#tx} -eq 64 ] || fail "no tx_id from vm1"
wait_until 30 "tx final on vm2" tx_final 2 "$tx"
h=$(get 2 /api/status | jq .finalized_height)
wait_until 20 "vm1 and vm2 agree on final block $h" same_final "$h"
status="$(docker run --rm --network host --entrypoint provchain "$PROVCHAIN_IMAGE" \
  status --node "http://127.0.0.1:${api[2]}")" || fail "provchain status failed"
grep -q compose-node-test <<<"$status" || fail "provchain status does not show the network: $status"
docker run --rm --network host --entrypoint provchain "$PROVCHAIN_IMAGE" \
  peers --node "http://127.0.0.1:${api[2]}" >/dev/null || fail "provchain peers failed"
log "provchain status / peers work against the published API"
