#!/usr/bin/env bash
# End-to-end test of testnet/docker-compose.yml with real containers:
#   smoke (peers, a transaction final everywhere, dumps agree), a stopped node that catches up,
#   a disconnected node that converges without any final block changing, and a restart with
#   volumes kept. Cleans up containers, volumes and networks even when it fails.
# Builds the image with docker/build-offline.sh unless PROVCHAIN_IMAGE names an existing one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. testnet/lib.sh

project="provchain-test-$$"
compose="$(compose_cmd) -p $project -f testnet/docker-compose.yml"
export PROVCHAIN_IMAGE="${PROVCHAIN_IMAGE:-}"
if [ -z "$PROVCHAIN_IMAGE" ]; then
  export PROVCHAIN_IMAGE="provchain:test-$$"
  docker/build-offline.sh "$PROVCHAIN_IMAGE" >/dev/null
  built_image=1
fi

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "logs of the failed run:"
    $compose logs --no-color --tail=60 >&2 || true
  fi
  $compose down -v --remove-orphans >/dev/null 2>&1 || true
  [ -n "${built_image:-}" ] && docker rmi -f "$PROVCHAIN_IMAGE" >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT

api() { echo "http://127.0.0.1:$((8079 + $1))"; }
peers_of() { curl -fsS "$(api "$1")/api/peers" | jq 'length'; }
final_height() { curl -fsS "$(api "$1")/api/status" | jq '.finalized_height'; }
best_height() { curl -fsS "$(api "$1")/api/status" | jq '.height'; }
hash_at() { curl -fsS "$(api "$1")/api/blocks/$2" | jq -r 'select(.final == true) | .hash'; }
has_peers() { [ "$(peers_of "$1")" = 2 ]; }
final_at_least() { [ "$(final_height "$1")" -ge "$2" ]; }
tx_final() { [ "$(curl -fsS "$(api "$1")/api/transactions/$2" | jq -r .status)" = final ]; }
same_hash() { local a; a="$(hash_at "$1" "$3")"; [ -n "$a" ] && [ "$a" = "$(hash_at "$2" "$3")" ]; }

log "starting the compose testnet ($PROVCHAIN_IMAGE)"
$compose up -d --no-build
for i in 1 2 3; do wait_until 60 "node$i has 2 peers" has_peers "$i"; done

log "smoke: the deployment guide's commands"
tx=$(curl -fsS -X POST "$(api 1)/api/transactions" -H "Content-Type: application/json" \
  -d '{"data":"<http://test> <http://p> \"v\" ."}' | jq -r .tx_id)
[ ${#tx} -eq 64 ] || fail "no tx_id"
wait_until 30 "tx final on node3" tx_final 3 "$tx"
l1=$(curl -fsS "$(api 1)/api/blockchain/dump" | jq 'length')
l3=$(curl -fsS "$(api 3)/api/blockchain/dump" | jq 'length')
l2=$(curl -fsS "$(api 2)/api/blockchain/dump" | jq 'length')
for l in "$l2" "$l3"; do
  d=$(( l1 > l ? l1 - l : l - l1 )); [ "$d" -le 2 ] || fail "dump lengths differ: $l1 $l2 $l3"
done
log "dump lengths $l1 $l2 $l3"
for i in 1 2 3; do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$($compose ps -q node$i)")" != unhealthy ] || fail "node$i unhealthy"
done

log "fault: stop node2"
$compose stop node2 >/dev/null
f=$(final_height 1)
wait_until 40 "node1 finalizes 4 more blocks without node2" final_at_least 1 $((f + 4))
$compose start node2 >/dev/null
target=$(final_height 1)
wait_until 60 "node2 catches up to $target" final_at_least 2 "$target"
wait_until 10 "node2 and node1 agree at $target" same_hash 1 2 "$target"

log "fault: disconnect node3 for 30 s"
net="$(docker network ls --format '{{.Name}}' | grep "^${project}_provchain$")"
c3="$($compose ps -q node3)"
before=$(final_height 1)
declare -a snap
for h in $(seq 1 "$before"); do snap[$h]="$(hash_at 1 "$h")"; done
docker network disconnect "$net" "$c3"
f3=$(final_height 3); b3=$(best_height 3)
sleep 30  # the partition itself lasts 30 s by design
f1=$(final_height 1)
[ "$f1" -ge $((before + 5)) ] || fail "majority stopped finalizing during the partition ($before -> $f1)"
[ "$(final_height 3)" -le $((f3 + 1)) ] || fail "isolated node3 finalized alone"
[ "$(best_height 3)" -gt "$b3" ] || fail "isolated node3 stopped sealing"
docker network connect --alias node3 "$net" "$c3"
target=$(final_height 1)
wait_until 60 "node3 converges to final height $target" final_at_least 3 "$target"
wait_until 10 "node3 and node1 agree at $target" same_hash 1 3 "$target"
for i in 1 2 3; do
  for h in $(seq 1 "$before"); do
    [ "$(hash_at "$i" "$h")" = "${snap[$h]}" ] || fail "final block $h changed on node$i"
  done
done
log "no final block changed on any node"

log "restart with volumes kept"
top=$(final_height 1)
top_hash=$(hash_at 1 "$top")
$compose down >/dev/null
$compose up -d --no-build >/dev/null
wait_until 60 "node1 back with its chain" final_at_least 1 $((top + 1))
[ "$(hash_at 1 "$top")" = "$top_hash" ] || fail "block $top changed across down/up"
wait_until 30 "tx still final after restart" tx_final 2 "$tx"
log "compose test passed"
