// Lease vocabulary shared by the engine: ids, access modes, states, the public view of a lease
// and the events its owner receives.
//
// Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinning/file_info.h"
#include "pinning/page_range.h"

namespace pinbroker {

// Lease ids are unique for the lifetime of one engine and never reused. 0 is never a lease.
using LeaseId = uint64_t;

enum class Access { kRead, kReadWrite };
absl::string_view AccessName(Access access);

// How the backend holds a lease's pages.
enum class RegistrationMode {
  kHost,    // mmap + mlock in the broker, for local DMA users.
  kPinned,  // long-term RDMA registration (tmpfs/shmem, hugetlbfs, device-dax, read-only cache).
  kOdp,     // on-demand-paging RDMA registration (fs-dax, writable page cache on >= 6.5).
};
absl::string_view RegistrationModeName(RegistrationMode mode);

// granted -> recalling -> released | revoked | expired (granted may end directly, too).
enum class LeaseState { kGranted, kRecalling, kReleased, kRevoked, kExpired };
absl::string_view LeaseStateName(LeaseState state);
inline bool IsTerminal(LeaseState s) {
  return s == LeaseState::kReleased || s == LeaseState::kRevoked || s == LeaseState::kExpired;
}

// How a remote client reaches a lease's memory over RDMA (set by the RDMA backend only).
struct RdmaGrant {
  std::string device;         // Empty: no RDMA access.
  uint32_t rkey = 0;          // The lease's memory window; valid only on its owner's connection.
  uint64_t remote_address = 0;  // Address of the lease's first byte.
  uint64_t length = 0;
  // Transfer constraints: every operation's remote offset and length must be multiples of
  // `required_alignment` (1: none) and at most `max_transfer_size` (0: unlimited).
  uint64_t required_alignment = 1;
  uint64_t max_transfer_size = 0;
  std::string constraint_reason;  // Why, when constrained.
};

// What the engine tells about one lease.
struct LeaseInfo {
  LeaseId id = 0;
  std::string owner;
  std::string export_name;
  std::string path;  // As the client named it, relative to the export root.
  FileId file;
  PageRange pages;
  uint64_t offset = 0;  // Byte range actually held: pages * page size.
  uint64_t length = 0;
  Access access = Access::kRead;
  RegistrationMode mode = RegistrationMode::kHost;
  LeaseState state = LeaseState::kGranted;
  absl::Time granted_at;
  absl::Time expires_at;
  // Set while recalling: when the broker will revoke, and why.
  absl::Time recall_deadline = absl::InfiniteFuture();
  std::string reason;  // Why the lease is recalling or how it ended.
  // Whether the holder could change the file's layout itself (write permission at pin time and
  // the export's `layout` rule): only such a lease may make a refuse/defer layout change fail
  // or wait; any other one is recalled and revoked as under policy revoke.
  bool guards_layout = true;
  RdmaGrant rdma;  // Empty unless the lease was pinned for RDMA.
  // Engine-internal: the PinBackend's handle for this lease's pin. Never shown to clients.
  uint64_t backend_handle = 0;
};

struct LeaseEvent {
  enum class Type { kGranted, kRecalled, kReleased, kRevoked, kExpired };
  Type type;
  LeaseInfo lease;  // The lease as of this event; `reason`/`recall_deadline` explain it.
  absl::Time at;
};
absl::string_view LeaseEventTypeName(LeaseEvent::Type type);

}  // namespace pinbroker
