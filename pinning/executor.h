// Executor: a small bounded pool of threads that runs the engine's continuations.
//
// Waits that hold no thread (a layout change waiting for a drain, its deadline or its turn on
// the file) are resumed by whoever ends the wait: a Release() caller, the clock's timer
// thread. Those must not run the slow steps (system calls, backend revokes, completion
// callbacks) themselves, so they Post() them here. Up to `max_threads` threads run them,
// started on demand (a new one only when none is idle); more tasks wait in the queue, in order.
//
// Thread-safety: every method is safe to call concurrently, except that Join() must not run on
// one of the pool's threads. Tasks run with no pool lock held and may Post() more.
#pragma once

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace pinbroker {

class Executor {
 public:
  explicit Executor(int max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}
  // Join()s.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. After Join() began, runs it on the calling thread instead, so that nothing
  // posted is ever dropped.
  void Post(absl::AnyInvocable<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs what is queued (including what those tasks post), then stops and joins the threads.
  // Idempotent.
  void Join() ABSL_LOCKS_EXCLUDED(mu_);

  // Threads started so far (for tests).
  size_t threads() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const int max_threads_;
  mutable absl::Mutex mu_;
  bool exit_ ABSL_GUARDED_BY(mu_) = false;
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pinbroker
