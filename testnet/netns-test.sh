#!/usr/bin/env bash
# Multi-host test: three provchaind "hosts", each in its own network namespace with its own
# address (10.231.0.1-3) on a bridge that lives in a fourth namespace made here. Set up the way
# docs/DEPLOYMENT.md describes a production network: a key per host from `provchain keygen`,
# configs rendered from configs/production.toml with the same genesis (network_id,
# authority_keys in one order, block_interval) everywhere, seeds in PROVCHAIN_PEERS as IP
# addresses (host2 as a multiaddr, host3 as ip:port), both seeded only with host1.
#
# Checks: discovery (every host sees both others), a transaction POSTed to host1 final on host3,
# final chains that agree, `provchain status/peers` against a host; then host3's link is cut for
# 30 s: the minority keeps sealing but never finalizes, the majority keeps finalizing; after the
# link is restored host3 converges and no final block was reverted on any host.
# Needs root (ip netns), curl and jq. Cleans up namespaces, processes and files on any exit.
#
#   testnet/netns-test.sh [path/to/provchaind]   (default: cargo build --release)
# The CLI is taken from the same directory as provchaind (or $PROVCHAIN_CLI). NETNS_TEST_LOGS=DIR
# keeps the three node logs; RUST_LOG is passed to the nodes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. testnet/lib.sh

bin="${1:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --bin provchaind --bin provchain >&2
  target_dir="$(cargo metadata --format-version 1 --no-deps --offline | jq -r .target_directory)"
  bin="$target_dir/release/provchaind"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
cli="${PROVCHAIN_CLI:-$(dirname "$bin")/provchain}"
[ -x "$bin" ] || fail "no provchaind at $bin"
[ -x "$cli" ] || fail "no provchain CLI at $cli (set PROVCHAIN_CLI)"
[ "$(id -u)" = 0 ] || fail "needs root for ip netns"
for t in ip jq curl; do command -v "$t" >/dev/null || fail "needs $t"; done

started=$(date +%s)
tag="pc$$"
br="${tag}br"
work="$(mktemp -d /tmp/provchain-netns.XXXXXX)"
pids=()

cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ $rc -ne 0 ]; then
    for i in 1 2 3; do log "--- host$i log (tail)"; tail -n 40 "$work/host$i.log" >&2; done
  fi
  if [ -n "${NETNS_TEST_LOGS:-}" ]; then mkdir -p "$NETNS_TEST_LOGS" && cp "$work"/host*.log "$NETNS_TEST_LOGS/"; fi
  for i in 1 2 3; do ip netns del "${tag}h$i" 2>/dev/null; done
  ip netns del "$br" 2>/dev/null
  rm -rf "$work"
  [ $rc -eq 0 ] && log "multi-host test passed in $(( $(date +%s) - started ))s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "creating namespaces ${tag}h1..3 and bridge $br"
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

# Keys and genesis, as an operator does it (docs/DEPLOYMENT.md).
keys=()
for i in 1 2 3; do
  mkdir -p "$work/host$i"
  keys+=("$("$cli" keygen --out "$work/host$i/node.key" --json | jq -r .public_key)")
  [ "$(stat -c %a "$work/host$i/node.key")" = 600 ] || fail "keygen did not write mode 0600"
done
for i in 1 2 3; do
  render_production_config "host$i" netns-test "10.231.0.$i" "$work/host$i" "$work/host$i/node.key" \
    "${keys[@]}" >"$work/host$i.toml"
done

peers_for() {
  case $1 in
    1) echo "" ;;
    2) echo "/ip4/10.231.0.1/tcp/30333" ;;
    3) echo "10.231.0.1:30333" ;;
  esac
}
for i in 1 2 3; do
  ip netns exec "${tag}h$i" env -i PATH="$PATH" RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    PROVCHAIN_PEERS="$(peers_for "$i")" \
    "$bin" --config "$work/host$i.toml" >"$work/host$i.log" 2>&1 &
  pids+=($!)
done
log "started 3 hosts (network netns-test, 3 authorities from provchain keygen)"

q() { ip netns exec "${tag}h$1" curl -fsS --max-time 5 "http://127.0.0.1:8080$2"; }
peers_ok() { [ "$(q "$1" /api/peers | jq 'length')" = 2 ]; }
final_height() { q "$1" /api/status | jq -e .finalized_height; }
best_height() { q "$1" /api/status | jq -e .height; }
final_at_least() { [ "$(final_height "$1")" -ge "$2" ]; }
tx_final() { [ "$(q "$1" "/api/transactions/$2" | jq -r .status)" = final ]; }
# Hashes of final blocks 0..N (one request; genesis first).
final_hashes() { q "$1" "/api/blockchain/dump?from=0&limit=$(( $2 + 1 ))" | jq -r '.[].hash'; }
same_final() {
  local a b
  a="$(final_hashes "$1" "$3")"; b="$(final_hashes "$2" "$3")"
  [ "$(printf '%s\n' "$a" | wc -l)" -eq $(( $3 + 1 )) ] && [ "$a" = "$b" ]
}

for i in 1 2 3; do wait_until 60 "host$i connected to both others" peers_ok "$i"; done
for i in 1 2 3; do wait_until 20 "host$i ready" q "$i" /ready; done

log "smoke: a transaction submitted to host1 (the deployment guide's curl command)"
tx=$(ip netns exec "${tag}h1" curl -fsS -X POST http://127.0.0.1:8080/api/transactions \
  -H "Content-Type: application/json" -d '{"data":"<http://test> <http://p> \"v\" ."}' | jq -r .tx_id)
[ ${#tx} -eq 64 ] || fail "no tx_id from host1"
wait_until 30 "tx final on host3" tx_final 3 "$tx"
h=$(final_height 3)
all_agree() { same_final 1 2 "$1" && same_final 1 3 "$1"; }
wait_until 20 "host1..3 agree on the final chain up to $h" all_agree "$h"
l=(); for i in 1 2 3; do l+=("$(q "$i" /api/blockchain/dump | jq 'length')"); done
for i in 1 2; do
  d=$(( l[0] > l[i] ? l[0] - l[i] : l[i] - l[0] ))
  [ "$d" -le 2 ] || fail "dump lengths differ by more than the last interval: ${l[*]}"
done
log "dump lengths ${l[*]}"
ip netns exec "${tag}h2" "$cli" status --node http://127.0.0.1:8080 >"$work/status.txt" \
  || fail "provchain status failed"
ip netns exec "${tag}h2" "$cli" peers --node http://127.0.0.1:8080 >"$work/peers.txt" \
  || fail "provchain peers failed"
grep -q netns-test "$work/status.txt" || fail "provchain status does not show the network: $(cat "$work/status.txt")"
for i in 1 3; do
  pid="$(ip netns exec "${tag}h$i" "$cli" status --node http://127.0.0.1:8080 --json | jq -r .peer_id)"
  grep -q "$pid" "$work/peers.txt" || fail "provchain peers on host2 does not list host$i ($pid)"
done
log "provchain status / peers agree"

# Some history first, so "no final block reverted" covers a real chain.
wait_until 30 "host1 final height reaches 10" final_at_least 1 10
log "partition: cutting host3's link for 30 s"
before=$(final_height 1)
snap="$(final_hashes 1 "$before")"
ip -n "$br" link set p3 down
f3=$(final_height 3); b3=$(best_height 3)
sleep 30 & wait $!  # the partition itself lasts 30 s by design (wait: interruptible)
f1=$(final_height 1); f3_end=$(final_height 3); b3_end=$(best_height 3)
[ "$f1" -ge $((before + 5)) ] || fail "majority stopped finalizing ($before -> $f1)"
# One block may still become final on host3: its head from before the cut, once host3 seals on it.
[ "$f3_end" -le $((f3 + 1)) ] || fail "isolated host3 finalized alone ($f3 -> $f3_end)"
[ "$b3_end" -gt "$b3" ] || fail "isolated host3 stopped sealing ($b3 -> $b3_end)"
log "during the cut: majority finalized $((f1 - before)) blocks; host3 sealed $((b3_end - b3)) non-final blocks, final height $f3 -> $f3_end"
ip -n "$br" link set p3 up
target=$(final_height 1)
wait_until 90 "host3 converges to final height $target" final_at_least 3 "$target"
wait_until 20 "host3 and host1 agree up to $target" same_final 1 3 "$target"
wait_until 30 "host3 connected to both others again" peers_ok 3
for i in 1 2 3; do
  [ "$(final_hashes "$i" "$before")" = "$snap" ] || fail "a final block up to $before changed on host$i"
done
log "no final block reverted on any host (checked 0..$before); host3 final at $(final_height 3)"
