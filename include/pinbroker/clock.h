// Clock: the engine's only source of time, timers and timed waits.
//
// Everything in pinning/ that needs "now", a deadline or a delayed action goes through a Clock,
// so that tests can run the whole engine on SimulatedClock: time moves only when the test calls
// Advance(), which fires due timers and wakes timed waits, and no test sleeps for real.
// RealClock is the production implementation. The C++ client library takes one too
// (ClientOptions::clock), which is why this header is public (installed as pinbroker/clock.h).
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pinbroker {

class Clock {
 public:
  using TimerId = uint64_t;

  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // Blocks until `cond` holds or this clock reaches `deadline`. `mu` must be held on entry and
  // is held on return (it is released while blocked, like absl::Mutex::AwaitWithDeadline).
  // Returns the final value of `cond`. `cond` is re-evaluated whenever `mu` is released by
  // another thread, so changes to the state it reads must be made under `mu`.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // Runs `fn` once, on a clock-owned thread (RealClock) or inside Advance() (SimulatedClock), at
  // or soon after `when`. Callbacks must not call Cancel() on themselves and should be short.
  virtual TimerId Schedule(absl::Time when, absl::AnyInvocable<void()> fn) = 0;

  // Prevents a scheduled callback from running. Returns true if it had not started. If it is
  // running on another thread, waits for it to finish (so callers may destroy what it uses),
  // unless called from that callback's own thread. Never call while holding a lock the
  // callback takes.
  virtual bool Cancel(TimerId id) = 0;
};

}  // namespace pinbroker
