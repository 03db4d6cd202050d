#!/usr/bin/env bash
# Set up what the benchmarks compare against, beyond what scripts/bootstrap.sh installs:
# cfssl (Debian package golang-cfssl: `cfssl` and `cfssljson`), the peer CA of benchmarks/pki.py.
# Idempotent: a second run installs nothing new. A benchmark whose peer is missing still runs and
# leaves that peer's row empty, so a failure here warns and does not stop `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(golang-cfssl)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "bootstrap-bench: missing Debian packages: ${missing[*]} (run as root, or install them);" \
    "the benchmarks leave their rows empty" >&2
  exit 0
fi
echo "bootstrap-bench: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "bootstrap-bench: could not install ${missing[*]}; the benchmarks leave their rows empty" >&2
fi
