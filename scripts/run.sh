#!/usr/bin/env bash
# The README's run command: installs what is missing, builds pinbrokerd and pinctl, and runs
# pinbrokerd in the foreground on its embedded default (one export "default" and a Unix socket,
# in per-user directories; backend chosen automatically). Extra arguments go to pinbrokerd,
# e.g. scripts/run.sh --export data=/srv/data --listen unix:/tmp/pb.sock
# Stop it with Ctrl-C: leases are recalled, then revoked, and it exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh >&2
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
mkdir -p build
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPINBROKER_BUILD_BENCHMARKS=OFF >build/release.configure.log 2>&1 ||
  { cat build/release.configure.log; exit 1; }
cmake --build build/release --target pinbrokerd pinctl >&2
echo "pinctl is build/release/clients/pinctl/pinctl" >&2
exec build/release/broker/pinbrokerd "$@"
