// WorkPool: the file guard's worker threads and their queue. The listener hands it layout
// changes (held fanotify events, lease breaks) and checks; up to `max_workers` threads run
// them, started on demand (a new one only when none is idle); more work waits in the queue,
// its callers still held by the kernel. The pool counts, per file, the changes queued or
// running, so that shutdown can end the leases they wait for.
//
// Shutdown has two steps: BeginStop() refuses layout changes from then on (Enqueue hands them
// back, for the caller to answer at once) while checks are still taken; Join() lets the
// workers finish the queue and joins them.
//
// Thread-safety: every method is safe to call concurrently, except that Join() must not run on
// a worker. `run` is called on a worker with no pool lock held.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pinning/file_info.h"
#include "pinning/guard/guarded_file.h"

namespace pinbroker::guard {

class WorkPool {
 public:
  WorkPool(int max_workers, std::function<void(GuardWork&)> run);
  // Join()s.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `work` and returns nullptr; after BeginStop(), returns a layout change back
  // unqueued (checks are still queued). A finished work item is destroyed on its worker before
  // it counts as done (a held event nothing answered is allowed then).
  std::unique_ptr<GuardWork> Enqueue(std::unique_ptr<GuardWork> work) ABSL_LOCKS_EXCLUDED(mu_);

  // From now on, Enqueue() refuses layout changes.
  void BeginStop() ABSL_LOCKS_EXCLUDED(mu_);

  // Files with a layout change queued or running.
  std::vector<FileId> FilesWithChangesInFlight() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until nothing is queued or running.
  void AwaitIdle() const ABSL_LOCKS_EXCLUDED(mu_);

  // Lets the workers run what is queued, then exit; joins them. Idempotent.
  void Join() ABSL_LOCKS_EXCLUDED(mu_);

  // Worker threads started so far (for tests).
  size_t workers() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const int max_workers_;
  const std::function<void(GuardWork&)> run_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool exit_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::unique_ptr<GuardWork>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  int idle_workers_ ABSL_GUARDED_BY(mu_) = 0;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<FileId, int> changes_in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::guard
