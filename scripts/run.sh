#!/usr/bin/env bash
# The README's run command: installs what is missing (scripts/setup.sh run), builds pinbrokerd,
# pinctl, pinrdma (when rdma-core's libraries are there) and the Python client into build/release,
# and runs pinbrokerd in the foreground on its embedded default (one export "default" and a Unix
# socket, in per-user directories; backend chosen automatically). Extra arguments go to
# pinbrokerd, e.g. scripts/run.sh --export data=/srv/data --listen unix:/tmp/pb.sock
# Stop it with Ctrl-C: leases are recalled, then revoked, and it exits 0.
#
# The clients are linked into build/release/bin; the banner prints the `export PATH=...` line that
# makes `pinctl` and `pinrdma` work as typed in a second terminal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD

scripts/setup.sh run >&2
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
mkdir -p build
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPINBROKER_BUILD_TESTS=OFF \
  >build/release.configure.log 2>&1 || { cat build/release.configure.log; exit 1; }
targets=(pinbrokerd pinctl pinbroker_python)
available=$(cmake --build build/release --target help)
if grep -q '^pinrdma:' <<<"$available"; then targets+=(pinrdma); fi
cmake --build build/release --target "${targets[@]}" >&2

bin=$top/build/release/bin
mkdir -p "$bin"
ln -sfn ../broker/pinbrokerd "$bin/pinbrokerd"
ln -sfn ../clients/pinctl/pinctl "$bin/pinctl"
[ ! -x build/release/clients/pinrdma/pinrdma ] || ln -sfn ../clients/pinrdma/pinrdma "$bin/pinrdma"
{
  echo
  echo "Built into $bin. In another terminal, put the clients on PATH first:"
  echo "  export PATH=\"$bin:\$PATH\" PYTHONPATH=\"$top/build/release/python\""
  echo
} >&2
exec build/release/broker/pinbrokerd "$@"
