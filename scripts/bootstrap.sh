#!/usr/bin/env bash
# Creates (or refreshes) .venv with Corral and its development tools. Idempotent: it
# reinstalls only when pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Debian packages the tests drive for real: Chromium (dashboard browser tests through
# Playwright; Playwright's own browser download cannot work offline) and Prometheus with
# promtool (a real scrape, and `promtool test rules` on the shipped alert rules).
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${need[*]} from Debian" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "bootstrap: ${need[*]} missing and not installable here (needs root and apt-get); the tests that drive them will skip" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.corral-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # torch (CPU build) for the torch.distributed example and its test; the pin matches the
  # wheel this project's machines carry, so no multi-GB CUDA build is fetched.
  .venv/bin/python -m pip install -q "torch==2.13.0" || echo "bootstrap: torch unavailable; the DDP example and its test will be skipped" >&2
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
