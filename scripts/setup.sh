#!/usr/bin/env bash
# Installs every Debian 12 package pinbroker needs to build, test and run. Idempotent: when all
# packages are present it changes nothing. Usage: scripts/setup.sh
set -euo pipefail

PACKAGES=(
  # Toolchain and build.
  build-essential cmake ninja-build ccache pkg-config git
  clang-14 libclang-rt-14-dev
  # Libraries.
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto
  libibverbs-dev librdmacm-dev ibverbs-providers
  prometheus-cpp-dev libsystemd-dev
  # Python client and its tests.
  python3 python3-grpcio python3-grpc-tools
  # Real-filesystem tests (ext4 image on a loop device).
  e2fsprogs mount util-linux
  # VM tests (tests/vm): qemu guest with soft-RoCE and fs-dax; the kernel itself is downloaded
  # (not installed) by tests/vm/fetch_kernel.sh. Not rdma-core: it pulls udev/systemd upgrades.
  qemu-system-x86 busybox-static ibverbs-utils rdmacm-utils perftest xfsprogs iproute2 kmod cpio
  xz-utils zstd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
  "${missing[@]}"
