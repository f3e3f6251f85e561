// UnixListener: the broker's own listening Unix socket. It binds the path, applies the
// configured mode and group before listen(2) (so no client can connect before the socket's
// permissions are final), accepts on its own thread, records each connection's kernel
// credentials in a PeerRegistry and hands the connection to the gRPC server
// (grpc::AddInsecureChannelFromFd). See broker/peer_identity.h for why the descriptor number
// identifies the connection for as long as any of its calls runs.
//
// Thread-safety: Bind/Start/Stop from one thread; the accept thread only reads the server and
// the registry, which must outlive Stop().
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "broker/peer_identity.h"
#include "common/scoped_fd.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace pinbroker::broker {

class UnixListener {
 public:
  struct Options {
    std::string path;
    mode_t mode = 0600;
    std::optional<gid_t> group;  // chown(path, -1, group) before listen.
  };

  // Binds and listens on `options.path` (which PrepareListenAddress made ready). Errors name the
  // path and what failed.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Bind(Options options);
  // Stops accepting and unlinks the path.
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Starts the accept thread.
  void Start(grpc::Server* server, PeerRegistry* registry);
  // Stops the accept thread (connections already handed over stay the server's). Idempotent.
  void Stop();

  const std::string& path() const { return options_.path; }

 private:
  UnixListener(Options options, ScopedFd listen_fd, ScopedFd wake_fd)
      : options_(std::move(options)), listen_(std::move(listen_fd)), wake_(std::move(wake_fd)) {}
  void AcceptLoop(grpc::Server* server, PeerRegistry* registry);

  const Options options_;
  ScopedFd listen_;
  ScopedFd wake_;  // An eventfd: written by Stop().
  std::thread thread_;
};

}  // namespace pinbroker::broker
