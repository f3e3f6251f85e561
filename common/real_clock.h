// RealClock: the Clock on absl::Now(), with one timer thread.
//
// Thread-safety: safe to call concurrently. Timers run one at a time on the timer thread; the
// destructor cancels pending timers and joins the thread.
#pragma once

#include <thread>

#include "absl/container/btree_map.h"
#include "pinbroker/clock.h"

namespace pinbroker {

class RealClock final : public Clock {
 public:
  RealClock();
  ~RealClock() override;
  RealClock(const RealClock&) = delete;
  RealClock& operator=(const RealClock&) = delete;

  absl::Time Now() const override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu->AwaitWithDeadline(cond, deadline);
  }
  TimerId Schedule(absl::Time when, absl::AnyInvocable<void()> fn) override;
  bool Cancel(TimerId id) override;

 private:
  struct Key {
    absl::Time when;
    TimerId id;
    friend bool operator<(const Key& a, const Key& b) {
      return a.when < b.when || (a.when == b.when && a.id < b.id);
    }
  };
  void Loop();

  absl::Mutex mu_;
  absl::btree_map<Key, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<TimerId, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // Bumped by Schedule() to wake Loop().
  TimerId running_ ABSL_GUARDED_BY(mu_) = 0;      // Timer whose callback is running, or 0.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // Last: starts after the members above exist.
};

}  // namespace pinbroker
