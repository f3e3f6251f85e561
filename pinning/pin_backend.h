// PinBackend: what holds a lease's pages for the device that uses them.
//
// The engine calls Pin() once per lease, then exactly one of Release() (the holder let go) or
// Revoke() (the holder's access is taken away: grace ended, lease expired, broker shutting
// down). After Release() or Revoke() returns OK, the backend holds nothing of that pin, so the
// file's layout may change under it. Backends report what they do in RegistrationMode.
//
// Thread-safety: implementations must be safe to call concurrently from any thread; the engine
// never holds its own locks while calling them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinning/file_info.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"

namespace pinbroker {

struct PinSpec {
  LeaseId lease = 0;
  absl::string_view owner;
  int fd = -1;  // Open with `access`; valid only during Pin(). Dup it to keep it.
  const FileInfo* file = nullptr;
  ByteRange bytes;  // Page-aligned, within the file.
  Access access = Access::kRead;
  bool rdma = false;  // Remote access through the owner's RDMA connection was asked for.
  // The identity the lease is held for ("uid 1001"), whose share of the backend's own limits
  // it counts against (HostBackend: VMAs); empty: one unnamed holder (in-process callers).
  absl::string_view holder = {};
};

// When OnLayoutChange() is called: just before the truncate/punch system call, or just after it
// (whether or not it succeeded).
enum class LayoutPhase { kBefore, kAfter };

// One of a backend's registrations of a file (RDMA backends: a memory region shared by leases).
struct RegistrationInfo {
  std::string device;
  RegistrationMode mode = RegistrationMode::kPinned;
  ByteRange range;       // File bytes the registration covers.
  uint32_t windows = 0;  // Leases' memory windows (or per-lease regions) on it.
  // A layout change removed pages it covers: no new leases use it; it goes with its last window.
  bool stale = false;
};

struct BackendPin {
  uint64_t handle = 0;  // Backend-private; passed back to Release()/Revoke().
  RegistrationMode mode = RegistrationMode::kHost;
  RdmaGrant rdma;  // Filled for RDMA pins.
};

class PinBackend {
 public:
  virtual ~PinBackend() = default;

  // "host", "verbs", ... for logs and GetInfo.
  virtual absl::string_view name() const = 0;

  // Holds spec.bytes of the file. On error nothing is held and the status says what the system
  // refused and what would work (RESOURCE_EXHAUSTED for memlock limits, FAILED_PRECONDITION for
  // memory no available mode can pin).
  virtual absl::StatusOr<BackendPin> Pin(const PinSpec& spec) = 0;

  // The holder released the lease. NOT_FOUND for an unknown handle.
  virtual absl::Status Release(uint64_t handle) = 0;

  // Takes the holder's access away now. NOT_FOUND for an unknown handle.
  virtual absl::Status Revoke(uint64_t handle) = 0;

  // Bytes currently held.
  virtual uint64_t pinned_bytes() const = 0;

  // The layout coordinator is about to change (kBefore) or has changed (kAfter) bytes `changed`
  // of `file` (open-ended changes, truncates, reach UINT64_MAX). Every lease overlapping `changed`
  // has ended by then; leases elsewhere in the file may still be live. Called with no engine lock
  // held. A backend whose registrations cover more than its leases' pages must make sure none of
  // them keeps removed pages after kAfter.
  virtual void OnLayoutChange(const FileId& file, ByteRange changed, LayoutPhase phase) {
    (void)file;
    (void)changed;
    (void)phase;
  }

  // The backend's registrations of `file`, for DescribeFile. Empty for backends without any.
  virtual std::vector<RegistrationInfo> Registrations(const FileId& file) const {
    (void)file;
    return {};
  }
};

}  // namespace pinbroker
