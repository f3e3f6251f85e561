// RcQueue: the verbs objects of one reliable-connected rdma_cm connection, created in the one
// order that works (completion channel, with a non-blocking fd; completion queue on it; queue
// pair on the rdma_cm id, sending and receiving through that CQ) and destroyed in the reverse
// order (queue pair, completion queue after acking its events, channel). Both ends use it: the
// broker's connections (pinning/rdma/connection.h) and the RDMA client (clients/rdma/).
//
// Teardown order around it is the owner's: memory windows bound to the queue pair must be
// deallocated before Reset() (destroying a QP with a bound type-2 window hangs on rxe), and the
// protection domain and the rdma_cm id must outlive it.
//
// Thread-safety: none; the owner serializes every call (the broker under its connection's mutex,
// the client through its event thread's lifecycle).
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/verbs/verbs_ops.h"

namespace pinbroker::verbs {

struct RcQueueSpec {
  int cq_depth = 32;
  uint32_t max_send_wr = 16;
  uint32_t max_recv_wr = 1;
  uint32_t max_send_sge = 1;
  uint32_t max_recv_sge = 1;
  // Names the device or connection in error messages ("rdma_create_qp on mlx5_0 failed: ...").
  std::string what;
};

class RcQueue {
 public:
  RcQueue() = default;  // Empty: owns nothing.
  // Creates the channel, the CQ and the QP on `id` (which must have resolved its route, so that
  // id->verbs is set) with `pd`. On failure, what was created is destroyed again.
  static absl::StatusOr<RcQueue> Create(rdma_cm_id* id, ibv_pd* pd, const RcQueueSpec& spec,
                                        const VerbsOps& ops = RealVerbs());
  ~RcQueue() { Reset().IgnoreError(); }
  RcQueue(RcQueue&& other) noexcept { *this = std::move(other); }
  RcQueue& operator=(RcQueue&& other) noexcept;
  RcQueue(const RcQueue&) = delete;
  RcQueue& operator=(const RcQueue&) = delete;

  // Destroys the QP, then the CQ (acking the events counted by AddUnackedEvents first), then
  // the channel. Idempotent. Destroys everything even if a step fails and returns the first
  // failure, for the owner to log (there is nothing to retry).
  absl::Status Reset();

  bool empty() const { return cq_ == nullptr && channel_ == nullptr && !qp_created_; }
  ibv_comp_channel* channel() const { return channel_; }
  int channel_fd() const { return channel_ != nullptr ? channel_->fd : -1; }
  ibv_cq* cq() const { return cq_; }
  ibv_qp* qp() const { return qp_created_ ? id_->qp : nullptr; }

  // CQ events taken with ibv_get_cq_event and not yet acknowledged; Reset() acks them before
  // destroying the CQ. AckEvents() acknowledges them now.
  void AddUnackedEvents(unsigned int n) { unacked_ += n; }
  unsigned int unacked_events() const { return unacked_; }
  void AckEvents();

 private:
  const VerbsOps* ops_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_comp_channel* channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  bool qp_created_ = false;
  unsigned int unacked_ = 0;
};

}  // namespace pinbroker::verbs
