#include "pinning/layout_coordinator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pinbroker {
namespace {

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<off_t>::max());

absl::StatusOr<uint64_t> FileSize(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

std::string LayoutCoordinator::DescribeLeases(const std::vector<BusyRangeMap::Entry>& entries,
                                              const absl::flat_hash_set<LeaseId>* disclosed) const {
  std::vector<std::string> parts;
  size_t hidden_ending = 0;
  for (const BusyRangeMap::Entry& entry : entries) {
    const LeaseId id = entry.lease;
    const bool hidden = disclosed != nullptr && !disclosed->contains(id);
    auto lease = table_->Get(id);
    if (lease.ok()) {
      parts.push_back(absl::StrCat(hidden ? "a lease of another session" : table_->Name(id),
                                   hidden ? " (" : absl::StrCat(" (owner ", lease->owner, ", "),
                                   "bytes [", lease->offset, ", ", lease->offset + lease->length,
                                   "), ", AccessName(lease->access), ", ",
                                   LeaseStateName(lease->state), ")"));
    } else if (hidden) {
      ++hidden_ending;
    } else {
      parts.push_back(absl::StrCat(table_->Name(id), " (", entry.held ? "ending" : "being set up",
                                   ", ", BytesText(entry.range, page_size_), ")"));
    }
  }
  if (hidden_ending > 0) {
    parts.push_back(absl::StrCat(hidden_ending, " lease", hidden_ending == 1 ? "" : "s",
                                 " of other sessions being set up or ending"));
  }
  return absl::StrJoin(parts, ", ");
}

// Runs steps on the coordinator's executor.
class LayoutCoordinator::ExecutorRunner final : public LayoutCoordinator::Runner {
 public:
  explicit ExecutorRunner(Executor* executor) : executor_(executor) {}
  void Post(absl::AnyInvocable<void()> step) override { executor_->Post(std::move(step)); }

 private:
  Executor* const executor_;
};

// Runs steps on the synchronous caller's thread, which waits on the clock for the next one
// (until the deadline of the wait the change is parked in, so that SimulatedClock counts it as
// a waiter exactly while the change waits).
class LayoutCoordinator::CallerRunner final : public LayoutCoordinator::Runner {
 public:
  explicit CallerRunner(Clock* clock) : clock_(clock) {}

  void Post(absl::AnyInvocable<void()> step) override {
    absl::MutexLock lock(&mu_);
    steps_.push_back(std::move(step));
  }
  void Parked(absl::Time until) override {
    absl::MutexLock lock(&mu_);
    park_until_ = until;
  }
  void Finish(absl::StatusOr<LayoutResult> result) {
    absl::MutexLock lock(&mu_);
    result_ = std::move(result);
    done_ = true;
  }

  // Runs posted steps until Finish().
  absl::StatusOr<LayoutResult> Run() ABSL_LOCKS_EXCLUDED(mu_) {
    for (;;) {
      absl::AnyInvocable<void()> step;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !steps_.empty() || done_; };
        while (!ready()) {
          if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&ready), park_until_)) {
            // The deadline passed; its timer posts the next step (a RealClock timer may run a
            // moment after a timed wait returns).
            park_until_ = absl::InfiniteFuture();
          }
        }
        if (steps_.empty()) return std::move(result_);
        step = std::move(steps_.front());
        steps_.pop_front();
        park_until_ = absl::InfiniteFuture();
      }
      step();
    }
  }

 private:
  Clock* const clock_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> steps_ ABSL_GUARDED_BY(mu_);
  absl::Time park_until_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<LayoutResult> result_ ABSL_GUARDED_BY(mu_);
};

// One layout change: its turn on the file, then steps 2-5 of the header comment, each wait
// parked without a thread (Await) and resumed on its runner.
class LayoutCoordinator::Op : public std::enable_shared_from_this<LayoutCoordinator::Op> {
 public:
  Op(LayoutCoordinator* coordinator, FileState& file, std::string what, LayoutOptions options,
     absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare,
     absl::AnyInvocable<absl::Status()> apply, Runner* runner, bool async, Done done)
      : co_(coordinator),
        file_(file),
        what_(std::move(what)),
        options_(std::move(options)),
        prepare_(std::move(prepare)),
        apply_(std::move(apply)),
        runner_(runner),
        async_(async),
        done_(std::move(done)) {}

  bool async() const { return async_; }
  // For a change refused before it started.
  Done TakeDone() { return std::move(done_); }

  // Asks for the file's turn (on the runner).
  void Start() {
    runner_->Post([self = shared_from_this()] { self->Enter(); });
  }

  // Shutdown, first for every change: from now on the change fails with `status` at its next
  // step or wait (so that one cancelled change handing the file on does not start the next).
  void MarkCancelled(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || finished_) return;
    cancelled_ = true;
    cancel_status_ = std::move(status);
  }

  // Shutdown, then: ends the wait the change is parked in, if any, failing it.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_, file_.layout_mu) {
    Clock::TimerId timer = 0;
    BusyRangeMap::DrainWaitId drain = 0;
    bool claimed = false;
    {
      absl::MutexLock lock(&mu_);
      if (!cancelled_ || finished_) return;
      if (waiting_) {
        claimed = true;
        waiting_ = false;
        Uncount();
        next_ = nullptr;
        std::swap(timer, timer_);
        std::swap(drain, drain_);
      }
    }
    if (claimed) {
      if (timer != 0) co_->clock_->Cancel(timer);
      if (drain != 0) file_.busy.CancelOnDrained(block_id_, drain);
      PostFinishCancelled();
      return;
    }
    if (LeaveQueue()) PostFinishCancelled();
    // Otherwise a step is running: it fails at its next wait, or completes.
  }

 private:
  void PostFinishCancelled() {
    runner_->Post([self = shared_from_this()] { self->Finish(self->CancelStatus()); });
  }
  absl::Status CancelStatus() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return cancel_status_;
  }
  bool Cancelled() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

  // --- the file's turn ---

  void Enter() ABSL_LOCKS_EXCLUDED(mu_, file_.layout_mu) {
    if (Cancelled()) return Finish(CancelStatus());
    const absl::Time deadline = options_.deadline;
    bool gave_up = false;
    {
      absl::MutexLock lock(&file_.layout_mu);
      if (!file_.layout_in_progress) {
        file_.layout_in_progress = true;
      } else if (deadline <= co_->clock_->Now()) {
        gave_up = true;
      } else {
        queue_id_ = file_.next_queued_layout++;
        FileState::QueuedLayout entry;
        entry.id = queue_id_;
        entry.enter = [self = shared_from_this()] {
          self->runner_->Post([self] { self->Entered(); });
        };
        if (deadline != absl::InfiniteFuture()) {
          entry.deadline_timer = co_->clock_->Schedule(
              deadline, [self = shared_from_this()] { self->QueueDeadline(); });
        }
        file_.layout_queue.push_back(std::move(entry));
        queued_ = true;
        ++co_->parked_;
      }
    }
    if (gave_up) return FinishQueueDeadline();
    if (!queued_) return Entered();
    runner_->Parked(deadline);
    // A Cancel() that ran before the entry was queued did not find it.
    if (Cancelled() && LeaveQueue()) PostFinishCancelled();
  }

  // Takes this change out of the file's queue; false if it is not there (its turn came, or its
  // deadline did).
  bool LeaveQueue() ABSL_LOCKS_EXCLUDED(file_.layout_mu) {
    Clock::TimerId timer = 0;
    {
      absl::MutexLock lock(&file_.layout_mu);
      if (!queued_) return false;
      auto it =
          std::find_if(file_.layout_queue.begin(), file_.layout_queue.end(),
                       [this](const FileState::QueuedLayout& q) { return q.id == queue_id_; });
      if (it == file_.layout_queue.end()) return false;
      timer = it->deadline_timer;
      file_.layout_queue.erase(it);
      --co_->parked_;
    }
    if (timer != 0) co_->clock_->Cancel(timer);
    return true;
  }

  void QueueDeadline() {
    {
      absl::MutexLock lock(&file_.layout_mu);
      auto it =
          std::find_if(file_.layout_queue.begin(), file_.layout_queue.end(),
                       [this](const FileState::QueuedLayout& q) { return q.id == queue_id_; });
      if (it == file_.layout_queue.end()) return;  // Its turn came first.
      file_.layout_queue.erase(it);
      --co_->parked_;
    }
    runner_->Post([self = shared_from_this()] { self->FinishQueueDeadline(); });
  }

  void FinishQueueDeadline() {
    Finish(absl::DeadlineExceededError(
        absl::StrCat(what_, " of file ", file_.id.ToString(),
                     " gave up: another layout change on the file was still running at the "
                     "deadline; retry later or with a longer deadline")));
  }

  // Hands the file to the first queued change, or marks it idle.
  void Exit() ABSL_LOCKS_EXCLUDED(file_.layout_mu) {
    std::optional<FileState::QueuedLayout> next;
    {
      absl::MutexLock lock(&file_.layout_mu);
      if (file_.layout_queue.empty()) {
        file_.layout_in_progress = false;
      } else {
        next.emplace(std::move(file_.layout_queue.front()));
        file_.layout_queue.pop_front();
        --co_->parked_;
      }
    }
    if (!next.has_value()) return;
    if (next->deadline_timer != 0) co_->clock_->Cancel(next->deadline_timer);
    next->enter();
  }

  // --- steps 1-5 ---

  void Entered() {
    entered_ = true;
    if (Cancelled()) return Finish(CancelStatus());
    absl::StatusOr<Prepared> prepared = prepare_();
    if (!prepared.ok()) return Finish(prepared.status());
    prepared_ = *std::move(prepared);
    const Change& change = prepared_.change;
    start_ = co_->clock_->Now();
    const std::string policy(LayoutPolicyName(options_.policy));
    reason_ =
        absl::StrCat(change.description, ", policy ", policy,
                     options_.initiator.empty() ? "" : absl::StrCat(", by ", options_.initiator));
    result_.policy = options_.policy;
    result_.affected = change.affected;

    BusyRangeMap::BlockResult block = file_.busy.Block(change.affected, reason_);
    block_id_ = block.id;
    blocked_ = true;
    held_ = std::move(block.held);

    // Only a lease whose holder could change the layout itself (LeaseInfo::guards_layout) may
    // make a refuse change fail or a defer change wait; every other one is recalled and, after
    // the grace period, revoked, as under policy revoke. Otherwise any reader could hold off
    // the writers of a file it can only read.
    // The leases the caller may learn of (all of them without LayoutOptions::discloses; a
    // lease that is already ending has no owner to ask about and stays undisclosed).
    hide_others_ = static_cast<bool>(options_.discloses);
    for (LeaseId id : held_) {
      auto lease = co_->table_->Get(id);
      const bool guards = lease.ok() && lease->guards_layout;  // Not found: ending anyway.
      if (options_.policy != LayoutPolicy::kRevoke && guards) {
        guarding_.push_back(id);
      } else {
        recall_.push_back(id);
        recalling_.insert(id);
      }
      if (hide_others_ && lease.ok() && options_.discloses(lease->owner)) disclosed_.insert(id);
    }
    if (options_.policy == LayoutPolicy::kRefuse && !guarding_.empty()) {
      return Finish(absl::FailedPreconditionError(
          absl::StrCat(change.description, " refused: ", BytesText(change.affected, page_size()),
                       " are pinned by ", Describe(),
                       "; release those leases first, or use policy defer or revoke")));
    }
    if (recall_.empty()) return Defer();
    recall_reason_ =
        options_.policy == LayoutPolicy::kRevoke
            ? reason_
            : absl::StrCat(reason_,
                           "; the holder may not change the file's layout, so its lease "
                           "cannot hold the change off");
    const absl::Time grace_deadline = co_->clock_->Now() + options_.grace;
    // Leases that ended meanwhile are not among those returned.
    for (const LeaseTable::Recalled& r :
         co_->lifecycle_->Recall(recall_, recall_reason_, grace_deadline)) {
      result_.recalled.push_back(r.lease.id);
    }
    Await(grace_deadline, [this](bool drained) { AfterGrace(drained); });
  }

  void AfterGrace(bool drained) {
    if (!drained) {
      std::vector<LeaseId> overdue;
      for (const auto& entry : file_.busy.Overlapping(prepared_.change.affected)) {
        if (!entry.held) continue;                      // A pin being set up aborts by itself.
        if (!recalling_.contains(entry.lease)) continue;  // Guarding: defer waits for it below.
        overdue.push_back(entry.lease);
      }
      const std::vector<absl::Status> revoked = co_->lifecycle_->RevokeMany(
          overdue, absl::StrCat("not released within the ", absl::FormatDuration(options_.grace),
                                " grace period: ", recall_reason_));
      absl::Status failed;
      for (size_t i = 0; i < overdue.size(); ++i) {
        if (revoked[i].ok()) {
          result_.revoked.push_back(overdue[i]);
        } else if (!absl::IsNotFound(revoked[i]) && failed.ok()) {  // NOT_FOUND: ended meanwhile.
          failed = revoked[i];
        }
      }
      if (!failed.ok()) {
        return Finish(absl::InternalError(absl::StrCat(
            prepared_.change.description, " not applied, file unchanged: ", failed.message())));
      }
    }
    Defer();
  }

  void Defer() {
    if (options_.policy != LayoutPolicy::kDefer || guarding_.empty()) return WaitForTheRest();
    Await(options_.deadline, [this](bool drained) {
      if (drained) return WaitForTheRest();
      const Change& change = prepared_.change;
      Finish(absl::DeadlineExceededError(absl::StrCat(
          change.description, " deferred until the deadline but ",
          BytesText(change.affected, page_size()), " are still pinned by ", Describe(),
          "; the file is unchanged. Ask the holders to release, or use policy revoke")));
    });
  }

  // Every policy: wait for what is left (reservations aborting, ends in progress).
  void WaitForTheRest() {
    Await(std::max(options_.deadline, co_->clock_->Now()), [this](bool drained) {
      if (drained) return Apply();
      const Change& change = prepared_.change;
      Finish(absl::DeadlineExceededError(
          absl::StrCat(change.description,
                       " not applied by the deadline: ", BytesText(change.affected, page_size()),
                       " still held by ", Describe(), "; the file is unchanged")));
    });
  }

  void Apply() {
    const Change& change = prepared_.change;
    const absl::flat_hash_set<LeaseId> revoked(result_.revoked.begin(), result_.revoked.end());
    for (LeaseId id : held_) {
      if (revoked.contains(id)) continue;
      if (co_->table_->EndState(id) == LeaseState::kExpired) {
        result_.expired.push_back(id);
      } else {
        result_.released.push_back(id);
      }
    }
    result_.waited = co_->clock_->Now() - start_;
    result_.size_before = prepared_.size_before;
    result_.size_after = prepared_.size_after;
    if (co_->observer_) co_->observer_(file_.id, result_);
    // The backend may hold registrations wider than its leases (RDMA regions over whole files):
    // it must not keep pages the change removes (no engine lock is held here).
    const ByteRange changed = ToBytes(change.affected, page_size());
    PinBackend* backend = co_->lifecycle_->backend();
    backend->OnLayoutChange(file_.id, changed, LayoutPhase::kBefore);
    const absl::Status applied = apply_();
    backend->OnLayoutChange(file_.id, changed, LayoutPhase::kAfter);
    if (!applied.ok()) {
      const bool ended = !result_.revoked.empty() || !result_.released.empty();
      return Finish(absl::Status(applied.code(),
                                 absl::StrCat(change.description, " failed: ", applied.message(),
                                              ended ? "; leases already ended stay ended" : "")));
    }
    PB_LOG(INFO) << "layout " << reason_ << ": affected " << BytesText(change.affected, page_size())
                 << ", recalled [" << absl::StrJoin(result_.recalled, ",") << "], released ["
                 << absl::StrJoin(result_.released, ",") << "], expired ["
                 << absl::StrJoin(result_.expired, ",") << "], revoked ["
                 << absl::StrJoin(result_.revoked, ",") << "], waited "
                 << absl::FormatDuration(result_.waited);
    if (hide_others_) {
      auto keep_disclosed = [this](std::vector<LeaseId>& ids, uint32_t& count) {
        const size_t before = ids.size();
        std::erase_if(ids, [this](LeaseId id) { return !disclosed_.contains(id); });
        count = static_cast<uint32_t>(before - ids.size());
      };
      keep_disclosed(result_.recalled, result_.undisclosed.recalled);
      keep_disclosed(result_.released, result_.undisclosed.released);
      keep_disclosed(result_.expired, result_.undisclosed.expired);
      keep_disclosed(result_.revoked, result_.undisclosed.revoked);
    }
    Finish(std::move(result_));
  }

  // Step 5 and the outcome: unblocks, passes the file's turn on, calls `done`, and forgets the
  // change. Runs once, on the runner.
  void Finish(absl::StatusOr<LayoutResult> outcome) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    if (blocked_) file_.busy.Unblock(block_id_);
    if (entered_) Exit();
    Done done = std::move(done_);
    done(std::move(outcome));
    done = nullptr;
    co_->Forget(this);  // May destroy this Op: the last thing it does.
  }

  // Parks the change until the affected range has drained or the clock reaches `deadline`,
  // whichever first, then runs `next(drained)` on the runner. Without waiting if either holds
  // already, as Clock::AwaitWithDeadline would return at once.
  void Await(absl::Time deadline, absl::AnyInvocable<void(bool drained)> next)
      ABSL_LOCKS_EXCLUDED(mu_) {
    if (file_.busy.IsDrained(block_id_)) return next(true);
    if (deadline <= co_->clock_->Now()) return next(file_.busy.IsDrained(block_id_));
    uint64_t generation = 0;
    bool cancelled = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancelled_;
      if (!cancelled) {
        generation = ++generation_;
        waiting_ = true;
        next_ = std::move(next);
      }
    }
    if (cancelled) return Finish(CancelStatus());
    runner_->Parked(deadline);
    std::shared_ptr<Op> self = shared_from_this();
    Clock::TimerId timer = 0;
    if (deadline != absl::InfiniteFuture()) {
      timer = co_->clock_->Schedule(deadline,
                                    [self, generation] { self->Wake(generation, /*timer=*/true); });
    }
    if (!Record(generation, &timer_, timer) && timer != 0) co_->clock_->Cancel(timer);
    const BusyRangeMap::DrainWaitId drain =
        file_.busy.OnDrained(block_id_, [self, generation] { self->Wake(generation, false); });
    if (!Record(generation, &drain_, drain) && drain != 0) {
      file_.busy.CancelOnDrained(block_id_, drain);
    }
    absl::MutexLock lock(&mu_);
    if (waiting_ && generation_ == generation) {
      counted_ = true;
      ++co_->parked_;
    }
  }

  // Stores a wait's timer or drain id if that wait is still parked; false if it ended already.
  template <typename Id>
  bool Record(uint64_t generation, Id* slot, Id id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (!waiting_ || generation_ != generation) return false;
    *slot = id;
    return true;
  }

  // The deadline (`timer`) or the drain ended wait `generation`: the first caller wins,
  // withdraws the other, and posts the continuation.
  void Wake(uint64_t generation, bool timer) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::AnyInvocable<void(bool)> next;
    Clock::TimerId timer_id = 0;
    BusyRangeMap::DrainWaitId drain_id = 0;
    {
      absl::MutexLock lock(&mu_);
      if (!waiting_ || generation_ != generation) return;
      waiting_ = false;
      Uncount();
      next = std::move(next_);
      std::swap(timer_id, timer_);
      std::swap(drain_id, drain_);
    }
    if (timer) {
      if (drain_id != 0) file_.busy.CancelOnDrained(block_id_, drain_id);
    } else if (timer_id != 0) {
      co_->clock_->Cancel(timer_id);
    }
    runner_->Post([self = shared_from_this(), next = std::move(next)]() mutable {
      // At the deadline the range may have drained all the same.
      next(self->file_.busy.IsDrained(self->block_id_));
    });
  }

  void Uncount() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (counted_) --co_->parked_;
    counted_ = false;
  }

  uint64_t page_size() const { return co_->page_size_; }
  std::string Describe() const {
    return co_->DescribeLeases(file_.busy.Overlapping(prepared_.change.affected),
                               hide_others_ ? &disclosed_ : nullptr);
  }

  LayoutCoordinator* const co_;
  FileState& file_;
  const std::string what_;
  const LayoutOptions options_;
  absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare_;
  absl::AnyInvocable<absl::Status()> apply_;
  Runner* const runner_;
  const bool async_;
  Done done_;

  // Used by one step at a time (steps run one after another on the runner).
  bool queued_ = false;  // Also read by Cancel(), under file_.layout_mu, once set there.
  uint64_t queue_id_ = 0;
  bool entered_ = false;
  bool blocked_ = false;
  BusyRangeMap::BlockId block_id_ = 0;
  Prepared prepared_;
  std::string reason_;
  std::string recall_reason_;
  absl::Time start_;
  LayoutResult result_;
  std::vector<LeaseId> held_;
  std::vector<LeaseId> guarding_;
  std::vector<LeaseId> recall_;
  absl::flat_hash_set<LeaseId> recalling_;  // recall_'s leases, to look them up.
  bool hide_others_ = false;
  absl::flat_hash_set<LeaseId> disclosed_;

  // The wait the change is parked in, and shutdown.
  absl::Mutex mu_;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool counted_ ABSL_GUARDED_BY(mu_) = false;  // In LayoutCoordinator::parked_.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::AnyInvocable<void(bool)> next_ ABSL_GUARDED_BY(mu_);
  Clock::TimerId timer_ ABSL_GUARDED_BY(mu_) = 0;
  BusyRangeMap::DrainWaitId drain_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status cancel_status_ ABSL_GUARDED_BY(mu_);
};

LayoutCoordinator::LayoutCoordinator(Clock* clock, LeaseTable* table, LeaseLifecycle* lifecycle,
                                     uint64_t page_size, ApplyObserver observer)
    : clock_(clock),
      table_(table),
      lifecycle_(lifecycle),
      page_size_(page_size),
      observer_(std::move(observer)),
      executor_(kExecutorThreads),
      executor_runner_(std::make_unique<ExecutorRunner>(&executor_)) {}

LayoutCoordinator::~LayoutCoordinator() {
  Shutdown();
  executor_.Join();
}

void LayoutCoordinator::Start(FileState& file, std::string what, LayoutOptions options,
                              absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare,
                              absl::AnyInvocable<absl::Status()> apply, Runner* runner, bool async,
                              Done done) {
  auto op =
      std::make_shared<Op>(this, file, std::move(what), std::move(options), std::move(prepare),
                           std::move(apply), runner, async, std::move(done));
  bool refused = false;
  {
    absl::MutexLock lock(&ops_mu_);
    refused = async && stopping_;
    if (!refused) {
      ops_.emplace(op.get(), op);
      if (async) ++async_ops_;
    }
  }
  if (!refused) return op->Start();
  runner->Post([done = op->TakeDone()]() mutable {
    done(absl::UnavailableError("the broker is shutting down"));
  });
}

void LayoutCoordinator::Forget(Op* op) {
  absl::MutexLock lock(&ops_mu_);
  auto it = ops_.find(op);
  if (it == ops_.end()) return;
  if (op->async()) --async_ops_;
  ops_.erase(it);
}

void LayoutCoordinator::Shutdown() {
  std::vector<std::shared_ptr<Op>> pending;
  {
    absl::MutexLock lock(&ops_mu_);
    stopping_ = true;
    for (const auto& [raw, op] : ops_) {
      if (op->async()) pending.push_back(op);
    }
  }
  for (const auto& op : pending) {
    op->MarkCancelled(absl::UnavailableError("the broker is shutting down"));
  }
  for (const auto& op : pending) op->Cancel();
  pending.clear();
  absl::MutexLock lock(&ops_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_) { return async_ops_ == 0; };
  ops_mu_.Await(absl::Condition(&idle));
}

size_t LayoutCoordinator::pending_async() const {
  absl::MutexLock lock(&ops_mu_);
  return async_ops_;
}

absl::StatusOr<LayoutResult> LayoutCoordinator::RunHere(
    FileState& file, std::string what, const LayoutOptions& options,
    absl::AnyInvocable<absl::StatusOr<Prepared>()> prepare,
    absl::AnyInvocable<absl::Status()> apply) {
  CallerRunner runner(clock_);
  Start(file, std::move(what), options, std::move(prepare), std::move(apply), &runner,
        /*async=*/false,
        [&runner](absl::StatusOr<LayoutResult> result) { runner.Finish(std::move(result)); });
  return runner.Run();
}

absl::AnyInvocable<absl::StatusOr<LayoutCoordinator::Prepared>()>
LayoutCoordinator::PrepareTruncate(int fd, uint64_t new_size) const {
  return [fd, new_size, page_size = page_size_]() -> absl::StatusOr<Prepared> {
    ASSIGN_OR_RETURN(const uint64_t size_before, FileSize(fd));
    // Shrinking frees every page from the one holding the new EOF (its tail is zeroed).
    // Growing frees nothing, but the kernel may zero the old last page's tail, so that page
    // counts too. No change in size touches nothing.
    const uint64_t first = std::min(size_before, new_size) / page_size;
    Prepared prepared;
    prepared.change = Change{
        size_before == new_size ? PageRange{first, first} : PageRange{first, kPageRangeToInfinity},
        absl::StrCat("truncate from ", size_before, " to ", new_size, " bytes")};
    prepared.size_before = size_before;
    prepared.size_after = new_size;
    return prepared;
  };
}

absl::AnyInvocable<absl::Status()> LayoutCoordinator::ApplyTruncate(int fd, uint64_t new_size) {
  return [fd, new_size]() -> absl::Status {
    if (ftruncate(fd, static_cast<off_t>(new_size)) != 0) return ErrnoToStatus(errno, "ftruncate");
    return absl::OkStatus();
  };
}

absl::AnyInvocable<absl::StatusOr<LayoutCoordinator::Prepared>()>
LayoutCoordinator::PreparePunchHole(int fd, uint64_t offset, uint64_t length) const {
  return [fd, offset, length, page_size = page_size_]() -> absl::StatusOr<Prepared> {
    ASSIGN_OR_RETURN(const uint64_t size, FileSize(fd));
    if (offset >= size) {
      return absl::OutOfRangeError(absl::StrCat("punch hole offset ", offset,
                                                " is at or past end of file (size ", size,
                                                "); nothing to punch"));
    }
    Prepared prepared;
    prepared.change = Change{*PagesCovering(offset, length, page_size),
                             absl::StrCat("punch hole [", offset, ", ", offset + length, ")")};
    prepared.size_before = prepared.size_after = size;
    return prepared;
  };
}

absl::AnyInvocable<absl::Status()> LayoutCoordinator::ApplyPunchHole(int fd, uint64_t offset,
                                                                     uint64_t length) {
  return [fd, offset, length]() -> absl::Status {
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
      const int err = errno;
      if (err == EOPNOTSUPP) {
        return absl::FailedPreconditionError(
            "this filesystem does not support punching holes "
            "(fallocate PUNCH_HOLE: EOPNOTSUPP)");
      }
      return ErrnoToStatus(err, "fallocate(PUNCH_HOLE)");
    }
    return absl::OkStatus();
  };
}

absl::StatusOr<LayoutCoordinator::Prepared> LayoutCoordinator::PrepareExternal(
    const ExternalChange& change) const {
  Prepared prepared;
  prepared.change.description = change.description;
  PageRange& affected = prepared.change.affected;
  switch (change.kind) {
    case ExternalChange::Kind::kTruncate: {
      // As Truncate(): from the page holding the smaller of the two sizes.
      const uint64_t first = std::min(change.size_before, change.new_size) / page_size_;
      const uint64_t end = change.size_before == change.new_size ? first : kPageRangeToInfinity;
      affected = PageRange{first, end};
      break;
    }
    case ExternalChange::Kind::kPunchHole: {
      const uint64_t first = change.offset / page_size_;
      const std::optional<PageRange> pages =
          PagesCovering(change.offset, change.length, page_size_);
      if (pages.has_value()) {
        affected = *pages;
      } else {  // Empty (length 0), or running past 2^64.
        affected = PageRange{first, change.length == 0 ? first : kPageRangeToInfinity};
      }
      break;
    }
    case ExternalChange::Kind::kFromOffset:
      affected = PageRange{change.offset / page_size_, kPageRangeToInfinity};
      break;
  }
  prepared.size_before = change.size_before;
  prepared.size_after =
      change.kind == ExternalChange::Kind::kTruncate ? change.new_size : change.size_before;
  return prepared;
}

namespace {

absl::Status CheckNewSize(uint64_t new_size) {
  if (new_size > kMaxOffset) {
    return absl::InvalidArgumentError(
        absl::StrCat("new size ", new_size, " exceeds the largest file offset ", kMaxOffset));
  }
  return absl::OkStatus();
}

absl::Status CheckHole(uint64_t offset, uint64_t length) {
  if (length == 0) return absl::InvalidArgumentError("punch hole length must be positive");
  if (offset > kMaxOffset || length > kMaxOffset - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "punch hole [", offset, " +", length, ") runs past the largest file offset ", kMaxOffset));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LayoutResult> LayoutCoordinator::Truncate(FileState& file, int fd, uint64_t new_size,
                                                         const LayoutOptions& options) {
  RETURN_IF_ERROR(CheckNewSize(new_size));
  return RunHere(file, "truncate", options, PrepareTruncate(fd, new_size),
                 ApplyTruncate(fd, new_size));
}

absl::StatusOr<LayoutResult> LayoutCoordinator::PunchHole(FileState& file, int fd, uint64_t offset,
                                                          uint64_t length,
                                                          const LayoutOptions& options) {
  RETURN_IF_ERROR(CheckHole(offset, length));
  return RunHere(file, "punch hole", options, PreparePunchHole(fd, offset, length),
                 ApplyPunchHole(fd, offset, length));
}

absl::StatusOr<LayoutResult> LayoutCoordinator::CoordinateExternal(
    FileState& file, const ExternalChange& change, const LayoutOptions& options,
    absl::FunctionRef<absl::Status()> proceed) {
  // `proceed` runs on this thread (the CallerRunner's), while it is valid.
  return RunHere(
      file, change.description, options,
      [prepared = PrepareExternal(change)]() { return prepared; },
      [proceed]() { return proceed(); });
}

void LayoutCoordinator::TruncateAsync(FileState& file, int fd, uint64_t new_size,
                                      LayoutOptions options, Done done) {
  if (absl::Status s = CheckNewSize(new_size); !s.ok()) {
    executor_.Post([done = std::move(done), s]() mutable { done(std::move(s)); });
    return;
  }
  Start(file, "truncate", std::move(options), PrepareTruncate(fd, new_size),
        ApplyTruncate(fd, new_size), executor_runner_.get(), /*async=*/true, std::move(done));
}

void LayoutCoordinator::PunchHoleAsync(FileState& file, int fd, uint64_t offset, uint64_t length,
                                       LayoutOptions options, Done done) {
  if (absl::Status s = CheckHole(offset, length); !s.ok()) {
    executor_.Post([done = std::move(done), s]() mutable { done(std::move(s)); });
    return;
  }
  Start(file, "punch hole", std::move(options), PreparePunchHole(fd, offset, length),
        ApplyPunchHole(fd, offset, length), executor_runner_.get(), /*async=*/true,
        std::move(done));
}

void LayoutCoordinator::CoordinateExternalAsync(FileState& file, const ExternalChange& change,
                                                LayoutOptions options,
                                                absl::AnyInvocable<absl::Status()> proceed,
                                                Done done) {
  Start(
      file, change.description, std::move(options),
      [prepared = PrepareExternal(change)]() { return prepared; }, std::move(proceed),
      executor_runner_.get(), /*async=*/true, std::move(done));
}

}  // namespace pinbroker
