// UnixProxy: a byte-forwarding proxy between two Unix sockets, for tests that need to break a
// client's connection to the broker without stopping the broker.
//
// Clients dial address(); every accepted connection is forwarded to `target`. CutAndBlock()
// breaks every open connection and makes new ones fail at once (accepted and closed), as a
// broken network would; Unblock() lets new connections through again.
//
// Thread-safety: all methods are safe to call concurrently. The destructor cuts everything and
// joins the proxy's threads.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pinbroker::testing {

class UnixProxy {
 public:
  // Listens on `listen_path` (a fresh path; < 108 bytes) and forwards to `target_path`. Aborts
  // the test binary if it cannot listen.
  UnixProxy(std::string listen_path, std::string target_path);
  ~UnixProxy();
  UnixProxy(const UnixProxy&) = delete;
  UnixProxy& operator=(const UnixProxy&) = delete;

  std::string address() const { return "unix:" + listen_path_; }

  void CutAndBlock() ABSL_LOCKS_EXCLUDED(mu_);
  void Unblock() ABSL_LOCKS_EXCLUDED(mu_);
  // Connections accepted so far (including those closed while blocked).
  int accepted() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Connection {
    int client_fd;
    int upstream_fd;
  };
  void AcceptLoop();
  static void Pump(int a, int b);

  const std::string listen_path_;
  const std::string target_path_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};

  mutable absl::Mutex mu_;
  bool blocked_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Connection> open_ ABSL_GUARDED_BY(mu_);  // Fds stay open until ~UnixProxy.
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;  // Started by the constructor, joined by the destructor.
};

}  // namespace pinbroker::testing
