#!/usr/bin/env bash
# End-to-end test of testnet/docker-compose.yml with real containers:
#   smoke      the stack comes up healthy, every node has 2 peers within 60 s, a transaction
#              POSTed to node1 (the deployment guide's curl command) is final on node3, and the
#              final chains / dump lengths agree;
#   stop       `stop node2`: node1 and node3 keep finalizing; `start node2`: it catches up to the
#              same final hash;
#   partition  `docker network disconnect` node3 for 30 s: the majority keeps finalizing, node3
#              keeps sealing but finalizes nothing new; after reconnecting it converges and no
#              final block changed on any node;
#   restart    `down` then `up` with the volumes kept: the chain continues from where it was.
# Cleans up containers, volumes, networks (and the image, when it built one) even on failure.
#
#   testnet/compose-test.sh
# Environment:
#   PROVCHAIN_IMAGE   an existing image to test (else one is built with docker/build-offline.sh
#                     and removed afterwards)
#   COMPOSE_TEST_LOGS a file to save all container logs in (on success too)
#   Host API ports are picked free (PROVCHAIN_API_PORT1..3 in the compose file) so the test does
#   not collide with a node already listening on 8080-8082.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. testnet/lib.sh
for t in docker jq curl python3; do command -v "$t" >/dev/null || fail "needs $t"; done

started=$(date +%s)
project="provchain-test-$$"
read -r -a compose_bin <<<"$(compose_cmd)"
compose() { "${compose_bin[@]}" -p "$project" -f testnet/docker-compose.yml "$@"; }
built_image=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "${COMPOSE_TEST_LOGS:-}" ]; then compose logs --no-color --timestamps >"$COMPOSE_TEST_LOGS" 2>&1; fi
  if [ $rc -ne 0 ]; then
    log "logs of the failed run:"
    compose logs --no-color --tail=60 >&2
  fi
  compose down -v --remove-orphans -t 5 >/dev/null 2>&1
  [ -n "$built_image" ] && docker rmi -f "$PROVCHAIN_IMAGE" >/dev/null 2>&1
  [ $rc -eq 0 ] && log "compose test passed in $(( $(date +%s) - started ))s"
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
export PROVCHAIN_IMAGE

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -a port
for i in 1 2 3; do port[$i]=$(free_port); export "PROVCHAIN_API_PORT$i=${port[$i]}"; done

api() { echo "http://127.0.0.1:${port[$1]}"; }
get() { local n=$1 path=$2; shift 2; curl -fsS --max-time 5 "$(api "$n")$path" "$@"; }
peers_of() { get "$1" /api/peers | jq 'length'; }
has_peers() { [ "$(peers_of "$1")" = 2 ]; }
final_height() { get "$1" /api/status | jq -e .finalized_height; }
final_at_least() { [ "$(final_height "$1")" -ge "$2" ]; }
tx_final() { [ "$(get "$1" "/api/transactions/$2" | jq -r .status)" = final ]; }
# Hashes of final blocks 0..N in one request (genesis first).
final_hashes() { get "$1" "/api/blockchain/dump?from=0&limit=$(( $2 + 1 ))" | jq -r '.[].hash'; }
same_final() {
  local a b
  a="$(final_hashes "$1" "$3")"; b="$(final_hashes "$2" "$3")"
  [ "$(printf '%s\n' "$a" | wc -l)" -eq $(( $3 + 1 )) ] && [ "$a" = "$b" ]
}
cid() { compose ps -q "$1"; }
healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")")" = healthy ]; }

log "starting the compose testnet ($PROVCHAIN_IMAGE, APIs on ${port[1]} ${port[2]} ${port[3]}, $(compose_cmd))"
compose up -d --no-build
for i in 1 2 3; do wait_until 60 "node$i has 2 peers" has_peers "$i"; done
for i in 1 2 3; do wait_until 30 "node$i container healthy" healthy "node$i"; done

log "smoke: the deployment guide's commands"
tx=$(curl -fsS -X POST "$(api 1)/api/transactions" -H "Content-Type: application/json" \
  -d '{"data":"<http://test> <http://p> \"v\" ."}' | jq -r .tx_id)
[ ${#tx} -eq 64 ] || fail "no tx_id from node1"
wait_until 30 "tx $tx final on node3" tx_final 3 "$tx"
l=(); for i in 1 2 3; do l+=("$(get "$i" /api/blockchain/dump | jq 'length')"); done
for i in 1 2; do
  d=$(( l[0] > l[i] ? l[0] - l[i] : l[i] - l[0] ))
  [ "$d" -le 2 ] || fail "dump lengths differ by more than the last interval: ${l[*]}"
done
log "dump lengths ${l[*]}"
h=$(final_height 3)
all_agree() { same_final 1 2 "$1" && same_final 1 3 "$1"; }
wait_until 20 "node1..3 agree on the final chain up to $h" all_agree "$h"
[ "$(get 3 /sparql --get --data-urlencode 'query=ASK { <http://test> <http://p> "v" }' \
  | jq -r .boolean)" = true ] || fail "the triple is not queryable on node3"

log "fault: stop node2"
compose stop -t 10 node2 >/dev/null
f=$(final_height 1)
wait_until 40 "node1 finalizes 4 more blocks without node2" final_at_least 1 $((f + 4))
wait_until 10 "node3 finalizes too" final_at_least 3 $((f + 4))
compose start node2 >/dev/null
target=$(final_height 1)
wait_until 60 "node2 catches up to final height $target" final_at_least 2 "$target"
wait_until 10 "node2 and node1 agree up to $target" same_final 1 2 "$target"
wait_until 60 "node2 has 2 peers again" has_peers 2

log "fault: disconnect node3 from the network for 30 s"
net="${project//-/}_provchain"  # compose v1 strips '-' from project names ...
docker network inspect "$net" >/dev/null 2>&1 || net="${project}_provchain"  # ... v2 keeps them
docker network inspect "$net" >/dev/null 2>&1 || fail "cannot find the compose network"
c3="$(cid node3)"
before=$(final_height 1)
snap="$(final_hashes 1 "$before")"
# Disconnected, node3's published port is gone too: ask it from inside its container.
status3() { docker exec "$c3" provchain status --json --node http://127.0.0.1:8080; }
docker network disconnect "$net" "$c3"
s3="$(status3)"; f3=$(jq -e .finalized_height <<<"$s3"); b3=$(jq -e .height <<<"$s3")
sleep 30 & wait $!  # the partition itself lasts 30 s by design (wait: interruptible)
f1=$(final_height 1)
s3="$(status3)"; f3_end=$(jq -e .finalized_height <<<"$s3"); b3_end=$(jq -e .height <<<"$s3")
[ "$f1" -ge $((before + 5)) ] || fail "majority stopped finalizing during the partition ($before -> $f1)"
# One block may still become final on node3: its head from before the cut, once node3 seals on it.
[ "$f3_end" -le $((f3 + 1)) ] || fail "isolated node3 finalized alone ($f3 -> $f3_end)"
[ "$b3_end" -gt "$b3" ] || fail "isolated node3 stopped sealing ($b3 -> $b3_end)"
log "during the cut: majority finalized $((f1 - before)) blocks; node3 sealed $((b3_end - b3)) non-final blocks"
docker network connect --alias node3 "$net" "$c3"
target=$(final_height 1)
wait_until 90 "node3 converges to final height $target" final_at_least 3 "$target"
wait_until 20 "node3 and node1 agree up to $target" same_final 1 3 "$target"
wait_until 60 "node3 has 2 peers again" has_peers 3
for i in 1 2 3; do
  [ "$(final_hashes "$i" "$before")" = "$snap" ] || fail "a final block up to $before changed on node$i"
done
log "no final block changed on any node (checked 0..$before)"

log "restart: down, then up with the volumes kept"
top=$(final_height 1)
topsnap="$(final_hashes 1 "$top")"
compose down -t 10 >/dev/null 2>&1
[ -z "$(compose ps -q)" ] || fail "containers left after down"
compose up -d --no-build >/dev/null 2>&1
for i in 1 2 3; do wait_until 60 "node$i continues past final height $top" final_at_least "$i" $((top + 1)); done
for i in 1 2 3; do
  [ "$(final_hashes "$i" "$top")" = "$topsnap" ] || fail "final blocks up to $top changed on node$i across down/up"
done
wait_until 30 "tx still final on node2 after the restart" tx_final 2 "$tx"
for i in 1 2 3; do wait_until 60 "node$i has 2 peers after the restart" has_peers "$i"; done
