#include "common/verbs/rc_queue.h"

#include <fcntl.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/verbs/fd_events.h"
#include "common/errno_status.h"

namespace pinbroker::verbs {
namespace {

std::string On(const RcQueueSpec& spec) { return spec.what.empty() ? "" : " on " + spec.what; }

}  // namespace

const VerbsOps& RealVerbs() {
  static const VerbsOps ops = {
      .create_comp_channel = [](ibv_context* c) { return ibv_create_comp_channel(c); },
      .destroy_comp_channel = [](ibv_comp_channel* ch) { return ibv_destroy_comp_channel(ch); },
      .create_cq = [](ibv_context* c, int cqe,
                      ibv_comp_channel* ch) { return ibv_create_cq(c, cqe, nullptr, ch, 0); },
      .destroy_cq = [](ibv_cq* cq) { return ibv_destroy_cq(cq); },
      .ack_cq_events = [](ibv_cq* cq, unsigned int n) { ibv_ack_cq_events(cq, n); },
      .create_qp = [](rdma_cm_id* id, ibv_pd* pd,
                      ibv_qp_init_attr* attr) { return rdma_create_qp(id, pd, attr); },
      .destroy_qp = [](rdma_cm_id* id) { rdma_destroy_qp(id); },
  };
  return ops;
}

absl::StatusOr<RcQueue> RcQueue::Create(rdma_cm_id* id, ibv_pd* pd, const RcQueueSpec& spec,
                                        const VerbsOps& ops) {
  RcQueue queue;
  queue.ops_ = &ops;
  queue.id_ = id;
  queue.channel_ = ops.create_comp_channel(id->verbs);
  if (queue.channel_ == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("ibv_create_comp_channel", On(spec)));
  }
  if (absl::Status s = SetNonBlocking(queue.channel_->fd); !s.ok()) return s;
  queue.cq_ = ops.create_cq(id->verbs, spec.cq_depth, queue.channel_);
  if (queue.cq_ == nullptr) return ErrnoToStatus(errno, absl::StrCat("ibv_create_cq", On(spec)));
  ibv_qp_init_attr attr = {};
  attr.send_cq = queue.cq_;
  attr.recv_cq = queue.cq_;
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = spec.max_send_wr;
  attr.cap.max_recv_wr = spec.max_recv_wr;
  attr.cap.max_send_sge = spec.max_send_sge;
  attr.cap.max_recv_sge = spec.max_recv_sge;
  attr.sq_sig_all = 0;
  if (ops.create_qp(id, pd, &attr) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rdma_create_qp", On(spec)));
  }
  queue.qp_created_ = true;
  return queue;
}

RcQueue& RcQueue::operator=(RcQueue&& other) noexcept {
  if (this != &other) {
    Reset().IgnoreError();
    ops_ = std::exchange(other.ops_, nullptr);
    id_ = std::exchange(other.id_, nullptr);
    channel_ = std::exchange(other.channel_, nullptr);
    cq_ = std::exchange(other.cq_, nullptr);
    qp_created_ = std::exchange(other.qp_created_, false);
    unacked_ = std::exchange(other.unacked_, 0);
  }
  return *this;
}

void RcQueue::AckEvents() {
  if (cq_ != nullptr && unacked_ > 0) ops_->ack_cq_events(cq_, unacked_);
  unacked_ = 0;
}

absl::Status RcQueue::Reset() {
  absl::Status result;
  if (qp_created_) {
    ops_->destroy_qp(id_);
    qp_created_ = false;
  }
  if (cq_ != nullptr) {
    AckEvents();
    if (int rc = ops_->destroy_cq(cq_); rc != 0) {
      result.Update(ErrnoToStatus(rc, "ibv_destroy_cq"));
    }
    cq_ = nullptr;
  }
  unacked_ = 0;
  if (channel_ != nullptr) {
    if (int rc = ops_->destroy_comp_channel(channel_); rc != 0) {
      result.Update(ErrnoToStatus(rc, "ibv_destroy_comp_channel"));
    }
    channel_ = nullptr;
  }
  return result;
}

}  // namespace pinbroker::verbs
