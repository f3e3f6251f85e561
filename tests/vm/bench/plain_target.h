// PlainTarget: the benchmark's baseline on the broker's RDMA device, without the broker: a
// protection domain on that device (for timing ibv_reg_mr / ibv_dereg_mr of the same file
// ranges the broker registers) and an rdma_cm listener that accepts RC connections whose peers
// then write into a plain memory region registered here with remote write access.
//
// Its verbs objects come from the verbs kit (common/verbs/), as the broker's do: one RcQueue
// per accepted connection.
//
// Thread-safety: Listen() and the destructor on one thread; the listener runs its own thread,
// which only accepts and disconnects. pd() may be used from any thread (verbs are thread-safe).
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/verbs/fd_events.h"
#include "common/verbs/owners.h"
#include "common/verbs/rc_queue.h"

namespace pinbroker::vmbench {

class PlainTarget {
 public:
  // Binds and listens on `address`:`port` (the broker's device address, another port).
  static absl::StatusOr<std::unique_ptr<PlainTarget>> Listen(const std::string& address,
                                                             uint16_t port);
  ~PlainTarget();
  PlainTarget(const PlainTarget&) = delete;
  PlainTarget& operator=(const PlainTarget&) = delete;

  ibv_pd* pd() const { return pd_.get(); }
  std::string device() const;
  uint16_t port() const { return port_; }

 private:
  PlainTarget() = default;
  void Loop();

  struct Accepted {
    verbs::CmId id;
    verbs::RcQueue queue;  // Declared after the id: destroyed before it.
  };

  // In creation order: destroyed in the order the library requires.
  verbs::CmEventChannel channel_;
  verbs::CmId listener_;
  verbs::ProtectionDomain pd_;
  verbs::WakeFd wake_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Accepted> accepted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::vmbench
