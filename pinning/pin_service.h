// PinService: the engine's front door. The gRPC service (broker/) is a thin layer over it.
//
// It owns the exports, the lease table, the per-file busy-range maps and the layout
// coordinator, and drives a PinBackend it does not own. Every operation validates its input
// first and, on any error, leaves no state behind: no lease, no reservation, no backend pin, no
// block, no half-applied layout change.
//
// Pins inside a range that a layout change has blocked fail at once with ABORTED, or, if the
// request sets `wait_if_blocked`, wait that long for the change to finish and then proceed
// (re-checking the range against the new size) or fail with ABORTED. A pin that was being set
// up when the block arrived fails with ABORTED too: retry it.
//
// Layout changes come in two forms: Truncate()/PunchHole() block their calling thread while
// they wait (queued behind another change on the file, defer, revoke grace); TruncateAsync()/
// PunchHoleAsync() return at once and hold no thread while they wait (the coordinator's small
// executor runs their steps and their completion). RevokeAfterGraceAsync() likewise waits for a
// recalled lease's end without a thread. Destruction and RecallAll() complete every pending
// asynchronous change with UNAVAILABLE.
//
// Thread-safety: safe to call concurrently from any number of threads. Everything but the
// synchronous layout operations returns promptly except for the backend's own work.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pinbroker/clock.h"
#include "pinning/busy_range_map.h"
#include "pinning/credentials.h"
#include "pinning/export.h"
#include "pinning/file_registry.h"
#include "pinning/layout_coordinator.h"
#include "pinning/layout_guard.h"
#include "pinning/lease_lifecycle.h"
#include "pinning/lease_table.h"
#include "pinning/pin_backend.h"
#include "pinning/quota.h"

namespace pinbroker {

struct PinRequest {
  std::string owner;  // Who holds the lease (the service's session id).
  std::string export_name;
  std::string path;  // Relative to the export root.
  uint64_t offset = 0;
  uint64_t length = 0;  // Bytes; the lease holds the whole pages covering them.
  Access access = Access::kRead;
  absl::Duration ttl = absl::ZeroDuration();  // Zero: the export's default; capped at its max.
  absl::Duration wait_if_blocked = absl::ZeroDuration();  // See the header comment.
  bool rdma = false;  // Remote access through the owner's RDMA connection (PinSpec::rdma).
  // Whose permissions the file is opened with (read for kRead, write for kReadWrite); unset:
  // the broker's own (in-process callers and tests).
  std::optional<UnixCredentials> caller;
  // Whether the lease may refuse or defer another caller's layout change (LeaseInfo::
  // guards_layout). Unset: the kernel decides at pin time: yes for a READ_WRITE pin, and for a
  // READ pin only if the holder (`caller`, else the broker) may write the opened file
  // (faccessat2 W_OK with its credentials). false: never (the broker sets it when the
  // export's `layout` rule does not admit the holder).
  std::optional<bool> may_guard_layout;
  // If set, asked atomically with the grant (LeaseTable::Insert's `admit`): a non-OK status
  // fails the pin with it and leaves nothing behind. The service uses it to refuse pins of a
  // session closed while they were being set up. Must not call into the engine.
  std::function<absl::Status()> admit;
  // The holder's quota account: the lease counts against its leases and pinned bytes (and the
  // export's per-identity limits) from before the backend pins until the lease is retired.
  // Unset: only the broker-wide budget applies.
  std::shared_ptr<QuotaAccount> account;
  // The holder's identity ("uid 1001"): named in a refusal by the broker-wide budget, and whose
  // share of the backend's own limits the lease counts against (PinSpec::holder; the host
  // backend's VMAs). May be empty: in-process callers then share one unnamed holder.
  std::string holder;
};

// Which layout change, on what, with which policy. Unset policy/grace/timeout take the export's.
struct LayoutRequest {
  std::string export_name;
  std::string path;
  std::optional<LayoutPolicy> policy;
  std::optional<absl::Duration> grace;
  std::optional<absl::Duration> timeout;  // Bounds queueing and defer; default layout_timeout.
  std::string initiator;
  // Whose write permission the change needs (see PinRequest::caller); unset: the broker's own.
  std::optional<UnixCredentials> caller;
  // Which leases the caller may learn of, by owner (LayoutOptions::discloses); null: all.
  std::function<bool(absl::string_view owner)> discloses;
};

struct FileDescription {
  std::string export_name;
  std::string path;
  FileInfo info;
  std::vector<LeaseInfo> leases;          // Live leases on the file, ascending id.
  std::vector<BusyRangeMap::Entry> busy;  // Every busy range, held or being set up.
  std::vector<BusyRangeMap::BlockInfo> blocked;
  // How the file guard watches the file (GuardReport; "none" without a guard).
  std::string guard = "none";
  std::vector<std::string> unguarded_operations;
  std::vector<RegistrationInfo> registrations;  // The backend's (PinBackend::Registrations).
};

class PinService final : public GuardEngine {
 public:
  struct Options {
    LeaseTable::Options table;
    // See LayoutCoordinator::ApplyObserver.
    LayoutCoordinator::ApplyObserver on_layout_apply;
    // Bytes all leases together may pin (page-rounded lease lengths); a pin past it is refused
    // with RESOURCE_EXHAUSTED before the backend pins anything.
    uint64_t pinned_bytes_budget = kUnlimited;
  };

  // Opens every export (names must be unique). The clock and backend must outlive the service.
  static absl::StatusOr<std::unique_ptr<PinService>> Create(Clock* clock, PinBackend* backend,
                                                            std::vector<ExportOptions> exports,
                                                            Options options);
  static absl::StatusOr<std::unique_ptr<PinService>> Create(Clock* clock, PinBackend* backend,
                                                            std::vector<ExportOptions> exports) {
    return Create(clock, backend, std::move(exports), Options());
  }
  // Revokes every remaining lease through the backend.
  ~PinService() override;
  PinService(const PinService&) = delete;
  PinService& operator=(const PinService&) = delete;

  // Grants a lease. Errors: INVALID_ARGUMENT (no owner, zero or overflowing length, negative
  // TTL), NOT_FOUND (export or file), OUT_OF_RANGE (range not within the file), the export's
  // path errors (see Export::OpenFile), PERMISSION_DENIED (write on a read-only export),
  // ABORTED (blocked by, or raced with, a layout change), RESOURCE_EXHAUSTED (the holder's
  // quota or the broker-wide budget of pinned bytes), and the backend's errors.
  absl::StatusOr<LeaseInfo> Pin(const PinRequest& request);

  // Extends a lease by `ttl` from now (zero: the export's default; capped at its max).
  absl::StatusOr<LeaseInfo> Renew(absl::string_view owner, LeaseId id, absl::Duration ttl);

  // The holder gives the lease back. NOT_FOUND for unknown, ended or foreign leases.
  absl::Status Release(absl::string_view owner, LeaseId id);

  // Revokes each of `ids` that is still live with `reason` (the backend already lost their
  // access, e.g. their RDMA connection went away). Ids that ended meanwhile are skipped.
  // Returns how many were revoked.
  size_t RevokeLeases(const std::vector<LeaseId>& ids, const std::string& reason) override;

  absl::StatusOr<LayoutResult> Truncate(const LayoutRequest& request, uint64_t new_size);
  absl::StatusOr<LayoutResult> PunchHole(const LayoutRequest& request, uint64_t offset,
                                         uint64_t length);

  // The same without a waiting thread. The file is opened on this thread, with the caller's
  // credentials, before the call returns; `done` gets what the synchronous form would return,
  // on the coordinator's executor (never on this thread), after the range is unblocked.
  // After RecallAll() began, or while the service is destroyed: UNAVAILABLE.
  using LayoutDone = LayoutCoordinator::Done;
  void TruncateAsync(const LayoutRequest& request, uint64_t new_size, LayoutDone done);
  void PunchHoleAsync(const LayoutRequest& request, uint64_t offset, uint64_t length,
                      LayoutDone done);

  // Recalls lease `id` with `reason` (deadline `deadline`) and, without holding a thread,
  // completes once the lease has ended (done(false): its holder released it, or it expired or
  // was revoked otherwise) or, at `deadline`, revokes it (done(true) if this revoked it). A
  // lease that is not live completes with done(false) at once. The returned id lets
  // EndRevokeWait() revoke at once instead (a cancelled call). RecallAll() and destruction
  // end every such wait the same way. `done` runs on the executor.
  using RevokeWaitId = uint64_t;
  RevokeWaitId RevokeAfterGraceAsync(LeaseId id, std::string reason, absl::Time deadline,
                                     absl::AnyInvocable<void(bool revoked)> done)
      ABSL_LOCKS_EXCLUDED(revoke_mu_);
  // Ends a RevokeAfterGraceAsync() wait now, revoking the lease if it is still live. No-op
  // once the wait completed.
  void EndRevokeWait(RevokeWaitId wait) ABSL_LOCKS_EXCLUDED(revoke_mu_);
  // Asynchronous layout changes and revoke waits not yet completed (for tests and metrics).
  size_t pending_async() const ABSL_LOCKS_EXCLUDED(revoke_mu_);
  // Layout changes (either form) and revoke waits parked right now with their deadline timer
  // set (LayoutCoordinator::parked()): for tests that move a SimulatedClock.
  size_t parked() const ABSL_LOCKS_EXCLUDED(revoke_mu_);

  std::vector<LeaseInfo> ListLeases(const LeaseFilter& filter) const;
  // The live lease `id` (O(log n)); NOT_FOUND otherwise.
  absl::StatusOr<LeaseInfo> GetLease(LeaseId id) const { return table_.Get(id); }
  // Whether `file` has a live lease, without listing them (O(log n)): for the guard, which
  // must not list a file's leases on every lease end (that makes teardown quadratic).
  bool HasLiveLeases(const FileId& file) const { return table_.HasLiveLeases(file); }
  // The broker-wide budget of pinned bytes and what leases hold of it now.
  uint64_t pinned_bytes_budget() const { return budget_.limit(); }
  uint64_t budgeted_bytes() const { return budget_.used(); }
  // Granted or recalling leases, without copying them.
  size_t live_lease_count() const { return table_.live_count(); }
  // `caller` (if set) needs read permission on the file.
  absl::StatusOr<FileDescription> DescribeFile(
      absl::string_view export_name, absl::string_view path,
      const std::optional<UnixCredentials>& caller = std::nullopt);
  LeaseTable::Subscription Watch(std::string owner, absl::AnyInvocable<void()> on_ready = nullptr);

  // Recalls every live lease (with `reason`, deadline now + grace), waits for releases until
  // then, and revokes the rest. Returns how many were revoked. For shutdown.
  size_t RecallAll(const std::string& reason, absl::Duration grace);

  // ---- GuardEngine: for the file guard (pinning/layout_guard.h) ----

  void AttachGuard(FileGuardHooks* guard) override ABSL_LOCKS_EXCLUDED(guard_mu_);
  std::vector<LeaseInfo> ListFileLeases(const FileId& file) const override;
  std::optional<ExportOptions> ExportOptionsFor(absl::string_view name) const override;
  absl::StatusOr<LayoutResult> CoordinateExternal(
      const FileId& file, const ExternalChange& change, const LayoutOptions& options,
      absl::FunctionRef<absl::Status()> proceed) override;
  std::vector<LeaseId> RecallLeases(const std::vector<LeaseId>& ids, const std::string& reason,
                                    absl::Time deadline) override;
  // O(log leases).
  bool IsLive(LeaseId id) const override;

  // Waits until no lease is live or ending, or the clock reaches `deadline`. True if none.
  bool AwaitNoLeases(absl::Time deadline) { return table_.AwaitEmpty(deadline); }

  const Export* FindExport(absl::string_view name) const;
  std::vector<const Export*> exports() const;
  const PinBackend& backend() const { return *backend_; }
  uint64_t page_size() const { return page_size_; }
  Clock* clock() const override { return clock_; }
  // For tests and metrics.
  size_t tracked_files() const { return files_.size(); }

 private:
  PinService(Clock* clock, PinBackend* backend, Options options);

  absl::StatusOr<const Export*> ExportFor(absl::string_view name) const;
  absl::Duration EffectiveTtl(const Export& exp, absl::Duration requested) const;
  // TruncateAsync/PunchHoleAsync: opens the file as the caller on this thread and has `start`
  // begin the change on it; the descriptor and file state live until `done` (a failure is
  // logged as "layout <what> of <export>/<path> not applied").
  void StartLayoutAsync(
      const LayoutRequest& request, std::string what, LayoutDone done,
      absl::FunctionRef<void(FileState&, int fd, LayoutOptions, LayoutDone)> start);
  LayoutOptions LayoutOptionsFor(const Export& exp, const LayoutRequest& request) const;
  // Opens for I/O with `caller`'s filesystem credentials on this thread (ScopedFsCredentials),
  // so the kernel decides whether the caller may; for writing, first has the guard give up a
  // file lease of its own that the open would break (which would fail it with UNAVAILABLE).
  absl::StatusOr<OpenedFile> OpenFile(const Export& exp, absl::string_view path, Access access,
                                      const std::optional<UnixCredentials>& caller);
  // OpenFile's open for I/O of a file resolved as `caller`.
  absl::StatusOr<OpenedFile> OpenResolved(const Export& exp, const ResolvedFile& resolved,
                                          const std::optional<UnixCredentials>& caller);
  // A descriptor of the resolved file for a pin: the one the file's state holds for the access
  // (a read-write one serves reads too) once Export::CheckAccess says `caller` may open the
  // file; else a new one opened as `caller` (OpenResolved), which the state keeps if it has
  // none for that access yet.
  absl::StatusOr<std::shared_ptr<const OpenedFile>> SharedDescriptor(
      const Export& exp, FileState& state, const ResolvedFile& resolved,
      const std::optional<UnixCredentials>& caller);
  void NotifyLeaseEnded(const LeaseInfo& lease) ABSL_LOCKS_EXCLUDED(guard_mu_, revoke_mu_);
  // A RevokeAfterGraceAsync() wait.
  struct RevokeWait {
    LeaseId lease = 0;
    std::string reason;
    Clock::TimerId timer = 0;  // Set once scheduled: the wait is parked.
    absl::AnyInvocable<void(bool revoked)> done;
  };
  // Ends wait `wait` if it is still pending: withdraws its timer (unless `from_timer`, its own
  // callback), and posts the revoke (if `revoke`) and `done` to the executor.
  void FinishRevokeWait(RevokeWaitId wait, bool revoke, bool from_timer)
      ABSL_LOCKS_EXCLUDED(revoke_mu_);
  // Ends every revoke wait (revoking) and refuses new ones; waits until their `done` ran.
  void EndAllRevokeWaits() ABSL_LOCKS_EXCLUDED(revoke_mu_);
  // The ids of every live lease, ascending (shutdown's recall and revoke).
  std::vector<LeaseId> LiveLeaseIds() const;

  Clock* const clock_;
  PinBackend* const backend_;
  const uint64_t page_size_;
  absl::btree_map<std::string, std::unique_ptr<Export>, std::less<>> exports_;
  FileRegistry files_;
  QuotaCounter budget_;  // Before table_: lease records give their bytes back to it.
  LeaseTable table_;
  LeaseLifecycle lifecycle_;
  LayoutCoordinator coordinator_;
  // RevokeAfterGraceAsync() waits, by id and by lease.
  mutable absl::Mutex revoke_mu_;
  bool revoke_stopping_ ABSL_GUARDED_BY(revoke_mu_) = false;
  RevokeWaitId next_revoke_wait_ ABSL_GUARDED_BY(revoke_mu_) = 1;
  absl::flat_hash_map<RevokeWaitId, RevokeWait> revoke_waits_ ABSL_GUARDED_BY(revoke_mu_);
  absl::flat_hash_map<LeaseId, std::vector<RevokeWaitId>> revoke_waits_by_lease_
      ABSL_GUARDED_BY(revoke_mu_);
  size_t revoke_waits_running_ ABSL_GUARDED_BY(revoke_mu_) = 0;  // Ended, `done` not yet run.
  size_t revoke_waits_parked_ ABSL_GUARDED_BY(revoke_mu_) = 0;   // With their timer set.
  // Hooks are called under a reader lock, so that AttachGuard(nullptr) can wait them out.
  mutable absl::Mutex guard_mu_;
  FileGuardHooks* guard_ ABSL_GUARDED_BY(guard_mu_) = nullptr;
};

}  // namespace pinbroker
