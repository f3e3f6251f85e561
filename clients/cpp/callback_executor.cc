#include "clients/cpp/callback_executor.h"

#include <deque>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pinbroker::client::internal {

struct CallbackExecutor::State {
  struct Task {
    std::string key;
    absl::AnyInvocable<void()> run;
  };
  absl::Mutex mu;
  std::deque<Task> tasks ABSL_GUARDED_BY(mu);
  bool stopped ABSL_GUARDED_BY(mu) = false;
  bool running ABSL_GUARDED_BY(mu) = false;
  std::string running_key ABSL_GUARDED_BY(mu);
  std::thread::id thread_id ABSL_GUARDED_BY(mu);
};

CallbackExecutor::CallbackExecutor() : state_(std::make_shared<State>()) {}

CallbackExecutor::~CallbackExecutor() {
  Stop();
  std::deque<State::Task> leftover;  // Posted after Stop(): destroyed without the lock.
  absl::MutexLock lock(&state_->mu);
  leftover.swap(state_->tasks);
}

void CallbackExecutor::Start() { thread_ = std::thread(&CallbackExecutor::Loop, state_); }

void CallbackExecutor::Loop(std::shared_ptr<State> state) {
  State& s = *state;
  s.mu.Lock();
  s.thread_id = std::this_thread::get_id();
  while (true) {
    auto ready = [&s]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return s.stopped || !s.tasks.empty(); };
    s.mu.Await(absl::Condition(&ready));
    if (s.stopped) break;
    State::Task task = std::move(s.tasks.front());
    s.tasks.pop_front();
    s.running = true;
    s.running_key = task.key;
    s.mu.Unlock();
    task.run();
    task.run = nullptr;  // Destroyed without the lock.
    s.mu.Lock();
    s.running = false;
    s.running_key.clear();
  }
  s.mu.Unlock();
}

void CallbackExecutor::Post(std::string key, absl::AnyInvocable<void()> task) {
  absl::MutexLock lock(&state_->mu);
  state_->tasks.push_back(State::Task{std::move(key), std::move(task)});
}

void CallbackExecutor::Forget(const std::string& key) {
  State& s = *state_;
  std::vector<State::Task> dropped;
  {
    absl::MutexLock lock(&s.mu);
    for (auto it = s.tasks.begin(); it != s.tasks.end();) {
      if (!key.empty() && it->key == key) {
        dropped.push_back(std::move(*it));
        it = s.tasks.erase(it);
      } else {
        ++it;
      }
    }
    if (std::this_thread::get_id() != s.thread_id) {
      auto not_running = [&s, &key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        return !s.running || s.running_key != key;
      };
      s.mu.Await(absl::Condition(&not_running));
    }
  }
}

void CallbackExecutor::Stop() {
  State& s = *state_;
  std::deque<State::Task> dropped;
  bool on_thread;
  {
    absl::MutexLock lock(&s.mu);
    s.stopped = true;
    dropped.swap(s.tasks);
    on_thread = std::this_thread::get_id() == s.thread_id;
  }
  dropped.clear();
  if (!thread_.joinable()) return;
  if (on_thread) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

bool CallbackExecutor::OnExecutorThread() const {
  absl::MutexLock lock(&state_->mu);
  return std::this_thread::get_id() == state_->thread_id;
}

}  // namespace pinbroker::client::internal
