#include "pinning/guard/change_runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "pinning/guard/file_lease.h"

namespace pinbroker::guard {
namespace {

// How long to wait for a breaker the kernel is holding for the guard to be seen asleep in its
// system call (it signals the guard a moment before it sleeps).
constexpr absl::Duration kCallerSettleLimit = absl::Milliseconds(500);

std::string ErrnoName(int err) {
  switch (err) {
    case EBUSY:
      return "EBUSY";
    case EPERM:
      return "EPERM (this kernel takes no errno in fanotify answers)";
    default:
      return absl::StrCat("errno ", err);
  }
}

}  // namespace

OpenAction ActionForOpen(OpenIntent::Kind intent) {
  switch (intent) {
    case OpenIntent::Kind::kRead:
      return OpenAction::kAllow;
    case OpenIntent::Kind::kWrite:
      return OpenAction::kDropLeaseAndAllow;
    case OpenIntent::Kind::kUnknown:
      return OpenAction::kDropLeaseAllowAndCheck;
    case OpenIntent::Kind::kTruncate:
      break;
  }
  return OpenAction::kHold;
}

std::optional<size_t> ChooseBreaker(const std::vector<BreakerCandidate>& candidates) {
  std::optional<size_t> chosen;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const ClassifiedChange& change = candidates[i].change;
    const bool better =
        !chosen.has_value() ||
        (change.changes_layout() && (!candidates[*chosen].change.changes_layout() ||
                                     change.new_size < candidates[*chosen].change.new_size));
    if (better) chosen = i;
  }
  return chosen;
}

BreakAction ActionForBreak(const std::optional<ClassifiedChange>& chosen, int64_t call_nr,
                           bool fanotify) {
  if (!chosen.has_value()) return BreakAction::kLetGoAndCheck;
  // truncate(2) raises the fanotify event before it breaks the lease: already coordinated.
  if (!chosen->changes_layout() || (fanotify && call_nr == SYS_truncate)) {
    // openat2's flags came from the caller's memory (OpenFlagsFromMemory): an open seen
    // without O_TRUNC may truncate after all.
    return chosen->kind == ClassifiedChange::Kind::kUnknown || call_nr == SYS_openat2
               ? BreakAction::kLetGoAndCheckAfterCaller
               : BreakAction::kLetGo;
  }
  return BreakAction::kArbitrate;
}

ChangeRunner::ChangeRunner(
    GuardEngine* engine, Options options,
    std::function<void(const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>)>
        queue_check)
    : options_(options), arbiter_(engine), queue_check_(std::move(queue_check)) {}

void ChangeRunner::RunPreContent(GuardWork& work) {
  GuardedFile& file = *work.file;
  GuardArbiter::Request request;
  request.file = file.id;
  request.export_name = file.export_name;
  request.change = work.change;
  request.size_before = work.size_before;
  request.actor = CallerName(work.caller.has_value() ? work.caller->tid : 0);
  request.mechanism = "fanotify";
  request.interception = GuardArbiter::Interception::kCanFail;
  const GuardArbiter::Verdict verdict = arbiter_.Decide(request, [&] {
    file.DropLease();  // An O_TRUNC open would break it: this change is coordinated already.
    work.event->Allow();
    if (!work.caller.has_value()) return;
    WaitForSyscallExit(*work.caller, options_.completion_limit, [&] {
      if (work.change.kind != ClassifiedChange::Kind::kTruncate) return false;
      struct stat st;
      return ::fstat(file.fd.get(), &st) == 0 &&
             static_cast<uint64_t>(st.st_size) == work.change.new_size;
    });
  });
  const int failed_with = verdict.allowed ? 0 : work.event->Deny(verdict.error);
  PB_LOG(INFO) << "guard (fanotify) on " << file.Name() << ": "
               << GuardArbiter::Describe(work.change, work.size_before) << " by " << request.actor
               << ": "
               << (verdict.allowed ? std::string("let through")
                                   : absl::StrCat("failed with ", ErrnoName(failed_with)))
               << "; " << verdict.summary;
}

void ChangeRunner::RunLeaseBreak(GuardWork& work) {
  const std::shared_ptr<GuardedFile>& file = work.file;
  auto finish = [&] {
    absl::MutexLock lock(&file->mu);
    ReleaseLease(file->fd.get());
    file->lease = false;
    file->lease_break_in_flight = false;
  };
  bool fanotify;
  {
    absl::MutexLock lock(&file->mu);
    if (!file->lease) {  // Yielded or disarmed meanwhile.
      file->lease_break_in_flight = false;
      return;
    }
    fanotify = file->fanotify;
  }
  // Who is breaking it: threads blocked in __break_lease whose path argument names this file.
  // The breaker signals before it sleeps: look again for a little while if none of them is
  // this file's (threads breaking other files' leases, another guard's among them, do not end
  // the search).
  auto find_candidates = [&file]() {
    std::vector<BreakerCandidate> found;
    for (const CallerSyscall& breaker : FindLeaseBreakers()) {
      if (IsOwnThread(breaker.tid)) continue;
      int path_index, dirfd_index;
      if (!PathArgument(breaker, &path_index, &dirfd_index)) continue;
      const int dirfd = dirfd_index < 0 ? AT_FDCWD : static_cast<int>(breaker.args[dirfd_index]);
      absl::StatusOr<FileId> target =
          ResolveCallerPath(breaker.tid, dirfd, breaker.args[path_index]);
      if (!target.ok() || *target != file->id) continue;
      std::optional<uint64_t> how;
      if (breaker.nr == SYS_openat2) {
        if (absl::StatusOr<uint64_t> flags = ReadCallerOpenHowFlags(breaker.tid, breaker.args[2]);
            flags.ok()) {
          how = *flags;
        }
      }
      found.push_back(BreakerCandidate{breaker, ClassifyLeaseBreak(breaker, how)});
    }
    return found;
  };
  std::vector<BreakerCandidate> candidates = find_candidates();
  const absl::Time give_up = absl::Now() + kCallerSettleLimit;
  for (absl::Duration pause = absl::Microseconds(100); candidates.empty() && absl::Now() < give_up;
       pause = std::min(pause * 2, absl::Milliseconds(10))) {
    std::this_thread::sleep_for(absl::ToChronoMicroseconds(pause));
    candidates = find_candidates();
  }
  const std::optional<size_t> index = ChooseBreaker(candidates);
  std::optional<ClassifiedChange> chosen;
  std::optional<CallerSyscall> who;
  if (index.has_value()) {
    chosen = candidates[*index].change;
    who = candidates[*index].caller;
  }
  switch (ActionForBreak(chosen, who.has_value() ? who->nr : -1, fanotify)) {
    case BreakAction::kLetGoAndCheck:
      // Nobody identifiable (the breaker gave up, an O_NONBLOCK open, another pid namespace):
      // let it go and look at the result.
      finish();
      queue_check_(file, std::nullopt);
      return;
    case BreakAction::kLetGo:
      finish();
      return;
    case BreakAction::kLetGoAndCheckAfterCaller:
      finish();
      queue_check_(file, who);
      return;
    case BreakAction::kArbitrate:
      break;
  }
  struct stat st;
  const uint64_t size_before =
      ::fstat(file->fd.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  GuardArbiter::Request request;
  request.file = file->id;
  request.export_name = file->export_name;
  request.change = *chosen;
  request.size_before = size_before;
  request.actor = CallerName(who->tid);
  request.mechanism = "file lease";
  request.interception = GuardArbiter::Interception::kDelayOnly;
  request.answer_by = work.break_seen + absl::Seconds(options_.lease_break_seconds);
  const GuardArbiter::Verdict verdict = arbiter_.Decide(request, [&] {
    finish();
    WaitForSyscallExit(*who, options_.completion_limit, [&] {
      struct stat now;
      return ::fstat(file->fd.get(), &now) == 0 &&
             static_cast<uint64_t>(now.st_size) == chosen->new_size;
    });
  });
  PB_LOG(INFO) << "guard (file lease) on " << file->Name() << ": "
               << GuardArbiter::Describe(*chosen, size_before) << " by " << request.actor
               << ": let through; " << verdict.summary;
}

}  // namespace pinbroker::guard
