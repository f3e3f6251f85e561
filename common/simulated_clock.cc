#include "common/simulated_clock.h"

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

namespace pinbroker {

SimulatedClock::SimulatedClock(absl::Time start) : now_(start) {}

absl::Time SimulatedClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool SimulatedClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                       absl::Time deadline) {
  if (cond.Eval()) return true;
  auto waiter = std::make_shared<Waiter>();
  waiter->mu = mu;
  waiter->deadline = deadline;
  {
    absl::MutexLock lock(&mu_);
    if (now_ >= deadline) return false;
    waiters_.insert(waiter);
  }
  struct Context {
    const absl::Condition* cond;
    const Waiter* waiter;
  } context{&cond, waiter.get()};
  mu->Await(absl::Condition(
      +[](Context* c) { return c->waiter->expired.load() || c->cond->Eval(); }, &context));
  {
    absl::MutexLock lock(&mu_);
    waiters_.erase(waiter);
  }
  return cond.Eval();
}

Clock::TimerId SimulatedClock::Schedule(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock lock(&mu_);
  const TimerId id = next_id_++;
  timers_.emplace(Key{when, id}, std::move(fn));
  when_.emplace(id, when);
  return id;
}

bool SimulatedClock::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  if (auto it = when_.find(id); it != when_.end()) {
    timers_.erase(Key{it->second, id});
    when_.erase(it);
    return true;
  }
  if (running_ == id && std::this_thread::get_id() != advancing_thread_) {
    auto finished = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
    mu_.Await(absl::Condition(&finished));
  }
  return false;
}

void SimulatedClock::Advance(absl::Duration d) { AdvanceTo(Now() + d); }

void SimulatedClock::AdvanceTo(absl::Time target) {
  absl::MutexLock advance(&advance_mu_);
  while (true) {
    std::vector<std::shared_ptr<Waiter>> due_waiters;
    {
      absl::MutexLock lock(&mu_);
      advancing_thread_ = std::this_thread::get_id();
      // The next instant at which something is due, unless that is past the target.
      absl::Time next = target;
      if (!timers_.empty()) next = std::min(next, timers_.begin()->first.when);
      for (const auto& w : waiters_) {
        if (!w->expired.load()) next = std::min(next, w->deadline);
      }
      if (next > now_) now_ = next;
      for (const auto& w : waiters_) {
        if (!w->expired.load() && w->deadline <= now_) {
          w->expired.store(true);
          due_waiters.push_back(w);
        }
      }
    }
    // Due timers run one at a time, in (time, id) order, with mu_ released.
    bool ran_timer = false;
    while (true) {
      absl::AnyInvocable<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        running_ = 0;
        if (timers_.empty() || timers_.begin()->first.when > now_) break;
        auto node = timers_.extract(timers_.begin());
        when_.erase(node.key().id);
        running_ = node.key().id;
        fn = std::move(node.mapped());
      }
      fn();
      ran_timer = true;
    }
    for (const auto& w : due_waiters) Wake(w);
    absl::MutexLock lock(&mu_);
    if (!ran_timer && due_waiters.empty() && now_ >= target) {
      advancing_thread_ = std::thread::id();
      return;
    }
  }
}

// Releasing a waiter's mutex makes absl re-evaluate its condition, which now sees `expired`.
// The waiter may return (its condition came true meanwhile) and its owner destroy the mutex at
// any moment, so the mutex is only touched while the waiter is provably still inside
// AwaitWithDeadline: registered in waiters_ (checked under mu_) and not holding its mutex
// (TryLock succeeds; the waiter cannot return without it). If TryLock fails, whoever holds the
// mutex unlocks it later, which re-evaluates the condition as well, unless that unlock was
// already under way: so retry until one of the two holds. (Thread-safety analysis cannot follow
// a lock taken by TryLock under one scope and released in another.)
void SimulatedClock::Wake(const std::shared_ptr<Waiter>& w) {
  while (true) {
    absl::Mutex* locked = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!waiters_.contains(w)) return;  // It has returned, or is returning.
      if (w->mu->TryLock()) locked = w->mu;
    }
    if (locked != nullptr) {
      locked->Unlock();  // Outside mu_: the conditions it evaluates may call Now().
      return;
    }
    std::this_thread::yield();
  }
}

void SimulatedClock::WaitForWaiters(size_t n) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return BlockedLocked() >= n; };
  mu_.Await(absl::Condition(&enough));
}

size_t SimulatedClock::BlockedLocked() const {
  size_t blocked = 0;
  for (const auto& w : waiters_) blocked += w->expired.load() ? 0 : 1;
  return blocked;
}

size_t SimulatedClock::waiter_count() const {
  absl::MutexLock lock(&mu_);
  return BlockedLocked();
}

size_t SimulatedClock::pending_timers() const {
  absl::MutexLock lock(&mu_);
  return timers_.size();
}

}  // namespace pinbroker
