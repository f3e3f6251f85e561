#!/usr/bin/env bash
# Tests tests/vm/fetch_kernel.sh against a small Debian archive built here (file: URI, unsigned,
# trusted), so that resolution, download, unpacking and the fallback to the cached kernel are
# checked offline and the same way every run.
#
# Every package record carries a large trailing field, so that apt-cache writes well past a pipe's
# buffer after the Filename line: a reader that quits early (grep -q) under `set -o pipefail` then
# fails the pipeline every time instead of now and then.
#
# Usage: tests/vm/fetch_kernel_test.sh [ROUNDS]   (default 20 resolutions in a row per flavor)
# Needs root (apt's private state under the cache, APT::Sandbox::User=root); exits 77 (skip)
# otherwise. Last line: "N passed, N failed".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FETCH=$HERE/fetch_kernel.sh
ROUNDS=${1:-20}

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: fetch_kernel.sh keeps apt state as root (APT::Sandbox::User=root); run as root"
  exit 77
fi
for tool in dpkg-deb apt-get sha256sum md5sum; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pb-fetch-kernel-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ARCHIVE=$WORK/archive
passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# A padding value of ~256 KiB in deb822 continuation lines.
PADDING=$(awk 'BEGIN { for (i = 0; i < 4096; i++) printf " %064d\n", i }')

# make_deb NAME VERSION DEPENDS [FILE...]: builds pool/NAME_VERSION_amd64.deb holding FILE
# (paths relative to the package root; each gets a few bytes of content).
make_deb() {
  local name=$1 version=$2 depends=$3 root f
  shift 3
  root=$WORK/src/$name-$version
  mkdir -p "$root/DEBIAN" "$ARCHIVE/pool"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: amd64"
    echo "Maintainer: pinbroker tests <tests@localhost>"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Description: test kernel package"
  } >"$root/DEBIAN/control"
  for f in "$@"; do
    mkdir -p "$root/$(dirname "$f")"
    echo "$name $version $f" >"$root/$f"
  done
  dpkg-deb --root-owner-group -Zgzip -b "$root" "$ARCHIVE/pool/${name}_${version}_amd64.deb" >/dev/null
}

# publish SUITE DEB...: writes dists/SUITE/{Release,main/binary-amd64/Packages} for the .debs
# (paths under the archive), each record followed by the padding field.
publish() {
  local suite=$1 deb dir
  shift
  dir=$ARCHIVE/dists/$suite/main/binary-amd64
  mkdir -p "$dir"
  : >"$dir/Packages"
  for deb in "$@"; do
    {
      dpkg-deb -f "$ARCHIVE/$deb"
      echo "Filename: $deb"
      echo "Size: $(stat -c %s "$ARCHIVE/$deb")"
      echo "MD5sum: $(md5sum "$ARCHIVE/$deb" | cut -d' ' -f1)"
      echo "SHA256: $(sha256sum "$ARCHIVE/$deb" | cut -d' ' -f1)"
      echo "X-Padding:"
      echo "$PADDING"
      echo
    } >>"$dir/Packages"
  done
  local size sha md5
  size=$(stat -c %s "$dir/Packages")
  sha=$(sha256sum "$dir/Packages" | cut -d' ' -f1)
  md5=$(md5sum "$dir/Packages" | cut -d' ' -f1)
  cat >"$ARCHIVE/dists/$suite/Release" <<EOF
Suite: $suite
Codename: $suite
Architectures: amd64
Components: main
Date: $(LC_ALL=C date -u -R)
MD5Sum:
 $md5 $size main/binary-amd64/Packages
SHA256:
 $sha $size main/binary-amd64/Packages
EOF
}

pool() { echo "pool/${1}_${2}_amd64.deb"; }
META=0  # linux-image-amd64's version, raised by each backports_suite

# The backports archive in the split form: linux-image-amd64 -> linux-image-KV (empty) ->
# linux-binary-KV (vmlinuz) + linux-modules-KV (modules, config).
split_kernel() {
  local kv=$1 v=$2 modules_files=${3:-full}
  make_deb "linux-binary-$kv" "$v" "" "boot/vmlinuz-$kv"
  if [ "$modules_files" = full ]; then
    make_deb "linux-modules-$kv" "$v" "" "usr/lib/modules/$kv/kernel/drivers/dummy.ko" "boot/config-$kv"
  else
    make_deb "linux-modules-$kv" "$v" "" "usr/share/doc/linux-modules-$kv/README"
  fi
  make_deb "linux-image-$kv" "$v" "linux-binary-$kv (= $v), linux-modules-$kv (= $v)"
}
backports_suite() {  # KV VERSION [KV VERSION]...: linux-image-amd64 depends on the first pair.
  local debs=() kv v first=""
  while [ $# -gt 0 ]; do
    kv=$1 v=$2; shift 2
    [ -n "$first" ] || first="linux-image-$kv (= $v)"
    debs+=("$(pool "linux-binary-$kv" "$v")" "$(pool "linux-modules-$kv" "$v")"
      "$(pool "linux-image-$kv" "$v")")
  done
  META=$((META + 1))
  make_deb linux-image-amd64 "$META" "$first"
  debs+=("$(pool linux-image-amd64 "$META")")
  publish trixie-backports "${debs[@]}"
}

SOURCES=$WORK/sources.list
echo "deb [trusted=yes] file:$ARCHIVE bookworm main" >"$SOURCES"
echo "deb [trusted=yes] file:$ARCHIVE trixie-backports main" >>"$SOURCES"
export PINBROKER_VM_SOURCES=$SOURCES

# run_fetch FLAVOR CACHE: runs fetch_kernel.sh, leaving its stdout in $OUT, stderr in $ERR, exit
# status in $RC.
run_fetch() {
  RC=0
  "$FETCH" "$1" "$2" >"$WORK/out" 2>"$WORK/err" || RC=$?
  OUT=$(cat "$WORK/out") ERR=$(cat "$WORK/err")
}
env_of() { sed -n "s/^$2=//p" "$1/kernel.env"; }

# --- Bookworm: the newest linux-image-6.1.0-N-amd64-unsigned, single-package form. ------------
for n in 9 10; do
  make_deb "linux-image-6.1.0-$n-amd64-unsigned" "6.1.$n-1" "" \
    "boot/vmlinuz-6.1.0-$n-amd64" "boot/config-6.1.0-$n-amd64" \
    "lib/modules/6.1.0-$n-amd64/kernel/drivers/dummy.ko"
done
publish bookworm "$(pool linux-image-6.1.0-9-amd64-unsigned 6.1.9-1)" \
  "$(pool linux-image-6.1.0-10-amd64-unsigned 6.1.10-1)"

CACHE=$WORK/cache
bad=0
for i in $(seq "$ROUNDS"); do
  run_fetch bookworm "$CACHE"
  if [ "$RC" != 0 ] || [ "$(env_of "$(tail -n1 <<<"$OUT")" PB_KV)" != 6.1.0-10-amd64 ]; then
    bad=1; echo "round $i: exit $RC, stdout '$OUT'"; echo "$ERR"; break
  fi
done
[ $bad = 0 ] && pass "bookworm: $ROUNDS resolutions in a row pick 6.1.0-10-amd64" ||
  fail "bookworm resolution"

# --- Backports: split form, resolved through linux-image-amd64. --------------------------------
split_kernel 7.3.4+deb13-amd64 7.3.4-1~bpo13+1
backports_suite 7.3.4+deb13-amd64 7.3.4-1~bpo13+1
bad=0
for i in $(seq "$ROUNDS"); do
  run_fetch backports "$CACHE"
  kdir=$(tail -n1 <<<"$OUT")
  if [ "$RC" != 0 ] || [ "$(env_of "$kdir" PB_KV)" != 7.3.4+deb13-amd64 ] ||
    [ ! -f "$(env_of "$kdir" PB_KVMLINUZ)" ] || [ -z "$(env_of "$kdir" PB_KCONFIG)" ] ||
    grep -q "no longer in the archive" <<<"$ERR"; then
    bad=1; echo "round $i: exit $RC, stdout '$OUT'"; echo "$ERR"; break
  fi
done
[ $bad = 0 ] && pass "backports: $ROUNDS resolutions in a row unpack 7.3.4 with its binary and modules parts" ||
  fail "backports resolution"

# --- A newer kernel whose modules part has no modules tree: fall back to the cached one. -------
split_kernel 7.3.5+deb13-amd64 7.3.5-1~bpo13+1 broken
backports_suite 7.3.5+deb13-amd64 7.3.5-1~bpo13+1 7.3.4+deb13-amd64 7.3.4-1~bpo13+1
run_fetch backports "$CACHE"
if [ "$RC" = 0 ] && [ "$(readlink "$(tail -n1 <<<"$OUT")")" = 7.3.4-1~bpo13+1 ] &&
  grep -q "no lib/modules" <<<"$ERR" && grep -q "WARNING: .*using the cached 7.3.4-1~bpo13+1" <<<"$ERR"; then
  pass "an unpack failure falls back to the cached kernel"
else
  fail "unpack fallback: exit $RC, stdout '$OUT'"; echo "$ERR"
fi

# --- A part that cannot be downloaded: fall back to the cached one. ----------------------------
split_kernel 7.3.6+deb13-amd64 7.3.6-1~bpo13+1
backports_suite 7.3.6+deb13-amd64 7.3.6-1~bpo13+1
rm -f "$ARCHIVE/$(pool linux-modules-7.3.6+deb13-amd64 7.3.6-1~bpo13+1)"
run_fetch backports "$CACHE"
if [ "$RC" = 0 ] && [ "$(readlink "$(tail -n1 <<<"$OUT")")" = 7.3.4-1~bpo13+1 ] &&
  grep -q "download of linux-modules-7.3.6" <<<"$ERR" && grep -q "WARNING:" <<<"$ERR"; then
  pass "a download failure falls back to the cached kernel"
else
  fail "download fallback: exit $RC, stdout '$OUT'"; echo "$ERR"
fi

# --- No cache and nothing that unpacks: a clear error, non-zero. -------------------------------
run_fetch backports "$WORK/empty-cache"
if [ "$RC" != 0 ] && grep -q "none is cached" <<<"$ERR"; then
  pass "without a cached kernel a failed fetch exits $RC naming the cache"
else
  fail "no-cache failure: exit $RC, stdout '$OUT'"; echo "$ERR"
fi

# --- The repaired kernel is taken again, and the broken trees are pruned. ----------------------
split_kernel 7.3.6+deb13-amd64 7.3.6-1~bpo13+1
backports_suite 7.3.6+deb13-amd64 7.3.6-1~bpo13+1
run_fetch backports "$CACHE"
if [ "$RC" = 0 ] && [ "$(readlink "$(tail -n1 <<<"$OUT")")" = 7.3.6-1~bpo13+1 ] &&
  [ "$(ls "$CACHE/kernels/backports" | grep -vc current)" = 1 ]; then
  pass "a good newer kernel replaces the cached one and older trees are pruned"
else
  fail "recovery: exit $RC, stdout '$OUT', trees: $(ls "$CACHE/kernels/backports")"; echo "$ERR"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
