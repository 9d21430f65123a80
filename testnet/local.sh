#!/usr/bin/env bash
# A local 3-authority testnet as three processes on 127.0.0.1 (no Docker).
#
#   testnet/local.sh start    build provchaind (release) and start node1..node3
#   testnet/local.sh status   heights, final heights and peer counts
#   testnet/local.sh stop     stop the nodes (SIGTERM)
#   testnet/local.sh clean    stop and delete ./data/testnet
#
# Node N uses configs/testnet/nodeN.toml: API on 127.0.0.1:808(N-1), metrics 909(N-1), P2P
# 3033(2+N). Nodes 2 and 3 are seeded only with node 1's address; Kademlia finds the rest.
# Set PROVCHAIN_BIN to use an existing binary instead of building one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
data="$root/data/testnet"

bin() {
  if [ -n "${PROVCHAIN_BIN:-}" ]; then echo "$PROVCHAIN_BIN"; return; fi
  cargo build --release --quiet --bin provchaind >&2
  # Honour CARGO_TARGET_DIR / .cargo/config: ask cargo where the target directory is.
  local target
  target="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  echo "${target:-$root/target}/release/provchaind"
}

start() {
  local b; b="$(bin)"
  mkdir -p "$data"
  for i in 1 2 3; do
    if [ -f "$data/node$i.pid" ] && kill -0 "$(cat "$data/node$i.pid")" 2>/dev/null; then
      echo "node$i already running (pid $(cat "$data/node$i.pid"))"; continue
    fi
    NO_COLOR=1 "$b" --config "configs/testnet/node$i.toml" >>"$data/node$i.log" 2>&1 &
    echo $! >"$data/node$i.pid"
    echo "node$i started (pid $!, API http://127.0.0.1:$((8079 + i)), log $data/node$i.log)"
  done
  for i in 1 2 3; do
    local port=$((8079 + i)) ok=""
    for _ in $(seq 1 100); do
      if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { echo "node$i did not become healthy; see $data/node$i.log" >&2; exit 1; }
  done
  echo "testnet up: curl http://127.0.0.1:8080/api/peers"
}

status() {
  for i in 1 2 3; do
    local port=$((8079 + i))
    if s=$(curl -fsS "http://127.0.0.1:$port/api/status" 2>/dev/null); then
      # Fields one by one: the JSON's key order is not part of the API.
      local h f p
      h=$(echo "$s" | sed -nE 's/.*"height":([0-9]+).*/\1/p')
      f=$(echo "$s" | sed -nE 's/.*"finalized_height":([0-9]+).*/\1/p')
      p=$(echo "$s" | sed -nE 's/.*"peers":([0-9]+).*/\1/p')
      echo "node$i height=$h final=$f peers=$p"
    else
      echo "node$i down"
    fi
  done
}

stop() {
  for i in 1 2 3; do
    local f="$data/node$i.pid"
    [ -f "$f" ] || continue
    local pid; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "node$i stopped"
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  clean) stop; rm -rf "$data" ;;
  *) echo "usage: $0 start|status|stop|clean" >&2; exit 2 ;;
esac
