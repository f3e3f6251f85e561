#include "clients/pinctl/signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace pinctl {
namespace {

// SIGUSR1 is only ever sent by ~SignalWaiter() to its own thread, to stop it.
sigset_t WaitedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

}  // namespace

void SignalWaiter::BlockTerminationSignals() {
  const sigset_t set = WaitedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalWaiter::SignalWaiter(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)), thread_([this] { Loop(); }) {}

SignalWaiter::~SignalWaiter() {
  stopping_.store(true);
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

void SignalWaiter::Loop() {
  const sigset_t set = WaitedSignals();
  for (;;) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    if (signal == SIGUSR1) {
      if (stopping_.load()) return;
      continue;
    }
    int expected = 0;
    if (!received_.compare_exchange_strong(expected, signal)) {
      _exit(128 + signal);  // Second signal: the user insists.
    }
    on_signal_(signal);
  }
}

}  // namespace pinctl
