// The checks an RDMA operation on a lease must pass before it is posted: the lease's bounds and
// access, the device constraints the broker published in RdmaAccess (required_alignment,
// max_transfer_size, constraint_reason), atomics' 8-byte alignment, and the connection's path
// MTU against the alignment (rxe's ODP needs every packet to cover one whole aligned unit).
// Refusing here is what keeps a constrained device from silently corrupting data: rxe ODP
// completes a misplaced write with success.
//
// No verbs calls: pure functions, tested on hosts without RDMA.
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinbroker::client {

enum class RdmaOpKind { kWrite, kRead, kFetchAdd, kCompareSwap };
// "WRITE", "READ", "FETCH_AND_ADD", "COMPARE_SWAP".
absl::string_view RdmaOpName(RdmaOpKind kind);
inline bool IsAtomic(RdmaOpKind kind) {
  return kind == RdmaOpKind::kFetchAdd || kind == RdmaOpKind::kCompareSwap;
}
// Atomics always move 8 bytes, at 8-byte aligned remote addresses.
inline constexpr uint64_t kAtomicBytes = 8;

// What the checks need to know about a lease.
struct LeaseLimits {
  std::string lease_id;
  bool writable = false;            // ACCESS_READ_WRITE.
  uint64_t remote_address = 0;      // RdmaAccess.remote_address.
  uint64_t length = 0;              // RdmaAccess.length: the bytes reachable.
  uint64_t required_alignment = 1;  // 0 is taken as 1.
  uint64_t max_transfer_size = 0;   // 0: unlimited.
  std::string constraint_reason;

  static LeaseLimits From(const v1::Lease& lease);
};

// Checks an operation of `length` bytes at lease-relative `offset`. `path_mtu` is the
// connection's path MTU in bytes (0: unknown, not checked); `max_message` the device's largest
// message (0: not checked). Errors name the lease and the rule:
//   PERMISSION_DENIED    a WRITE or an atomic on a read-only lease
//   INVALID_ARGUMENT     zero length; an atomic not 8-byte aligned; offset or length not a
//                        multiple of required_alignment; length above max_transfer_size or
//                        the device's message size (constraint_reason quoted)
//   OUT_OF_RANGE         [offset, offset + length) not within the lease
//   FAILED_PRECONDITION  a required_alignment above the connection's path MTU: packets would
//                        not cover whole aligned units
absl::Status CheckLeaseOp(const LeaseLimits& lease, RdmaOpKind kind, uint64_t offset,
                          uint64_t length, uint32_t path_mtu = 0, uint64_t max_message = 0);

// Checks a local buffer range: INVALID_ARGUMENT unless [offset, offset + length) is within a
// buffer of `buffer_size` bytes (and, for atomics, the result slot is 8-byte aligned).
absl::Status CheckLocalRange(RdmaOpKind kind, uint64_t buffer_size, uint64_t offset,
                             uint64_t length);

}  // namespace pinbroker::client
