#include "common/verbs/fd_events.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "common/errno_status.h"

namespace pinbroker::verbs {

absl::Status SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoToStatus(errno, "fcntl(O_NONBLOCK)");
  }
  return absl::OkStatus();
}

absl::StatusOr<WakeFd> WakeFd::Create() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "eventfd");
  return WakeFd(fd);
}

WakeFd::~WakeFd() {
  if (fd_ >= 0) ::close(fd_);
}

WakeFd::WakeFd(WakeFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

WakeFd& WakeFd::operator=(WakeFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void WakeFd::Wake() const {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof(one));
}

void WakeFd::Drain() const {
  uint64_t value;
  while (::read(fd_, &value, sizeof(value)) > 0) {
  }
}

absl::StatusOr<std::vector<bool>> PollReadable(absl::Span<const int> fds, absl::Duration timeout) {
  std::vector<pollfd> pfds;
  pfds.reserve(fds.size());
  for (int fd : fds) pfds.push_back(pollfd{fd, POLLIN, 0});
  int ms = -1;
  if (timeout != absl::InfiniteDuration()) {
    ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(
                                std::max(timeout, absl::ZeroDuration()), absl::Milliseconds(1))),
                            0, 1 << 30));
  }
  std::vector<bool> ready(fds.size(), false);
  if (::poll(pfds.data(), pfds.size(), ms) < 0) {
    if (errno == EINTR) return ready;
    return ErrnoToStatus(errno, "poll");
  }
  for (size_t i = 0; i < pfds.size(); ++i) {
    ready[i] = (pfds[i].revents & POLLIN) != 0;
  }
  return ready;
}

}  // namespace pinbroker::verbs
