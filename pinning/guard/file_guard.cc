#include "pinning/guard/file_guard.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "pinning/guard/fanotify_abi.h"
#include "pinning/guard/file_lease.h"
#include "pinning/guard/guard_report.h"
#include "common/log.h"

namespace pinbroker::guard {

// One guarded file: the guard's own read-only descriptor and what is armed on it.
struct FileGuard::Watched {
  FileId id;
  std::string export_name;
  std::string path;  // As the lease that armed the guard named it.
  std::string fs_type;
  ScopedFd fd;      // Set before the record is shared; closed with the last reference.
  std::string key;  // NotifyGroup::KeyOf(fd), if notification events are on.

  absl::Mutex mu;
  bool fanotify ABSL_GUARDED_BY(mu) = false;   // FAN_PRE_ACCESS (with FAN_OPEN_PERM).
  bool open_perm ABSL_GUARDED_BY(mu) = false;  // FAN_OPEN_PERM.
  bool notify ABSL_GUARDED_BY(mu) = false;
  bool lease ABSL_GUARDED_BY(mu) = false;
  bool writers_predate_mark ABSL_GUARDED_BY(mu) = true;
  bool lease_break_in_flight ABSL_GUARDED_BY(mu) = false;
  absl::Time lease_hold_off ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  bool unlinked ABSL_GUARDED_BY(mu) = false;
  bool check_queued ABSL_GUARDED_BY(mu) = false;
  bool disarmed ABSL_GUARDED_BY(mu) = false;

  // One check at a time (held for the whole check, before mu).
  absl::Mutex check_mu ABSL_ACQUIRED_BEFORE(mu);
  // Each live lease the guard was told of: its bytes and the sweep it was granted under
  // (nullptr while the grant is still taking it, or if it could not be taken).
  struct LeaseView {
    ByteRange bytes;
    std::shared_ptr<const FileLayout> before;
  };
  absl::flat_hash_map<LeaseId, LeaseView> leases ABSL_GUARDED_BY(mu);
  std::atomic<size_t> live{0};  // leases.size(), readable without mu.
  // The latest sweep (highest sequence) and the next sequence number.
  std::shared_ptr<const FileLayout> latest ABSL_GUARDED_BY(mu);
  uint64_t sweeps ABSL_GUARDED_BY(mu) = 0;
  absl::Time idle_since ABSL_GUARDED_BY(mu) = absl::InfinitePast();  // Last lease ended.

  std::string Name() const { return absl::StrCat(export_name, "/", path); }
  ArmedMechanisms Armed() ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    return ArmedMechanisms{fanotify, open_perm, lease, writers_predate_mark};
  }
};

// A fanotify permission event the guard holds: answered exactly once, by Allow()/Deny() or,
// failing that, with "allow" on destruction (what the kernel would do if the group closed).
class FileGuard::HeldEvent {
 public:
  HeldEvent(PermissionGroup* group, ScopedFd fd) : group_(group), fd_(std::move(fd)) {}
  ~HeldEvent() { Allow(); }
  HeldEvent(const HeldEvent&) = delete;
  HeldEvent& operator=(const HeldEvent&) = delete;

  int fd() const { return fd_.get(); }
  void Allow() {
    if (answered_) return;
    answered_ = true;
    if (const absl::Status sent = group_->Allow(fd_.get()); !sent.ok()) {
      PB_LOG(WARNING) << "guard: " << sent;
    }
    fd_.reset();
  }
  // Fails the caller with `err` (EPERM on kernels without errno responses); returns the errno
  // the caller gets, 0 if the answer could not be sent.
  int Deny(int err) {
    if (answered_) return 0;
    answered_ = true;
    const absl::StatusOr<int> sent = group_->Deny(fd_.get(), err);
    if (!sent.ok()) {
      PB_LOG(WARNING) << "guard: " << sent.status();
    }
    fd_.reset();
    return sent.ok() ? *sent : 0;
  }

  PermissionGroup* const group_;
  ScopedFd fd_;
  bool answered_ = false;
};

struct FileGuard::Work {
  enum class Kind { kPreContent, kLeaseBreak, kCheck };
  Kind kind = Kind::kCheck;
  std::shared_ptr<Watched> file;
  std::unique_ptr<HeldEvent> event;     // kPreContent.
  ClassifiedChange change;              // kPreContent.
  std::optional<CallerSyscall> caller;  // kPreContent; kCheck: wait for it to finish first.
  uint64_t size_before = 0;             // kPreContent.
  absl::Time break_seen;                // kLeaseBreak.

  bool is_change() const { return kind != Kind::kCheck; }
};

namespace {

// How long to wait for a caller the kernel is holding for the guard to be seen asleep in its
// system call (it wakes the guard a moment before it sleeps).
constexpr absl::Duration kCallerSettleLimit = absl::Milliseconds(500);

absl::Status WriteWake(int fd) {
  const uint64_t one = 1;
  if (::write(fd, &one, sizeof(one)) != sizeof(one)) return ErrnoToStatus(errno, "eventfd");
  return absl::OkStatus();
}

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

std::string MechanismNote(const ArmedMechanisms& armed) {
  return absl::StrCat("guard ", ReportFor(armed).guard);
}

}  // namespace

FileGuard::FileGuard(GuardEngine* service, Options options)
    : service_(service),
      clock_(service->clock()),
      options_(options),
      lease_signal_(options.lease_signal != 0 ? options.lease_signal : SIGRTMIN + 4),
      arbiter_(service) {}

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
  guard->wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!guard->wake_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  if (absl::Status started = guard->StartThreads(); !started.ok()) return started;

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

absl::Status FileGuard::StartThreads() {
  listener_ = std::thread([this] { ListenLoop(); });
  absl::MutexLock lock(&mu_);
  auto started = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return listener_tid_ != 0; };
  mu_.Await(absl::Condition(&started));
  return absl::OkStatus();
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

std::shared_ptr<FileGuard::Watched> FileGuard::Find(const FileId& id) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<FileGuard::Watched>> FileGuard::AllWatched() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Watched>> out;
  for (const auto& [id, file] : files_) out.push_back(file);
  return out;
}

size_t FileGuard::guarded_files() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, file] : files_) n += file->live.load() > 0 ? 1 : 0;
  return n;
}

size_t FileGuard::armed_files() const {
  absl::MutexLock lock(&mu_);
  return files_.size();
}

bool FileGuard::HasLiveLeases(const FileId& id) const {
  return !service_->ListFileLeases(id).empty();
}

std::shared_ptr<FileGuard::Watched> FileGuard::Arm(const LeaseInfo& lease, int fd) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return nullptr;
  }
  auto file = std::make_shared<Watched>();
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
  file->fs_type = ::fstatfs(file->fd.get(), &fs) == 0
                      ? FilesystemName(static_cast<uint64_t>(fs.f_type))
                      : "unknown";
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
  pid_t listener_tid;
  {
    absl::MutexLock lock(&mu_);
    files_[file->id] = file;
    by_fd_[file->fd.get()] = file->id;
    if (notify) by_key_[file->key] = file->id;
    listener_tid = listener_tid_;
  }
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

void FileGuard::Disarm(const std::shared_ptr<Watched>& file) {
  {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(file->id);
    if (it == files_.end() || it->second != file) return;
    files_.erase(it);
    by_fd_.erase(file->fd.get());
    if (!file->key.empty()) by_key_.erase(file->key);
  }
  absl::MutexLock lock(&file->mu);
  if ((file->fanotify || file->open_perm) && pre_ != nullptr) pre_->Unmark(file->fd.get());
  if (file->notify && notify_ != nullptr) notify_->Unmark(file->fd.get());
  if (file->lease) ReleaseLease(file->fd.get());
  file->fanotify = file->open_perm = file->notify = file->lease = false;
  file->disarmed = true;
  PB_LOG(INFO) << "guard disarmed on " << file->Name() << ": no lease left";
}

void FileGuard::OnLeaseGranted(const LeaseInfo& lease, int fd) {
  std::shared_ptr<Watched> file;
  bool revived = false;
  {
    // Counted under arm_mu_, so that a linger timer cannot disarm the file in between.
    absl::MutexLock arm(&arm_mu_);
    file = Find(lease.file);
    if (file == nullptr) file = Arm(lease, fd);
    if (file == nullptr) return;
    absl::MutexLock lock(&file->mu);
    revived = file->leases.empty();
    file->leases[lease.id] = Watched::LeaseView{ByteRange{lease.offset, lease.length}, nullptr};
    file->live.store(file->leases.size());
  }
  if (revived) Revive(file);

  // The layout the lease is granted under: the latest sweep if fstat says nothing changed since
  // it was taken (so no change before the grant can look like one after it), else a new sweep
  // (taken after the grant, as a snapshot always was).
  std::shared_ptr<const FileLayout> before;
  struct stat st;
  if (::fstat(file->fd.get(), &st) == 0) {
    const LayoutStamp stamp = StampOf(st);
    absl::MutexLock lock(&file->mu);
    if (file->latest != nullptr && file->latest->settled && file->latest->stamp == stamp) {
      before = file->latest;
    }
  }
  if (before == nullptr) {
    absl::StatusOr<std::shared_ptr<const FileLayout>> swept = Sweep(*file);
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
    if (it != file->leases.end()) it->second.before = std::move(before);
  }
  // A lease that ended before it was counted (revoked the moment it was granted) had its end
  // reported to nobody: forget it now.
  if (!service_->IsLive(lease.id)) ForgetLease(file, lease.id);
}

void FileGuard::OnLeaseEnded(const LeaseInfo& lease) {
  std::shared_ptr<Watched> file = Find(lease.file);
  if (file != nullptr) ForgetLease(file, lease.id);
}

void FileGuard::Revive(const std::shared_ptr<Watched>& file) {
  if (!caps_.leases) return;
  pid_t tid;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    tid = listener_tid_;
  }
  // As Arm() does: the marks stayed in place while the file lingered, so if a read lease can be
  // taken now, every writer opened the file after the mark.
  absl::MutexLock lock(&file->mu);
  if (file->disarmed || file->lease || file->lease_break_in_flight ||
      clock_->Now() < file->lease_hold_off) {
    return;
  }
  const bool armed = ArmReadLease(file->fd.get(), lease_signal_, tid).ok();
  if (armed) file->writers_predate_mark = false;
  if (armed && file->fanotify) ReleaseLease(file->fd.get());
  file->lease = armed && !file->fanotify;
}

void FileGuard::ForgetLease(const std::shared_ptr<Watched>& file, LeaseId id) {
  {
    absl::MutexLock lock(&file->mu);
    if (file->leases.erase(id) == 0) return;
    file->live.store(file->leases.size());
    if (!file->leases.empty()) return;
    file->idle_since = clock_->Now();
    // Nothing to guard while lingering: let opens and truncate(path) go by without a break.
    if (file->lease) ReleaseLease(file->fd.get());
    file->lease = false;
  }
  ScheduleLinger(file);
}

void FileGuard::ScheduleLinger(const std::shared_ptr<Watched>& file) {
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
  std::shared_ptr<Watched> file = Find(id);
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

absl::StatusOr<std::shared_ptr<const FileLayout>> FileGuard::Sweep(Watched& file) {
  uint64_t sequence;
  {
    absl::MutexLock lock(&file.mu);
    sequence = ++file.sweeps;
  }
  absl::StatusOr<FileLayout> swept = SweepLayout(file.fd.get());
  if (!swept.ok()) return swept.status();
  swept->sequence = sequence;
  auto layout = std::make_shared<const FileLayout>(*std::move(swept));
  absl::MutexLock lock(&file.mu);
  if (file.latest == nullptr || file.latest->sequence < sequence) file.latest = layout;
  return layout;
}

void FileGuard::YieldLease(const FileId& id) {
  std::shared_ptr<Watched> file = Find(id);
  if (file == nullptr) return;
  absl::MutexLock lock(&file->mu);
  if (file->lease) ReleaseLease(file->fd.get());
  file->lease = false;
  // The broker's own writer is about to open the file; do not re-arm before the next check.
  file->lease_hold_off = clock_->Now() + options_.check_interval;
}

void FileGuard::TryArmLease(const std::shared_ptr<Watched>& file) {
  if (!caps_.leases) return;
  pid_t tid;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    tid = listener_tid_;
  }
  absl::MutexLock lock(&file->mu);
  if (file->disarmed || file->fanotify || file->lease || file->lease_break_in_flight ||
      file->leases.empty() || clock_->Now() < file->lease_hold_off) {
    return;
  }
  if (ArmReadLease(file->fd.get(), lease_signal_, tid).ok()) {
    file->lease = true;
    PB_LOG(INFO) << "guard: file lease on " << file->Name() << " armed again";
  }
}

GuardReport FileGuard::Report(const FileId& id) const {
  std::shared_ptr<Watched> file = Find(id);
  if (file == nullptr || file->live.load() == 0) return UnguardedReport();  // Lingering.
  return ReportFor(file->Armed());
}

// ---------------------------------------------------------------------------------------------
// Listener

void FileGuard::ListenLoop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, lease_signal_);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  {
    absl::MutexLock lock(&mu_);
    listener_tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
  }
  for (;;) {
    struct pollfd fds[4] = {
        {wake_fd_.get(), POLLIN, 0},
        {pre_ != nullptr ? pre_->fd() : -1, POLLIN, 0},
        {notify_ != nullptr ? notify_->fd() : -1, POLLIN, 0},
        {signal_fd_.get(), POLLIN, 0},
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
      if (listener_exit_) return;
    }
    if (fds[1].revents != 0) HandlePermissionEvents();
    if (fds[2].revents != 0) HandleNotifyEvents();
    if (fds[3].revents != 0) HandleLeaseSignals();
  }
}

void FileGuard::HandlePermissionEvents() {
  absl::StatusOr<std::vector<PermissionGroup::Event>> events = pre_->ReadEvents();
  if (!events.ok()) {
    PB_LOG(ERROR) << "guard: " << events.status();
    return;
  }
  for (PermissionGroup::Event& ev : *events) {
    auto held = std::make_unique<HeldEvent>(pre_.get(), std::move(ev.fd));
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
    std::shared_ptr<Watched> file =
        Find(FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
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
      QueueCheck(file, caller);
      continue;
    }
    auto work = std::make_unique<Work>();
    work->kind = Work::Kind::kPreContent;
    work->file = file;
    work->event = std::move(held);
    work->change = change;
    work->caller = std::move(caller);
    work->size_before = static_cast<uint64_t>(st.st_size);
    Enqueue(std::move(work));
  }
}

void FileGuard::DropLease(Watched& file) {
  absl::MutexLock lock(&file.mu);
  if (!file.lease) return;
  ReleaseLease(file.fd.get());
  file.lease = false;  // Re-armed by a later check, once nobody has the file open for writing.
}

void FileGuard::HandleOpen(const std::shared_ptr<Watched>& file, std::unique_ptr<HeldEvent> held,
                           pid_t tid, uint64_t size) {
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
  switch (intent.kind) {
    case OpenIntent::Kind::kRead:
      held->Allow();
      return;
    case OpenIntent::Kind::kWrite:
    case OpenIntent::Kind::kUnknown:
      // A writer (or maybe one): give the file lease up first, so that the open neither waits
      // for a lease break nor fails with EAGAIN (O_NONBLOCK); its layout changes, if any, come
      // as pre-content events or are detected after.
      DropLease(*file);
      held->Allow();
      if (intent.kind == OpenIntent::Kind::kUnknown) QueueCheck(file, caller);
      return;
    case OpenIntent::Kind::kTruncate:
      break;
  }
  auto work = std::make_unique<Work>();
  work->kind = Work::Kind::kPreContent;
  work->file = file;
  work->event = std::move(held);
  work->change.kind = ClassifiedChange::Kind::kTruncate;
  work->change.new_size = 0;
  work->change.call = intent.call;
  work->caller = std::move(caller);
  work->size_before = size;
  Enqueue(std::move(work));
}

void FileGuard::HandleNotifyEvents() {
  absl::StatusOr<std::vector<NotifyGroup::Event>> events = notify_->ReadEvents();
  if (!events.ok()) {
    PB_LOG(ERROR) << "guard: " << events.status();
    return;
  }
  bool all = false;
  std::vector<std::shared_ptr<Watched>> files;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    for (const NotifyGroup::Event& ev : *events) {
      auto it = ev.key.empty() ? by_key_.end() : by_key_.find(ev.key);
      if (it == by_key_.end()) {
        all = true;  // Overflow, or a handle we cannot match: check everything.
        continue;
      }
      auto file = files_.find(it->second);
      if (file != files_.end()) files.push_back(file->second);
    }
  }
  if (all) {
    QueueCheckAll();
    return;
  }
  for (const auto& file : files) QueueCheck(file, std::nullopt);
}

void FileGuard::HandleLeaseSignals() {
  struct signalfd_siginfo si;
  while (::read(signal_fd_.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
    std::shared_ptr<Watched> file;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
      auto it = by_fd_.find(static_cast<int>(si.ssi_fd));
      if (it != by_fd_.end()) {
        auto f = files_.find(it->second);
        if (f != files_.end()) file = f->second;
      }
    }
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
    auto work = std::make_unique<Work>();
    work->kind = Work::Kind::kLeaseBreak;
    work->file = file;
    work->break_seen = clock_->Now();
    Enqueue(std::move(work));
  }
}

// ---------------------------------------------------------------------------------------------
// Work

void FileGuard::Enqueue(std::unique_ptr<Work> work) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ || !work->is_change()) {
      if (work->is_change()) ++changes_in_flight_[work->file->id];
      queue_.push_back(std::move(work));
      if (idle_workers_ == 0 && static_cast<int>(workers_.size()) < options_.max_workers &&
          !workers_exit_) {
        workers_.emplace_back([this] { WorkerLoop(); });
      }
      return;
    }
  }
  // Stop() has begun: answer now. A change to a file that still has leases fails (fanotify) or
  // goes ahead with the lease given up (file lease); everything else goes ahead.
  if (work->kind == Work::Kind::kPreContent) {
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

void FileGuard::QueueCheck(const std::shared_ptr<Watched>& file,
                           std::optional<CallerSyscall> after) {
  {
    absl::MutexLock lock(&file->mu);
    if (file->check_queued && !after.has_value()) return;
    file->check_queued = true;
  }
  auto work = std::make_unique<Work>();
  work->kind = Work::Kind::kCheck;
  work->file = file;
  work->caller = std::move(after);
  Enqueue(std::move(work));
}

void FileGuard::QueueCheckAll() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
  }
  for (const auto& file : AllWatched()) QueueCheck(file, std::nullopt);
}

void FileGuard::WorkerLoop() {
  for (;;) {
    std::unique_ptr<Work> work;
    {
      absl::MutexLock lock(&mu_);
      ++idle_workers_;
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || workers_exit_;
      };
      mu_.Await(absl::Condition(&ready));
      --idle_workers_;
      if (queue_.empty()) return;
      work = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    const FileId id = work->file->id;
    const bool change = work->is_change();
    Run(*work);
    work.reset();  // Answers an event nothing answered (allow), before counting it done.
    absl::MutexLock lock(&mu_);
    --running_;
    if (change && --changes_in_flight_[id] == 0) changes_in_flight_.erase(id);
  }
}

void FileGuard::Run(Work& work) {
  switch (work.kind) {
    case Work::Kind::kPreContent:
      RunPreContent(work);
      break;
    case Work::Kind::kLeaseBreak:
      RunLeaseBreak(work);
      break;
    case Work::Kind::kCheck:
      if (work.caller.has_value()) {
        WaitForSyscallExit(*work.caller, options_.completion_limit);
      }
      {
        absl::MutexLock lock(&work.file->mu);
        work.file->check_queued = false;
      }
      CheckFile(work.file);
      break;
  }
}

void FileGuard::RunPreContent(Work& work) {
  Watched& file = *work.file;
  GuardArbiter::Request request;
  request.file = file.id;
  request.export_name = file.export_name;
  request.change = work.change;
  request.size_before = work.size_before;
  request.actor = CallerName(work.caller.has_value() ? work.caller->tid : 0);
  request.mechanism = "fanotify";
  request.interception = GuardArbiter::Interception::kCanFail;
  const GuardArbiter::Verdict verdict = arbiter_.Decide(request, [&] {
    DropLease(file);  // An O_TRUNC open would break it: this change is coordinated already.
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

void FileGuard::RunLeaseBreak(Work& work) {
  const std::shared_ptr<Watched>& file = work.file;
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
  // The breaker signals before it sleeps: look again for a little while if nobody is there.
  std::vector<CallerSyscall> breakers = FindLeaseBreakers();
  const absl::Time give_up = absl::Now() + kCallerSettleLimit;
  for (absl::Duration pause = absl::Microseconds(100); breakers.empty() && absl::Now() < give_up;
       pause = std::min(pause * 2, absl::Milliseconds(10))) {
    std::this_thread::sleep_for(absl::ToChronoMicroseconds(pause));
    breakers = FindLeaseBreakers();
  }
  std::optional<ClassifiedChange> chosen;
  std::optional<CallerSyscall> who;
  for (const CallerSyscall& breaker : breakers) {
    if (IsOwnThread(breaker.tid)) continue;
    int path_index, dirfd_index;
    if (!PathArgument(breaker, &path_index, &dirfd_index)) continue;
    const int dirfd = dirfd_index < 0 ? AT_FDCWD : static_cast<int>(breaker.args[dirfd_index]);
    absl::StatusOr<FileId> target = ResolveCallerPath(breaker.tid, dirfd, breaker.args[path_index]);
    if (!target.ok() || *target != file->id) continue;
    std::optional<uint64_t> how;
    if (breaker.nr == SYS_openat2) {
      if (absl::StatusOr<uint64_t> flags = ReadCallerOpenHowFlags(breaker.tid, breaker.args[2]);
          flags.ok()) {
        how = *flags;
      }
    }
    const ClassifiedChange change = ClassifyLeaseBreak(breaker, how);
    const bool better =
        !chosen.has_value() || (change.changes_layout() &&
                                (!chosen->changes_layout() || change.new_size < chosen->new_size));
    if (better) {
      chosen = change;
      who = breaker;
    }
  }
  if (!chosen.has_value()) {
    // Nobody identifiable (the breaker gave up, an O_NONBLOCK open, another pid namespace):
    // let it go and look at the result.
    finish();
    QueueCheck(file, std::nullopt);
    return;
  }
  // truncate(2) raises the fanotify event before it breaks the lease: already coordinated.
  if (!chosen->changes_layout() || (fanotify && who->nr == SYS_truncate)) {
    finish();
    if (chosen->kind == ClassifiedChange::Kind::kUnknown) QueueCheck(file, who);
    return;
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
  request.answer_by = work.break_seen + absl::Seconds(caps_.lease_break_seconds);
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

void FileGuard::CheckNow() {
  for (const auto& file : AllWatched()) CheckFile(file);
}

void FileGuard::CheckFile(const std::shared_ptr<Watched>& file) {
  absl::MutexLock check(&file->check_mu);
  struct stat st;
  if (::fstat(file->fd.get(), &st) != 0) return;
  if (st.st_nlink == 0) {
    bool first;
    {
      absl::MutexLock lock(&file->mu);
      first = !file->unlinked;
      file->unlinked = true;
    }
    if (first) HandleUnlinked(file);
  }
  if (file->live.load() == 0) return;  // Lingering: nothing to compare.
  absl::StatusOr<std::shared_ptr<const FileLayout>> swept = Sweep(*file);
  if (!swept.ok()) return;
  const FileLayout& now = **swept;
  // Every lease against the one sweep. Leases granted under the same snapshot share the
  // "unchanged" verdict; snapshots taken after this sweep began are not compared with it (a
  // hole filled in between would look like data turned into a hole).
  std::vector<std::pair<LeaseId, std::string>> removed;
  {
    absl::MutexLock lock(&file->mu);
    absl::flat_hash_map<const FileLayout*, bool> unchanged;
    for (const auto& [id, view] : file->leases) {
      if (view.before == nullptr || view.before->sequence > now.sequence) continue;
      auto [same, fresh] = unchanged.try_emplace(view.before.get(), false);
      if (fresh) same->second = view.before->SameLayout(now);
      if (same->second) continue;
      std::optional<std::string> what =
          RemovedUnder(Within(*view.before, view.bytes), Within(now, view.bytes));
      if (what.has_value()) removed.emplace_back(id, *std::move(what));
    }
  }
  if (!removed.empty()) {
    std::sort(removed.begin(), removed.end());
    const std::string note = MechanismNote(file->Armed());
    for (const auto& [id, what] : removed) {
      const std::string reason = absl::StrCat(
          "out-of-band change: ", what, " behind the broker's back (detected afterwards; ", note,
          " on ", file->fs_type, " could not intercept it)");
      if (service_->RevokeLeases({id}, reason) > 0) {
        PB_LOG(WARNING) << "guard: lease " << id << " on " << file->Name()
                        << " revoked: " << reason;
      }
    }
  }
  TryArmLease(file);
}

void FileGuard::HandleUnlinked(const std::shared_ptr<Watched>& file) {
  const std::vector<LeaseInfo> leases = service_->ListFileLeases(file->id);
  if (leases.empty()) return;
  ExportOptions exp;
  if (std::optional<ExportOptions> e = service_->ExportOptionsFor(file->export_name)) {
    exp = *std::move(e);
  }
  const absl::Time now = clock_->Now();
  const bool revoke = exp.default_policy == LayoutPolicy::kRevoke;
  const std::string reason =
      absl::StrCat("unlinked: ", file->Name(),
                   " was deleted; release the lease so that its space can be reclaimed");
  std::vector<LeaseId> ids;
  for (const LeaseInfo& lease : leases) {
    // revoke: recall with the grace period, then revoke. defer/refuse: recall only; a
    // recalling lease cannot be renewed, so it ends at its TTL at the latest.
    const absl::Time deadline = revoke ? now + exp.grace : lease.expires_at;
    if (!service_->RecallLeases({lease.id}, reason, deadline).empty()) ids.push_back(lease.id);
  }
  PB_LOG(WARNING) << "guard: " << file->Name() << " was unlinked; recalled leases ["
                  << absl::StrJoin(ids, ",") << "] under policy "
                  << LayoutPolicyName(exp.default_policy);
  if (!revoke || ids.empty()) return;
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  timers_.push_back(clock_->Schedule(now + exp.grace, [service = service_, ids, reason] {
    service->RevokeLeases(ids, absl::StrCat("not released within the grace period: ", reason));
  }));
}

void FileGuard::ScheduleTick() {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  tick_ = clock_->Schedule(clock_->Now() + options_.check_interval, [this] {
    QueueCheckAll();
    ScheduleTick();
  });
}

void FileGuard::AwaitIdle() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && running_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

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
    timers = std::move(timers_);
    for (const auto& [id, timer] : linger_) timers.push_back(timer);
    linger_.clear();
  }
  if (tick != 0) clock_->Cancel(tick);
  for (Clock::TimerId t : timers) clock_->Cancel(t);

  // Changes being decided wait for leases: end those leases so every held caller is answered.
  std::vector<FileId> waiting;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, count] : changes_in_flight_) waiting.push_back(id);
  }
  for (const FileId& id : waiting) {
    std::vector<LeaseId> ids;
    for (const LeaseInfo& lease : service_->ListFileLeases(id)) ids.push_back(lease.id);
    service_->RevokeLeases(ids,
                           "broker shutting down while an out-of-band change of the file "
                           "was waiting for this lease");
  }
  AwaitIdle();

  {
    absl::MutexLock lock(&mu_);
    listener_exit_ = true;
  }
  WriteWake(wake_fd_.get()).IgnoreError();
  if (listener_.joinable()) listener_.join();
  {
    absl::MutexLock arm(&arm_mu_);
    for (const auto& file : AllWatched()) Disarm(file);
  }
  // Closing the groups makes the kernel allow anything still queued and drop every mark.
  pre_.reset();
  notify_.reset();
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    workers_exit_ = true;
    workers = std::move(workers_);
  }
  for (std::thread& t : workers) t.join();
  PB_LOG(INFO) << "file guard stopped";
}

}  // namespace pinbroker::guard
