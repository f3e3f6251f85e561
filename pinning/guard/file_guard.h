// FileGuard: catches layout changes other processes make behind the broker's back to files it
// holds leases on (truncate(2), ftruncate(2), fallocate(2) hole punches, open(O_TRUNC), unlink),
// and applies the export's layout policy before the change takes effect wherever the kernel
// allows it. docs/GUARD.md is the user-facing description and the kernel x filesystem x
// operation matrix.
//
// Per leased file (armed on its first lease, disarmed Options::disarm_linger after its last
// lease ended unless a new one came meanwhile), with the guard's own O_RDONLY descriptor of it:
//   - fanotify open permission (FAN_OPEN_PERM, every kernel and filesystem with fanotify
//     permission events): an open(2) is held before it breaks a file lease and before O_TRUNC
//     truncates; O_TRUNC opens and creat(2) go through the LayoutCoordinator, other opens are
//     answered at once (opens for writing give the file lease up first);
//   - fanotify pre-content (FAN_PRE_ACCESS, Linux >= 6.14, not tmpfs): the caller of a
//     truncate or fallocate sleeps until the guard answers; the guard reads the caller's system
//     call (caller.h, change_classifier.h) to tell a punch from a write, and runs layout changes
//     through the LayoutCoordinator (GuardArbiter): allow, or fail with EBUSY;
//   - a read file lease (file_lease.h), only where pre-content events are not armed and only
//     while nobody has the file open for writing: catches truncate(path) (and opens for
//     writing where FAN_OPEN_PERM is missing); delay-only;
//   - fanotify notification (FAN_ATTRIB | FAN_MODIFY, by file handle) and a periodic check on
//     the Clock: detect-after. A link count of 0 recalls the file's leases with reason
//     "unlinked"; a size or hole change under a lease revokes it at once with reason
//     "out-of-band change" (layout_snapshot.h).
//
// Cost. A check sweeps each file once (size and every hole: O(extents), one page-cache walk on
// tmpfs) and compares every lease of the file against that one sweep by interval lookup; leases
// granted while nothing changed share the snapshot they were granted under, so a check of an
// unchanged file costs one sweep and one comparison per distinct snapshot. A grant reuses the
// file's latest sweep when fstat(2) says nothing changed since it was taken (LayoutStamp);
// otherwise, if its bytes are all data (one SEEK_HOLE from its offset, which walks only up to
// the next hole), it stands on the file's grant view until the next check moves it onto that
// check's sweep (GuardedFile::DenseView), and only a grant over a hole sweeps afresh. So pins
// that fill a sparse file, or pins while the file is written, do not each sweep the whole
// file. One check of a file runs at a time, and a file's notification events ask for one at most
// every event_check_gap (the first at once, the rest at the gap's end). The guard counts each
// file's live leases itself (the engine reports every end), so no grant, end or check lists the
// lease table.
//
// Threads and the no-deadlock rule. One listener thread reads every event source (two fanotify
// groups, a signalfd for lease-break signals, a wake-up eventfd) and never blocks on anything
// else: it answers ordinary accesses and opens itself at once (reads, writes, mmap, the broker's
// own calls) after a procfs read, and hands layout changes to worker threads (at most
// Options::max_workers; more wait in a queue, still held by the kernel). Workers decide and
// answer. Neither ever reads, writes, maps or truncates a guarded file: they use fstat(2),
// lseek(SEEK_HOLE/SEEK_DATA) and fcntl(2) on the guard's descriptor and procfs, none of which
// raises a pre-content event. Events raised by the broker's own threads (its mmap of a second
// lease, its own coordinated truncate) are allowed at once: they are already coordinated.
//
// Shutdown. Stop() answers every event: from the moment it starts, the listener fails layout
// changes on files that still have leases with EBUSY and allows everything else at once; it
// revokes the leases that changes already in progress wait for, so they finish at once; then it
// closes the groups, and the kernel allows whatever was still queued. pinbrokerd stops the
// guard after recalling every lease, so in practice nothing is waiting.
//
// Parts, one per piece of state (each header says what it guards):
//   GuardedFile    (guarded_file.h)    the per-file record: descriptor, armed mechanisms, the
//                                      live leases and their snapshots, the latest sweep;
//   ArmedFiles     (armed_files.h)     the armed files by id, descriptor and file handle;
//   GuardListener  (guard_listener.h)  the listener thread and its event loop;
//   WorkPool       (work_pool.h)       the work queue and the worker threads;
//   ChangeRunner   (change_runner.h)   held changes and lease breaks, through GuardArbiter;
//   DetectAfter    (detect_after.h)    the check of a file and the unlink recall.
// FileGuard itself arms and disarms files (and their linger), answers the engine's hooks, and
// starts and stops the rest.
//
// Thread-safety: every public method is safe to call concurrently. Lock order: arm_mu_ -> mu_;
// arm_mu_ -> GuardedFile::mu; GuardedFile::check_mu -> GuardedFile::mu. The own mutexes of
// ArmedFiles, WorkPool, GuardListener and DetectAfter are leaves: taken last, and never held
// while calling the guard or the engine. mu_ and GuardedFile::mu are never held together;
// check_mu is held only by the check of that file. The GuardEngine is called with at most
// arm_mu_ or one file's check_mu held; it never calls the guard while holding a lock of its own.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/scoped_fd.h"
#include "pinbroker/clock.h"
#include "pinning/guard/armed_files.h"
#include "pinning/guard/caller.h"
#include "pinning/guard/change_runner.h"
#include "pinning/guard/detect_after.h"
#include "pinning/guard/fanotify_groups.h"
#include "pinning/guard/guard_listener.h"
#include "pinning/guard/guarded_file.h"
#include "pinning/guard/work_pool.h"
#include "pinning/layout_guard.h"

namespace pinbroker::guard {

class FileGuard : public FileGuardHooks {
 public:
  struct Options {
    bool use_fanotify = true;  // Pre-content and notification groups, where available.
    bool use_leases = true;    // Read file leases, where they can be taken.
    // Clock period of the detect-after check of every guarded file (also retries file leases
    // that could not be taken or were broken).
    absl::Duration check_interval = absl::Seconds(1);
    // Clock time between two checks of a file that its notification events (a write, an
    // attribute change) ask for: events within it are answered by one check at its end. A file
    // written all the time is checked this often, not after every write. Zero: a check per
    // batch of events.
    absl::Duration event_check_gap = absl::Milliseconds(100);
    // Real time a change the guard let through keeps its range blocked while the kernel makes
    // it (until the caller's system call returns), so that no pin slips in between.
    absl::Duration completion_limit = absl::Seconds(2);
    // Clock time a file stays armed after its last lease ended (a file pinned again meanwhile
    // is not re-armed). Meanwhile it is reported unguarded and its file lease is given up; only
    // the fanotify marks and the descriptor stay. Zero: disarm at once.
    absl::Duration disarm_linger = absl::Seconds(1);
    int lease_signal = 0;  // 0: SIGRTMIN + 4.
    int max_workers = 16;
  };

  // What this kernel and process offer, found at Start().
  struct Capabilities {
    // A FAN_CLASS_PRE_CONTENT group could be created: FAN_OPEN_PERM marks work.
    bool permission_group = false;
    std::string permission_why;  // Why not, if not.
    // This kernel reports FAN_PRE_ACCESS (>= 6.14; per filesystem still).
    bool pre_content = false;
    std::string pre_content_why;
    bool notify_group = false;
    std::string notify_why;
    bool leases = false;
    int lease_break_seconds = 45;
  };

  // Starts the listener and attaches the guard to `service` (GuardEngine::AttachGuard). Never
  // fails for lack of kernel support: it then guards with what there is, down to detect-after
  // only, and says so in Report() and the log. INTERNAL if threads or descriptors cannot be made.
  static absl::StatusOr<std::unique_ptr<FileGuard>> Start(GuardEngine* service, Options options);
  static absl::StatusOr<std::unique_ptr<FileGuard>> Start(GuardEngine* service) {
    return Start(service, Options());
  }
  // Stop()s and detaches from the service.
  ~FileGuard() override;
  FileGuard(const FileGuard&) = delete;
  FileGuard& operator=(const FileGuard&) = delete;

  // See the header comment. Idempotent.
  void Stop();

  // FileGuardHooks.
  void OnLeaseGranted(const LeaseInfo& lease, int fd) override;
  void OnLeaseEnded(const LeaseInfo& lease) override;
  void YieldLease(const FileId& file) override;
  GuardReport Report(const FileId& file) const override;

  const Capabilities& capabilities() const { return caps_; }
  // "fanotify pre-content: yes; notification: yes; file leases: yes (break time 45 s)".
  std::string DescribeCapabilities() const;

  // Runs the detect-after check of every guarded file on the calling thread, now.
  void CheckNow();
  // Waits until no work is queued or running (for tests).
  void AwaitIdle();
  // Files with at least one live lease (not those lingering before they are disarmed).
  size_t guarded_files() const;
  // Files armed, lingering ones included (for tests).
  size_t armed_files() const;
  // Sweeps of `file` begun since it was armed; 0 if it is not armed (for tests).
  uint64_t sweeps(const FileId& file) const;

 private:
  FileGuard(GuardEngine* service, Options options);

  // Arming (arm_mu_ held).
  std::shared_ptr<GuardedFile> Arm(const LeaseInfo& lease, int fd)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(arm_mu_);
  void Disarm(const std::shared_ptr<GuardedFile>& file) ABSL_EXCLUSIVE_LOCKS_REQUIRED(arm_mu_);
  void TryArmLease(GuardedFile& file);
  // The first lease after a linger: takes the file lease (or its probe) again, as Arm() does.
  void Revive(GuardedFile& file);
  // Drops lease `id` from `file`'s count; the last one starts the linger.
  void ForgetLease(const std::shared_ptr<GuardedFile>& file, LeaseId id);
  void ScheduleLinger(const std::shared_ptr<GuardedFile>& file) ABSL_LOCKS_EXCLUDED(mu_);
  void LingerExpired(const FileId& id) ABSL_LOCKS_EXCLUDED(arm_mu_, mu_);

  // Work (WorkPool runs it; the listener and the change runner queue it).
  void Enqueue(std::unique_ptr<GuardWork> work);
  void QueueCheck(const std::shared_ptr<GuardedFile>& file, std::optional<CallerSyscall> after);
  void QueueCheckAll();
  // A check that `file`'s notification events ask for: now, or at the end of its
  // event_check_gap after the previous one (one timer per file, which Stop() cancels).
  void QueueEventCheck(const std::shared_ptr<GuardedFile>& file);
  void Run(GuardWork& work);
  void CheckFile(GuardedFile& file);
  void ScheduleTick() ABSL_LOCKS_EXCLUDED(mu_);

  bool HasLiveLeases(const FileId& id) const;

  GuardEngine* const service_;
  Clock* const clock_;
  const Options options_;
  const int lease_signal_;
  Capabilities caps_;

  std::unique_ptr<PermissionGroup> pre_;
  std::unique_ptr<NotifyGroup> notify_;
  ScopedFd signal_fd_;
  ArmedFiles files_;
  DetectAfter detect_;
  std::unique_ptr<ChangeRunner> runner_;  // Made once caps_ is known.
  WorkPool pool_;
  std::unique_ptr<GuardListener> listener_;

  absl::Mutex arm_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Clock::TimerId tick_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<FileId, Clock::TimerId> linger_ ABSL_GUARDED_BY(mu_);  // Disarm timers.
  // Pending QueueEventCheck() timers (an id may outlive its file's record; cancelling it then
  // does nothing).
  absl::flat_hash_set<Clock::TimerId> event_timers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::guard
