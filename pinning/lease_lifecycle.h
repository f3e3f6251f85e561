// LeaseLifecycle: the one place a lease ends, whoever ends it.
//
// Release (the holder let go), Revoke (the broker takes access away) and expiry all run the same
// sequence: claim the end in the LeaseTable, undo the backend pin, drop the lease's busy range
// (which wakes layout changes draining it), then let the table emit the terminal event. If the
// backend cannot undo a pin, the busy range is kept: pages that may still be DMA targets stay
// protected from layout changes, and the failure is reported rather than hidden.
//
// Thread-safety: safe to call concurrently; holds no lock of its own and calls the backend with
// no engine lock held.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinning/file_registry.h"
#include "pinning/lease_table.h"
#include "pinning/pin_backend.h"

namespace pinbroker {

class LeaseLifecycle {
 public:
  LeaseLifecycle(LeaseTable* table, PinBackend* backend, FileRegistry* files)
      : table_(table), backend_(backend), files_(files) {}

  // The holder `owner` releases lease `id`. NOT_FOUND for unknown, ended or foreign leases.
  absl::Status Release(absl::string_view owner, LeaseId id);

  // Takes lease `id` away now with `reason`. NOT_FOUND if it is not live (already ending);
  // INTERNAL if the backend failed to invalidate (the lease is gone, its pages stay busy).
  absl::Status Revoke(LeaseId id, std::string reason);

  // Finishes a lease the table has just expired (the table's ExpiryHandler).
  void OnExpired(const LeaseInfo& lease);

  PinBackend* backend() const { return backend_; }

 private:
  // Backend undo + busy-range removal + Finish for a lease whose end was claimed.
  absl::Status Complete(const LeaseInfo& lease, bool revoke);

  LeaseTable* const table_;
  PinBackend* const backend_;
  FileRegistry* const files_;
};

}  // namespace pinbroker
