// The engine's port for a layout guard: a component that watches leased files for layout
// changes other processes make behind the broker's back (pinning/guard/file_guard.h is the one
// implementation). Two interfaces, one per direction:
//
//   FileGuardHooks  what the engine (PinService) tells the guard and asks of it;
//   GuardEngine     what the guard may call on the engine (PinService implements it).
//
// The engine calls the hooks with no engine lock held; an implementation must be safe to call
// concurrently from any thread and must not call back into the engine from
// OnLeaseGranted/OnLeaseEnded/YieldLease on the calling thread in a way that waits for a layout
// change (it may list or revoke leases).
//
// Thread-safety: every GuardEngine method is safe to call concurrently from any thread, and
// takes no guard lock; CoordinateExternal blocks its caller while the policy waits.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinbroker/clock.h"
#include "pinning/export.h"
#include "pinning/file_info.h"
#include "pinning/layout_coordinator.h"
#include "pinning/lease.h"

namespace pinbroker {

// How a file is guarded right now, for DescribeFile.
struct GuardReport {
  // "fanotify", "lease", "fanotify+lease" or "none".
  std::string guard = "none";
  // Operations no armed mechanism intercepts before they take effect on this file, on this
  // kernel and filesystem. The guard still detects their effect afterwards (see docs/GUARD.md).
  std::vector<std::string> unguarded_operations;
};

class FileGuardHooks {
 public:
  virtual ~FileGuardHooks() = default;

  // `lease` was just granted on the file open as `fd` (valid only during the call): arm the
  // guard on the file if it is not armed yet, and remember the lease's layout.
  virtual void OnLeaseGranted(const LeaseInfo& lease, int fd) = 0;

  // `lease` ended (released, revoked or expired, by whichever path): called once per lease,
  // after its terminal event, possibly before OnLeaseGranted of the same lease has returned
  // (a lease revoked the moment it was granted). The guard disarms once the file has no live
  // lease left (after a short linger, see FileGuard::Options::disarm_linger).
  virtual void OnLeaseEnded(const LeaseInfo& lease) = 0;

  // The broker itself is about to open `file` for writing: drop any file lease the guard holds
  // on it, which that open would otherwise break (and fail with EAGAIN).
  virtual void YieldLease(const FileId& file) = 0;

  virtual GuardReport Report(const FileId& file) const = 0;
};

// What a guard reaches of the engine.
class GuardEngine {
 public:
  virtual ~GuardEngine() = default;

  // The engine's clock (every guard timer runs on it).
  virtual Clock* clock() const = 0;

  // Attaches the guard the engine tells about leases and asks for DescribeFile (nullptr
  // detaches; waits for hook calls in progress, so the guard may go away afterwards).
  virtual void AttachGuard(FileGuardHooks* guard) = 0;

  // The live leases of `file`, ascending id.
  virtual std::vector<LeaseInfo> ListFileLeases(const FileId& file) const = 0;

  // Whether lease `id` is live (granted or recalling, its end not claimed).
  virtual bool IsLive(LeaseId id) const = 0;

  // The options of export `name`; nullopt if there is none.
  virtual std::optional<ExportOptions> ExportOptionsFor(absl::string_view name) const = 0;

  // Revokes each of `ids` that is still live with `reason`. Returns how many were revoked.
  virtual size_t RevokeLeases(const std::vector<LeaseId>& ids, const std::string& reason) = 0;

  // Recalls each live lease of `ids` with `reason` and revoke deadline `deadline` (leases
  // already recalling keep theirs). Returns the ids recalled now.
  virtual std::vector<LeaseId> RecallLeases(const std::vector<LeaseId>& ids,
                                            const std::string& reason, absl::Time deadline) = 0;

  // Coordinates an out-of-band change of `file` that the guard holds (see
  // LayoutCoordinator::CoordinateExternal). `options` are complete (the guard resolves the
  // export's policy itself).
  virtual absl::StatusOr<LayoutResult> CoordinateExternal(
      const FileId& file, const ExternalChange& change, const LayoutOptions& options,
      absl::FunctionRef<absl::Status()> proceed) = 0;
};

// The report for files no guard watches: every layout-changing operation is unguarded.
inline GuardReport UnguardedReport() {
  GuardReport report;
  report.unguarded_operations = {"truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
                                 "open(2) O_TRUNC", "unlink(2)"};
  return report;
}

}  // namespace pinbroker
