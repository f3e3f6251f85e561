#!/usr/bin/env bash
# The README's test command: installs what is missing, then builds and tests pinbroker the way CI
# does. Usage: scripts/test.sh
#
#   1. clang-14 build with -Wthread-safety -Werror and ThreadSanitizer; runs the engine's tests
#      under TSan (tests/testing/tsan_absl_shim.cc lets TSan see Debian's uninstrumented
#      absl::Mutex; gRPC-based tests are left out, see tests/CMakeLists.txt).
#   2. GCC build with AddressSanitizer + UndefinedBehaviorSanitizer; runs every test.
#   3. GCC build with -Wall -Wextra -Werror (RelWithDebInfo, benchmarks included); runs every
#      test.
#   4. VM tests (tests/vm/run_suite.sh): the gcc build's programs in qemu on Debian 12's 6.1 kernel
#      and the newest trixie-backports kernel, with real soft-RoCE (rdma_rxe) and fs-dax. Set
#      PINBROKER_SKIP_VM=1 to skip them on a developer machine (CI never sets it).
# The last line is the total over all runs: "N passed, N failed, N skipped".
#
# Build trees live in build/<name>; ccache keeps rebuilds cheap.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

JOBS=${JOBS:-$(nproc)}
# A test that hangs fails after this many seconds instead of stalling CI (the slowest take ~10 s).
TEST_TIMEOUT=${PINBROKER_TEST_TIMEOUT:-300}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Share cache hits between clones at different paths (CI clones afresh every run).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
export CTEST_OUTPUT_ON_FAILURE=1
start=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - start)) s)"; }

configure() {
  local dir=$1; shift
  cmake -S . -B "build/$dir" -G Ninja -DPINBROKER_WERROR=ON "$@" >"build/$dir.configure.log" ||
    { cat "build/$dir.configure.log"; exit 1; }
}

mkdir -p build

stage "clang-14: -Wthread-safety -Werror + ThreadSanitizer"
configure clang-tsan -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DPINBROKER_THREAD_SAFETY=ON -DPINBROKER_SANITIZE=thread -DPINBROKER_BUILD_BENCHMARKS=OFF
cmake --build build/clang-tsan -j "$JOBS"
# TSan needs the classic address-space layout; setarch -R turns ASLR off for the run only.
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  setarch "$(uname -m)" -R ctest --test-dir build/clang-tsan -j "$JOBS" --timeout "$TEST_TIMEOUT" \
  --output-junit "$PWD/build/clang-tsan.junit.xml"

stage "gcc: AddressSanitizer + UndefinedBehaviorSanitizer"
configure asan-ubsan "-DPINBROKER_SANITIZE=address;undefined" -DPINBROKER_BUILD_BENCHMARKS=OFF
cmake --build build/asan-ubsan -j "$JOBS"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
  ctest --test-dir build/asan-ubsan -j "$JOBS" --timeout "$TEST_TIMEOUT" --output-junit "$PWD/build/asan-ubsan.junit.xml"

stage "gcc: -Wall -Wextra -Werror, all tests"
configure gcc
cmake --build build/gcc -j "$JOBS"
ctest --test-dir build/gcc -j "$JOBS" --timeout "$TEST_TIMEOUT" --output-junit "$PWD/build/gcc.junit.xml"

vm_reports=()
if [ "${PINBROKER_SKIP_VM:-0}" = 1 ]; then
  stage "VM tests skipped (PINBROKER_SKIP_VM=1)"
else
  stage "VM: soft-RoCE + fs-dax in qemu (Debian 12 6.1, newest trixie-backports)"
  rm -rf build/vm
  # Failures are counted from the JUnit reports below (a missing report counts as a failure).
  tests/vm/run_suite.sh --bin-dir build/gcc --junit-dir build/vm --log-dir build/vm || true
  vm_reports=(vm-bookworm=build/vm/vm-bookworm.junit.xml vm-backports=build/vm/vm-backports.junit.xml)
fi

stage "summary"
scripts/junit_summary.py tsan=build/clang-tsan.junit.xml asan-ubsan=build/asan-ubsan.junit.xml \
  gcc=build/gcc.junit.xml "${vm_reports[@]}"
