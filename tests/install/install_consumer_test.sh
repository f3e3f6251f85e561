#!/usr/bin/env bash
# Installs a pinbroker build tree into a temporary prefix and uses it from outside the source
# tree, as a consumer would:
#   1. `cmake --install BUILD_DIR --prefix TMP/prefix`; checks what landed (libraries, public and
#      generated headers, the CMake package, the .pc files, the programs) and that nothing
#      installed names the source or build tree.
#   2. Copies tests/install/consumer_cmake/ and consumer_pkgconfig/ to TMP and builds them there:
#      one with find_package(pinbroker CONFIG) + pinbroker::client, one with
#      `pkg-config --cflags --libs pinbroker-client`, and (when the RDMA client library was
#      built) one with pinbroker-rdma-client, which runs without an RDMA device.
#   3. Starts the installed sbin/pinbrokerd on a temporary Unix socket with a temporary export,
#      runs both client consumers against it and checks what they print, and stops it.
#
# Usage: tests/install/install_consumer_test.sh BUILD_DIR VERSION [CXX_COMPILER]
# Last line: "N passed, N failed".
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUILD_DIR VERSION [CXX_COMPILER]" >&2; exit 2; }
build=$(cd "$1" && pwd)
version=$2
cxx=${3:-c++}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)

# The programs and the library read no endpoint or session from the caller's environment here.
unset PINBROKER_ENDPOINT PINBROKER_SESSION PINBROKER_TOKEN

# Short path: a Unix socket path must stay under 108 bytes.
tmp=$(mktemp -d /tmp/pbinstall.XXXXXX)
prefix=$tmp/prefix
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0 failed=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit
}
# run NAME LOG CMD...: runs CMD with its output in LOG; on failure shows LOG and stops the test
# (later steps need this one).
run() {
  local name=$1 log=$2; shift 2
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name (exit $?): $*"
    sed 's/^/  | /' "$log"
    finish
  fi
}
# expect NAME FILE REGEX: FILE has a line matching the extended REGEX.
expect() {
  if grep -qE "$3" "$2"; then
    pass "$1"
  else
    fail "$1: no line matching /$3/ in:"
    sed 's/^/  | /' "$2"
  fi
}

# Compiler cache for the consumers, when there is one (keyed relative to TMP, which changes).
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$tmp CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

# --- 1. install -------------------------------------------------------------------------------
run "cmake --install into a temporary prefix" "$tmp/install.log" \
  cmake --install "$build" --prefix "$prefix"

config=$(find "$prefix" -name pinbrokerConfig.cmake -print -quit)
pc=$(find "$prefix" -name pinbroker-client.pc -print -quit)
if [ -z "$config" ] || [ -z "$pc" ]; then
  fail "pinbrokerConfig.cmake and pinbroker-client.pc installed"
  find "$prefix" -type f | sed "s|^$prefix/|  | |"
  finish
fi
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
rdma=0
if [ -f "$pcdir/pinbroker-rdma-client.pc" ]; then rdma=1; fi

missing=()
for f in sbin/pinbrokerd bin/pinctl include/pinbroker/client.h include/pinbroker/log_sink.h \
         include/pinbroker/rdma_wire.h include/pinbroker/v1/pinbroker.pb.h \
         include/pinbroker/v1/pinbroker.grpc.pb.h include/pinbroker/v1/pinbroker.proto; do
  [ -e "$prefix/$f" ] || missing+=("$f")
done
for lib in pinbroker_client pinbroker_api pinbroker_api_proto pinbroker_common; do
  [ -e "$libdir/lib$lib.a" ] || missing+=("${libdir#"$prefix"/}/lib$lib.a")
done
if [ "$rdma" = 1 ]; then
  for f in bin/pinrdma include/pinbroker/rdma_connection.h include/pinbroker/rdma_lease.h \
           include/pinbroker/rdma_transfer_checks.h; do
    [ -e "$prefix/$f" ] || missing+=("$f")
  done
  for lib in pinbroker_rdma_client pinbroker_verbs; do
    [ -e "$libdir/lib$lib.a" ] || missing+=("${libdir#"$prefix"/}/lib$lib.a")
  done
fi
if [ ${#missing[@]} -eq 0 ]; then
  pass "programs, libraries and headers installed (rdma client: $rdma)"
else
  fail "not installed: ${missing[*]}"
fi

# Only pinbroker/ under include/: the internal headers (common/, api/, clients/) stay in the tree.
others=$(find "$prefix/include" -mindepth 1 -maxdepth 1 ! -name pinbroker)
if [ -z "$others" ]; then pass "include/ holds pinbroker/ only"; else fail "also in include/: $others"; fi

# The package must not point back into the tree it was built from.
leaks=$(grep -rlF -e "$source_dir" -e "$build" "$(dirname "$config")" "$pcdir" || true)
if [ -z "$leaks" ]; then
  pass "the CMake package and .pc files name neither the source nor the build tree"
else
  fail "files naming the source or build tree: $leaks"
  grep -rnF -e "$source_dir" -e "$build" $leaks | sed 's/^/  | /'
fi

# --- 2. build the consumers outside the tree ---------------------------------------------------
cp -r "$here/consumer_cmake" "$here/consumer_pkgconfig" "$tmp/"

run "consumer_cmake configures with find_package(pinbroker)" "$tmp/cmake-configure.log" \
  cmake -S "$tmp/consumer_cmake" -B "$tmp/consumer_cmake/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}"
expect "find_package found pinbroker $version in the prefix" "$tmp/cmake-configure.log" \
  "pinbroker $version from $prefix/"
run "consumer_cmake builds against pinbroker::client" "$tmp/cmake-build.log" \
  cmake --build "$tmp/consumer_cmake/build"

export PKG_CONFIG_PATH=$pcdir
run "pkg-config knows pinbroker-client" "$tmp/pc-version.log" \
  pkg-config --modversion pinbroker-client
expect "pinbroker-client.pc has version $version" "$tmp/pc-version.log" "^$version\$"
compile_with_pc() {  # compile_with_pc MODULE SOURCE OUTPUT
  local flags
  flags=$(pkg-config --cflags --libs "$1")
  # Unquoted: the flags are words.
  # shellcheck disable=SC2086
  "$cxx" -std=c++20 -O1 -o "$3" "$2" $flags
}
syntax_check() {  # syntax_check MODULE STD HEADER...
  local module=$1 std=$2 flags; shift 2
  flags=$(pkg-config --cflags "$module")
  # shellcheck disable=SC2086
  printf '#include "%s"\n' "$@" | "$cxx" -std="$std" -fsyntax-only $flags -x c++ -
}
run "the public headers compile as C++17" "$tmp/cxx17.log" \
  syntax_check pinbroker-client c++17 pinbroker/client.h pinbroker/log_sink.h \
  pinbroker/rdma_wire.h pinbroker/v1/pinbroker.grpc.pb.h
run "consumer_pkgconfig builds with pkg-config pinbroker-client" "$tmp/pc-build.log" \
  compile_with_pc pinbroker-client "$tmp/consumer_pkgconfig/info_consumer.cc" "$tmp/info_consumer"
if [ "$rdma" = 1 ]; then
  run "rdma_check builds with pkg-config pinbroker-rdma-client" "$tmp/pc-rdma-build.log" \
    compile_with_pc pinbroker-rdma-client "$tmp/consumer_pkgconfig/rdma_check.cc" \
    "$tmp/rdma_check"
  run "rdma_check runs" "$tmp/rdma-check.log" "$tmp/rdma_check"
  run "the RDMA client's public headers compile as C++17" "$tmp/cxx17-rdma.log" \
    syntax_check pinbroker-rdma-client c++17 pinbroker/rdma_connection.h pinbroker/rdma_lease.h \
    pinbroker/rdma_transfer_checks.h
  expect "rdma_check: WRITE on a read-only lease refused" "$tmp/rdma-check.log" \
    "^write on read-only lease: PERMISSION_DENIED$"
  expect "rdma_check: READ past the lease refused" "$tmp/rdma-check.log" \
    "^read past the end: OUT_OF_RANGE$"
  expect "rdma_check: attach handshake's default port" "$tmp/rdma-check.log" \
    "^rdma_cm default port 7471, op_timeout 30s$"
else
  echo "note: this build has no RDMA client library (no libibverbs/librdmacm): no rdma_check"
fi

# --- 3. run the consumers against the installed pinbrokerd -------------------------------------
mkdir -p "$tmp/exp"
endpoint=unix:$tmp/s.sock
"$prefix/sbin/pinbrokerd" --listen "$endpoint" --export "default=$tmp/exp" --backend host \
  --state_dir "$tmp/state" --runtime_dir "$tmp/run" >"$tmp/pinbrokerd.log" 2>&1 &
daemon_pid=$!
healthy=0
for _ in $(seq 200); do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then break; fi
  if "$prefix/bin/pinctl" --endpoint "$endpoint" --timeout 5s health >"$tmp/health.log" 2>&1; then
    healthy=1
    break
  fi
  sleep 0.05  # Readiness poll of a starting process, not a timer wait.
done
if [ "$healthy" = 1 ]; then
  pass "installed pinbrokerd serves (installed pinctl health)"
else
  fail "installed pinbrokerd did not become healthy"
  sed 's/^/  | /' "$tmp/health.log" "$tmp/pinbrokerd.log"
  finish
fi

out=$tmp/pin_consumer.out
if "$tmp/consumer_cmake/build/pin_consumer" "$endpoint" default "$tmp/exp" >"$out" 2>&1; then
  pass "pin_consumer runs against the broker"
else
  fail "pin_consumer exited with $?"
fi
expect "pin_consumer wrote its file" "$out" "^wrote consumer.dat 20000 bytes$"
expect "pin_consumer opened a session" "$out" "^session open yes$"
# [5000, 13192) held as the whole pages covering it: [4096, 16384).
expect "pin_consumer pinned the pages of its range" "$out" \
  "^pinned consumer.dat range 4096\+12288 state granted$"
expect "GetInfo: version, export and the live lease" "$out" \
  "^info version $version exports default live_leases 1$"
expect "pin_consumer released the lease" "$out" "^released state released$"
expect "GetInfo after release: no live lease" "$out" "^info after release live_leases 0$"
expect "pin_consumer closed its session" "$out" "^closed$"

out=$tmp/info_consumer.out
if "$tmp/info_consumer" "$endpoint" >"$out" 2>&1; then
  pass "info_consumer runs against the broker"
else
  fail "info_consumer exited with $?"
fi
expect "info_consumer read GetInfo" "$out" "^broker $version backend host exports 1$"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
if [ "$status" = 0 ]; then
  pass "pinbrokerd exits 0 on SIGTERM"
else
  fail "pinbrokerd exited with $status on SIGTERM"
  sed 's/^/  | /' "$tmp/pinbrokerd.log"
fi
if [ "$failed" != 0 ]; then
  echo "pinbrokerd log:"
  sed 's/^/  | /' "$tmp/pinbrokerd.log"
fi
finish
