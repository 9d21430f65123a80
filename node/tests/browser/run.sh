#!/usr/bin/env bash
# Browser test of the built-in web explorer (issue 9): headless Chromium against a real dev node.
#
# Installs what is missing (Debian's chromium + chromium-driver, Selenium from PyPI, or Debian's
# python3-selenium as a fallback), builds provchaind, and runs explorer_test.py. Screenshots land
# in target/explorer-screenshots/. Extra arguments go to explorer_test.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/../../.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import selenium' 2>/dev/null; then
  echo "== installing selenium"
  if ! "$PY" -m pip install -q 'selenium>=4.11'; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-selenium >/dev/null
    PY=/usr/bin/python3
  fi
fi

echo "== building provchaind"
cargo build -p provchain-node --bin provchaind
BIN="${CARGO_TARGET_DIR:-target}/debug/provchaind"

echo "== explorer browser test"
# Selenium Manager must never download a driver or browser: the paths are given explicitly.
export SE_OFFLINE=true
exec timeout 300 "$PY" node/tests/browser/explorer_test.py "$BIN" \
  --chromium "$(command -v chromium)" --chromedriver "$(command -v chromedriver)" "$@"
