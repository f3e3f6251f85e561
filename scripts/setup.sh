#!/usr/bin/env bash
# Installs the Debian 12 packages pinbroker needs. Idempotent: when all packages of the profile are
# present it changes nothing (and does not touch the network).
#
# Usage: scripts/setup.sh [run|test]
#   run    what scripts/run.sh needs to build and run pinbrokerd, pinctl, pinrdma and the Python
#          client: the compiler, CMake, gRPC, abseil, protobuf, rdma-core's libraries, Python gRPC.
#   test   (default) everything: the run profile plus what scripts/test.sh needs: clang and its
#          sanitizer runtimes, GoogleTest and Google Benchmark, the real-filesystem tools, openssl,
#          and the VM suite's qemu, busybox, perftest, xfsprogs.
set -euo pipefail

PROFILE=${1:-test}
RUN_PACKAGES=(
  # Toolchain and build.
  build-essential cmake ninja-build ccache pkg-config git
  # Libraries.
  libabsl-dev libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  grpc-proto libibverbs-dev librdmacm-dev ibverbs-providers
  # The Python client (generated from the proto at build time).
  python3 python3-grpcio python3-grpc-tools
)
TEST_PACKAGES=(
  clang-14 libclang-rt-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus-cpp-dev libsystemd-dev
  # Real-filesystem tests (ext4 image on a loop device), real users, certificates.
  e2fsprogs mount util-linux passwd openssl
  # The kernel-fetch test builds a small local archive (dpkg-deb, md5sum, sha256sum).
  dpkg coreutils
  # VM tests (tests/vm): qemu guest with soft-RoCE and fs-dax; the kernel itself is downloaded
  # (not installed) by tests/vm/fetch_kernel.sh. Not rdma-core: it pulls udev/systemd upgrades.
  qemu-system-x86 busybox-static ibverbs-utils rdmacm-utils perftest xfsprogs iproute2 kmod cpio
  xz-utils zstd
)
case "$PROFILE" in
  run) PACKAGES=("${RUN_PACKAGES[@]}") ;;
  test) PACKAGES=("${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
  *) echo "setup: unknown profile '$PROFILE' (run or test)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages of the '$PROFILE' profile present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run this script as root, or install sudo, to install them" >&2
    exit 1
  }
  SUDO=(sudo)
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
  "${missing[@]}"
