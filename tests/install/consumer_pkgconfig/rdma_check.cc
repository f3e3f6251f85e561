// A consumer of the installed RDMA client library built with pkg-config
// (`pkg-config --cflags --libs pinbroker-rdma-client`). It needs no RDMA device: it checks an
// operation against a lease's limits (the library's own pre-post checks) and prints the attach
// handshake's default port.
#include <cstdio>
#include <string>

#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_lease.h"
#include "pinbroker/rdma_wire.h"

int main() {
  pinbroker::client::LeaseLimits limits;
  limits.lease_id = "1-1";
  limits.writable = false;
  limits.length = 4096;
  const absl::Status write = pinbroker::client::CheckLeaseOp(
      limits, pinbroker::client::RdmaOpKind::kWrite, /*offset=*/0, /*length=*/4096);
  const absl::Status read = pinbroker::client::CheckLeaseOp(
      limits, pinbroker::client::RdmaOpKind::kRead, /*offset=*/0, /*length=*/8192);
  pinbroker::client::RdmaConnectOptions options;
  std::printf("write on read-only lease: %s\n",
              std::string(absl::StatusCodeToString(write.code())).c_str());
  std::printf("read past the end: %s\n",
              std::string(absl::StatusCodeToString(read.code())).c_str());
  std::printf("rdma_cm default port %u, op_timeout %s\n",
              static_cast<unsigned>(pinbroker::rdma_wire::kDefaultPort),
              absl::FormatDuration(options.op_timeout).c_str());
  // Taking the address makes the link resolve the connection code too.
  auto* connect =
      static_cast<absl::StatusOr<std::unique_ptr<pinbroker::client::RdmaConnection>> (*)(
          pinbroker::client::Client&, pinbroker::client::RdmaConnectOptions)>(
          &pinbroker::client::RdmaConnection::Connect);
  std::printf("RdmaConnection::Connect linked: %s\n", connect != nullptr ? "yes" : "no");
  return 0;
}
