#!/usr/bin/env bash
# Install the optional peers that `memmap bench` compares against when they
# are present: vmtouch (page-cache queries) and LMDB (commit rates).
# Nothing here is needed to build or test memmap. Debian/Ubuntu, as root.
set -euo pipefail
pkgs="vmtouch liblmdb-dev util-linux"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then echo "bench/setup.sh: all peers installed"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "bench/setup.sh: run as root to install:$missing" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
