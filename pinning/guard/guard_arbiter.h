// GuardArbiter: applies an export's layout policy to a layout change another process is making
// behind the broker's back, once the guard has caught it and is holding the caller.
//
// It has no kernel code of its own: the guard hands it the classified change and a `let_go`
// callback (answer the kernel, then wait until the caller's change is made), and it runs the
// change through GuardEngine::CoordinateExternal, i.e. the LayoutCoordinator's queue, block and
// drain, with the export's policy. What the policy can do depends on how the caller is held:
//
//   held by          defer                          revoke                     refuse
//   fanotify         wait for the range to drain    recall, wait grace,        fail the caller
//   (kCanFail)       until the export's layout      revoke the rest, let the   with EBUSY at once
//                    timeout; let it go, or fail    change go
//                    it with EBUSY at the deadline
//                    (file unchanged, leases kept)
//   file lease       wait as above, but at most     as above, with the grace   the caller cannot
//   (kDelayOnly)     until `answer_by` - margin;    cut to `answer_by` -       be failed: revoke
//                    then revoke what is left and   margin                     the leases in the
//                    let it go                                                 way at once, let go
//
// A file-lease breaker cannot be failed: the kernel lets it go at `answer_by` (lease-break-time
// after the break began) whatever the broker does, so every policy ends with the affected leases
// ended before that. The margin leaves time to revoke.
//
// Thread-safety: Decide() is safe to call concurrently; it blocks its caller while the policy
// waits. It must not run on the thread that reads fanotify events (see file_guard.h).
#pragma once

#include <cerrno>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "pinning/file_info.h"
#include "pinning/guard/change_classifier.h"
#include "pinning/layout_coordinator.h"
#include "pinning/layout_guard.h"

namespace pinbroker::guard {

class GuardArbiter {
 public:
  enum class Interception {
    kCanFail,    // fanotify permission event: the caller can be failed (EBUSY).
    kDelayOnly,  // file-lease break: the caller can only be delayed, until `answer_by`.
  };

  struct Request {
    FileId file;
    std::string export_name;  // Whose policy, grace and layout timeout apply.
    ClassifiedChange change;  // Must changes_layout().
    uint64_t size_before = 0;
    std::string actor;      // "pid 4242 (truncate)".
    std::string mechanism;  // "fanotify", "file lease".
    Interception interception = Interception::kCanFail;
    absl::Time answer_by = absl::InfiniteFuture();  // kDelayOnly.
  };

  struct Verdict {
    bool allowed = false;
    int error = 0;        // Errno to fail the caller with when !allowed (EBUSY).
    std::string summary;  // For the log: what the policy did, or why the change was refused.
  };

  // How long before `answer_by` a delay-only change stops waiting and revokes.
  static constexpr absl::Duration kLeaseBreakMargin = absl::Seconds(5);

  explicit GuardArbiter(GuardEngine* service) : service_(service) {}

  // Decides `request`. Calls `let_go` exactly once if the change may go ahead (always, for
  // kDelayOnly), while the affected range is still blocked; never for a refused change, which
  // the caller then fails with `error`.
  Verdict Decide(const Request& request, absl::FunctionRef<void()> let_go);

  // "out-of-band ftruncate(2) from 1048576 to 4096 bytes", "out-of-band fallocate(2)
  // PUNCH_HOLE of bytes [4096, 12288)".
  static std::string Describe(const ClassifiedChange& change, uint64_t size_before);

 private:
  absl::StatusOr<LayoutResult> Coordinate(const Request& request, LayoutPolicy policy,
                                          absl::Duration grace, absl::Time deadline,
                                          absl::FunctionRef<void()> let_go, bool* let_go_called);

  GuardEngine* const service_;
};

}  // namespace pinbroker::guard
