#!/usr/bin/env bash
# Fails when the client side depends on the daemon. Clients and daemon meet only on the wire:
# nothing under clients/ may include a header from broker/ (the gRPC service) or pinning/ (the
# engine), and no CMake target under clients/ may link pinbroker::broker, pinbroker::pinning,
# pinbroker::guard or pinbroker::rdma (the daemon's libraries). The layers below both sides are
# common/ (base), api/ (wire) and common/verbs/ (the verbs kit). The installed public headers
# (include/pinbroker/) include only each other, the generated API (pinbroker/v1/) and system or
# third-party headers: never a header of the tree (common/, api/, clients/, broker/, pinning/),
# which is not installed.
#
# Usage: tests/scripts/client_layering_test.sh [REPO_DIR]. Last line: "N passed, N failed".
set -euo pipefail
top=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$top"

passed=0 failed=0
check() {  # check NAME OUTPUT-OF-A-SEARCH (empty means clean)
  if [ -n "$2" ]; then
    echo "FAIL: $1:"
    sed 's/^/  /' <<<"$2"
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
}

sources=$(find clients common api -type f \( -name '*.cc' -o -name '*.h' \) | sort)
includes=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"(broker|pinning)/' \
  $(grep -E '^clients/' <<<"$sources") /dev/null || true)
check "clients/ includes daemon headers (broker/ or pinning/)" "$includes"

below=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"(broker|pinning|clients)/' \
  $(grep -E '^(common|api)/' <<<"$sources") /dev/null || true)
check "common/ or api/ include a header from a layer above them" "$below"

public=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"(common|api|clients|broker|pinning|tests)/' \
  $(find include -type f -name '*.h' | sort) /dev/null || true)
check "a public header (include/) includes a header that is not installed" "$public"

links=$(grep -nE 'pinbroker::(broker|pinning|guard|rdma)([^_[:alnum:]]|$)|pinbroker_(broker|pinning|guard|rdma)([^_[:alnum:]]|$)' \
  $(find clients -name CMakeLists.txt | sort) /dev/null || true)
check "a clients/ CMake target links a daemon library" "$links"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
