// LeaseLifecycle: the one place a lease is recalled or ends, whoever recalls or ends it.
//
// Recall (asking the holder to let go by a deadline) moves leases to recalling in batches and
// logs each one it announces.
//
// Release (the holder let go), Revoke (the broker takes access away) and expiry all run the same
// sequence: claim the end in the LeaseTable, undo the backend pin, drop the lease's busy range
// (which wakes layout changes draining it), then let the table emit the terminal event. If the
// backend cannot undo a pin, the busy range is kept: pages that may still be DMA targets stay
// protected from layout changes, and the failure is reported rather than hidden.
//
// Every end, whichever path took it, is reported once to `on_ended` (the lease in its terminal
// state, after its terminal event), so that a watcher of leases (the file guard) can keep
// per-file counts without listing the table.
//
// Thread-safety: safe to call concurrently; holds no lock of its own and calls the backend and
// `on_ended` with no engine lock held.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinning/file_registry.h"
#include "pinning/lease_table.h"
#include "pinning/pin_backend.h"

namespace pinbroker {

class LeaseLifecycle {
 public:
  using EndedHandler = absl::AnyInvocable<void(const LeaseInfo&)>;

  LeaseLifecycle(LeaseTable* table, PinBackend* backend, FileRegistry* files,
                 EndedHandler on_ended = nullptr)
      : table_(table), backend_(backend), files_(files), on_ended_(std::move(on_ended)) {}

  // Recalls each live lease of `ids` with `reason` by `deadline` (LeaseTable::RecallMany) and
  // logs each recall it announces. Returns the live leases, as RecallMany() does.
  std::vector<LeaseTable::Recalled> Recall(const std::vector<LeaseId>& ids,
                                           absl::string_view reason, absl::Time deadline);

  // The holder `owner` releases lease `id`. NOT_FOUND for unknown, ended or foreign leases.
  absl::Status Release(absl::string_view owner, LeaseId id);

  // Takes lease `id` away now with `reason`. NOT_FOUND if it is not live (already ending);
  // INTERNAL if the backend failed to invalidate (the lease is gone, its pages stay busy).
  absl::Status Revoke(LeaseId id, std::string reason);

  // Revoke() of each of `ids` with `reason`, as a batch: the table claims and finishes the
  // leases kRecallBatch at a time and each subscriber gets a batch's events in one push. Returns
  // per id, in order, what Revoke() would have.
  std::vector<absl::Status> RevokeMany(const std::vector<LeaseId>& ids, absl::string_view reason);

  // Finishes a lease the table has just expired (the table's ExpiryHandler).
  void OnExpired(const LeaseInfo& lease);

  PinBackend* backend() const { return backend_; }

 private:
  // Backend undo + busy-range removal + Finish for a lease whose end was claimed.
  absl::Status Complete(const LeaseInfo& lease, bool revoke);
  // Complete() up to the Finish: the backend undo, the busy-range removal and the log line.
  absl::Status Undo(const LeaseInfo& lease, bool revoke);

  LeaseTable* const table_;
  PinBackend* const backend_;
  FileRegistry* const files_;
  EndedHandler on_ended_;
};

}  // namespace pinbroker
