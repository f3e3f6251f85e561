// GuardedFile: the file guard's record of one guarded file: the guard's own read-only
// descriptor of it, which mechanisms are armed on it, the live leases the guard was told of
// (with the layout sweep each was granted under) and the file's latest sweep. Plus the two
// values the guard's threads pass around: a held fanotify permission event (HeldEvent) and a
// unit of work for the worker pool (GuardWork).
//
// The record only keeps state; arming and disarming are FileGuard's (file_guard.h), checks are
// DetectAfter's (detect_after.h), lease breaks and held changes ChangeRunner's (change_runner.h).
//
// Thread-safety: GuardedFile's mutable state is guarded by `mu`; `check_mu` is held for the
// whole detect-after check of the file (one check of a file at a time) and is taken before
// `mu`. The identity fields (id, names, fd, key) are set before the record is shared and never
// change. `live` mirrors leases.size() and may be read without `mu`. A HeldEvent and a
// GuardWork belong to one thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/scoped_fd.h"
#include "pinbroker/clock.h"
#include "pinning/file_info.h"
#include "pinning/guard/caller.h"
#include "pinning/guard/change_classifier.h"
#include "pinning/guard/fanotify_groups.h"
#include "pinning/guard/guard_report.h"
#include "pinning/guard/layout_snapshot.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"

namespace pinbroker::guard {

struct GuardedFile {
  FileId id;
  std::string export_name;
  std::string path;  // As the lease that armed the guard named it.
  std::string fs_type;
  // The size of the pages its holes come in, where the filesystem makes holes of whole pages and
  // SEEK_HOLE walks its page cache (tmpfs); 0 elsewhere. For AllDataNow().
  uint64_t hole_page = 0;
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
  // The last check its notification events asked for, and the timer of the next (0: none).
  absl::Time last_event_check ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  Clock::TimerId event_check_timer ABSL_GUARDED_BY(mu) = 0;
  bool disarmed ABSL_GUARDED_BY(mu) = false;

  // One check at a time (held for the whole check, before mu).
  absl::Mutex check_mu ABSL_ACQUIRED_BEFORE(mu);
  // Each live lease the guard was told of: its bytes and the sweep it was granted under
  // (nullptr while the grant is still taking it, or if it could not be taken). The sweep is
  // kept alive by held_sweeps, not by the view: 32 bytes a lease, not 40.
  struct LeaseView {
    ByteRange bytes;
    const FileLayout* before = nullptr;
  };
  using LeaseViews = absl::flat_hash_map<LeaseId, LeaseView>;
  LeaseViews leases ABSL_GUARDED_BY(mu);
  // Every sweep some view points at, with how many views do.
  struct HeldSweep {
    std::shared_ptr<const FileLayout> layout;
    size_t views = 0;
  };
  absl::flat_hash_map<const FileLayout*, HeldSweep> held_sweeps ABSL_GUARDED_BY(mu);
  // Points `view` at `sweep` (may be null), holding it for the view.
  void SetBeforeLocked(LeaseView& view, std::shared_ptr<const FileLayout> sweep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Forgets the view of `lease`, giving its sweep back; false if there was none.
  bool EraseViewLocked(LeaseId lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  std::atomic<size_t> live{0};  // leases.size(), readable without mu.
  // The latest sweep (highest sequence) and the next sequence number.
  std::shared_ptr<const FileLayout> latest ABSL_GUARDED_BY(mu);
  uint64_t sweeps ABSL_GUARDED_BY(mu) = 0;
  std::shared_ptr<const FileLayout> dense ABSL_GUARDED_BY(mu);       // The latest DenseView().
  absl::Time idle_since ABSL_GUARDED_BY(mu) = absl::InfinitePast();  // Last lease ended.

  // "export/path", for logs.
  std::string Name() const;
  ArmedMechanisms Armed() ABSL_LOCKS_EXCLUDED(mu);

  // Sweeps the file (SweepLayout on `fd`) and makes the sweep its latest, unless a sweep that
  // began later got there first. Each sweep gets the next sequence number.
  absl::StatusOr<std::shared_ptr<const FileLayout>> Sweep() ABSL_LOCKS_EXCLUDED(mu);

  // The latest sweep if it is settled and `stamp` (fstat now) says nothing changed since it was
  // taken; nullptr otherwise.
  std::shared_ptr<const FileLayout> ReusableSweep(const LayoutStamp& stamp) ABSL_LOCKS_EXCLUDED(mu);

  // How many sweeps have begun so far. Read after a grant and before its AllDataNow() probe:
  // every sweep numbered higher began after the grant.
  uint64_t SweepsBegun() ABSL_LOCKS_EXCLUDED(mu);

  // The grant view (FileLayout::grant_view) for grants whose bytes were all data within
  // `size`, probed after `begun` sweeps had begun: numbered begun + 1, shared by every such
  // grant until a sweep begins or the size differs. A grant on a file whose layout changed
  // since its latest sweep (its own pin filled a hole, a write moved the mtime) stands on it
  // instead of sweeping the whole file again; the next settled check moves it onto that
  // check's sweep (DetectAfter::Check).
  std::shared_ptr<const FileLayout> DenseView(uint64_t begun, uint64_t size)
      ABSL_LOCKS_EXCLUDED(mu);

  // Gives up the file lease if one is held (before an open that would break it, or a change
  // that is coordinated already). A later check arms it again, once nobody has the file open
  // for writing.
  void DropLease() ABSL_LOCKS_EXCLUDED(mu);
};

// A fanotify permission event the guard holds: answered exactly once, by Allow()/Deny() or,
// failing that, with "allow" on destruction (what the kernel would do if the group closed).
class HeldEvent {
 public:
  HeldEvent(PermissionGroup* group, ScopedFd fd) : group_(group), fd_(std::move(fd)) {}
  ~HeldEvent() { Allow(); }
  HeldEvent(const HeldEvent&) = delete;
  HeldEvent& operator=(const HeldEvent&) = delete;

  int fd() const { return fd_.get(); }
  void Allow();
  // Fails the caller with `err` (EPERM on kernels without errno responses); returns the errno
  // the caller gets, 0 if the answer could not be sent.
  int Deny(int err);

 private:
  PermissionGroup* const group_;
  ScopedFd fd_;
  bool answered_ = false;
};

// One unit of the worker pool's work.
struct GuardWork {
  enum class Kind { kPreContent, kLeaseBreak, kCheck };
  Kind kind = Kind::kCheck;
  std::shared_ptr<GuardedFile> file;
  std::unique_ptr<HeldEvent> event;     // kPreContent.
  ClassifiedChange change;              // kPreContent.
  std::optional<CallerSyscall> caller;  // kPreContent; kCheck: wait for it to finish first.
  uint64_t size_before = 0;             // kPreContent.
  absl::Time break_seen;                // kLeaseBreak.

  // A layout change (held event or lease break), as opposed to a check.
  bool is_change() const { return kind != Kind::kCheck; }
};

}  // namespace pinbroker::guard
