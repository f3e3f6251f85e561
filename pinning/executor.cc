#include "pinning/executor.h"

#include <utility>

namespace pinbroker {

Executor::~Executor() { Join(); }

void Executor::Post(absl::AnyInvocable<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (!joined_) {
      queue_.push_back(std::move(task));
      if (idle_ == 0 && static_cast<int>(threads_.size()) < max_threads_ && !exit_) {
        threads_.emplace_back([this] { Loop(); });
      }
      return;
    }
  }
  task();
}

void Executor::Join() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    exit_ = true;
    threads = std::move(threads_);
    threads_.clear();
  }
  for (std::thread& t : threads) t.join();
  // Posted after the threads left (by a task's own Post during Join): run here.
  for (;;) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      joined_ = true;
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

size_t Executor::threads() const {
  absl::MutexLock lock(&mu_);
  return threads_.size();
}

void Executor::Loop() {
  for (;;) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      ++idle_;
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || exit_; };
      mu_.Await(absl::Condition(&ready));
      --idle_;
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace pinbroker
