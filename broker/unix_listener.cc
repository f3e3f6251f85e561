#include "broker/unix_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::broker {

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Bind(Options options) {
  const std::string& path = options.path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("Unix socket path '", path, "' is ",
                                                   path.size(), " bytes; the limit is ",
                                                   sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ScopedFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket(AF_UNIX)");
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("binding ", path));
  }
  // Not listening yet: a connect now fails with ECONNREFUSED, so nobody gets in before the
  // mode and group below are in place.
  const auto undo = [&path](absl::Status s) {
    unlink(path.c_str());
    return s;
  };
  if (options.group.has_value() && chown(path.c_str(), static_cast<uid_t>(-1), *options.group) != 0) {
    return undo(ErrnoToStatus(errno, absl::StrCat("chown of ", path, " to group ", *options.group)));
  }
  if (chmod(path.c_str(), options.mode) != 0) {
    return undo(ErrnoToStatus(errno, absl::StrCat("chmod of ", path)));
  }
  if (listen(fd.get(), SOMAXCONN) != 0) {
    return undo(ErrnoToStatus(errno, absl::StrCat("listen on ", path)));
  }
  ScopedFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return undo(ErrnoToStatus(errno, "eventfd"));
  return std::unique_ptr<UnixListener>(
      new UnixListener(std::move(options), std::move(fd), std::move(wake)));
}

UnixListener::~UnixListener() {
  Stop();
  unlink(options_.path.c_str());
}

void UnixListener::Start(grpc::Server* server, PeerRegistry* registry) {
  thread_ = std::thread([this, server, registry] { AcceptLoop(server, registry); });
}

void UnixListener::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  if (write(wake_.get(), &one, sizeof(one)) != sizeof(one)) {
    PB_LOG(ERROR) << "could not wake the accept thread of " << options_.path;
  }
  thread_.join();
}

void UnixListener::AcceptLoop(grpc::Server* server, PeerRegistry* registry) {
  while (true) {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PB_LOG(ERROR) << "poll on " << options_.path << ": " << std::strerror(errno);
      return;
    }
    if (fds[1].revents != 0) return;
    // Non-blocking and close-on-exec, as gRPC's endpoints expect.
    const int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      PB_LOG(WARNING) << "accept on " << options_.path << ": " << std::strerror(errno);
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: wait for some to close instead of spinning.
        poll(&fds[1], 1, 100);
      }
      continue;
    }
    absl::StatusOr<PeerIdentity> peer = UnixPeerOf(fd);
    if (!peer.ok()) {
      PB_LOG(WARNING) << "refusing a connection on " << options_.path << ": " << peer.status();
      close(fd);
      continue;
    }
    // Recorded before gRPC owns the descriptor: no call of this connection can run earlier.
    registry->Register(fd, *std::move(peer));
    grpc::AddInsecureChannelFromFd(server, fd);
  }
}

}  // namespace pinbroker::broker
