#include "absl/strings/str_cat.h"
#include "pinbroker/rdma_transfer_checks.h"

namespace pinbroker::client {
namespace {

std::string Because(const LeaseLimits& lease) {
  if (lease.constraint_reason.empty()) return " (the broker gave no reason)";
  return absl::StrCat(" (", lease.constraint_reason, ")");
}

}  // namespace

absl::string_view RdmaOpName(RdmaOpKind kind) {
  switch (kind) {
    case RdmaOpKind::kWrite:
      return "WRITE";
    case RdmaOpKind::kRead:
      return "READ";
    case RdmaOpKind::kFetchAdd:
      return "FETCH_AND_ADD";
    case RdmaOpKind::kCompareSwap:
      return "COMPARE_SWAP";
  }
  return "UNKNOWN";
}

LeaseLimits LeaseLimits::From(const v1::Lease& lease) {
  LeaseLimits l;
  l.lease_id = lease.lease_id();
  l.writable = lease.access() == v1::ACCESS_READ_WRITE;
  l.remote_address = lease.rdma().remote_address();
  l.length = lease.rdma().length();
  l.required_alignment = lease.rdma().required_alignment();
  l.max_transfer_size = lease.rdma().max_transfer_size();
  l.constraint_reason = lease.rdma().constraint_reason();
  return l;
}

absl::Status CheckLeaseOp(const LeaseLimits& lease, RdmaOpKind kind, uint64_t offset,
                          uint64_t length, uint32_t path_mtu, uint64_t max_message) {
  const std::string op(RdmaOpName(kind));
  const std::string who = absl::StrCat("lease ", lease.lease_id, ": ", op);
  if (kind != RdmaOpKind::kRead && !lease.writable) {
    return absl::PermissionDeniedError(
        absl::StrCat(who, " refused: the lease is read-only (pin it with ACCESS_READ_WRITE)"));
  }
  if (length == 0) return absl::InvalidArgumentError(absl::StrCat(who, " of zero bytes"));
  if (IsAtomic(kind)) {
    if (length != kAtomicBytes) {
      return absl::InvalidArgumentError(absl::StrCat(who, " moves 8 bytes, not ", length));
    }
    if (offset % kAtomicBytes != 0 || (lease.remote_address + offset) % kAtomicBytes != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " at offset ", offset, ": atomics need an 8-byte aligned offset"));
    }
  }
  if (offset > lease.length || length > lease.length - offset) {
    return absl::OutOfRangeError(absl::StrCat(who, " of ", length, " bytes at offset ", offset,
                                              " is beyond the lease's ", lease.length, " bytes"));
  }
  const uint64_t align = lease.required_alignment == 0 ? 1 : lease.required_alignment;
  if (align > 1) {
    if (offset % align != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " at offset ", offset, " breaks the lease's required_alignment ", align,
                       ": offsets must be multiples of it", Because(lease)));
    }
    if (length % align != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " of ", length, " bytes breaks the lease's required_alignment ", align,
                       ": lengths must be multiples of it", Because(lease)));
    }
    if (path_mtu != 0 && path_mtu < align) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, " refused: this connection's path MTU is ", path_mtu,
          " bytes, smaller than the lease's required_alignment ", align,
          ", so packets would not cover whole aligned units", Because(lease),
          "; raise the MTU of both ends' network devices (e.g. 9000 for a 4096 path MTU)"));
    }
  }
  if (lease.max_transfer_size != 0 && length > lease.max_transfer_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, " of ", length, " bytes exceeds the lease's max_transfer_size ",
                     lease.max_transfer_size, "; split it", Because(lease)));
  }
  if (max_message != 0 && length > max_message) {
    return absl::InvalidArgumentError(absl::StrCat(who, " of ", length,
                                                   " bytes exceeds the device's largest message, ",
                                                   max_message, " bytes; split it"));
  }
  return absl::OkStatus();
}

absl::Status CheckLocalRange(RdmaOpKind kind, uint64_t buffer_size, uint64_t offset,
                             uint64_t length) {
  if (offset > buffer_size || length > buffer_size - offset) {
    return absl::InvalidArgumentError(absl::StrCat(RdmaOpName(kind), ": local range [", offset,
                                                   ", +", length, ") is beyond the ", buffer_size,
                                                   "-byte local buffer"));
  }
  if (IsAtomic(kind) && offset % kAtomicBytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        RdmaOpName(kind), ": the local result slot at offset ", offset, " is not 8-byte aligned"));
  }
  return absl::OkStatus();
}

}  // namespace pinbroker::client
