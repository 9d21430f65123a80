# Shared helpers for the testnet scripts (sourced). Every wait has a deadline.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.25 s until it succeeds.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then fail "timed out after ${secs}s waiting for: $what"; fi
    sleep 0.25
  done
  log "ok: $what"
}

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo "docker-compose"; fi
}

# render_production_config NODE_ID NETWORK_ID BIND_ADDRESS DATA_DIR KEY_FILE KEY...:
# configs/production.toml on stdout with one node's values filled in, as docs/DEPLOYMENT.md
# tells an operator to do: the same network_id, authority_keys (in this order) and
# block_interval on every node. known_peers is emptied (seeds come from PROVCHAIN_PEERS).
render_production_config() {
  local id=$1 net=$2 addr=$3 dir=$4 keyfile=$5; shift 5
  local keys; keys="$(printf '  "%s",\n' "$@")"
  awk -v id="$id" -v net="$net" -v addr="$addr" -v dir="$dir" -v keyfile="$keyfile" -v keys="$keys" '
    /^node_id *=/        { print "node_id = \"" id "\""; next }
    /^network_id *=/     { print "network_id = \"" net "\""; next }
    /^bind_address *=/   { print "bind_address = \"" addr "\""; next }
    /^known_peers *=/    { print "known_peers = []"; next }
    /^# *key_file *=/    { print "key_file = \"" keyfile "\""; done_key = 1; next }
    /^data_dir *=/       { print "data_dir = \"" dir "\""; next }
    /^authority_keys *= *\[/ { print "authority_keys = ["; print keys; skip = 1; next }
    skip && /^\]/        { skip = 0; print "]"; next }
    skip                 { next }
    { print }
    END { if (!done_key) exit 3 }
  ' "${PROVCHAIN_ROOT:-.}/configs/production.toml" \
    || fail "cannot render configs/production.toml (did its key_file or authority_keys lines change?)"
}
