#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/e2e, the backtest report): never a downloaded
# browser build. Installs it when missing (root, apt); fails loudly when it cannot be had.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium: not installed; installing Debian's package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
echo "chromium: $(chromium --version 2>/dev/null | head -n 1)"
