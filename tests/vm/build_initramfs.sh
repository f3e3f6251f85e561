#!/usr/bin/env bash
# Builds the VM guest's initramfs: busybox-static, iproute2 (ip, rdma), mke2fs, mkfs.xfs, xfs_io,
# the soft-RoCE user-space provider, ibverbs/rdmacm/perftest tools for smoke checks, the kernel
# modules the tests need (dependency order from modprobe --show-depends, decompressed for busybox
# insmod), the given binaries with every library ldd lists (plus libgcc_s.so.1), and the guest
# init (tests/vm/guest/init.sh as /init).
#
# Usage: tests/vm/build_initramfs.sh --kernel KDIR --out FILE [--env-file FILE] [--run-file FILE]
#                                    [--no-strip] [BINARY...]
#   --kernel KDIR     a directory printed by fetch_kernel.sh (holds kernel.env)
#   --out FILE        the initramfs to write (cpio, zstd- or gzip-compressed per the kernel config)
#   --env-file FILE   installed as /pb/etc/run.env (settings the guest init sources)
#   --run-file FILE   installed as /pb/etc/run.sh (an extra command the guest runs after smoke)
#   --no-strip        keep debug info in the given binaries (default: stripped copies)
#   BINARY...         installed into /pb/bin; a missing path is an error
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "build_initramfs: error: $*" >&2; exit 1; }

KDIR="" OUT="" ENV_FILE="" RUN_FILE="" STRIP=1
BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) KDIR=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --env-file) ENV_FILE=${2:?}; shift 2 ;;
    --run-file) RUN_FILE=${2:?}; shift 2 ;;
    --no-strip) STRIP=0; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) BINS+=("$1"); shift ;;
  esac
done
[ -n "$KDIR" ] && [ -f "$KDIR/kernel.env" ] || die "--kernel DIR with a kernel.env is required"
[ -n "$OUT" ] || die "--out FILE is required"
# shellcheck source=/dev/null
. "$KDIR/kernel.env"
for tool in cpio ldd busybox modprobe xz zstd; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run scripts/setup.sh)"
done
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not the static build (install busybox-static)"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/pb-initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,dev,proc,sys,tmp,run,mnt,pb/bin,pb/etc,pb/modules}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$R/$d"; done  # merged /usr, as on the host

declare -A COPIED=()
copy_file() {
  [ -n "${COPIED[$2]:-}" ] && return 0
  COPIED[$2]=1
  mkdir -p "$R$(dirname "$2")"
  cp -L "$1" "$R$2"
}
# Copies a file (following symlinks) to the same path inside the image (or to $2), plus the
# libraries ldd lists for it (ldd already lists the whole closure).
copy_with_libs() {
  local src=$1 dst=${2:-$1} lib
  copy_file "$src" "$dst"
  while read -r lib; do
    [ -n "$lib" ] && copy_file "$lib" "$lib"
  done < <(ldd "$src" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }')
}
optional_tool() {
  local p
  p=$(command -v "$1" 2>/dev/null) || { echo "build_initramfs: note: $1 not found, left out" >&2; return 0; }
  copy_with_libs "$p" "/usr/bin/$1"
}
required_tool() {
  local p
  p=$(command -v "$1" 2>/dev/null) || p=$(PATH=/usr/sbin:/sbin:$PATH command -v "$1" 2>/dev/null) ||
    die "$1 not found (run scripts/setup.sh)"
  copy_with_libs "$p" "${2:-/usr/sbin/$1}"
}

# System tools. iproute2's ip goes where busybox's would be too: busybox ip silently creates
# only one end of a veth pair.
required_tool ip /usr/sbin/ip
cp "$R/usr/sbin/ip" "$R/usr/bin/ip"
required_tool rdma /usr/sbin/rdma
required_tool mke2fs /usr/sbin/mke2fs
ln -s mke2fs "$R/usr/sbin/mkfs.ext4"
required_tool mkfs.xfs
required_tool xfs_io
cp /etc/mke2fs.conf "$R/etc/mke2fs.conf"
for t in ibv_devinfo ibv_devices ibv_rc_pingpong; do required_tool "$t" "/usr/bin/$t"; done
for t in rping ib_write_bw ib_read_bw ib_write_lat ib_send_lat; do optional_tool "$t"; done

# Soft-RoCE user-space provider (dlopened by libibverbs) and glibc's thread-exit helper.
PROVIDER=$(find /usr/lib /lib -name 'librxe-rdmav*.so' -print -quit 2>/dev/null)
[ -n "$PROVIDER" ] || die "librxe-rdmav*.so not found (install ibverbs-providers)"
copy_with_libs "$PROVIDER"
mkdir -p "$R/etc/libibverbs.d"
cp /etc/libibverbs.d/rxe.driver "$R/etc/libibverbs.d/"
LIBGCC=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/ && !found { print $NF; found = 1 }')
[ -n "$LIBGCC" ] || die "libgcc_s.so.1 not found"
copy_with_libs "$LIBGCC"

# Project binaries (stripped of debug info unless --no-strip: the guest only runs them).
for b in "${BINS[@]}"; do
  [ -f "$b" ] && [ -x "$b" ] || die "binary $b does not exist or is not executable"
  name=$(basename "$b")
  copy_with_libs "$b" "/pb/bin/$name"
  if [ "$STRIP" = 1 ]; then strip --strip-debug "$R/pb/bin/$name" 2>/dev/null || true; fi
done

# busybox, with the link /init's #! needs; init makes the other applet links (busybox --install
# -s, which leaves the real tools above in place).
cp /bin/busybox "$R/usr/bin/busybox"
ln -s busybox "$R/usr/bin/sh"

# Kernel modules, in load order, decompressed.
WANT=(crc32_generic crc32-pclmul crc32c_generic crc32c-intel rdma_rxe ib_uverbs rdma_ucm ib_umad
  veth libnvdimm nfit nd_pmem nd_btt dax_pmem ext4 xfs)
declare -A HAVE=()
: >"$R/pb/modules/order"
missing=()
for m in "${WANT[@]}"; do
  if ! deps=$(modprobe -d "$PB_KROOT" -S "$PB_KV" --show-depends "$m" 2>/dev/null); then
    missing+=("$m"); continue
  fi
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue # "builtin NAME" needs nothing
    base=$(basename "$path"); base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
    [ -n "${HAVE[$base]:-}" ] && continue
    HAVE[$base]=1
    case "$path" in
      *.xz) xz -dc "$path" >"$R/pb/modules/$base" ;;
      *.zst) zstd -qdc "$path" >"$R/pb/modules/$base" ;;
      *.gz) gzip -dc "$path" >"$R/pb/modules/$base" ;;
      *) cp "$path" "$R/pb/modules/$base" ;;
    esac
    echo "$base" >>"$R/pb/modules/order"
  done <<<"$deps"
done
[ ${#missing[@]} -eq 0 ] || echo "build_initramfs: note: not in $PB_KV (skipped): ${missing[*]}" >&2
grep -q '^rdma_rxe.ko$' "$R/pb/modules/order" || die "rdma_rxe module not found in $PB_KV"

# Guest init and its settings.
cp "$HERE/guest/init.sh" "$R/init"
chmod 755 "$R/init"
echo "$PB_KFLAVOR $PB_KPKGVERSION $PB_KV" >"$R/pb/etc/kernel"
[ -z "$ENV_FILE" ] || cp "$ENV_FILE" "$R/pb/etc/run.env"
[ -z "$RUN_FILE" ] || { cp "$RUN_FILE" "$R/pb/etc/run.sh"; chmod 755 "$R/pb/etc/run.sh"; }
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$R/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$R/etc/nsswitch.conf"
mkdir -p "$R/root"
# The kernel opens /dev/console for /init before anything can mount devtmpfs (only root can make
# the node; without it /init reopens the console itself after mounting devtmpfs).
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$R/dev/null" c 1 3 2>/dev/null || true

COMPRESS=(gzip -1)
if [ -n "${PB_KCONFIG:-}" ] && grep -q '^CONFIG_RD_ZSTD=y' "$PB_KCONFIG"; then COMPRESS=(zstd -q -T0 -6); fi
(cd "$R" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc --owner=0:0 --quiet) | "${COMPRESS[@]}" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "build_initramfs: $OUT ($(du -k "$OUT" | cut -f1) KiB, ${COMPRESS[0]}; $(wc -l <"$R/pb/modules/order") modules; binaries: ${BINS[*]:-none})" >&2
