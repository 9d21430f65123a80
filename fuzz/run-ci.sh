#!/usr/bin/env bash
# Fuzz checks for CI and for people.
#
#   fuzz/run-ci.sh                replay mode (CI): every committed corpus input and crash
#                                 reproducer through every target, as a plain `cargo test`
#                                 (no libFuzzer instrumentation, no nightly features). Shares the
#                                 main workspace's target directory, so after the workspace tests
#                                 have built it only this crate compiles: well under a minute.
#   fuzz/run-ci.sh --live SECS    additionally fuzz each target for SECS seconds with cargo-fuzz
#                                 (libFuzzer) starting from the committed corpus; new inputs go to
#                                 a scratch directory, crashes to fuzz/artifacts/<target>/.
#                                 Needs `cargo install cargo-fuzz`; on a stable toolchain it runs
#                                 with RUSTC_BOOTSTRAP=1. The instrumented build takes ~9 min
#                                 on 2 cores the first time (cached in fuzz/target afterwards).
#
# The long runs recorded in docs/RELIABILITY.md are the live mode with SECS=120 or more, followed
# by `cargo fuzz cmin <target>` to fold new coverage into the committed corpus.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"

TARGETS=(consensus_block consensus_tx consensus_genesis wire_gossip wire_sync
         rdf_turtle rdf_ntriples rdf_nquads config_toml)

LIVE=0
if [[ "${1:-}" == "--live" ]]; then
    LIVE="${2:?usage: run-ci.sh --live SECONDS}"
fi

echo "== fuzz corpus replay ($(find corpus regressions -type f 2>/dev/null | wc -l) inputs)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" \
    cargo test --quiet --test corpus -- --nocapture corpus_replays_cleanly

if [[ "$LIVE" != 0 ]]; then
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
        exit 1
    fi
    if ! rustc --version | grep -q nightly; then
        export RUSTC_BOOTSTRAP=1
    fi
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    for t in "${TARGETS[@]}"; do
        echo "== cargo fuzz run $t (${LIVE}s)"
        mkdir -p "$scratch/$t"
        # -s none: the targets and our crates are safe Rust (unsafe_code = forbid), and without
        # AddressSanitizer libFuzzer runs 2-3x more inputs per second.
        rc=0
        cargo fuzz run -s none "$t" "$scratch/$t" "corpus/$t" -- \
            -max_total_time="$LIVE" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            >"$scratch/$t.log" 2>&1 || rc=$?
        grep -E '^(stat::number_of_executed_units|Done|==[0-9]+== ERROR|SUMMARY)' "$scratch/$t.log" || true
        if [[ "$rc" != 0 ]]; then
            tail -n 60 "$scratch/$t.log" >&2
            echo "$t: failed (exit $rc); reproducer in fuzz/artifacts/$t/" >&2
            exit 1
        fi
    done
fi
echo "== fuzz ok"
