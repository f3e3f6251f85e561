#include "tests/clients/unix_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace pinbroker::testing {
namespace {

sockaddr_un Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "UnixProxy: socket path too long: %s\n", path.c_str());
    std::abort();
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

bool WriteAll(int fd, const char* data, ssize_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, static_cast<size_t>(n), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= w;
  }
  return true;
}

}  // namespace

UnixProxy::UnixProxy(std::string listen_path, std::string target_path)
    : listen_path_(std::move(listen_path)), target_path_(std::move(target_path)) {
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = Address(listen_path_);
  if (listen_fd_ < 0 ||
      ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 16) != 0 || ::pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    std::perror(("UnixProxy: listen on " + listen_path_).c_str());
    std::abort();
  }
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

UnixProxy::~UnixProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  CutAndBlock();
  const char byte = 0;
  (void)!::write(wake_pipe_[1], &byte, 1);
  acceptor_.join();
  std::vector<std::thread> pumps;
  std::vector<Connection> open;
  {
    absl::MutexLock lock(&mu_);
    pumps.swap(pumps_);
    open.swap(open_);
  }
  for (std::thread& t : pumps) t.join();
  for (const Connection& c : open) {
    ::close(c.client_fd);
    ::close(c.upstream_fd);
  }
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
  ::unlink(listen_path_.c_str());
}

void UnixProxy::CutAndBlock() {
  absl::MutexLock lock(&mu_);
  blocked_ = true;
  // shutdown(), not close(): the pump threads still poll these fds; they see EOF and stop.
  for (const Connection& c : open_) {
    ::shutdown(c.client_fd, SHUT_RDWR);
    ::shutdown(c.upstream_fd, SHUT_RDWR);
  }
}

void UnixProxy::Unblock() {
  absl::MutexLock lock(&mu_);
  blocked_ = false;
}

int UnixProxy::accepted() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

void UnixProxy::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    absl::MutexLock lock(&mu_);
    ++accepted_;
    if (stopping_ || blocked_) {
      ::close(client);
      continue;
    }
    const int upstream = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_un addr = Address(target_path_);
    if (upstream < 0 ||
        ::connect(upstream, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (upstream >= 0) ::close(upstream);
      ::close(client);
      continue;
    }
    open_.push_back(Connection{client, upstream});
    pumps_.emplace_back([client, upstream] { Pump(client, upstream); });
  }
}

void UnixProxy::Pump(int a, int b) {
  char buffer[64 * 1024];
  while (true) {
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool ok = true;
    for (int i = 0; i < 2 && ok; ++i) {
      if (fds[i].revents == 0) continue;
      const int from = fds[i].fd;
      const int to = i == 0 ? b : a;
      const ssize_t n = ::recv(from, buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0 && WriteAll(to, buffer, n);
    }
    if (!ok) break;
  }
  // Either side ended: end both, so the peers see the break too. The fds are closed by
  // ~UnixProxy, so a concurrent CutAndBlock() never touches a reused fd number.
  ::shutdown(a, SHUT_RDWR);
  ::shutdown(b, SHUT_RDWR);
}

}  // namespace pinbroker::testing
