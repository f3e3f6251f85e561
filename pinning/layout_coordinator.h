// LayoutCoordinator: changes a file's layout (truncate, punch hole) without freeing pages that
// a lease still pins.
//
// One change at a time per file (the others queue in arrival order, each bounded by its
// deadline). For each change:
//  1. compute the affected pages conservatively: the page holding a new EOF and the partial
//     pages at a hole's edges count, because the kernel zeroes them;
//  2. block that range in the file's BusyRangeMap first, so no new pin can slip in;
//  3. apply the policy to the leases overlapping it:
//     defer  - wait until they are released or expire, or until the deadline (then fail with
//              DEADLINE_EXCEEDED, unblock, file untouched);
//     revoke - recall each with a grace deadline, wait for releases until then, force-revoke
//              the rest through the backend;
//     refuse - fail at once with FAILED_PRECONDITION naming them;
//     only leases whose holders could change the layout themselves (LeaseInfo::guards_layout)
//     hold a refuse or defer change off: every other one is recalled and revoked as under
//     revoke, so a reader cannot make a writer's change fail or wait;
//  4. apply the change with ftruncate(2) / fallocate(2) PUNCH_HOLE|KEEP_SIZE, telling the
//     backend just before and after (PinBackend::OnLayoutChange);
//  5. unblock, on success and on every failure.
// Pins on unaffected ranges and on other files go on throughout: nothing here holds a lock
// while it waits. CoordinateExternal() runs the same steps for a change another process is
// making (caught by the file guard), with step 4 letting that process go instead.
//
// Waiting holds no thread. Every wait (for the file's turn, for the affected range to drain)
// is "the event or the deadline, whichever first": a Clock timer for the deadline and a
// BusyRangeMap::OnDrained callback (or the file's queue hand-off) for the event; the first to
// fire wins and withdraws the other. The winner only posts the next step: the steps
// themselves (system calls, backend revokes, the observer, the completion) run on the
// coordinator's small executor for the *Async() calls, and on the calling thread for the
// synchronous ones, which are the asynchronous ones plus a wait on the clock (so tests on
// SimulatedClock see them as waiters, as before). Shutdown() fails every pending *Async()
// change with UNAVAILABLE.
//
// Thread-safety: safe to call concurrently. Completion callbacks run with no engine lock held,
// on an executor thread or the synchronous caller's; they may call into the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pinbroker/clock.h"
#include "pinning/executor.h"
#include "pinning/file_registry.h"
#include "pinning/layout_policy.h"
#include "pinning/lease_lifecycle.h"
#include "pinning/lease_table.h"

namespace pinbroker {

struct LayoutOptions {
  LayoutPolicy policy = LayoutPolicy::kRevoke;
  absl::Duration grace = absl::Seconds(5);       // revoke: recall -> invalidation.
  absl::Time deadline = absl::InfiniteFuture();  // Queueing behind another change, defer.
  std::string initiator;  // Who asked, for reasons and logs ("session 3", "pinctl", ...).
  // Which leases the caller may learn of, by their owner (session id). The others appear in
  // error messages without their name or owner and in the LayoutResult only as counts
  // (LayoutResult::undisclosed). Null: every lease (the logs and the observer always see all).
  std::function<bool(absl::string_view owner)> discloses;
};

// A layout change the kernel is about to make for another process, caught by the file guard
// (pinning/guard/) while the caller is held. The coordinator never makes it itself: see
// LayoutCoordinator::CoordinateExternal.
struct ExternalChange {
  enum class Kind {
    kTruncate,    // The size becomes new_size.
    kPunchHole,   // Bytes [offset, offset + length) lose their blocks; the size stays.
    kFromOffset,  // Everything from offset to EOF moves (collapse or insert range).
  };
  Kind kind = Kind::kTruncate;
  uint64_t size_before = 0;  // The file's size as the change begins.
  uint64_t new_size = 0;     // kTruncate.
  uint64_t offset = 0;       // kPunchHole, kFromOffset.
  uint64_t length = 0;       // kPunchHole.
  // For reasons and logs: "out-of-band ftruncate(2) from 1048576 to 4096 bytes".
  std::string description;
};

struct LayoutResult {
  LayoutPolicy policy = LayoutPolicy::kRevoke;
  PageRange affected;
  uint64_t size_before = 0;
  uint64_t size_after = 0;
  std::vector<LeaseId> recalled;  // revoke: leases sent a recall.
  std::vector<LeaseId> released;  // Ended by their holders while the change waited.
  std::vector<LeaseId> expired;   // Ended by TTL while the change waited.
  std::vector<LeaseId> revoked;   // revoke: taken away when the grace period ran out.
  absl::Duration waited;          // From blocking the range to applying the change.
  // Leases the caller may not learn of (LayoutOptions::discloses), counted instead of listed
  // above.
  struct Counts {
    uint32_t recalled = 0;
    uint32_t released = 0;
    uint32_t expired = 0;
    uint32_t revoked = 0;
  } undisclosed;
};

class LayoutCoordinator {
 public:
  // Called after the affected range has drained and just before the system call, while the
  // range is still blocked: with the file and the change. For audit logs and tests; must not
  // call back into the engine for the same file.
  using ApplyObserver = std::function<void(const FileId&, const LayoutResult&)>;
  // Receives a change's outcome, once.
  using Done = absl::AnyInvocable<void(absl::StatusOr<LayoutResult>)>;

  // Threads of the executor that runs the steps of *Async() changes (started on demand).
  static constexpr int kExecutorThreads = 2;

  LayoutCoordinator(Clock* clock, LeaseTable* table, LeaseLifecycle* lifecycle, uint64_t page_size,
                    ApplyObserver observer = nullptr);
  // Shutdown()s, then joins the executor.
  ~LayoutCoordinator();
  LayoutCoordinator(const LayoutCoordinator&) = delete;
  LayoutCoordinator& operator=(const LayoutCoordinator&) = delete;

  // Sets the size of the file open read-write as `fd` (state `file`) to `new_size`. Growing
  // counts the page holding the old EOF as affected. Errors: as in the header comment, plus
  // INVALID_ARGUMENT for sizes beyond off_t and the errno of a failed ftruncate (the leases the
  // policy ended stay ended; the file is unchanged).
  absl::StatusOr<LayoutResult> Truncate(FileState& file, int fd, uint64_t new_size,
                                        const LayoutOptions& options);

  // Deallocates bytes [offset, offset + length) keeping the size. INVALID_ARGUMENT for a zero
  // or overflowing length, OUT_OF_RANGE for an offset at or past EOF.
  absl::StatusOr<LayoutResult> PunchHole(FileState& file, int fd, uint64_t offset, uint64_t length,
                                         const LayoutOptions& options);

  // An out-of-band change another process is making (see ExternalChange): queued, blocked,
  // policy applied and drained exactly like Truncate/PunchHole, but step 4 runs `proceed`
  // instead of a system call. `proceed` lets the held caller go and returns once the kernel
  // has made the change, while the range is still blocked, so no pin slips in between.
  // OK: `proceed` ran. Errors as for Truncate/PunchHole (refuse: FAILED_PRECONDITION, defer:
  // DEADLINE_EXCEEDED; `proceed` not called, so the caller can be failed and the file stays
  // unchanged).
  absl::StatusOr<LayoutResult> CoordinateExternal(FileState& file, const ExternalChange& change,
                                                  const LayoutOptions& options,
                                                  absl::FunctionRef<absl::Status()> proceed);

  // The same changes without a waiting thread: they return at once and deliver the outcome
  // (exactly what the synchronous form returns) to `done`, on the executor, after the range
  // is unblocked and the file's turn passed on. `file` and `fd` must stay valid until then.
  // After Shutdown() they fail at once with UNAVAILABLE.
  void TruncateAsync(FileState& file, int fd, uint64_t new_size, LayoutOptions options, Done done);
  void PunchHoleAsync(FileState& file, int fd, uint64_t offset, uint64_t length,
                      LayoutOptions options, Done done);
  void CoordinateExternalAsync(FileState& file, const ExternalChange& change, LayoutOptions options,
                               absl::AnyInvocable<absl::Status()> proceed, Done done);

  // Fails every pending *Async() change with UNAVAILABLE "the broker is shutting down" (its
  // range unblocked, its file untouched) and returns once each has completed; later ones fail
  // at once. A change already applying its system call completes as it would have.
  // Synchronous changes are left to finish (their callers wait for them). Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(ops_mu_);

  // *Async() changes started and not yet completed (for tests and metrics).
  size_t pending_async() const ABSL_LOCKS_EXCLUDED(ops_mu_);
  // Changes (of either form) parked right now, waiting for their turn or a drain with their
  // deadline timer set: tests move a SimulatedClock once what they wait for is parked.
  size_t parked() const { return static_cast<size_t>(parked_.load()); }
  // The executor that runs the steps of *Async() changes; the engine may post its own
  // continuations to it.
  Executor* executor() { return &executor_; }

 private:
  struct Change {
    PageRange affected;
    std::string description;  // "truncate to 0 bytes", "punch hole [4096, 8192)".
  };
  // What a change works on, computed once it has the file's turn.
  struct Prepared {
    Change change;
    uint64_t size_before = 0;
    uint64_t size_after = 0;
  };
  // Where a change's steps run: Post() runs one later (never inline); Parked() tells that the
  // change now waits, at most until `until`.
  class Runner {
   public:
    virtual ~Runner() = default;
    virtual void Post(absl::AnyInvocable<void()> step) = 0;
    virtual void Parked(absl::Time until) { (void)until; }
  };
  class ExecutorRunner;
  class CallerRunner;
  class Op;
  friend class Op;

  // Queues (the file's turn), prepares, and runs steps 2-5 with `apply` doing the system call,
  // then calls `done`. `async`: started by an *Async() call (Shutdown() fails it).
  void Start(FileState& file, std::string what, LayoutOptions options,
             absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare,
             absl::AnyInvocable<absl::Status()> apply, Runner* runner, bool async, Done done)
      ABSL_LOCKS_EXCLUDED(ops_mu_);
  // Runs Start() on this thread's CallerRunner and returns its outcome.
  absl::StatusOr<LayoutResult> RunHere(FileState& file, std::string what,
                                       const LayoutOptions& options,
                                       absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare,
                                       absl::AnyInvocable<absl::Status()> apply);
  void Forget(Op* op) ABSL_LOCKS_EXCLUDED(ops_mu_);
  absl::AnyInvocable<absl::StatusOr<Prepared>()> PrepareTruncate(int fd, uint64_t new_size) const;
  absl::AnyInvocable<absl::StatusOr<Prepared>()> PreparePunchHole(int fd, uint64_t offset,
                                                                  uint64_t length) const;
  absl::StatusOr<Prepared> PrepareExternal(const ExternalChange& change) const;
  static absl::AnyInvocable<absl::Status()> ApplyTruncate(int fd, uint64_t new_size);
  static absl::AnyInvocable<absl::Status()> ApplyPunchHole(int fd, uint64_t offset,
                                                           uint64_t length);
  // "lease 3 (owner s1, bytes [0, 4096), read-write, granted), ..." for busy entries.
  // Leases for an error message; with `disclosed`, those outside it without name or owner.
  std::string DescribeLeases(const std::vector<BusyRangeMap::Entry>& entries,
                             const absl::flat_hash_set<LeaseId>* disclosed) const;

  Clock* const clock_;
  LeaseTable* const table_;
  LeaseLifecycle* const lifecycle_;
  const uint64_t page_size_;
  const ApplyObserver observer_;
  Executor executor_;
  std::unique_ptr<ExecutorRunner> executor_runner_;

  mutable absl::Mutex ops_mu_;
  bool stopping_ ABSL_GUARDED_BY(ops_mu_) = false;
  // Every change in progress; `async` ones counted in async_ops_.
  absl::flat_hash_map<Op*, std::shared_ptr<Op>> ops_ ABSL_GUARDED_BY(ops_mu_);
  size_t async_ops_ ABSL_GUARDED_BY(ops_mu_) = 0;
  std::atomic<int64_t> parked_{0};
};

}  // namespace pinbroker
