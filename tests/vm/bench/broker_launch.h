// BrokerLaunch: runs pinbrokerd as a child process for vm_benchmarks (an RDMA backend on one
// device address, one export, a Unix socket), with its output in a log file the benchmark
// reads to find the broker's own timings. Stopped with SIGTERM (SIGKILL after 10 s).
//
// Thread-safety: not thread-safe; one thread starts, reads and stops it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace pinbroker::vmbench {

struct BrokerArgs {
  std::string binary;    // .../pinbrokerd
  std::string work_dir;  // Socket and log go here.
  std::string export_name;
  std::string export_root;
  std::string rdma_address;  // The broker's device address (rxe0's).
};

class BrokerLaunch {
 public:
  static absl::StatusOr<std::unique_ptr<BrokerLaunch>> Start(const BrokerArgs& args);
  ~BrokerLaunch();
  BrokerLaunch(const BrokerLaunch&) = delete;
  BrokerLaunch& operator=(const BrokerLaunch&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  // The log written so far, from byte `from` on.
  std::string LogFrom(size_t from) const;
  size_t LogSize() const;

 private:
  BrokerLaunch() = default;
  pid_t pid_ = -1;
  std::string endpoint_;
  std::string log_path_;
};

}  // namespace pinbroker::vmbench
