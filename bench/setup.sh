#!/usr/bin/env bash
# Install the optional peers that `memmap bench` compares against when they
# are present: vmtouch (page-cache queries), LMDB (commit rates, loaded with
# dlopen: liblmdb0; liblmdb-dev for its header), jemalloc and mimalloc
# (small-object allocation, loaded with dlopen). Packages that this
# release of Debian/Ubuntu does not have are left out with a note.
# Nothing here is needed to build or test memmap. Debian/Ubuntu, as root.
set -euo pipefail
pkgs="vmtouch liblmdb0 liblmdb-dev util-linux libjemalloc2 libmimalloc2.0"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then echo "bench/setup.sh: all peers installed"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "bench/setup.sh: run as root to install:$missing" >&2
  exit 1
fi
apt-get update -qq
available=""
for p in $missing; do
  # A package with a candidate version can be installed here. (The policy
  # is read whole first: grep -q would close the pipe early, and pipefail
  # would count apt-cache's SIGPIPE as a failure.)
  policy=$(apt-cache policy "$p" 2>/dev/null || true)
  if printf '%s\n' "$policy" | grep -q 'Candidate: [^(]'; then
    available="$available $p"
  else
    echo "bench/setup.sh: $p is not available here; skipped" >&2
  fi
done
if [ -n "$available" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $available
fi
