#!/usr/bin/env bash
# Resolves, downloads and unpacks a Debian kernel for the VM tests, without installing it and
# without touching the system's apt configuration.
#
# Usage: tests/vm/fetch_kernel.sh <bookworm|backports> [CACHE_DIR]
#
#   bookworm   Debian 12's own newest linux-image-6.1.0-N-amd64-unsigned (from the bookworm,
#              bookworm-updates and bookworm-security suites the system's sources name).
#   backports  The newest kernel in trixie-backports, found through its linux-image-amd64
#              metapackage; both the single-package form (linux-image-X-amd64) and the split form
#              of 6.19+ (an empty linux-image-X plus linux-binary-/linux-modules-/linux-base-X)
#              are handled.
#
# The mirror URI is taken at run time from the system's own sources (/etc/apt/sources.list,
# sources.list.d/*.list and *.sources); a private sources list, list directory and archive
# directory under the cache keep apt's state apart from the system's.
#
# Cache (default $PINBROKER_VM_CACHE, else /var/cache/pinbroker-vm, else ~/.cache/pinbroker-vm):
#   debs/                       downloaded .debs, reused while the resolved version is unchanged
#   apt/<flavor>/               private sources.list and package lists
#   kernels/<flavor>/<version>/ unpacked tree (root/), depmod run, kernel.env describing it
#   kernels/<flavor>/current    symlink to the last good version
# Versions are re-resolved on every run; when resolution or download fails and a cached kernel
# exists, the cached one is used (with a warning on stderr). Older versions of the same flavor
# are pruned after a successful fetch.
#
# PINBROKER_VM_KERNEL_PACKAGE=linux-image-X names an image package to take instead of the newest.
# PINBROKER_VM_SOURCES=FILE takes the one-line 'deb' entries of FILE for the flavor's suites, options
# included, instead of deriving them from the system's sources (tests/vm/fetch_kernel_test.sh points
# it at a local archive it builds).
#
# Under `set -o pipefail` no pipeline here ends in a reader that quits early (grep -q, head, awk's
# exit): the writer would die of SIGPIPE and fail the pipeline at random. Output is captured in a
# variable first, or the reader reads to the end.
#
# Prints the kernel directory (containing kernel.env) as the last line on stdout. kernel.env sets
# PB_KFLAVOR, PB_KPKGVERSION, PB_KV (uname -r), PB_KROOT, PB_KMODDIR, PB_KVMLINUZ, PB_KCONFIG.
set -euo pipefail

die() { echo "fetch_kernel: error: $*" >&2; exit 1; }
log() { echo "fetch_kernel: $*" >&2; }
# Inside fetch and what it calls: log the reason and fail the step, so that the caller can fall
# back to the cached kernel (`set -e` does not apply in a function called as `if ! fetch`).
fail() { log "error: $*"; return 1; }

# The cache: $PINBROKER_VM_CACHE, else /var/cache/pinbroker-vm when it can be written, else
# ~/.cache/pinbroker-vm.
default_cache() {
  if [ -n "${PINBROKER_VM_CACHE:-}" ]; then
    echo "$PINBROKER_VM_CACHE"
  elif mkdir -p /var/cache/pinbroker-vm 2>/dev/null && [ -w /var/cache/pinbroker-vm ]; then
    echo /var/cache/pinbroker-vm
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pinbroker-vm"
  fi
}

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 <bookworm|backports> [CACHE_DIR]"
FLAVOR=$1
CACHE=${2:-$(default_cache)}
case "$FLAVOR" in bookworm | backports) ;; *) die "unknown kernel flavor '$FLAVOR'" ;; esac
for tool in apt-get apt-cache dpkg-deb depmod sha256sum flock; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run scripts/setup.sh)"
done

mkdir -p "$CACHE/debs" "$CACHE/apt/$FLAVOR/lists/partial" "$CACHE/apt/$FLAVOR/archives/partial" \
  "$CACHE/kernels/$FLAVOR" || die "cannot create cache directory $CACHE"
CACHE=$(cd "$CACHE" && pwd)
KDIR_BASE="$CACHE/kernels/$FLAVOR"
ADIR="$CACHE/apt/$FLAVOR"

# One fetch at a time per cache (apt's lists and the pruning below are shared state). run_vm.sh
# takes the same lock shared while it reads an unpacked tree.
exec 9>"$CACHE/.lock"
flock -x 9

TMPS=()
cleanup() { local t; for t in "${TMPS[@]}"; do rm -rf "$t"; done; }
trap cleanup EXIT

# Prints "URI SUITE SIGNED-BY" for every enabled 'deb' entry of the system's apt sources, in both
# the one-line and the deb822 format. SIGNED-BY is '-' when absent or not a file path.
system_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '{
      sub(/#.*/, ""); if ($1 != "deb") next
      i = 2; sb = "-"
      if ($i ~ /^\[/) {
        for (; i <= NF; i++) {
          o = $i; gsub(/[\[\]]/, "", o)
          if (o ~ /^signed-by=/) { sub(/^signed-by=/, "", o); sb = o }
          if ($i ~ /\]$/) { i++; break }
        }
      }
      if (i + 1 <= NF) print $i, $(i + 1), sb
    }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'function flush(   n, m, a, b, x, y) {
           if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/ && uris != "") {
             n = split(uris, a, " "); m = split(suites, b, " ")
             for (x = 1; x <= n; x++) for (y = 1; y <= m; y++) print a[x], b[y], (sb ~ /^\// ? sb : "-")
           }
           types = uris = suites = enabled = ""; sb = "-"
         }
         BEGIN { sb = "-" }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         /^[ \t]/ { next }  # continuation line (an inline key)
         {
           k = tolower($0); sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
           if (k == "types") types = v; else if (k == "uris") uris = v
           else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
           else if (k == "signed-by") sb = v
         }
         END { flush() }' "$f"
  done
}

# Writes the private sources.list for the flavor.
write_sources() {
  local out=$ADIR/sources.list entries uri suite sb opt
  if [ -n "${PINBROKER_VM_SOURCES:-}" ]; then
    # One-line entries taken as they are (options included), those of the flavor's suites only.
    local want='^bookworm(-updates|-security)?$'
    [ "$FLAVOR" = backports ] && want='^trixie-backports$'
    awk -v want="$want" '{ i = 2; if ($i ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++
                           if ($1 == "deb" && $(i + 2) ~ want) print }' \
      "$PINBROKER_VM_SOURCES" >"$out.new" || return 1
    [ -s "$out.new" ] || { rm -f "$out.new"; return 1; }
    mv "$out.new" "$out"
    return 0
  fi
  entries=$(system_sources | awk '$1 ~ /^(https?|file):/' | sort -u)
  : >"$out.new"
  case "$FLAVOR" in
    bookworm)
      while read -r uri suite sb; do
        [[ "$suite" =~ ^bookworm(-updates|-security)?$ ]] || continue
        opt=""; [ "$sb" != "-" ] && opt="[signed-by=$sb] "
        echo "deb ${opt}${uri} ${suite} main" >>"$out.new"
      done <<<"$entries"
      ;;
    backports)
      # The mirror that serves the system's main suite also serves trixie-backports.
      read -r uri suite sb < <(awk '$2 == "bookworm" || $2 == "trixie" { print; exit }' <<<"$entries") ||
        true
      if [ -n "${uri:-}" ]; then
        opt=""; [ "$sb" != "-" ] && opt="[signed-by=$sb] "
        echo "deb ${opt}${uri} trixie-backports main" >>"$out.new"
      fi
      ;;
  esac
  [ -s "$out.new" ] || { rm -f "$out.new"; return 1; }
  mv "$out.new" "$out"
}

APT_OPTS=(
  -o "Dir::Etc::SourceList=$ADIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$ADIR/lists" -o "Dir::Cache::Archives=$ADIR/archives"
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Dir::State::Status=/dev/null
  -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
  -o Acquire::Languages=none -o APT::Sandbox::User=root -q
)

# Prints the candidate version of package $1, or nothing.
candidate() {
  apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }'
}

# Sets VERSION (the kernel image package's version: the cache key) and RESOLVED (NAME=VERSION of
# every package to download). $PINBROKER_VM_KERNEL_PACKAGE names an image package to take instead
# of the newest (to reproduce a run on an older kernel that is still in the archive).
resolve() {
  local image="" n
  if [ -n "${PINBROKER_VM_KERNEL_PACKAGE:-}" ]; then
    image=$PINBROKER_VM_KERNEL_PACKAGE
    log "PINBROKER_VM_KERNEL_PACKAGE: using $image instead of the newest"
  else
    case "$FLAVOR" in
      bookworm)
        for n in $(apt-cache "${APT_OPTS[@]}" pkgnames linux-image-6.1.0- |
          grep -E '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' | sort -V -r); do
          [ -n "$(candidate "$n")" ] && { image=$n; break; }
        done
        ;;
      backports)
        # trixie-backports' linux-image-amd64 depends on the newest linux-image-X-amd64.
        n=$(candidate linux-image-amd64)
        [ -n "$n" ] && image=$(apt-cache "${APT_OPTS[@]}" show "linux-image-amd64=$n" |
          sed -n 's/^Depends: //p' | tr ',' '\n' |
          sed -n 's/^ *\(linux-image-[0-9][^ ]*-amd64\) .*/\1/p' | awk 'NR == 1')
        ;;
    esac
  fi
  [ -n "$image" ] || return 1
  VERSION=$(candidate "$image")
  [ -n "$VERSION" ] || { log "$image is not in the package lists"; return 1; }
  RESOLVED=("$image=$VERSION")
  # Split form (6.19+): the image package is nearly empty and depends on its parts, each pinned
  # with (= VERSION); the single-package form may still depend on a linux-base-X.
  for n in $(apt-cache "${APT_OPTS[@]}" show "$image=$VERSION" | sed -n 's/^Depends: //p' |
    tr ',|' '\n\n' | sed -n 's/^ *\(linux-\(binary\|modules\|base\)-[^ ]*\) (= \([^)]*\)).*/\1=\3/p'); do
    local rec
    rec=$(apt-cache "${APT_OPTS[@]}" show "$n" 2>/dev/null) || rec=""
    if grep -q "^Filename: " <<<"$rec"; then
      RESOLVED+=("$n")
    else
      log "note: $n is no longer in the archive; unpacking without it"
    fi
  done
}

# Downloads package $1 (NAME=VERSION) into debs/ unless a file with the archive's SHA256 is
# already there. Prints the .deb path.
download() {
  local pkg=$1 rec file sha size deb tmp
  rec=$(apt-cache "${APT_OPTS[@]}" show "$pkg") || return 1
  file=$(sed -n '/^Filename: /{s///p;q}' <<<"$rec")
  sha=$(sed -n '/^SHA256: /{s///p;q}' <<<"$rec")
  size=$(sed -n '/^Size: /{s///p;q}' <<<"$rec")
  [ -n "$file" ] && [ -n "$sha" ] || return 1
  deb="$CACHE/debs/$(basename "$file")"
  if [ -f "$deb" ] && [ "$(stat -c %s "$deb")" = "$size" ] &&
    [ "$(sha256sum "$deb" | cut -d' ' -f1)" = "$sha" ]; then
    log "cached $(basename "$deb")"
  else
    tmp=$(mktemp -d "$CACHE/debs/.dl.XXXXXX"); TMPS+=("$tmp")
    local t0=$SECONDS
    log "downloading $pkg ($((size / 1048576)) MiB)"
    (cd "$tmp" && apt-get "${APT_OPTS[@]}" download "$pkg" >&2) || return 1
    [ "$(sha256sum "$tmp"/*.deb | cut -d' ' -f1)" = "$sha" ] || { log "checksum mismatch: $pkg"; return 1; }
    mv "$tmp"/*.deb "$deb"
    log "downloaded $(basename "$deb") in $((SECONDS - t0)) s"
  fi
  echo "$deb"
}

# Unpacks the .debs given as arguments into kernels/<flavor>/$VERSION (once) and writes
# kernel.env there.
unpack() {
  local dir="$KDIR_BASE/$VERSION" tmp root kv vmlinuz config deb
  if [ -f "$dir/.complete" ]; then
    log "unpacked tree $dir is cached"
    return 0
  fi
  rm -rf "$dir"
  tmp=$(mktemp -d "$KDIR_BASE/.unpack.XXXXXX"); TMPS+=("$tmp")
  root="$tmp/root"
  mkdir -p "$root"
  local t0=$SECONDS
  for deb in "$@"; do dpkg-deb -x "$deb" "$root" || fail "cannot unpack $deb" || return; done
  # trixie packages keep modules under usr/lib; give depmod/modprobe the classic path.
  if [ -d "$root/usr/lib/modules" ] && [ ! -e "$root/lib" ]; then ln -s usr/lib "$root/lib"; fi
  [ -d "$root/lib/modules" ] || fail "no lib/modules in $*" || return
  local kvs=("$root"/lib/modules/*/)
  kv=$(basename "${kvs[0]}")
  [ -d "$root/lib/modules/$kv/kernel" ] || fail "no modules tree in $*" || return
  vmlinuz=$(find "$root/boot" "$root/lib/modules/$kv" -maxdepth 1 -type f \
    \( -name "vmlinuz-$kv" -o -name vmlinuz \) -print -quit 2>/dev/null)
  [ -n "$vmlinuz" ] || fail "no vmlinuz in $*" || return
  config=$(find "$root/boot" "$root/lib/modules/$kv" -maxdepth 1 -type f \
    \( -name "config-$kv" -o -name config \) -print -quit 2>/dev/null)
  depmod -b "$root" "$kv" || fail "depmod failed for $kv" || return
  cat >"$tmp/kernel.env" <<EOF
PB_KFLAVOR=$FLAVOR
PB_KPKGVERSION=$VERSION
PB_KV=$kv
PB_KROOT=$dir/root
PB_KMODDIR=$dir/root/lib/modules/$kv
PB_KVMLINUZ=$dir/root/${vmlinuz#"$root"/}
PB_KCONFIG=${config:+$dir/root/${config#"$root"/}}
EOF
  for deb in "$@"; do basename "$deb"; done >"$tmp/debs.txt"
  touch "$tmp/.complete"
  mv "$tmp" "$dir" || fail "cannot move the unpacked tree to $dir" || return
  log "unpacked $kv into $dir in $((SECONDS - t0)) s"
}

prune() {
  local d keep
  for d in "$KDIR_BASE"/*/; do
    d=${d%/}
    [ -L "$d" ] && continue
    [ "$(basename "$d")" = "$VERSION" ] || { log "pruning old kernel $d"; rm -rf "$d"; }
  done
  keep=$(cat "$CACHE"/kernels/*/*/debs.txt 2>/dev/null || true)
  for d in "$CACHE"/debs/*.deb; do
    [ -e "$d" ] || continue
    grep -qxF "$(basename "$d")" <<<"$keep" || { log "pruning $(basename "$d")"; rm -f "$d"; }
  done
}

fetch() {
  write_sources || { log "no usable Debian entry in the system's apt sources"; return 1; }
  local t0=$SECONDS
  apt-get "${APT_OPTS[@]}" --error-on=any update >"$ADIR/update.log" 2>&1 || {
    log "apt-get update failed:"; tail -n 5 "$ADIR/update.log" >&2; return 1
  }
  log "package lists refreshed in $((SECONDS - t0)) s"
  RESOLVED=()
  resolve || { log "no $FLAVOR kernel found in the package lists"; return 1; }
  log "resolved ${RESOLVED[*]}"
  local debs=() p deb
  for p in "${RESOLVED[@]}"; do
    deb=$(download "$p") || { log "download of $p failed"; return 1; }
    debs+=("$deb")
  done
  unpack "${debs[@]}" || { log "unpacking the $FLAVOR kernel failed"; return 1; }
  { ln -sfn "$VERSION" "$KDIR_BASE/current.new" && mv -T "$KDIR_BASE/current.new" "$KDIR_BASE/current"; } ||
    { log "cannot update $KDIR_BASE/current"; return 1; }
  prune
}

if ! fetch; then
  if [ -f "$KDIR_BASE/current/.complete" ]; then
    log "WARNING: could not resolve, download or unpack the $FLAVOR kernel;" \
      "using the cached $(readlink "$KDIR_BASE/current")"
  else
    die "could not fetch the $FLAVOR kernel and none is cached in $CACHE"
  fi
fi
echo "$KDIR_BASE/current"
