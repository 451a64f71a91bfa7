#!/usr/bin/env bash
# Install concept and what its demo, tests and benchmarks need, on a fresh Debian machine.
#   bash scripts/install.sh          # the library + the OpenClipart demo collection
#   bash scripts/install.sh --dev    # + test tools (and the Ray extra), the Fashion-MNIST data set and Debian's chromium
#                                    #   (the explorer's browser tests drive it with Playwright's Python
#                                    #   package; never `playwright install`, which downloads a browser)
# torch is pinned to 2.13.0: a bare `torch` requirement pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# Real image collections from Debian (data only; the library itself needs none of them), and
# with --dev the browser for the explorer's tests.
packages="openclipart-png openclipart-svg"
[ $dev -eq 1 ] && packages="$packages dataset-fashion-mnist chromium"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# Wait up to 10 minutes for another apt/dpkg process (e.g. unattended-upgrades on a fresh
# machine) to release its lock, instead of failing at once with exit 100.
lock_wait="-o DPkg::Lock::Timeout=600"
if [ -n "$missing" ]; then
  $sudo apt-get $lock_wait update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get $lock_wait install -y -qq $missing >/dev/null
fi

python3 -m pip install -q torch==2.13.0
if [ $dev -eq 1 ]; then
  python3 -m pip install -q -e ".[dev,ray]"  # ray: the tests of concept.distributed
else
  python3 -m pip install -q -e .
fi
