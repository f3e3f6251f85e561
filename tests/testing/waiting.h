// Helpers for tests that watch other threads reach a state: how many threads this process
// runs, and a bounded wait for a condition another thread is about to make true (never a
// timer's wait: tests move simulated time for those).
//
// Thread-safety: both are safe to call from any thread; `cond` must be.
#pragma once

#include <dirent.h>

#include <cstddef>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pinbroker::testing {

// Threads of this process now (entries of /proc/self/task), or 0 if that cannot be read.
inline size_t ThreadCount() {
  size_t n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n;
}

// Polls `cond` until it holds (true) or `safety` has passed in real time (false): a bound a
// working test never reaches.
template <typename Cond>
bool Eventually(Cond cond, absl::Duration safety = absl::Seconds(120)) {
  const absl::Time give_up = absl::Now() + safety;
  while (!cond()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace pinbroker::testing
