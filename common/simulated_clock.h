// SimulatedClock: a Clock whose time moves only when a test says so.
//
// Advance()/AdvanceTo() step through every timer and timed wait that falls due on the way, in
// time order: at each due instant they set Now() to it, run the due timer callbacks on the
// calling thread, and wake the timed waits whose deadline passed (they return with their
// condition's value, false if it still does not hold). Tests use WaitForWaiters() to know that
// another thread has reached its wait before moving time, so no test ever sleeps.
//
// Thread-safety: safe to call concurrently. Contract for AwaitWithDeadline(): the mutex passed
// must stay alive while an Advance() that may wake it is running (Advance briefly locks it to
// make the waiter re-evaluate). Tests satisfy this by destroying objects after Advance returns.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "pinbroker/clock.h"

namespace pinbroker {

class SimulatedClock final : public Clock {
 public:
  // Starts at `start` (default: 2030-01-01T00:00:00Z, so nothing depends on the real date).
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1893456000));
  ~SimulatedClock() override = default;
  SimulatedClock(const SimulatedClock&) = delete;
  SimulatedClock& operator=(const SimulatedClock&) = delete;

  absl::Time Now() const override;
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  TimerId Schedule(absl::Time when, absl::AnyInvocable<void()> fn) override;
  bool Cancel(TimerId id) override;

  // Moves time forward by `d` (>= 0) or to `t`. Time never moves back: with t <= Now() only
  // what is already due (timers scheduled in the past) runs.
  void Advance(absl::Duration d);
  void AdvanceTo(absl::Time t);

  // Blocks until at least `n` threads are blocked in AwaitWithDeadline() on this clock (a
  // waiter whose deadline has passed no longer counts, even before it has returned).
  void WaitForWaiters(size_t n);
  size_t waiter_count() const;
  size_t pending_timers() const;

 private:
  struct Waiter {
    absl::Mutex* mu;
    absl::Time deadline;
    std::atomic<bool> expired{false};
  };
  struct Key {
    absl::Time when;
    TimerId id;
    friend bool operator<(const Key& a, const Key& b) {
      return a.when < b.when || (a.when == b.when && a.id < b.id);
    }
  };

  size_t BlockedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes an expired waiter re-evaluate its condition, without touching its mutex after it
  // could have returned.
  void Wake(const std::shared_ptr<Waiter>& w)
      ABSL_LOCKS_EXCLUDED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<Key, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<TimerId, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::shared_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  TimerId running_ ABSL_GUARDED_BY(mu_) = 0;  // Timer whose callback is running, or 0.
  std::thread::id advancing_thread_ ABSL_GUARDED_BY(mu_);
  // Serializes Advance() calls so time moves monotonically through due events.
  absl::Mutex advance_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace pinbroker
