#include "pinning/guard/file_guard.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "pinning/guard/file_lease.h"
#include "pinning/guard/guard_report.h"
#include "pinning/page_range.h"

namespace pinbroker::guard {

FileGuard::FileGuard(GuardEngine* service, Options options)
    : service_(service),
      clock_(service->clock()),
      options_(options),
      lease_signal_(options.lease_signal != 0 ? options.lease_signal : SIGRTMIN + 4),
      detect_(service),
      pool_(options.max_workers, [this](GuardWork& work) { Run(work); }) {}

absl::StatusOr<std::unique_ptr<FileGuard>> FileGuard::Start(GuardEngine* service, Options options) {
  std::unique_ptr<FileGuard> guard(new FileGuard(service, options));
  Capabilities& caps = guard->caps_;
  if (options.use_fanotify) {
    absl::StatusOr<std::unique_ptr<PermissionGroup>> pre = PermissionGroup::Open();
    if (pre.ok()) {
      guard->pre_ = *std::move(pre);
      caps.permission_group = caps.pre_content = true;
    } else {
      caps.permission_why = caps.pre_content_why = std::string(pre.status().message());
    }
    absl::StatusOr<std::unique_ptr<NotifyGroup>> notify = NotifyGroup::Open();
    if (notify.ok()) {
      guard->notify_ = *std::move(notify);
      caps.notify_group = true;
    } else {
      caps.notify_why = std::string(notify.status().message());
    }
  } else {
    caps.permission_why = caps.pre_content_why = caps.notify_why = "disabled by configuration";
  }
  caps.lease_break_seconds = LeaseBreakSeconds();
  if (options.use_leases) {
    // Lease breaks arrive as a real-time signal aimed at the listener thread, which keeps it
    // blocked and reads it from a signalfd. Any stray delivery elsewhere is ignored rather
    // than killing the process (a blocked signal is still queued when its action is SIG_IGN).
    struct sigaction old = {};
    ::sigaction(guard->lease_signal_, nullptr, &old);
    if (old.sa_handler == SIG_DFL) {
      struct sigaction ignore = {};
      ignore.sa_handler = SIG_IGN;
      ::sigaction(guard->lease_signal_, &ignore, nullptr);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, guard->lease_signal_);
    guard->signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!guard->signal_fd_.valid()) return ErrnoToStatus(errno, "signalfd");
    caps.leases = true;
  }
  ChangeRunner::Options runner;
  runner.completion_limit = options.completion_limit;
  runner.lease_break_seconds = caps.lease_break_seconds;
  FileGuard* const g = guard.get();
  guard->runner_ = std::make_unique<ChangeRunner>(
      service, runner,
      [g](const std::shared_ptr<GuardedFile>& file, std::optional<CallerSyscall> after) {
        g->QueueCheck(file, std::move(after));
      });
  GuardListener::Dispatch dispatch;
  dispatch.enqueue = [g](std::unique_ptr<GuardWork> work) { g->Enqueue(std::move(work)); };
  dispatch.queue_check = [g](const std::shared_ptr<GuardedFile>& file,
                             std::optional<CallerSyscall> after) {
    g->QueueCheck(file, std::move(after));
  };
  dispatch.queue_event_check = [g](const std::shared_ptr<GuardedFile>& file) {
    g->QueueEventCheck(file);
  };
  dispatch.queue_check_all = [g] { g->QueueCheckAll(); };
  guard->listener_ =
      std::make_unique<GuardListener>(&guard->files_, guard->pre_.get(), guard->notify_.get(),
                                      guard->signal_fd_.valid() ? guard->signal_fd_.get() : -1,
                                      guard->lease_signal_, guard->clock_, std::move(dispatch));
  if (absl::Status started = guard->listener_->Start(); !started.ok()) return started;

  // A kernel older than 6.14 creates the group but refuses FAN_PRE_ACCESS marks: find out now,
  // on the broker's own executable, so that the log and reports say so from the start.
  if (guard->pre_ != nullptr) {
    ScopedFd probe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    if (probe.valid()) {
      const absl::Status marked = guard->pre_->Mark(probe.get(), /*pre_content=*/true);
      if (marked.ok()) {
        guard->pre_->Unmark(probe.get());
      } else if (absl::IsUnimplemented(marked)) {
        caps.pre_content = false;
        caps.pre_content_why = std::string(marked.message());
      }
    }
  }
  guard->ScheduleTick();
  service->AttachGuard(guard.get());
  PB_LOG(INFO) << "file guard started: " << guard->DescribeCapabilities();
  return guard;
}

FileGuard::~FileGuard() { Stop(); }

std::string FileGuard::DescribeCapabilities() const {
  return absl::StrCat(
      "fanotify open permission: ",
      caps_.permission_group ? "yes" : absl::StrCat("no (", caps_.permission_why, ")"),
      "; fanotify pre-content: ",
      caps_.pre_content ? "yes" : absl::StrCat("no (", caps_.pre_content_why, ")"),
      "; fanotify notification: ",
      caps_.notify_group ? "yes" : absl::StrCat("no (", caps_.notify_why, ")"),
      "; file leases: ", caps_.leases ? "yes" : "no (disabled by configuration)",
      " (lease-break-time ", caps_.lease_break_seconds, " s); detect-after every ",
      absl::FormatDuration(options_.check_interval));
}

// ---------------------------------------------------------------------------------------------
// Arming

size_t FileGuard::guarded_files() const { return files_.live(); }

size_t FileGuard::armed_files() const { return files_.size(); }

uint64_t FileGuard::sweeps(const FileId& file) const {
  const std::shared_ptr<GuardedFile> guarded = files_.Find(file);
  return guarded == nullptr ? 0 : guarded->SweepsBegun();
}

bool FileGuard::HasLiveLeases(const FileId& id) const {
  return !service_->ListFileLeases(id).empty();
}

std::shared_ptr<GuardedFile> FileGuard::Arm(const LeaseInfo& lease, int fd) {
  if (files_.stopping()) return nullptr;
  auto file = std::make_shared<GuardedFile>();
  file->id = lease.file;
  file->export_name = lease.export_name;
  file->path = lease.path;
  // The guard's own read-only description of the file (a dup would share the pin's mode).
  // O_NONBLOCK: never wait on another process's write lease.
  file->fd.reset(::open(absl::StrCat("/proc/self/fd/", fd).c_str(),
                        O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  struct stat st;
  if (!file->fd.valid() || ::fstat(file->fd.get(), &st) != 0 ||
      FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)} != lease.file) {
    PB_LOG(WARNING) << "guard: cannot open " << file->Name()
                    << " to guard it: " << ErrnoToStatus(errno, "reopen") << "; detect-after "
                    << "only through later leases";
    return nullptr;
  }
  struct statfs fs;
  const bool statted = ::fstatfs(file->fd.get(), &fs) == 0;
  file->fs_type = statted ? FilesystemName(static_cast<uint64_t>(fs.f_type)) : "unknown";
  if (statted && static_cast<uint64_t>(fs.f_type) == TMPFS_MAGIC) {
    file->hole_page = SystemPageSize();
  }
  std::vector<std::string> notes;
  bool fanotify = false, open_perm = false, notify = false;
  if (pre_ != nullptr && caps_.pre_content) {
    const absl::Status marked = pre_->Mark(file->fd.get(), /*pre_content=*/true);
    fanotify = open_perm = marked.ok();
    if (!marked.ok()) notes.push_back(absl::StrCat("no pre-content events: ", marked.message()));
  }
  if (pre_ != nullptr && !open_perm) {
    const absl::Status marked = pre_->Mark(file->fd.get(), /*pre_content=*/false);
    open_perm = marked.ok();
    if (!marked.ok())
      notes.push_back(absl::StrCat("no open permission events: ", marked.message()));
  }
  if (notify_ != nullptr) {
    absl::StatusOr<std::string> key = NotifyGroup::KeyOf(file->fd.get());
    const absl::Status marked = key.ok() ? notify_->Mark(file->fd.get()) : key.status();
    notify = marked.ok();
    if (notify) file->key = *std::move(key);
    if (!marked.ok()) notes.push_back(absl::StrCat("no notification events: ", marked.message()));
  }
  files_.Add(file, notify);
  const pid_t listener_tid = listener_->tid();
  {
    // Under the record's lock: an open by another process meanwhile waits in the listener until
    // the record says what is armed.
    absl::MutexLock lock(&file->mu);
    file->fanotify = fanotify;
    file->open_perm = open_perm;
    file->notify = notify;
    // Taken after the fanotify mark: if a read lease can be taken now, nobody has the file open
    // for writing, so every writable descriptor is opened after the mark and reports fallocate
    // events. Where pre-content events are armed the lease adds nothing (they catch
    // truncate(path), FAN_OPEN_PERM catches O_TRUNC), so it is only a probe, given up at once.
    const absl::Status armed = caps_.leases
                                   ? ArmReadLease(file->fd.get(), lease_signal_, listener_tid)
                                   : absl::FailedPreconditionError("file leases are off");
    file->writers_predate_mark = !armed.ok();
    if (armed.ok() && fanotify) ReleaseLease(file->fd.get());
    file->lease = armed.ok() && !fanotify;
    if (!armed.ok() && caps_.leases && !fanotify) {
      notes.push_back(absl::StrCat("no file lease yet: ", armed.message()));
    }
  }
  const GuardReport report = ReportFor(file->Armed());
  PB_LOG(INFO) << "guard armed on " << file->Name() << " (" << file->fs_type
               << "): guard=" << report.guard << "; unguarded (detected after): "
               << absl::StrJoin(report.unguarded_operations, ", ")
               << (notes.empty() ? "" : absl::StrCat("; ", absl::StrJoin(notes, "; ")));
  return file;
}

void FileGuard::Disarm(const std::shared_ptr<GuardedFile>& file) {
  if (!files_.Remove(file)) return;
  absl::MutexLock lock(&file->mu);
  if ((file->fanotify || file->open_perm) && pre_ != nullptr) pre_->Unmark(file->fd.get());
  if (file->notify && notify_ != nullptr) notify_->Unmark(file->fd.get());
  if (file->lease) ReleaseLease(file->fd.get());
  file->fanotify = file->open_perm = file->notify = file->lease = false;
  file->disarmed = true;
  PB_LOG(INFO) << "guard disarmed on " << file->Name() << ": no lease left";
}

void FileGuard::OnLeaseGranted(const LeaseInfo& lease, int fd) {
  std::shared_ptr<GuardedFile> file;
  bool revived = false;
  {
    // Counted under arm_mu_, so that a linger timer cannot disarm the file in between.
    absl::MutexLock arm(&arm_mu_);
    file = files_.Find(lease.file);
    if (file == nullptr) file = Arm(lease, fd);
    if (file == nullptr) return;
    absl::MutexLock lock(&file->mu);
    revived = file->leases.empty();
    GuardedFile::LeaseView& view = file->leases[lease.id];
    file->SetBeforeLocked(view, nullptr);  // Ids are never reused; exact even if one were.
    view.bytes = ByteRange{lease.offset, lease.length};
    file->live.store(file->leases.size());
  }
  if (revived) Revive(*file);

  // The layout the lease is granted under: the latest sweep if fstat says nothing changed since
  // it was taken (so no change before the grant can look like one after it); else, if the file
  // was swept before and the lease's bytes are all data now, the file's grant view
  // (GuardedFile::DenseView; AllDataNow looks at the lease's bytes, not the whole file); else a
  // new sweep. Both are taken after the grant, as a snapshot always was.
  std::shared_ptr<const FileLayout> before;
  struct stat st;
  if (::fstat(file->fd.get(), &st) == 0) {
    before = file->ReusableSweep(StampOf(st));
  }
  // The file's first grant sweeps it, so that the grants after it can reuse that sweep while
  // the file stays unchanged (cheaper still than a look at their bytes).
  if (const uint64_t begun = before == nullptr ? file->SweepsBegun() : 0; begun > 0) {
    uint64_t size = 0;
    absl::StatusOr<bool> all_data =
        AllDataNow(file->fd.get(), ByteRange{lease.offset, lease.length}, file->hole_page, &size);
    if (all_data.ok() && *all_data) before = file->DenseView(begun, size);
  }
  if (before == nullptr) {
    absl::StatusOr<std::shared_ptr<const FileLayout>> swept = file->Sweep();
    if (!swept.ok()) {
      PB_LOG(WARNING) << "guard: no layout snapshot of lease " << lease.id << " on " << file->Name()
                      << ": " << swept.status();
    } else {
      before = *std::move(swept);
    }
  }
  {
    absl::MutexLock lock(&file->mu);
    auto it = file->leases.find(lease.id);
    if (it != file->leases.end()) file->SetBeforeLocked(it->second, std::move(before));
  }
  // A lease that ended before it was counted (revoked the moment it was granted) had its end
  // reported to nobody: forget it now.
  if (!service_->IsLive(lease.id)) ForgetLease(file, lease.id);
}

void FileGuard::OnLeaseEnded(const LeaseInfo& lease) {
  std::shared_ptr<GuardedFile> file = files_.Find(lease.file);
  if (file != nullptr) ForgetLease(file, lease.id);
}

void FileGuard::Revive(GuardedFile& file) {
  if (!caps_.leases || files_.stopping()) return;
  const pid_t tid = listener_->tid();
  // As Arm() does: the marks stayed in place while the file lingered, so if a read lease can be
  // taken now, every writer opened the file after the mark.
  absl::MutexLock lock(&file.mu);
  if (file.disarmed || file.lease || file.lease_break_in_flight ||
      clock_->Now() < file.lease_hold_off) {
    return;
  }
  const bool armed = ArmReadLease(file.fd.get(), lease_signal_, tid).ok();
  if (armed) file.writers_predate_mark = false;
  if (armed && file.fanotify) ReleaseLease(file.fd.get());
  file.lease = armed && !file.fanotify;
}

void FileGuard::ForgetLease(const std::shared_ptr<GuardedFile>& file, LeaseId id) {
  {
    absl::MutexLock lock(&file->mu);
    if (!file->EraseViewLocked(id)) return;
    file->live.store(file->leases.size());
    if (!file->leases.empty()) return;
    file->idle_since = clock_->Now();
    // Nothing to guard while lingering: let opens and truncate(path) go by without a break.
    if (file->lease) ReleaseLease(file->fd.get());
    file->lease = false;
  }
  ScheduleLinger(file);
}

void FileGuard::ScheduleLinger(const std::shared_ptr<GuardedFile>& file) {
  if (options_.disarm_linger <= absl::ZeroDuration()) {
    LingerExpired(file->id);
    return;
  }
  absl::MutexLock lock(&mu_);
  if (stopping_ || linger_.contains(file->id)) return;
  const FileId id = file->id;
  linger_[id] =
      clock_->Schedule(clock_->Now() + options_.disarm_linger, [this, id] { LingerExpired(id); });
}

void FileGuard::LingerExpired(const FileId& id) {
  absl::MutexLock arm(&arm_mu_);
  {
    absl::MutexLock lock(&mu_);
    linger_.erase(id);
  }
  std::shared_ptr<GuardedFile> file = files_.Find(id);
  if (file == nullptr) return;
  absl::Time due;
  {
    absl::MutexLock lock(&file->mu);
    if (!file->leases.empty()) return;  // Pinned again meanwhile: stays armed.
    due = file->idle_since + options_.disarm_linger;
  }
  if (clock_->Now() >= due) {
    Disarm(file);
    return;
  }
  absl::MutexLock lock(&mu_);  // Idle again since the timer was set: wait the rest.
  if (stopping_ || linger_.contains(id)) return;
  linger_[id] = clock_->Schedule(due, [this, id] { LingerExpired(id); });
}

void FileGuard::YieldLease(const FileId& id) {
  std::shared_ptr<GuardedFile> file = files_.Find(id);
  if (file == nullptr) return;
  absl::MutexLock lock(&file->mu);
  if (file->lease) ReleaseLease(file->fd.get());
  file->lease = false;
  // The broker's own writer is about to open the file; do not re-arm before the next check.
  file->lease_hold_off = clock_->Now() + options_.check_interval;
}

void FileGuard::TryArmLease(GuardedFile& file) {
  if (!caps_.leases || files_.stopping()) return;
  const pid_t tid = listener_->tid();
  absl::MutexLock lock(&file.mu);
  if (file.disarmed || file.fanotify || file.lease || file.lease_break_in_flight ||
      file.leases.empty() || clock_->Now() < file.lease_hold_off) {
    return;
  }
  if (ArmReadLease(file.fd.get(), lease_signal_, tid).ok()) {
    file.lease = true;
    PB_LOG(INFO) << "guard: file lease on " << file.Name() << " armed again";
  }
}

GuardReport FileGuard::Report(const FileId& id) const {
  std::shared_ptr<GuardedFile> file = files_.Find(id);
  if (file == nullptr || file->live.load() == 0) return UnguardedReport();  // Lingering.
  return ReportFor(file->Armed());
}

// ---------------------------------------------------------------------------------------------
// Work

void FileGuard::Enqueue(std::unique_ptr<GuardWork> work) {
  work = pool_.Enqueue(std::move(work));
  if (work == nullptr) return;
  // Stop() has begun: answer now. A change to a file that still has leases fails (fanotify) or
  // goes ahead with the lease given up (file lease); everything else goes ahead.
  if (work->kind == GuardWork::Kind::kPreContent) {
    if (HasLiveLeases(work->file->id)) {
      work->event->Deny(EBUSY);
    } else {
      work->event->Allow();
    }
    return;
  }
  absl::MutexLock file_lock(&work->file->mu);
  ReleaseLease(work->file->fd.get());
  work->file->lease = false;
  work->file->lease_break_in_flight = false;
}

void FileGuard::QueueCheck(const std::shared_ptr<GuardedFile>& file,
                           std::optional<CallerSyscall> after) {
  {
    absl::MutexLock lock(&file->mu);
    if (file->check_queued && !after.has_value()) return;
    file->check_queued = true;
  }
  auto work = std::make_unique<GuardWork>();
  work->kind = GuardWork::Kind::kCheck;
  work->file = file;
  work->caller = std::move(after);
  Enqueue(std::move(work));
}

void FileGuard::QueueEventCheck(const std::shared_ptr<GuardedFile>& file) {
  const absl::Time now = clock_->Now();
  absl::Time at;
  {
    absl::MutexLock lock(&file->mu);
    if (file->event_check_timer != 0) return;  // The check at the gap's end covers this too.
    at = file->last_event_check + options_.event_check_gap;
    if (at <= now) file->last_event_check = now;
  }
  if (at <= now) return QueueCheck(file, std::nullopt);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
  }
  std::weak_ptr<GuardedFile> weak = file;
  Clock::TimerId timer;
  {
    // The callback takes the file's lock, so it sees the id set here.
    absl::MutexLock lock(&file->mu);
    timer = file->event_check_timer = clock_->Schedule(at, [this, weak] {
      std::shared_ptr<GuardedFile> due = weak.lock();
      if (due == nullptr) return;
      Clock::TimerId self;
      {
        absl::MutexLock lock(&due->mu);
        self = std::exchange(due->event_check_timer, 0);
        due->last_event_check = clock_->Now();
      }
      {
        absl::MutexLock lock(&mu_);
        event_timers_.erase(self);
      }
      QueueCheck(due, std::nullopt);
    });
  }
  // Only the listener thread schedules these, and Stop() cancels them after it stopped.
  {
    absl::MutexLock lock(&mu_);
    event_timers_.insert(timer);
  }
  // If it fired in between, its callback found nothing to forget: forget it here.
  bool fired;
  {
    absl::MutexLock lock(&file->mu);
    fired = file->event_check_timer != timer;
  }
  if (fired) {
    absl::MutexLock lock(&mu_);
    event_timers_.erase(timer);
  }
}

void FileGuard::QueueCheckAll() {
  if (files_.stopping()) return;
  for (const auto& file : files_.All()) QueueCheck(file, std::nullopt);
}

void FileGuard::Run(GuardWork& work) {
  switch (work.kind) {
    case GuardWork::Kind::kPreContent:
      runner_->RunPreContent(work);
      break;
    case GuardWork::Kind::kLeaseBreak:
      runner_->RunLeaseBreak(work);
      break;
    case GuardWork::Kind::kCheck:
      if (work.caller.has_value()) {
        WaitForSyscallExit(*work.caller, options_.completion_limit);
      }
      {
        absl::MutexLock lock(&work.file->mu);
        work.file->check_queued = false;
      }
      CheckFile(*work.file);
      break;
  }
}

void FileGuard::CheckNow() {
  for (const auto& file : files_.All()) CheckFile(*file);
}

void FileGuard::CheckFile(GuardedFile& file) {
  detect_.Check(file, [&] { TryArmLease(file); });
}

void FileGuard::ScheduleTick() {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  tick_ = clock_->Schedule(clock_->Now() + options_.check_interval, [this] {
    QueueCheckAll();
    ScheduleTick();
  });
}

void FileGuard::AwaitIdle() { pool_.AwaitIdle(); }

// ---------------------------------------------------------------------------------------------
// Stop

void FileGuard::Stop() {
  service_->AttachGuard(nullptr);  // Waits for hook calls in progress.
  Clock::TimerId tick;
  std::vector<Clock::TimerId> timers;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    tick = std::exchange(tick_, 0);
    for (const auto& [id, timer] : linger_) timers.push_back(timer);
    linger_.clear();
  }
  files_.BeginStop();
  pool_.BeginStop();
  detect_.Stop();
  if (tick != 0) clock_->Cancel(tick);
  for (Clock::TimerId t : timers) clock_->Cancel(t);

  // Changes being decided wait for leases: end those leases so every held caller is answered.
  for (const FileId& id : pool_.FilesWithChangesInFlight()) {
    std::vector<LeaseId> ids;
    for (const LeaseInfo& lease : service_->ListFileLeases(id)) ids.push_back(lease.id);
    service_->RevokeLeases(ids,
                           "broker shutting down while an out-of-band change of the file "
                           "was waiting for this lease");
  }
  AwaitIdle();

  if (listener_ != nullptr) listener_->Stop();
  // The listener, the only one to schedule event checks, has stopped: cancel what it scheduled.
  absl::flat_hash_set<Clock::TimerId> event_timers;
  {
    absl::MutexLock lock(&mu_);
    event_timers = std::move(event_timers_);
    event_timers_.clear();
  }
  for (Clock::TimerId t : event_timers) clock_->Cancel(t);
  {
    absl::MutexLock arm(&arm_mu_);
    for (const auto& file : files_.All()) Disarm(file);
  }
  // Closing the groups makes the kernel allow anything still queued and drop every mark.
  pre_.reset();
  notify_.reset();
  pool_.Join();
  PB_LOG(INFO) << "file guard stopped";
}

}  // namespace pinbroker::guard
