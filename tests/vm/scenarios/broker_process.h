// BrokerProcess: a real pinbrokerd started from $PB_BIN as a child process, with a generated
// text-format configuration (a Unix socket, one export per filesystem, RDMA on one address),
// its stdout and stderr captured in a log file, and a graceful stop (SIGTERM, exit status 0).
//
// The child dies with its parent (PR_SET_PDEATHSIG) and stays in the parent's process group, so
// the scenario runner's timeout kill takes it down too.
//
// Thread-safety: not thread-safe; one thread starts, inspects and stops it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pinbroker/v1/pinbroker.pb.h"
#include "tests/vm/scenarios/environment.h"

namespace pinbroker::scenarios {

struct BrokerSettings {
  std::string work_dir;  // Socket, configuration and log go here (must exist).
  // (export name, root directory): created by the broker (create: true).
  std::vector<std::pair<std::string, std::string>> exports;
  std::string rdma_address;                 // Listen address of the RDMA endpoint.
  absl::Duration grace = absl::Seconds(2);  // Every export's revoke grace.
  // Every export's default policy: what out-of-band changes (the guard) get.
  v1::LayoutPolicy policy = v1::LAYOUT_POLICY_REVOKE;
  absl::Duration layout_timeout = absl::Seconds(30);
  absl::Duration shutdown_grace = absl::Seconds(1);
  absl::Duration ready_timeout = absl::Seconds(60);
};

class BrokerProcess {
 public:
  // Writes the configuration, starts `pinbrokerd` from env.bin_dir and waits until GetInfo
  // answers and offers an RDMA endpoint. The error carries the log's tail.
  static absl::StatusOr<std::unique_ptr<BrokerProcess>> Start(const VmEnv& env,
                                                              BrokerSettings settings);
  // Kills the broker (SIGKILL) if it still runs.
  ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  // SIGTERM, then waits up to `timeout` for the exit; an error unless it exited with status 0.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(30));

  const std::string& endpoint() const { return endpoint_; }  // "unix:/.../pb.sock".
  const std::string& log_path() const { return log_path_; }
  const v1::GetInfoResponse& info() const { return info_; }
  absl::Duration startup_time() const { return startup_time_; }
  pid_t pid() const { return pid_; }

  // The log's current size, and its text from `offset` on.
  uint64_t LogSize() const;
  std::string LogSince(uint64_t offset) const;
  // Its last `lines` lines.
  std::string LogTail(int lines) const;

 private:
  BrokerProcess() = default;
  // Waits up to `timeout` for the child to exit; true and its wait status if it did.
  bool WaitExit(absl::Duration timeout, int* wstatus);

  pid_t pid_ = -1;
  std::string endpoint_;
  std::string log_path_;
  v1::GetInfoResponse info_;
  absl::Duration startup_time_;
};

// The log of a broker that ran with `work_dir` (for a scenario the runner had to kill).
std::string BrokerLogOf(const std::string& work_dir);

// "exit status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int wstatus);

}  // namespace pinbroker::scenarios
