#include "common/real_clock.h"

#include <utility>

namespace pinbroker {

RealClock::RealClock() : thread_([this] { Loop(); }) {}

RealClock::~RealClock() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

Clock::TimerId RealClock::Schedule(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock lock(&mu_);
  const TimerId id = next_id_++;
  timers_.emplace(Key{when, id}, std::move(fn));
  when_.emplace(id, when);
  ++generation_;
  return id;
}

bool RealClock::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  if (auto it = when_.find(id); it != when_.end()) {
    timers_.erase(Key{it->second, id});
    when_.erase(it);
    return true;
  }
  if (std::this_thread::get_id() != thread_.get_id()) {
    auto finished = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
    mu_.Await(absl::Condition(&finished));
  }
  return false;
}

void RealClock::Loop() {
  mu_.Lock();
  while (!stop_) {
    const absl::Time next = timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.when;
    if (next > absl::Now()) {
      // Sleep until the earliest timer is due, a timer is added, or stop.
      const uint64_t seen = generation_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || generation_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), next);
      continue;
    }
    auto node = timers_.extract(timers_.begin());
    when_.erase(node.key().id);
    running_ = node.key().id;
    mu_.Unlock();
    std::move(node.mapped())();
    mu_.Lock();
    running_ = 0;
  }
  mu_.Unlock();
}

}  // namespace pinbroker
