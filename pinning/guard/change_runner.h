// ChangeRunner: runs, on a worker thread, a layout change the guard caught and holds: a
// fanotify pre-content or O_TRUNC open event (the caller can be failed), or a file-lease break
// (the caller can only be delayed). It finds out what the change is, hands it to the
// GuardArbiter (the export's policy, through GuardEngine::CoordinateExternal), answers the
// kernel and waits for the caller's change to be made while its range is still blocked.
//
// The choices it makes are pure functions, tested on their own:
//   ActionForOpen   what an open(2) of a guarded file needs (answered by the listener, or held
//                   for the arbiter);
//   ChooseBreaker   which of the threads blocked breaking the lease is the change to decide;
//   ActionForBreak  whether that change goes to the arbiter or is let go at once.
//
// Thread-safety: Run*() are safe to call concurrently, for different work items; they block
// while the policy waits and must not run on the listener thread. They take the file's `mu`
// only briefly and call the GuardEngine (through the arbiter) with no guard lock held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "pinning/guard/caller.h"
#include "pinning/guard/change_classifier.h"
#include "pinning/guard/guard_arbiter.h"
#include "pinning/guard/guarded_file.h"
#include "pinning/layout_guard.h"

namespace pinbroker::guard {

// What an open(2) of a guarded file needs, by what it is about to do.
enum class OpenAction {
  kAllow,                   // A read-only open: allow at once.
  kDropLeaseAndAllow,       // An open for writing: give the file lease up first, then allow.
  kDropLeaseAllowAndCheck,  // Maybe for writing (unreadable caller): as above, then check.
  kHold,                    // O_TRUNC or creat(2): a truncate to 0, decided by the arbiter.
};
OpenAction ActionForOpen(OpenIntent::Kind intent);

// One thread blocked breaking a file lease that names the guarded file, and what it does.
struct BreakerCandidate {
  CallerSyscall caller;
  ClassifiedChange change;
};
// The candidate to decide: the first one, unless a later one changes the layout and the chosen
// one does not, or both do and the later truncates lower. nullopt if there is none.
std::optional<size_t> ChooseBreaker(const std::vector<BreakerCandidate>& candidates);

// What a lease break needs once its breaker was chosen.
enum class BreakAction {
  kLetGoAndCheck,             // Nobody identifiable: let it go, check the file afterwards.
  kLetGo,                     // Not a layout change, or already coordinated: let it go.
  kLetGoAndCheckAfterCaller,  // Maybe a change (kUnknown): let it go, check once it finished.
  kArbitrate,                 // A layout change: through the arbiter.
};
// `chosen`: the chosen breaker's change (nullopt: none); `call_nr` its system call;
// `fanotify`: pre-content events are armed on the file, so a truncate(2) was held (and
// coordinated) by its fanotify event before it broke the lease.
BreakAction ActionForBreak(const std::optional<ClassifiedChange>& chosen, int64_t call_nr,
                           bool fanotify);

class ChangeRunner {
 public:
  struct Options {
    // Real time a change let through keeps its range blocked while the kernel makes it.
    absl::Duration completion_limit = absl::Seconds(2);
    // /proc/sys/fs/lease-break-time: the kernel lets a lease breaker go this long after the
    // break began.
    int lease_break_seconds = 45;
  };

  // `queue_check(file, after)` queues a detect-after check of `file` (after the caller `after`
  // left its system call, if set).
  ChangeRunner(
      GuardEngine* engine, Options options,
      std::function<void(const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>)>
          queue_check);

  // A held fanotify event (kPreContent): allow it once the policy lets it go, else fail the
  // caller with the arbiter's errno.
  void RunPreContent(GuardWork& work);
  // A file-lease break (kLeaseBreak): find the breaker, decide, give the lease up.
  void RunLeaseBreak(GuardWork& work);

 private:
  const Options options_;
  GuardArbiter arbiter_;
  const std::function<void(const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>)>
      queue_check_;
};

}  // namespace pinbroker::guard
