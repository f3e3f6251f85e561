// SignalWaiter: turns SIGINT and SIGTERM into a callback for the long-running commands
// (lease watch, lease pin --hold), so they can release what they hold and exit cleanly.
//
// BlockTerminationSignals() must run on the main thread before any other thread starts (before
// the first gRPC channel), so every thread inherits the blocked mask and only the waiter's
// sigwait() sees the signals. A second signal while the first is being handled exits at once
// with 128 + signal.
//
// Thread-safety: construct and destroy on one thread; the callback runs on the waiter's own
// thread and must only do thread-safe things (e.g. WatchStream::Interrupt()).
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace pinctl {

class SignalWaiter {
 public:
  static void BlockTerminationSignals();

  explicit SignalWaiter(std::function<void(int signal)> on_signal);
  ~SignalWaiter();
  SignalWaiter(const SignalWaiter&) = delete;
  SignalWaiter& operator=(const SignalWaiter&) = delete;

  // The first signal received, or 0.
  int received() const { return received_.load(); }

 private:
  void Loop();

  std::function<void(int)> on_signal_;
  std::atomic<int> received_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace pinctl
