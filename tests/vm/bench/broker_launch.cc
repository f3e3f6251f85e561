#include "tests/vm/bench/broker_launch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pinbroker::vmbench {

absl::StatusOr<std::unique_ptr<BrokerLaunch>> BrokerLaunch::Start(const BrokerArgs& args) {
  if (access(args.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(args.binary, ": ", std::strerror(errno)));
  }
  std::unique_ptr<BrokerLaunch> b(new BrokerLaunch());
  const std::string socket = args.work_dir + "/pb.sock";
  b->endpoint_ = "unix:" + socket;
  b->log_path_ = args.work_dir + "/pinbrokerd.log";
  unlink(socket.c_str());
  const int log_fd = open(b->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0)
    return absl::InternalError(absl::StrCat("open ", b->log_path_, ": ", strerror(errno)));
  std::vector<std::string> argv = {args.binary,
                                   "--listen=" + b->endpoint_,
                                   "--export=" + args.export_name + "=" + args.export_root,
                                   "--backend=rdma",
                                   "--rdma_address=" + args.rdma_address,
                                   "--default_ttl=10m"};
  std::vector<char*> raw;
  for (std::string& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(raw[0], raw.data());
    _exit(127);
  }
  close(log_fd);
  b->pid_ = pid;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  for (;;) {
    struct stat st;
    if (stat(socket.c_str(), &st) == 0 && b->LogFrom(0).find(" ready ") != std::string::npos) {
      return b;
    }
    int wstatus = 0;
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      b->pid_ = -1;
      return absl::FailedPreconditionError(
          absl::StrCat("pinbrokerd exited at start (status ", wstatus, "): ", b->LogFrom(0)));
    }
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError(
          absl::StrCat("pinbrokerd not ready within 60s: ", b->LogFrom(0)));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

BrokerLaunch::~BrokerLaunch() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, WNOHANG) == 0) {
    if (absl::Now() > give_up) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::string BrokerLaunch::LogFrom(size_t from) const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return from < all.size() ? all.substr(from) : std::string();
}

size_t BrokerLaunch::LogSize() const {
  struct stat st;
  return stat(log_path_.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

}  // namespace pinbroker::vmbench
