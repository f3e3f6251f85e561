#include "pinning/guard/guard_listener.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "common/errno_status.h"
#include "common/log.h"
#include "pinning/guard/change_classifier.h"
#include "pinning/guard/change_runner.h"
#include "pinning/guard/fanotify_abi.h"
#include "pinning/guard/file_lease.h"

namespace pinbroker::guard {
namespace {

// How long to wait for a caller the kernel is holding for the guard to be seen asleep in its
// system call (it wakes the guard a moment before it sleeps).
constexpr absl::Duration kCallerSettleLimit = absl::Milliseconds(500);

}  // namespace

GuardListener::GuardListener(ArmedFiles* files, PermissionGroup* pre, NotifyGroup* notify,
                             int signal_fd, int lease_signal, Clock* clock, Dispatch dispatch)
    : files_(files),
      pre_(pre),
      notify_(notify),
      signal_fd_(signal_fd),
      lease_signal_(lease_signal),
      clock_(clock),
      dispatch_(std::move(dispatch)) {}

GuardListener::~GuardListener() { Stop(); }

absl::Status GuardListener::Start() {
  wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  thread_ = std::thread([this] { Loop(); });
  absl::MutexLock lock(&mu_);
  auto started = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return tid_ != 0; };
  mu_.Await(absl::Condition(&started));
  return absl::OkStatus();
}

void GuardListener::Stop() {
  {
    absl::MutexLock lock(&mu_);
    exit_ = true;
  }
  if (wake_fd_.valid()) {
    const uint64_t one = 1;
    if (::write(wake_fd_.get(), &one, sizeof(one)) != sizeof(one)) {
      PB_LOG(WARNING) << "guard listener: " << ErrnoToStatus(errno, "eventfd");
    }
  }
  if (thread_.joinable()) thread_.join();
}

pid_t GuardListener::tid() const {
  absl::MutexLock lock(&mu_);
  return tid_;
}

void GuardListener::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, lease_signal_);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  {
    absl::MutexLock lock(&mu_);
    tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
  }
  for (;;) {
    struct pollfd fds[4] = {
        {wake_fd_.get(), POLLIN, 0},
        {pre_ != nullptr ? pre_->fd() : -1, POLLIN, 0},
        {notify_ != nullptr ? notify_->fd() : -1, POLLIN, 0},
        {signal_fd_, POLLIN, 0},
    };
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      PB_LOG(ERROR) << "guard listener: " << ErrnoToStatus(errno, "poll");
      continue;
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      while (::read(wake_fd_.get(), &count, sizeof(count)) > 0) {
      }
      absl::MutexLock lock(&mu_);
      if (exit_) return;
    }
    if (fds[1].revents != 0) HandlePermissionEvents();
    if (fds[2].revents != 0) HandleNotifyEvents();
    if (fds[3].revents != 0) HandleLeaseSignals();
  }
}

void GuardListener::HandlePermissionEvents() {
  absl::StatusOr<std::vector<PermissionGroup::Event>> events = pre_->ReadEvents();
  if (!events.ok()) {
    PB_LOG(ERROR) << "guard: " << events.status();
    return;
  }
  for (PermissionGroup::Event& ev : *events) {
    auto held = std::make_unique<HeldEvent>(pre_, std::move(ev.fd));
    if (held->fd() < 0 || (ev.mask & (FAN_PRE_ACCESS | FAN_OPEN_PERM)) == 0 ||
        IsOwnThread(ev.tid)) {
      held->Allow();  // The broker's own calls are coordinated already.
      continue;
    }
    struct stat st;
    if (::fstat(held->fd(), &st) != 0) {
      held->Allow();
      continue;
    }
    std::shared_ptr<GuardedFile> file =
        files_->Find(FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
    if (file == nullptr) {
      held->Allow();  // Disarmed since the event was raised.
      continue;
    }
    if (ev.mask & FAN_OPEN_PERM) {
      HandleOpen(file, std::move(held), ev.tid, static_cast<uint64_t>(st.st_size));
      continue;
    }
    std::optional<CallerSyscall> caller;
    if (absl::StatusOr<CallerSyscall> read = ReadBlockedCallerSyscall(ev.tid, kCallerSettleLimit);
        read.ok()) {
      caller = *std::move(read);
    }
    const ClassifiedChange change =
        ClassifyPreAccess(ev.has_range ? ev.offset : 0, ev.count, caller);
    if (change.kind == ClassifiedChange::Kind::kAccess) {
      held->Allow();
      continue;
    }
    if (change.kind == ClassifiedChange::Kind::kUnknown) {
      held->Allow();  // Maybe a write: never delay it; look at the result instead.
      dispatch_.queue_check(file, caller);
      continue;
    }
    auto work = std::make_unique<GuardWork>();
    work->kind = GuardWork::Kind::kPreContent;
    work->file = file;
    work->event = std::move(held);
    work->change = change;
    work->caller = std::move(caller);
    work->size_before = static_cast<uint64_t>(st.st_size);
    dispatch_.enqueue(std::move(work));
  }
}

void GuardListener::HandleOpen(const std::shared_ptr<GuardedFile>& file,
                               std::unique_ptr<HeldEvent> held, pid_t tid, uint64_t size) {
  // The event comes before the open breaks a file lease and before O_TRUNC truncates.
  std::optional<CallerSyscall> caller;
  if (absl::StatusOr<CallerSyscall> read = ReadBlockedCallerSyscall(tid, kCallerSettleLimit);
      read.ok()) {
    caller = *std::move(read);
  }
  OpenIntent intent;
  if (caller.has_value()) {
    std::optional<uint64_t> how;
    if (caller->nr == SYS_openat2) {
      if (absl::StatusOr<uint64_t> flags = ReadCallerOpenHowFlags(tid, caller->args[2]);
          flags.ok()) {
        how = *flags;
      }
    }
    intent = ClassifyOpen(*caller, how);
  }
  // openat2's flags were read from the caller's memory, which may have changed since the
  // kernel copied them: an open let through as not truncating is checked once it returns.
  const bool recheck = caller.has_value() && OpenFlagsFromMemory(*caller);
  switch (ActionForOpen(intent.kind)) {
    case OpenAction::kAllow:
      held->Allow();
      if (recheck) dispatch_.queue_check(file, caller);
      return;
    case OpenAction::kDropLeaseAndAllow:
    case OpenAction::kDropLeaseAllowAndCheck:
      // A writer (or maybe one): give the file lease up first, so that the open neither waits
      // for a lease break nor fails with EAGAIN (O_NONBLOCK); its layout changes, if any, come
      // as pre-content events or are detected after.
      file->DropLease();
      held->Allow();
      if (intent.kind == OpenIntent::Kind::kUnknown || recheck) {
        dispatch_.queue_check(file, caller);
      }
      return;
    case OpenAction::kHold:
      break;
  }
  auto work = std::make_unique<GuardWork>();
  work->kind = GuardWork::Kind::kPreContent;
  work->file = file;
  work->event = std::move(held);
  work->change.kind = ClassifiedChange::Kind::kTruncate;
  work->change.new_size = 0;
  work->change.call = intent.call;
  work->caller = std::move(caller);
  work->size_before = size;
  dispatch_.enqueue(std::move(work));
}

void GuardListener::HandleNotifyEvents() {
  absl::StatusOr<std::vector<NotifyGroup::Event>> events = notify_->ReadEvents();
  if (!events.ok()) {
    PB_LOG(ERROR) << "guard: " << events.status();
    return;
  }
  std::vector<std::string> keys;
  keys.reserve(events->size());
  for (NotifyGroup::Event& ev : *events) keys.push_back(std::move(ev.key));
  bool all = false;  // Overflow, or a handle we cannot match: check everything.
  const std::vector<std::shared_ptr<GuardedFile>> files = files_->FindByKeys(keys, &all);
  if (all) {
    dispatch_.queue_check_all();
    return;
  }
  for (const auto& file : files) dispatch_.queue_event_check(file);
}

void GuardListener::HandleLeaseSignals() {
  struct signalfd_siginfo si;
  while (::read(signal_fd_, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
    bool stopping;
    std::shared_ptr<GuardedFile> file = files_->FindByFd(static_cast<int>(si.ssi_fd), &stopping);
    if (file == nullptr) continue;  // A signal for a descriptor since closed.
    {
      absl::MutexLock lock(&file->mu);
      if (!file->lease || file->lease_break_in_flight || !LeaseBreaking(file->fd.get())) continue;
      if (stopping) {
        ReleaseLease(file->fd.get());
        file->lease = false;
        continue;
      }
      file->lease_break_in_flight = true;
    }
    auto work = std::make_unique<GuardWork>();
    work->kind = GuardWork::Kind::kLeaseBreak;
    work->file = file;
    work->break_seen = clock_->Now();
    dispatch_.enqueue(std::move(work));
  }
}

}  // namespace pinbroker::guard
