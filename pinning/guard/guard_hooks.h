// FileGuardHooks: what PinService tells a file guard (pinning/guard/file_guard.h) and asks of it.
//
// The guard watches files that have leases for layout changes other processes make behind the
// broker's back. PinService calls these hooks with no engine lock held; an implementation must
// be safe to call concurrently from any thread and must not call back into PinService from
// OnLeaseGranted/OnLeaseEnded/YieldLease on the calling thread in a way that waits for a layout
// change (it may list or revoke leases).
#pragma once

#include <string>
#include <vector>

#include "pinning/file_info.h"
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

// The report for files no guard watches: every layout-changing operation is unguarded.
inline GuardReport UnguardedReport() {
  GuardReport report;
  report.unguarded_operations = {"truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
                                 "open(2) O_TRUNC", "unlink(2)"};
  return report;
}

}  // namespace pinbroker
