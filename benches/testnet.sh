#!/usr/bin/env bash
# Network benchmarks on a 3-authority testnet of real processes on loopback.
#
#   benches/testnet.sh load [bench args...]   start a fresh testnet, run `provchain bench`
#                                             against all three nodes, print the nodes'
#                                             block propagation and commit histograms, stop
#   benches/testnet.sh idle [seconds]         start a fresh testnet, wait, print RSS, stop
#   benches/testnet.sh sync BLOCKS [TXS]      write a chain of BLOCKS final blocks (TXS
#                                             transactions of 10 triples each, default 0)
#                                             into nodes 1 and 2, start them, then time a
#                                             fresh 4th node (an observer the authorities
#                                             allow) syncing all of it
#   benches/testnet.sh startup BLOCKS [TXS]   write such a chain into node 1 and time its
#                                             start to the first 200 from /health
#   benches/testnet.sh bursts [ROUNDS] [TXS]  start a fresh testnet; ROUNDS times, send a
#                                             burst of TXS transactions (default 10 x 1000,
#                                             ~1 MiB) to node 1 and let the network go idle;
#                                             print how the block propagation samples spread
#                                             (between bursts blocks are empty, so the slow
#                                             tail is the burst blocks) and the largest blocks
#   benches/testnet.sh start | stop           leave a testnet running / stop it
#
# Ports (chosen to stay clear of a developer's own nodes): P2P 40333-40336, API
# 18081-18084, metrics 19091-19094. Data and logs go to $BENCH_DIR (default
# /tmp/provchain-bench). Binaries: $PROVCHAIND and $PROVCHAIN, default target/release/.
# Every figure in docs/PERFORMANCE.md that needs a network came from this script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${BENCH_DIR:-/tmp/provchain-bench}"
target="${CARGO_TARGET_DIR:-$root/target}"
provchaind="${PROVCHAIND:-$target/release/provchaind}"
provchain="${PROVCHAIN:-$target/release/provchain}"
# Writes long chains straight into a database (cargo build --release -p provchain-storage
# --example build_chain).
build_chain="${BUILD_CHAIN:-$target/release/examples/build_chain}"
api=(http://127.0.0.1:18081 http://127.0.0.1:18082 http://127.0.0.1:18083)
metrics=(http://127.0.0.1:19091 http://127.0.0.1:19092 http://127.0.0.1:19093)

die() { echo "testnet.sh: $*" >&2; exit 1; }
[ -x "$provchaind" ] || die "no provchaind at $provchaind (cargo build --release, or set PROVCHAIND)"
[ -x "$provchain" ] || die "no provchain at $provchain (cargo build --release, or set PROVCHAIN)"

init() {
  rm -rf "$dir"
  "$provchain" testnet init --out "$dir" --base-port 40333 --api-base-port 18081 \
    --metrics-base-port 19091 --network-id bench-local >/dev/null
  # A 4th node, an observer the authorities allow (used by `sync`).
  mkdir -p "$dir/node4"
  local peer
  peer=$("$provchain" keygen --out "$dir/node4/node.key" --json 2>/dev/null |
    sed -n -E 's/.*"peer_id": *"([^"]+)".*/\1/p')
  for i in 1 2 3; do
    sed -i -E "s|^(known_peers = .*)$|\1\nallowed_peers = [\"$peer\"]|" "$dir/node$i.toml"
  done
  sed -e 's/^node_id = .*/node_id = "node4"/' -e 's/^is_authority = true/is_authority = false/' \
    -e 's/40335/40336/; s/18083/18084/; s/19093/19094/' -e "s|$dir/node3|$dir/node4|g" \
    "$dir/node3.toml" >"$dir/node4.toml"
}

start_node() { # index (1-based), extra env...
  local i=$1; shift
  env "$@" "$provchaind" --config "$dir/node$i.toml" >>"$dir/node$i.log" 2>&1 &
  echo $! >"$dir/node$i.pid"
}

wait_health() { # url
  for _ in $(seq 1 200); do
    curl -fsS "$1/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "$1 did not become healthy"
}

wait_peers() { # url count
  for _ in $(seq 1 300); do
    local n
    n=$(curl -fsS "$1/api/status" 2>/dev/null | sed -E 's/.*"peers":([0-9]+).*/\1/' || echo 0)
    [ "${n:-0}" -ge "$2" ] && return 0
    sleep 0.1
  done
  die "$1 did not reach $2 peers"
}

final_height() { curl -fsS "$1/api/status" | sed -E 's/.*"finalized_height":([0-9]+).*/\1/'; }

start() {
  init
  for i in 1 2 3; do start_node "$i"; done
  for i in 0 1 2; do wait_health "${api[$i]}"; done
  for i in 0 1 2; do wait_peers "${api[$i]}" 2; done
  # Let finality start moving.
  local h0; h0=$(final_height "${api[0]}")
  for _ in $(seq 1 100); do
    [ "$(final_height "${api[0]}")" -gt "$h0" ] && break
    sleep 0.1
  done
  echo "testnet up in $dir: ${api[*]}" >&2
}

stop() {
  for i in 1 2 3 4; do
    local f="$dir/node$i.pid"
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$f"
  done
}

# p50/p99 of a Prometheus histogram summed over the nodes, by linear interpolation in
# the buckets (the way histogram_quantile does).
histogram() { # metric-name
  local name=$1
  for m in "${metrics[@]}"; do curl -fsS "$m/metrics"; done | awk -v n="$name" '
    $1 ~ "^"n"_bucket" {
      match($1, /le="[^"]+"/); le = substr($1, RSTART + 4, RLENGTH - 5)
      c[le] += $2; if (!(le in seen)) { seen[le] = 1; order[k++] = le }
    }
    $1 == n"_count" { total += $2 }
    $1 == n"_sum" { sum += $2 }
    END {
      if (total == 0) { printf "%s: no samples\n", n; exit }
      # Buckets in ascending order of their bound.
      for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) {
        a = order[i] == "+Inf" ? 1e300 : order[i] + 0; b = order[j] == "+Inf" ? 1e300 : order[j] + 0
        if (b < a) { t = order[i]; order[i] = order[j]; order[j] = t }
      }
      split("0.5 0.99", qs, " ")
      out = sprintf("%s: %d samples, mean %.4f s", n, total, sum / total)
      for (q in qs) {
        want = qs[q] * total; prev = 0; prevc = 0
        for (i = 0; i < k; i++) {
          le = order[i]; cnt = c[le]
          if (cnt >= want) {
            hi = le == "+Inf" ? prev : le + 0
            v = (cnt == prevc) ? hi : prev + (hi - prev) * (want - prevc) / (cnt - prevc)
            out = out sprintf(", p%g <= %.4f s", qs[q] * 100, v); break
          }
          prev = le + 0; prevc = cnt
        }
      }
      print out
    }'
}

# Block propagation samples per bucket bound (cumulative), summed over the nodes.
propagation_spread() {
  for m in "${metrics[@]}"; do curl -fsS "$m/metrics"; done |
    awk '$1 ~ /^provchain_block_propagation_seconds_bucket/ {
           match($1, /le="[^"]+"/); le = substr($1, RSTART + 4, RLENGTH - 5); c[le] += $2
         }
         END { printf "propagation samples at or below:"
               n = split("0.001 0.0025 0.005 0.0075 0.01 0.015 0.02 0.025 0.05 +Inf", b, " ")
               for (i = 1; i <= n; i++) printf " %s s: %d", b[i], c[b[i]]
               print "" }'
}

# How gossiped compact blocks became full blocks, summed over the nodes.
compact_outcomes() {
  for m in "${metrics[@]}"; do curl -fsS "$m/metrics"; done |
    awk '$1 ~ /^provchain_compact_blocks_total/ {
           match($1, /outcome="[^"]+"/); c[substr($1, RSTART + 9, RLENGTH - 10)] += $2
         }
         END { printf "compact blocks: %d rebuilt, %d fetched by sync\n", c["complete"], c["fetched"] }'
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  load)
    shift
    trap stop EXIT
    start
    pids=$(cat "$dir"/node{1,2,3}.pid | paste -sd, -)
    "$provchain" bench --node "$(IFS=,; echo "${api[*]}")" --pid "$pids" "$@"
    histogram provchain_block_propagation_seconds
    histogram provchain_block_arrival_seconds
    histogram provchain_block_handoff_seconds
    histogram provchain_block_import_seconds
    histogram provchain_block_commit_seconds
    propagation_spread
    compact_outcomes
    for i in 1 2 3; do
      echo "node$i: $(grep VmRSS "/proc/$(cat "$dir/node$i.pid")/status" | tr -s ' ')"
    done
    ;;
  bursts)
    rounds=${2:-10}
    txs=${3:-1000}
    trap stop EXIT
    start
    for _ in $(seq 1 "$rounds"); do
      "$provchain" bench --node "${api[0]}" --rate "$((txs * 5))" --duration 200ms \
        --concurrency 1024 --drain 10s >/dev/null
      sleep 2
    done
    histogram provchain_block_propagation_seconds
    histogram provchain_block_arrival_seconds
    compact_outcomes
    propagation_spread
    curl -fsS "${api[0]}/api/blockchain/dump?from=0" | python3 -c '
import json, sys
blocks = json.load(sys.stdin)
blocks = blocks.get("blocks", blocks) if isinstance(blocks, dict) else blocks
sizes = sorted((len(b.get("transactions", [])) for b in blocks), reverse=True)
print("largest blocks (transactions):", sizes[:2 * '"$rounds"'])'
    ;;
  idle)
    trap stop EXIT
    start
    sleep "${2:-60}"
    for i in 1 2 3; do
      echo "node$i idle after ${2:-60} s: $(grep VmRSS "/proc/$(cat "$dir/node$i.pid")/status" | tr -s ' ')"
    done
    histogram provchain_block_propagation_seconds
    histogram provchain_block_arrival_seconds
    ;;
  sync|startup)
    blocks=${2:?usage: testnet.sh $1 BLOCKS [TXS_PER_BLOCK]}
    txs=${3:-0}
    [ -x "$build_chain" ] || die "no build_chain at $build_chain (see the top of this script)"
    trap stop EXIT
    init
    interval=$(sed -n -E 's/^block_interval = "([0-9]+)s"/\1/p' "$dir/node1.toml")
    "$build_chain" --db "$dir/node1/db" --network-id bench-local \
      --interval-ms "$((interval * 1000))" --blocks "$blocks" --txs "$txs" \
      --keys "$dir/node1/node.key,$dir/node2/node.key,$dir/node3/node.key"
    if [ "$1" = startup ]; then
      started=$(date +%s.%N)
      start_node 1
      wait_health "${api[0]}"
      ended=$(date +%s.%N)
      echo "node1 answered /health $(echo "$ended - $started" | bc) s after start, on $(curl -fsS "${api[0]}/api/status" | sed -E 's/.*"triples":([0-9]+).*/\1/') stored quads (process start to first 200)"
      echo "node1 RSS just after start: $(grep VmRSS "/proc/$(cat "$dir/node1.pid")/status" | tr -s ' ')"
      exit 0
    fi
    cp -r "$dir/node1/db" "$dir/node2/db"
    start_node 1
    start_node 2
    wait_health "${api[0]}"
    wait_health "${api[1]}"
    wait_peers "${api[0]}" 1
    target=$(final_height "${api[0]}")
    started=$(date +%s.%N)
    start_node 4
    wait_health http://127.0.0.1:18084
    while [ "$(final_height http://127.0.0.1:18084)" -lt "$target" ]; do sleep 0.05; done
    ended=$(date +%s.%N)
    quads=$(curl -fsS http://127.0.0.1:18084/api/status | sed -E 's/.*"triples":([0-9]+).*/\1/')
    echo "fresh observer synced $target final blocks ($quads quads) in $(echo "$ended - $started" | bc) s (process start to final height reached)"
    ;;
  *) sed -n '2,26p' "$0"; exit 2 ;;
esac
