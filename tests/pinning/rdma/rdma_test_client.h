// RdmaTestClient: the smallest real client of the broker's RDMA side, for device tests: it
// attaches an rdma_cm connection to a session (AttachRequest as private data, see
// include/pinbroker/rdma_wire.h) and issues one-sided RDMA WRITE and READ through a lease's rkey.
// Not a fake: it is a real RC connection on a real device; it exists only so the backend's tests
// do not depend on the client library.
//
// Thread-safety: one thread at a time.
#pragma once

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/verbs/rc_queue.h"

namespace pinbroker::testing {

class RdmaTestClient {
 public:
  // Connects from `source_ip` to the broker at `broker_ip`:`port` as `session` with the 16
  // raw token bytes `token`. A reject becomes PERMISSION_DENIED with the broker's reason.
  static absl::StatusOr<std::unique_ptr<RdmaTestClient>> Connect(
      const std::string& source_ip, const std::string& broker_ip, uint16_t port,
      const std::string& session, const std::string& token, absl::Duration timeout);
  ~RdmaTestClient();
  RdmaTestClient(const RdmaTestClient&) = delete;
  RdmaTestClient& operator=(const RdmaTestClient&) = delete;

  // One RDMA WRITE of `data` to `remote_address` under `rkey`; the error names the completion
  // status (e.g. "remote access error").
  absl::Status Write(uint64_t remote_address, uint32_t rkey, const std::string& data);
  absl::StatusOr<std::string> Read(uint64_t remote_address, uint32_t rkey, size_t length);
  // Disconnects (the broker sees DISCONNECTED); the destructor does it too.
  void Disconnect();
  uint32_t path_mtu() const { return path_mtu_; }

 private:
  RdmaTestClient() = default;
  absl::StatusOr<rdma_cm_event_type> AwaitCmEvent(absl::Duration timeout, std::string* reject);
  absl::Status Transfer(ibv_wr_opcode op, uint64_t remote_address, uint32_t rkey, size_t length);

  static constexpr size_t kBufferSize = 4 << 20;
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_pd* pd_ = nullptr;
  verbs::RcQueue queue_;  // Reset before the MR, PD and id go.
  ibv_mr* mr_ = nullptr;
  void* buffer_ = nullptr;
  bool connected_ = false;
  uint32_t path_mtu_ = 0;
  uint64_t next_wr_id_ = 1;
};

}  // namespace pinbroker::testing
