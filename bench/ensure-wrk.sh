#!/usr/bin/env bash
# Install wrk (the load generator of bench/mo_ingest.py) when it is missing.
# Debian/Ubuntu package `wrk`; needs root or password-less sudo. Does nothing when wrk
# is already on PATH.
set -euo pipefail

command -v wrk >/dev/null 2>&1 && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "ensure-wrk: wrk is missing and this is not root; install it (apt-get install wrk)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-wrk: no apt-get here; install wrk yourself (https://github.com/wg/wrk)" >&2
  exit 1
fi
echo "ensure-wrk: installing wrk with apt-get" >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >&2
command -v wrk >/dev/null 2>&1 || { echo "ensure-wrk: wrk still missing" >&2; exit 1; }
