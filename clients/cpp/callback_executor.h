// CallbackExecutor: the C++ client's callback thread. Runs the tasks posted to it (the user's
// on_recall, on_revoked and on_session_lost) one at a time, in the order they were posted, on
// its own thread, never while holding its lock. Not part of the public API.
//
// Keys: a task may carry a key (the lease it is about). After Forget(key) returns, no task with
// that key starts, and none is running, except when Forget() is called from that task itself
// (a callback may destroy its own Lease): then it does not wait.
//
// Shutdown: Stop() drops the tasks that have not started and ends the thread: it waits for a
// running task and joins the thread, or, when called from a task, detaches it (the thread ends
// by itself once the task returns; it shares the executor's state, so the executor may be
// destroyed meanwhile). Tasks posted after Stop() never run; they are destroyed with the
// executor. Dropped tasks are always destroyed without the lock.
//
// Thread-safety: Post(), Forget() and OnExecutorThread() are safe to call concurrently, also
// from a task; Start() and Stop() are the owner's (one thread at a time). The lock is
// a leaf: Post() may be called while holding other locks; Forget() and Stop() wait for a
// running task, so they must not be called holding a lock that tasks take.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"

namespace pinbroker::client::internal {

class CallbackExecutor {
 public:
  CallbackExecutor();
  // Stop().
  ~CallbackExecutor();
  CallbackExecutor(const CallbackExecutor&) = delete;
  CallbackExecutor& operator=(const CallbackExecutor&) = delete;

  // Starts the thread; tasks posted before run then, in order. Once.
  void Start();
  // Queues `task`; `key` may be empty (never forgotten).
  void Post(std::string key, absl::AnyInvocable<void()> task);
  // See the header comment. Queued tasks with `key` are dropped.
  void Forget(const std::string& key);
  void Stop();
  bool OnExecutorThread() const;

 private:
  struct State;
  static void Loop(std::shared_ptr<State> state);

  const std::shared_ptr<State> state_;
  // Written by Start() and the first Stop(); Start() happens before any Stop().
  std::thread thread_;
};

}  // namespace pinbroker::client::internal
