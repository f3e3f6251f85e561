// fd events for verbs event loops: a non-blocking fd helper, WakeFd (an eventfd that wakes a
// poll() loop from another thread) and PollReadable (one poll() over a set of fds, EINTR
// folded into "nothing ready"). The broker's connection manager and the RDMA client's event
// thread poll the rdma_cm channel, a completion channel and a WakeFd this way.
//
// Thread-safety: WakeFd::Wake() is safe from any thread; Drain() and the owner's poll run on
// the loop's thread. PollReadable keeps no state.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace pinbroker::verbs {

// Sets O_NONBLOCK on `fd`.
absl::Status SetNonBlocking(int fd);

class WakeFd {
 public:
  static absl::StatusOr<WakeFd> Create();
  WakeFd() = default;  // Invalid (fd() < 0).
  ~WakeFd();
  WakeFd(WakeFd&& other) noexcept;
  WakeFd& operator=(WakeFd&& other) noexcept;
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;

  int fd() const { return fd_; }
  // Makes fd() readable until Drain(). A wake that cannot be written (the counter is full)
  // is already pending, so the error is dropped.
  void Wake() const;
  // Reads every pending wake; fd() is not readable afterwards until the next Wake().
  void Drain() const;

 private:
  explicit WakeFd(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Waits up to `timeout` (absl::InfiniteDuration() for no bound; rounded up to whole ms) until
// one of `fds` is readable. Returns one flag per fd, in order: POLLIN was reported. All false
// on timeout or EINTR.
absl::StatusOr<std::vector<bool>> PollReadable(absl::Span<const int> fds, absl::Duration timeout);

}  // namespace pinbroker::verbs
