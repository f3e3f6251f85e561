// LeaseTable: every live lease, its state machine, its expiry, and the event streams of owners.
//
// States: granted -> recalling -> released | revoked | expired (granted may end directly).
// Ending a lease is two-step because its pages must be let go in between: BeginRelease(),
// BeginRevoke() or expiry moves the lease to its terminal state and makes the caller (or the
// expiry handler) the only party that may finish it; that party undoes the backend pin and the
// busy range, then calls Finish(), which emits the terminal event and retires the lease. So an
// owner's "revoked" or "expired" event means the access is really gone, and exactly one of
// release, revoke and expiry wins any race between them.
//
// Expiry is driven by the Clock: one timer is kept armed for the earliest expiry; when it fires,
// due leases move to expired and `on_expired` is called for each, outside the table's lock, on
// the clock's timer thread (inside Advance() with SimulatedClock).
//
// Events reach subscribers per owner, in the order the table applied them, through bounded
// EventQueues (see event_queue.h): a recall fanned out over all of an owner's leases never
// overflows them by count, only past their byte bound. Subscribe() returns the owner's live leases
// and the queue atomically: nothing is missed between the snapshot and the first event.
//
// Ended leases leave a tombstone so that NOT_FOUND can say what happened to a lease its owner
// still names. Tombstones are bounded in count and in bytes (owner and reason strings; a reason
// is kept to its first Options::tombstone_reason_bytes), oldest dropped first. Foreign leases are
// reported as unknown.
//
// Costs (n leases in the table, k results): Insert, Renew, Recall, Begin*, Finish O(log n);
// List by owner or by file O(k log n) through an index per owner and per file, unfiltered O(n);
// live_count O(1). So ending all n leases of a session or an expiry pass costs O(n log n).
//
// Thread-safety: safe to call concurrently. Lock order: BusyRangeMap -> LeaseTable -> EventQueue.
// The table never calls out while holding its lock except EventQueue::Push().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/packed_time.h"
#include "pinbroker/clock.h"
#include "pinning/event_queue.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"
#include "pinning/quota.h"

namespace pinbroker {

struct LeaseFilter {
  std::optional<std::string> owner;
  std::optional<std::string> export_name;
  std::optional<FileId> file;
};

class LeaseTable {
 public:
  struct Options {
    size_t tombstones = 4096;  // Ended leases remembered for error messages, at most.
    // Bytes of owner and reason text all tombstones together may hold, at most.
    size_t tombstone_bytes = 1 << 20;
    size_t tombstone_reason_bytes = 256;  // A longer reason is cut there ("...").
    // Per subscriber: grant events queued (recalls and ends bypass it), and bytes of events of
    // any type queued (see event_queue.h).
    size_t queue_capacity = 1024;
    size_t queue_bytes = EventQueue::kDefaultMaxBytes;
    // Put before lease numbers in messages, so they read as the ids clients hold (the service
    // sets "<epoch>-").
    std::string id_prefix;
    // A lease's bytes are its pages in this size: Insert() refuses a lease whose offset and
    // length are not (the record keeps only the pages).
    uint64_t page_size = SystemPageSize();
  };
  struct Subscription {
    std::vector<LeaseInfo> snapshot;  // The owner's live leases, ascending id.
    std::shared_ptr<EventQueue> events;
  };
  using ExpiryHandler = absl::AnyInvocable<void(const LeaseInfo&)>;

  LeaseTable(Clock* clock, ExpiryHandler on_expired, Options options);
  LeaseTable(Clock* clock, ExpiryHandler on_expired)
      : LeaseTable(clock, std::move(on_expired), Options()) {}
  // Cancels the expiry timer (waiting for a running expiry pass) and closes all queues.
  ~LeaseTable();
  LeaseTable(const LeaseTable&) = delete;
  LeaseTable& operator=(const LeaseTable&) = delete;

  // "lease <prefix><id>", as messages name a lease.
  std::string Name(LeaseId id) const;

  // A fresh id, never returned before by this table. It stays reserved until Insert()ed or
  // given back with DiscardId() (a pin that failed before it was granted).
  LeaseId NewId() ABSL_LOCKS_EXCLUDED(mu_);
  void DiscardId(LeaseId id) ABSL_LOCKS_EXCLUDED(mu_);

  // Adds a granted lease (id from NewId(), state kGranted, expires_at set) and emits kGranted.
  // FAILED_PRECONDITION if the id was not issued by NewId(), was already inserted or discarded,
  // or the lease is not granted. If `admit` is set it runs under the table's lock just before
  // the lease goes in, and a non-OK result is returned instead of inserting: a caller that ends
  // an owner first (so `admit` fails from then on) and lists its leases afterwards sees every
  // lease that will ever exist for it. `admit` must not call back into the table.
  // `quota` (the lease's quota reservations) is kept with the lease and given back when it is
  // retired (Finish()), or at once if it is not inserted.
  absl::Status Insert(LeaseInfo lease, const std::function<absl::Status()>& admit = nullptr,
                      QuotaHold quota = QuotaHold()) ABSL_LOCKS_EXCLUDED(mu_);

  // The live lease `id`. NOT_FOUND (with what became of it, if known) otherwise.
  absl::StatusOr<LeaseInfo> Get(LeaseId id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Extends a granted lease of `owner` to now + ttl. NOT_FOUND for unknown, ended or foreign
  // leases; FAILED_PRECONDITION while recalling (release it instead).
  absl::StatusOr<LeaseInfo> Renew(absl::string_view owner, LeaseId id, absl::Duration ttl)
      ABSL_LOCKS_EXCLUDED(mu_);

  // granted -> recalling with `reason` and `deadline`; emits kRecalled. A lease already
  // recalling keeps its earlier deadline and is not re-announced. NOT_FOUND if not live.
  absl::StatusOr<LeaseInfo> Recall(LeaseId id, std::string reason, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Recall() of each of `ids` in order, as one batch: the lock is taken once per kRecallBatch
  // leases and each subscriber gets a batch's events in one push, so a fan-out wakes a consumer
  // once per batch rather than once per lease. Returns each live lease (unknown and ending ids
  // are skipped) as the call left it, and whether this call announced its recall (it was
  // granted) or found it already recalling.
  struct Recalled {
    LeaseInfo lease;
    bool announced = false;
  };
  std::vector<Recalled> RecallMany(const std::vector<LeaseId>& ids, absl::string_view reason,
                                   absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  static constexpr size_t kRecallBatch = 1024;

  // Claims the end of a live lease; see the header comment. BeginRelease checks the owner
  // (NOT_FOUND for a foreign lease). Both return NOT_FOUND if the lease is not live.
  absl::StatusOr<LeaseInfo> BeginRelease(absl::string_view owner, LeaseId id)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<LeaseInfo> BeginRevoke(LeaseId id, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);

  // BeginRevoke() of each of `ids` in order, taking the lock once per kRecallBatch leases;
  // each result is what BeginRevoke() would have returned.
  std::vector<absl::StatusOr<LeaseInfo>> BeginRevokeMany(const std::vector<LeaseId>& ids,
                                                         absl::string_view reason)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Emits the terminal event of a lease whose end was claimed, and retires it. No-op otherwise.
  void Finish(LeaseId id) ABSL_LOCKS_EXCLUDED(mu_);
  // Finish() of each of `ids` in order, as a batch: the lock is taken once per kRecallBatch
  // leases and each subscriber gets a batch's events in one push.
  void FinishMany(const std::vector<LeaseId>& ids) ABSL_LOCKS_EXCLUDED(mu_);

  // How lease `id` ended (from its record while ending, or its tombstone); nullopt if it is
  // live or unknown.
  std::optional<LeaseState> EndState(LeaseId id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Live (granted or recalling) leases matching `filter`, ascending id. Uses the file or owner
  // index when the filter names one.
  std::vector<LeaseInfo> List(const LeaseFilter& filter) const ABSL_LOCKS_EXCLUDED(mu_);

  // Whether any live lease is on `file`: O(log n) plus the file's ending leases skipped.
  bool HasLiveLeases(const FileId& file) const ABSL_LOCKS_EXCLUDED(mu_);

  Subscription Subscribe(std::string owner, absl::AnyInvocable<void()> on_ready = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t live_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // Subscriptions the table holds, O(1). A closed one is dropped by its owner's next event or
  // Subscribe(), or by the sweep a Subscribe() runs once the table holds twice as many as after
  // the previous sweep (at least LeaseTable::kMinSweepAt): held closed ones stay within a
  // constant factor of the open ones.
  size_t subscription_count() const ABSL_LOCKS_EXCLUDED(mu_);
  static constexpr size_t kMinSweepAt = 64;

  // Waits until the table holds no lease at all (live or ending) or the clock reaches
  // `deadline`. Returns true if empty.
  bool AwaitEmpty(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A live or ending lease, kept compact (docs/PERFORMANCE.md counts the bytes per lease): its
  // owner, export and path point into `names_`, where each distinct string is kept once however
  // many leases name it; the RDMA grant and the reason exist only when set. InfoLocked() turns it
  // back into the LeaseInfo callers see.
  struct Record {
    const std::string* owner = nullptr;
    const std::string* export_name = nullptr;
    const std::string* path = nullptr;
    const FileId* file = nullptr;  // Kept in files_.
    PageRange pages;               // The bytes are these pages (Options::page_size).
    PackedTime granted_at;
    PackedTime expires_at;
    PackedTime recall_deadline{absl::InfiniteFuture()};
    // The reason and the RDMA grant, only when there is either (nullptr: no reason, not pinned
    // for RDMA): most leases have neither.
    struct Extra {
      std::string reason;
      std::unique_ptr<RdmaGrant> rdma;
    };
    std::unique_ptr<Extra> extra;
    uint64_t backend_handle = 0;
    Access access = Access::kRead;
    RegistrationMode mode = RegistrationMode::kHost;
    LeaseState state = LeaseState::kGranted;
    bool guards_layout = true;
    bool ending = false;  // Terminal state claimed; waiting for Finish().
    QuotaHold quota;      // Given back when the record goes.

    absl::string_view reason_text() const {
      return extra == nullptr ? absl::string_view() : absl::string_view(extra->reason);
    }
    const RdmaGrant* rdma() const { return extra == nullptr ? nullptr : extra->rdma.get(); }
    void set_reason(std::string text);
    void set_rdma(RdmaGrant grant);
  };
  struct Tombstone {
    std::string owner;
    LeaseState state;
    std::string reason;
    absl::Time at;
  };

  LeaseInfo InfoLocked(LeaseId id, const Record& record) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MatchesLocked(const LeaseFilter& filter, const Record& record) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The kept copy of `text` (one more reference), and giving a reference back.
  const std::string* InternLocked(absl::string_view text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseNameLocked(const std::string* name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The kept copy of `text` if any lease names it, else nullptr.
  const std::string* FindNameLocked(absl::string_view text) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same for files.
  const FileId* InternFileLocked(const FileId& file) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseFileLocked(const FileId* file) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const FileId* FindFileLocked(const FileId& file) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NotFoundLocked(LeaseId id, absl::string_view owner) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live (not ending) record of `id`, or nullptr.
  Record* LiveLocked(LeaseId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(LeaseEvent::Type type, LeaseId id, const Record& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Events of a batch, by owner, delivered by DeliverLocked() before the lock is let go so that
  // each owner's events stay in the order the table applied them.
  using PendingEvents = absl::flat_hash_map<std::string, std::vector<LeaseEvent>>;
  // Queues the event of `type` for lease `id` in `pending` if its owner has subscribers.
  void PendLocked(PendingEvents& pending, LeaseEvent::Type type, LeaseId id, const Record& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finish() under the lock; the event goes to `pending` if set, else out at once.
  void FinishLocked(LeaseId id, PendingEvents* pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverLocked(PendingEvents& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a push to the queues of `it` dropped an event: drops the closed ones.
  using Subscribers = absl::flat_hash_map<std::string, std::vector<std::shared_ptr<EventQueue>>>;
  void DropClosedLocked(Subscribers::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the closed queues of `queues`; returns how many.
  static size_t DropClosed(std::vector<std::shared_ptr<EventQueue>>& queues);
  void SetExpiryLocked(LeaseId id, Record& record, absl::Time expires_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimer(absl::Time due) ABSL_LOCKS_EXCLUDED(mu_);
  LeaseInfo EndLocked(LeaseId id, Record& record, LeaseState state, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  ExpiryHandler on_expired_;
  const Options options_;

  mutable absl::Mutex mu_;
  LeaseId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Issued by NewId() and neither inserted nor discarded: the only ids Insert() accepts.
  absl::flat_hash_set<LeaseId> issued_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<LeaseId, Record> leases_ ABSL_GUARDED_BY(mu_);
  // (expires_at, id) for every live lease that is not ending.
  absl::btree_set<std::pair<PackedTime, LeaseId>> expiry_ ABSL_GUARDED_BY(mu_);
  // Armed expiry timers by due time. Extra timers are harmless: a pass with nothing due re-arms.
  absl::btree_map<absl::Time, Clock::TimerId> timers_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  Subscribers subscribers_ ABSL_GUARDED_BY(mu_);
  // Queues in subscribers_, and the count at which the next Subscribe() sweeps them all.
  size_t held_subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
  size_t sweep_at_ ABSL_GUARDED_BY(mu_) = kMinSweepAt;
  // Every owner, export and path string some record names, with how many names refer to it.
  // Nodes, so that the strings stay where records point.
  absl::node_hash_map<std::string, size_t> names_ ABSL_GUARDED_BY(mu_);
  // The same for every file some record names.
  absl::node_hash_map<FileId, size_t> files_ ABSL_GUARDED_BY(mu_);
  // Every record of leases_ (live or ending) by owner (its kept name) and by file, for List().
  absl::btree_set<std::pair<const std::string*, LeaseId>> by_owner_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<const FileId*, LeaseId>> by_file_ ABSL_GUARDED_BY(mu_);
  size_t ending_ ABSL_GUARDED_BY(mu_) = 0;  // Records of leases_ with `ending` set.
  absl::flat_hash_map<LeaseId, Tombstone> tombstones_ ABSL_GUARDED_BY(mu_);
  std::deque<LeaseId> tombstone_order_ ABSL_GUARDED_BY(mu_);
  size_t tombstone_bytes_ ABSL_GUARDED_BY(mu_) = 0;

 public:
  // For tests: tombstones held and the bytes of text they hold.
  size_t tombstone_count() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t tombstone_text_bytes() const ABSL_LOCKS_EXCLUDED(mu_);
};

}  // namespace pinbroker
