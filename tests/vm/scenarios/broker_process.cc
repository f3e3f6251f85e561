#include "tests/vm/scenarios/broker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker::scenarios {
namespace {

std::string DurationText(absl::Duration d) {
  return absl::StrCat("{ seconds: ", absl::ToInt64Seconds(d),
                      " nanos: ", absl::ToInt64Nanoseconds(d % absl::Seconds(1)), " }");
}

std::string ConfigText(const BrokerSettings& s, const std::string& socket) {
  std::string text = absl::StrCat("listen: \"unix:", socket, "\"\n", "backend: \"rdma\"\n",
                                  "shutdown_grace ", DurationText(s.shutdown_grace), "\n",
                                  "rdma { address: \"", s.rdma_address, "\" }\n");
  for (const auto& [name, root] : s.exports) {
    absl::StrAppend(&text, "exports {\n  name: \"", name, "\"\n  root: \"", root,
                    "\"\n  create: true\n  default_policy: ", v1::LayoutPolicy_Name(s.policy),
                    "\n  grace ", DurationText(s.grace), "\n  layout_timeout ",
                    DurationText(s.layout_timeout), "\n}\n");
  }
  return text;
}

}  // namespace

std::string BrokerLogOf(const std::string& work_dir) {
  std::ifstream in(work_dir + "/pinbrokerd.log", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DescribeWaitStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return absl::StrCat("exit status ", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) {
    return absl::StrCat("killed by signal ", WTERMSIG(wstatus), " (", strsignal(WTERMSIG(wstatus)),
                        ")");
  }
  return absl::StrCat("wait status ", wstatus);
}

absl::StatusOr<std::unique_ptr<BrokerProcess>> BrokerProcess::Start(const VmEnv& env,
                                                                    BrokerSettings settings) {
  std::unique_ptr<BrokerProcess> broker(new BrokerProcess());
  const std::string socket = settings.work_dir + "/pb.sock";
  const std::string config = settings.work_dir + "/pinbrokerd.textproto";
  broker->endpoint_ = "unix:" + socket;
  broker->log_path_ = settings.work_dir + "/pinbrokerd.log";
  {
    std::ofstream out(config);
    out << ConfigText(settings, socket);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", config));
  }
  const std::string binary = env.bin_dir + "/pinbrokerd";
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(binary, ": ", std::strerror(errno)));
  }
  const int log_fd =
      open(broker->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", broker->log_path_, ": ", strerror(errno)));
  }
  const absl::Time start = absl::Now();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execl(binary.c_str(), "pinbrokerd", "--config", config.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(log_fd);
  broker->pid_ = pid;

  // Ready: GetInfo answers (wait-for-ready, short deadlines so an exit is noticed quickly).
  auto channel = grpc::CreateChannel(broker->endpoint_, grpc::InsecureChannelCredentials());
  auto stub = v1::PinBroker::NewStub(channel);
  const absl::Time deadline = start + settings.ready_timeout;
  std::string last_error = "no answer";
  while (true) {
    int wstatus = 0;
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      broker->pid_ = -1;
      return absl::FailedPreconditionError(
          absl::StrCat("pinbrokerd ", DescribeWaitStatus(wstatus),
                       " before it was ready; log: ", broker->LogTail(5)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pinbrokerd not ready after ", absl::FormatDuration(settings.ready_timeout),
                       " (", last_error, "); log: ", broker->LogTail(5)));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    context.set_wait_for_ready(true);
    v1::GetInfoResponse info;
    const grpc::Status s = stub->GetInfo(&context, v1::GetInfoRequest(), &info);
    if (s.ok()) {
      broker->info_ = info;
      break;
    }
    last_error = s.error_message();
    absl::SleepFor(absl::Milliseconds(50));
  }
  broker->startup_time_ = absl::Now() - start;
  if (broker->info_.rdma_endpoints().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pinbrokerd offers no RDMA endpoint (backend '", broker->info_.backend(),
                     "'); log: ", broker->LogTail(5)));
  }
  return broker;
}

BrokerProcess::~BrokerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int wstatus = 0;
    waitpid(pid_, &wstatus, 0);
  }
}

bool BrokerProcess::WaitExit(absl::Duration timeout, int* wstatus) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const pid_t r = waitpid(pid_, wstatus, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return true;
    }
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status BrokerProcess::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("pinbrokerd is not running");
  kill(pid_, SIGTERM);
  int wstatus = 0;
  if (!WaitExit(timeout, &wstatus)) {
    kill(pid_, SIGKILL);
    WaitExit(absl::Seconds(10), &wstatus);
    return absl::DeadlineExceededError(absl::StrCat("pinbrokerd did not exit within ",
                                                    absl::FormatDuration(timeout),
                                                    " of SIGTERM (killed); log: ", LogTail(5)));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::InternalError(absl::StrCat("pinbrokerd ", DescribeWaitStatus(wstatus),
                                            " after SIGTERM; log: ", LogTail(5)));
  }
  return absl::OkStatus();
}

uint64_t BrokerProcess::LogSize() const {
  struct stat st = {};
  return stat(log_path_.c_str(), &st) == 0 ? st.st_size : 0;
}

std::string BrokerProcess::LogSince(uint64_t offset) const {
  std::ifstream in(log_path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string BrokerProcess::LogTail(int lines) const {
  std::vector<std::string> all = absl::StrSplit(LogSince(0), '\n', absl::SkipEmpty());
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + from, all.end(), " | ");
}

}  // namespace pinbroker::scenarios
