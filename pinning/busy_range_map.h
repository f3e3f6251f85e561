// BusyRangeMap: for one file, which pages are pinned by which leases, and which ranges are
// blocked because a layout change is draining them.
//
// A pin enters in two steps. Reserve() claims the range before the backend does any work, so a
// layout change that starts meanwhile sees it and waits for it; Commit() turns the reservation
// into a held pin once the backend succeeded, unless a block arrived in between, in which case
// it fails with ABORTED and the caller undoes the backend pin and Remove()s the reservation.
//
// Block() is the analogue of FreeBSD's VPRC_BLOCKED bit and of the unmap step in the kernel's
// dax_layout_busy_page(): from then on new reservations overlapping the range fail (or wait, if
// the caller asks), and AwaitDrained() blocks until every entry that overlapped it at block time
// has been removed. Drain waits are woken by the Remove() of the last such entry (a counter per
// block reaches zero), never by polling; deadlines come from the Clock. OnDrained() is the
// same wait without a thread: a callback run by that Remove().
//
// Costs (n entries, k results, b active blocks, normally 0 or 1): Reserve and Remove
// O(log n + b); Overlapping O(B log_B n + k), see BTreeIntervalIndex; Block O(log n + k).
//
// Thread-safety: safe to call concurrently. Commit() runs its callback under the map's lock, so
// the callback must not call back into this map; it may take locks that are ordered after it
// (the engine's rule: BusyRangeMap before LeaseTable). OnDrained() callbacks run with no lock of
// the map held (they may call back into it), on the thread whose Remove() drained the block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pinbroker/clock.h"
#include "pinning/btree_interval_index.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"

namespace pinbroker {

class BusyRangeMap {
 public:
  using BlockId = uint64_t;
  using DrainWaitId = uint64_t;  // An OnDrained() registration; 0 is never one.

  struct Entry {
    LeaseId lease = 0;
    PageRange range;
    bool held = false;  // false: reserved, the backend pin is still being set up.
  };
  struct BlockInfo {
    BlockId id = 0;
    PageRange range;
    std::string reason;    // e.g. "truncate to 8192 bytes (revoke)".
    size_t remaining = 0;  // Entries overlapping it that are still present.
  };
  struct BlockResult {
    BlockId id = 0;
    std::vector<LeaseId> held;     // Held pins overlapping the range, ascending by range.
    std::vector<LeaseId> pending;  // Reservations that will now fail their Commit().
  };

  explicit BusyRangeMap(Clock* clock) : clock_(clock) {}
  BusyRangeMap(const BusyRangeMap&) = delete;
  BusyRangeMap& operator=(const BusyRangeMap&) = delete;

  // Reserves `range` for `lease`. If a block overlaps it, waits until the block is lifted or the
  // clock reaches `wait_until` (pass absl::InfinitePast() to fail at once), then fails with
  // ABORTED naming the block's reason. INVALID_ARGUMENT for an empty range, ALREADY_EXISTS for a
  // lease already present.
  absl::Status Reserve(LeaseId lease, PageRange range, absl::Time wait_until)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Marks the reservation held and runs `on_commit` atomically with that, under the map's lock.
  // ABORTED if a block overlapping the reservation arrived since Reserve() (the reservation
  // stays; Remove() it); NOT_FOUND if there is no reservation; FAILED_PRECONDITION if held.
  absl::Status Commit(LeaseId lease, absl::FunctionRef<void()> on_commit) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes the lease's entry, held or reserved, and wakes drain waits it was the last of.
  // NOT_FOUND if absent.
  absl::Status Remove(LeaseId lease) ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks `range` (see the header comment) and reports what it overlaps now.
  BlockResult Block(PageRange range, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);

  // Lifts a block; reservations waiting on it retry. No-op for an unknown id.
  void Unblock(BlockId block) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until every entry that overlapped the block when it was made is gone, or until the
  // clock reaches `deadline`. Returns true if drained. False at once for an unknown block.
  bool AwaitDrained(BlockId block, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  bool IsDrained(BlockId block) const ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `fn` once the block has drained: at once, on this thread, if it already has
  // (returning 0), else from the Remove() that drains it, outside the map's lock. Never for an
  // unknown block or one unblocked first (`fn` is destroyed then; returns 0 if unknown). The
  // returned id lets CancelOnDrained() withdraw the callback.
  DrainWaitId OnDrained(BlockId block, absl::AnyInvocable<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Withdraws a callback that has not started. True if it was withdrawn (it will never run).
  bool CancelOnDrained(BlockId block, DrainWaitId wait) ABSL_LOCKS_EXCLUDED(mu_);

  // Entries overlapping `range`, ascending by (range.first, lease).
  std::vector<Entry> Overlapping(PageRange range) const ABSL_LOCKS_EXCLUDED(mu_);
  bool AnyOverlapping(PageRange range) const ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<Entry> Entries() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<BlockInfo> Blocks() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // No entries and no blocks: the map may be discarded.
  bool idle() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct ActiveBlock {
    PageRange range;
    std::string reason;
    size_t remaining = 0;
    absl::flat_hash_map<DrainWaitId, absl::AnyInvocable<void()>> on_drained;
  };

  const ActiveBlock* BlockingLocked(PageRange range) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Entry> OverlappingLocked(PageRange range) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  mutable absl::Mutex mu_;
  BTreeIntervalIndex index_ ABSL_GUARDED_BY(mu_);
  // Every entry's range (24 bytes a slot: the flags of the few entries not yet committed are
  // kept apart, in pending_).
  absl::flat_hash_map<LeaseId, PageRange> slots_ ABSL_GUARDED_BY(mu_);
  // Reserved, not yet committed entries; true if doomed (a block arrived while reserved:
  // Commit() must fail). An entry of slots_ not here is held.
  absl::flat_hash_map<LeaseId, bool> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<BlockId, ActiveBlock> blocks_ ABSL_GUARDED_BY(mu_);
  BlockId next_block_ ABSL_GUARDED_BY(mu_) = 1;
  DrainWaitId next_drain_wait_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace pinbroker
