#include "pinning/guard/work_pool.h"

#include <utility>

namespace pinbroker::guard {

WorkPool::WorkPool(int max_workers, std::function<void(GuardWork&)> run)
    : max_workers_(max_workers), run_(std::move(run)) {}

WorkPool::~WorkPool() { Join(); }

std::unique_ptr<GuardWork> WorkPool::Enqueue(std::unique_ptr<GuardWork> work) {
  absl::MutexLock lock(&mu_);
  if (stopping_ && work->is_change()) return work;
  if (work->is_change()) ++changes_in_flight_[work->file->id];
  queue_.push_back(std::move(work));
  if (idle_workers_ == 0 && static_cast<int>(workers_.size()) < max_workers_ && !exit_) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  return nullptr;
}

void WorkPool::BeginStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

std::vector<FileId> WorkPool::FilesWithChangesInFlight() const {
  absl::MutexLock lock(&mu_);
  std::vector<FileId> out;
  for (const auto& [id, count] : changes_in_flight_) out.push_back(id);
  return out;
}

void WorkPool::AwaitIdle() const {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && running_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

void WorkPool::Join() {
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    exit_ = true;
    workers = std::move(workers_);
    workers_.clear();
  }
  for (std::thread& t : workers) t.join();
}

size_t WorkPool::workers() const {
  absl::MutexLock lock(&mu_);
  return workers_.size();
}

void WorkPool::WorkerLoop() {
  for (;;) {
    std::unique_ptr<GuardWork> work;
    {
      absl::MutexLock lock(&mu_);
      ++idle_workers_;
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || exit_; };
      mu_.Await(absl::Condition(&ready));
      --idle_workers_;
      if (queue_.empty()) return;
      work = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    const FileId id = work->file->id;
    const bool change = work->is_change();
    run_(*work);
    work.reset();  // Answers an event nothing answered (allow), before counting it done.
    absl::MutexLock lock(&mu_);
    --running_;
    if (change && --changes_in_flight_[id] == 0) changes_in_flight_.erase(id);
  }
}

}  // namespace pinbroker::guard
