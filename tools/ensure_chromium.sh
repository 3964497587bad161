#!/usr/bin/env bash
# Make sure a headless Chromium for the console's browser tests is installed (Debian's
# `chromium` package, driven by npm playwright-core). Idempotent: does nothing when present.
# CHROMIUM=/path/to/chromium uses another binary. Installing needs root (or password-less sudo).
set -euo pipefail
binary="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$binary" ]; then
  exit 0
fi
if [ -n "${CHROMIUM:-}" ]; then
  echo "CHROMIUM=$binary is not an executable" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium is missing and installing it needs root: run 'sudo apt-get install -y --no-install-recommends chromium'" >&2
  exit 1
fi
echo "installing Debian's chromium for the console's browser tests (about 125 MB) ..."
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null
fi
"$binary" --version
