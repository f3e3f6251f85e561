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
# The last line is the total over the three runs: "N passed, N failed, N skipped".
#
# Build trees live in build/<name>; ccache keeps rebuilds cheap.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

JOBS=${JOBS:-$(nproc)}
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
  setarch "$(uname -m)" -R ctest --test-dir build/clang-tsan -j "$JOBS" \
  --output-junit "$PWD/build/clang-tsan.junit.xml"

stage "gcc: AddressSanitizer + UndefinedBehaviorSanitizer"
configure asan-ubsan "-DPINBROKER_SANITIZE=address;undefined" -DPINBROKER_BUILD_BENCHMARKS=OFF
cmake --build build/asan-ubsan -j "$JOBS"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
  ctest --test-dir build/asan-ubsan -j "$JOBS" --output-junit "$PWD/build/asan-ubsan.junit.xml"

stage "gcc: -Wall -Wextra -Werror, all tests"
configure gcc
cmake --build build/gcc -j "$JOBS"
ctest --test-dir build/gcc -j "$JOBS" --output-junit "$PWD/build/gcc.junit.xml"

stage "summary"
scripts/junit_summary.py tsan=build/clang-tsan.junit.xml asan-ubsan=build/asan-ubsan.junit.xml \
  gcc=build/gcc.junit.xml
