// RunWrites: a pipelined bulk RDMA WRITE loop shared by the lease path and the plain-region
// path of vm_benchmarks, so the two differ only in where the writes go. `post(offset, slot,
// n)` posts one WRITE of n bytes from buffer `slot` to target offset `offset` and returns a
// waiter whose Wait() gives the completion's status; at most `depth` are in flight.
//
// Thread-safety: runs on the calling thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pinbroker::vmbench {

template <typename PostFn>
absl::StatusOr<absl::Duration> RunWrites(uint64_t length, uint64_t chunk, uint32_t depth,
                                         PostFn post) {
  using Waiter = typename decltype(post(uint64_t{0}, size_t{0}, uint64_t{0}))::value_type;
  std::deque<std::pair<Waiter, size_t>> in_flight;
  std::deque<size_t> free_slots;
  for (size_t i = 0; i < depth; ++i) free_slots.push_back(i);
  absl::Status failure;
  auto finish_one = [&] {
    auto [waiter, slot] = std::move(in_flight.front());
    in_flight.pop_front();
    if (absl::Status s = waiter.Wait(); !s.ok() && failure.ok()) failure = s;
    free_slots.push_back(slot);
  };
  const absl::Time start = absl::Now();
  for (uint64_t done = 0; done < length && failure.ok();) {
    if (free_slots.empty()) {
      finish_one();
      continue;
    }
    const size_t slot = free_slots.front();
    free_slots.pop_front();
    const uint64_t n = std::min(chunk, length - done);
    auto waiter = post(done, slot, n);
    if (!waiter.ok()) {
      failure = waiter.status();
      break;
    }
    in_flight.emplace_back(*std::move(waiter), slot);
    done += n;
  }
  while (!in_flight.empty()) finish_one();
  if (!failure.ok()) return failure;
  return absl::Now() - start;
}

}  // namespace pinbroker::vmbench
