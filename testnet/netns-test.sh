#!/usr/bin/env bash
# Multi-host test: three provchaind "hosts", each in its own network namespace with its own
# address on a bridge (itself in a namespace made here), seeded with IP addresses only.
# Checks discovery and agreement, then cuts one host's link for 30 s: the minority keeps sealing
# but never finalizes, the majority keeps finalizing; after the link is restored everything
# converges and no final block was reverted. Needs root (ip netns). Cleans up on any exit.
#   testnet/netns-test.sh [path/to/provchaind]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. testnet/lib.sh

bin="${1:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --bin provchaind >&2
  bin="$root/target/release/provchaind"
fi
tag="pc$$"
br="${tag}br"
work="$(mktemp -d)"
declare -a pids

cleanup() {
  local rc=$?
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then for i in 1 2 3; do log "--- host$i log"; tail -n 40 "$work/host$i.log" >&2 || true; done; fi
  for i in 1 2 3; do ip netns del "${tag}h$i" 2>/dev/null || true; done
  ip netns del "$br" 2>/dev/null || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

ip netns add "$br"
ip -n "$br" link add br0 type bridge
ip -n "$br" link set br0 up
for i in 1 2 3; do
  ns="${tag}h$i"
  ip netns add "$ns"
  ip link add "h$i" netns "$ns" type veth peer name "p$i" netns "$br"
  ip -n "$br" link set "p$i" master br0 up
  ip -n "$ns" addr add "10.231.0.$i/24" dev "h$i"
  ip -n "$ns" link set "h$i" up
  ip -n "$ns" link set lo up
done

keys=$(for i in 1 2 3; do sed -n "/authority_keys/,/]/p" configs/testnet/node1.toml; break; done)
for i in 1 2 3; do
  peers='[]'; [ "$i" -ne 1 ] && peers='["10.231.0.1:30333"]'
  cat >"$work/host$i.toml" <<TOML
node_id = "host$i"
[network]
network_id = "provchain-testnet"
bind_address = "10.231.0.$i"
listen_port = 30333
known_peers = $peers
[consensus]
is_authority = true
dev_key = $i
$keys
block_interval = "1s"
[storage]
data_dir = "$work/host$i"
[web]
host = "127.0.0.1"
port = 8080
[metrics]
host = "127.0.0.1"
port = 9090
TOML
  ip netns exec "${tag}h$i" "$bin" --config "$work/host$i.toml" >"$work/host$i.log" 2>&1 &
  pids+=($!)
done

q() { ip netns exec "${tag}h$1" curl -fsS "http://127.0.0.1:8080$2"; }
peers_ok() { [ "$(q "$1" /api/peers | jq 'length')" = 2 ]; }
final_height() { q "$1" /api/status | jq .finalized_height; }
best_height() { q "$1" /api/status | jq .height; }
hash_at() { q "$1" "/api/blocks/$2" | jq -r 'select(.final == true) | .hash'; }
final_at_least() { [ "$(final_height "$1")" -ge "$2" ]; }
tx_final() { [ "$(q "$1" "/api/transactions/$2" | jq -r .status)" = final ]; }
same_hash() { local a; a="$(hash_at "$1" "$3")"; [ -n "$a" ] && [ "$a" = "$(hash_at "$2" "$3")" ]; }

for i in 1 2 3; do wait_until 60 "host$i connected to both others" peers_ok "$i"; done
tx=$(ip netns exec "${tag}h1" curl -fsS -X POST http://127.0.0.1:8080/api/transactions \
  -H "Content-Type: application/json" -d '{"data":"<http://test> <http://p> \"v\" ."}' | jq -r .tx_id)
wait_until 30 "tx final on host3" tx_final 3 "$tx"
wait_until 30 "hosts agree" same_hash 1 3 "$(final_height 3)"

log "cutting host3's link for 30 s"
before=$(final_height 1)
declare -a snap
for h in $(seq 1 "$before"); do snap[$h]="$(hash_at 1 "$h")"; done
ip -n "$br" link set p3 down
f3=$(final_height 3); b3=$(best_height 3)
sleep 30  # the partition itself lasts 30 s by design
f1=$(final_height 1)
[ "$f1" -ge $((before + 5)) ] || fail "majority stopped finalizing ($before -> $f1)"
[ "$(final_height 3)" -le $((f3 + 1)) ] || fail "isolated host3 finalized alone"
[ "$(best_height 3)" -gt "$b3" ] || fail "isolated host3 stopped sealing"
log "minority sealed $(( $(best_height 3) - b3 )) non-final blocks; majority finalized $((f1 - before))"
ip -n "$br" link set p3 up
target=$(final_height 1)
wait_until 60 "host3 converges to final height $target" final_at_least 3 "$target"
wait_until 10 "host3 and host1 agree at $target" same_hash 1 3 "$target"
for i in 1 2 3; do
  for h in $(seq 1 "$before"); do
    [ "$(hash_at "$i" "$h")" = "${snap[$h]}" ] || fail "final block $h changed on host$i"
  done
done
log "multi-host test passed"
