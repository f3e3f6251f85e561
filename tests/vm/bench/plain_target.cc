#include "tests/vm/bench/plain_target.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace pinbroker::vmbench {

absl::StatusOr<std::unique_ptr<PlainTarget>> PlainTarget::Listen(const std::string& address,
                                                                 uint16_t port) {
  std::unique_ptr<PlainTarget> t(new PlainTarget());
  t->channel_ = rdma_create_event_channel();
  if (t->channel_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("rdma_create_event_channel: ", std::strerror(errno)));
  }
  fcntl(t->channel_->fd, F_SETFL, fcntl(t->channel_->fd, F_GETFL) | O_NONBLOCK);
  if (rdma_create_id(t->channel_, &t->listener_, nullptr, RDMA_PS_TCP) != 0) {
    return absl::InternalError(absl::StrCat("rdma_create_id: ", std::strerror(errno)));
  }
  sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  if (inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", address));
  }
  if (rdma_bind_addr(t->listener_, reinterpret_cast<sockaddr*>(&sin)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("rdma_bind_addr ", address, ":", port, ": ", std::strerror(errno)));
  }
  if (t->listener_->verbs == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(address, " is not an RDMA device's"));
  }
  t->pd_ = ibv_alloc_pd(t->listener_->verbs);
  t->cq_ = ibv_create_cq(t->listener_->verbs, 16, nullptr, nullptr, 0);
  if (t->pd_ == nullptr || t->cq_ == nullptr) {
    return absl::InternalError(absl::StrCat("ibv_alloc_pd/ibv_create_cq: ", std::strerror(errno)));
  }
  if (rdma_listen(t->listener_, 4) != 0) {
    return absl::InternalError(absl::StrCat("rdma_listen: ", std::strerror(errno)));
  }
  t->port_ = ntohs(rdma_get_src_port(t->listener_));
  t->thread_ = std::thread([raw = t.get()] { raw->Loop(); });
  return t;
}

std::string PlainTarget::device() const {
  return listener_ != nullptr && listener_->verbs != nullptr
             ? ibv_get_device_name(listener_->verbs->device)
             : "?";
}

void PlainTarget::Loop() {
  while (!stop_) {
    pollfd pfd = {channel_->fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    rdma_cm_event* event = nullptr;
    while (rdma_get_cm_event(channel_, &event) == 0) {
      rdma_cm_id* id = event->id;
      if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
        ibv_qp_init_attr attr = {};
        attr.send_cq = cq_;
        attr.recv_cq = cq_;
        attr.qp_type = IBV_QPT_RC;
        attr.cap.max_send_wr = attr.cap.max_recv_wr = 4;
        attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
        rdma_conn_param param = {};
        param.responder_resources = event->param.conn.initiator_depth;
        param.initiator_depth = event->param.conn.responder_resources;
        if (rdma_create_qp(id, pd_, &attr) == 0 && rdma_accept(id, &param) == 0) {
          absl::MutexLock lock(&mu_);
          accepted_.push_back(id);
        } else {
          rdma_reject(id, nullptr, 0);
        }
      } else if (event->event == RDMA_CM_EVENT_DISCONNECTED) {
        rdma_disconnect(id);
      }
      rdma_ack_cm_event(event);
    }
  }
}

PlainTarget::~PlainTarget() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  {
    absl::MutexLock lock(&mu_);
    for (rdma_cm_id* id : accepted_) {
      rdma_disconnect(id);
      rdma_destroy_qp(id);
      rdma_destroy_id(id);
    }
    accepted_.clear();
  }
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  if (pd_ != nullptr) ibv_dealloc_pd(pd_);
  if (listener_ != nullptr) rdma_destroy_id(listener_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
}

}  // namespace pinbroker::vmbench
