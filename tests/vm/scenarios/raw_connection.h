// RawConnection: a bare rdma_cm RC connection to pinbrokerd, attached to a session with the
// rdma_wire handshake, that posts RDMA WRITEs with any (remote address, rkey) the caller names.
// It deliberately bypasses the client library (whose leases only use their own keys and check
// every operation first): scenario 8 needs a client that tries someone else's key. Its verbs
// objects come from the verbs kit (common/verbs/), as the broker's and the client's do.
//
// Thread-safety: not thread-safe; one thread uses it.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/verbs/owners.h"
#include "common/verbs/rc_queue.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinbroker::scenarios {

class RawConnection {
 public:
  // Connects from `source` to the broker's `address`:`port` with `credentials`' attach request.
  static absl::StatusOr<std::unique_ptr<RawConnection>> Connect(
      const std::string& address, uint16_t port, const std::string& source,
      const v1::SessionCredentials& credentials);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Posts one signaled RDMA WRITE of `data` (at most one page... up to kBufferBytes) and waits
  // for its completion: the completion's status (IBV_WC_SUCCESS or the error), or an error if
  // posting failed or nothing completed within `timeout`.
  absl::StatusOr<ibv_wc_status> Write(uint64_t remote_address, uint32_t rkey,
                                      absl::string_view data, absl::Duration timeout);

  static constexpr size_t kBufferBytes = 64 * 1024;

 private:
  RawConnection() = default;

  // In creation order, so that members are destroyed in the order the library requires: the
  // queue pair before its PD and id, the MR before its PD.
  verbs::CmId id_;
  verbs::ProtectionDomain pd_;
  void* buffer_ = nullptr;
  verbs::MemoryRegion mr_;
  verbs::RcQueue queue_;
  bool connected_ = false;
  uint64_t next_wr_id_ = 1;
};

}  // namespace pinbroker::scenarios
