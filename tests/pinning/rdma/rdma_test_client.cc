#include "tests/pinning/rdma/rdma_test_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/verbs/rc_queue.h"
#include "pinbroker/rdma_wire.h"

namespace pinbroker::testing {
namespace {

absl::StatusOr<sockaddr_in> Ipv4(const std::string& ip, uint16_t port) {
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", ip));
  }
  return addr;
}

}  // namespace

absl::StatusOr<rdma_cm_event_type> RdmaTestClient::AwaitCmEvent(absl::Duration timeout,
                                                                std::string* reject) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    rdma_cm_event* event = nullptr;
    if (rdma_get_cm_event(channel_, &event) == 0) {
      const rdma_cm_event_type type = event->event;
      if (type == RDMA_CM_EVENT_REJECTED && reject != nullptr &&
          event->param.conn.private_data != nullptr &&
          event->param.conn.private_data_len >= sizeof(rdma_wire::AttachReject)) {
        rdma_wire::AttachReject r;
        std::memcpy(&r, event->param.conn.private_data, sizeof(r));
        r.message[sizeof(r.message) - 1] = '\0';
        *reject = absl::StrCat(rdma_wire::RejectCodeName(r.code), ": ", r.message);
      }
      rdma_ack_cm_event(event);
      return type;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no rdma_cm event");
    pollfd pfd{channel_->fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
  }
}

absl::StatusOr<std::unique_ptr<RdmaTestClient>> RdmaTestClient::Connect(
    const std::string& source_ip, const std::string& broker_ip, uint16_t port,
    const std::string& session, const std::string& token, absl::Duration timeout) {
  std::unique_ptr<RdmaTestClient> c(new RdmaTestClient());
  c->channel_ = rdma_create_event_channel();
  if (c->channel_ == nullptr) return ErrnoToStatus(errno, "rdma_create_event_channel");
  ::fcntl(c->channel_->fd, F_SETFL, ::fcntl(c->channel_->fd, F_GETFL) | O_NONBLOCK);
  if (rdma_create_id(c->channel_, &c->id_, nullptr, RDMA_PS_TCP) != 0) {
    return ErrnoToStatus(errno, "rdma_create_id");
  }
  auto src = Ipv4(source_ip, 0);
  auto dst = Ipv4(broker_ip, port);
  if (!src.ok()) return src.status();
  if (!dst.ok()) return dst.status();
  const int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  if (rdma_resolve_addr(c->id_, reinterpret_cast<sockaddr*>(&*src),
                        reinterpret_cast<sockaddr*>(&*dst), ms) != 0) {
    return ErrnoToStatus(errno, "rdma_resolve_addr");
  }
  auto event = c->AwaitCmEvent(timeout, nullptr);
  if (!event.ok() || *event != RDMA_CM_EVENT_ADDR_RESOLVED) {
    return absl::UnavailableError(absl::StrCat("address resolution of ", broker_ip, " failed"));
  }
  if (rdma_resolve_route(c->id_, ms) != 0) return ErrnoToStatus(errno, "rdma_resolve_route");
  event = c->AwaitCmEvent(timeout, nullptr);
  if (!event.ok() || *event != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    return absl::UnavailableError("route resolution failed");
  }
  c->pd_ = ibv_alloc_pd(c->id_->verbs);
  if (c->pd_ == nullptr) return ErrnoToStatus(errno, "ibv_alloc_pd");
  verbs::RcQueueSpec spec;
  spec.cq_depth = 16;
  spec.max_send_wr = 16;
  absl::StatusOr<verbs::RcQueue> queue = verbs::RcQueue::Create(c->id_, c->pd_, spec);
  if (!queue.ok()) return queue.status();
  c->queue_ = std::move(*queue);
  c->buffer_ = std::aligned_alloc(4096, kBufferSize);
  // An int, not the enum: with a constant enum, the ibv_reg_mr macro ORs two enum types, which
  // clang rejects (-Wdeprecated-enum-enum-conversion).
  const int access = IBV_ACCESS_LOCAL_WRITE;
  c->mr_ = ibv_reg_mr(c->pd_, c->buffer_, kBufferSize, access);
  if (c->mr_ == nullptr) return ErrnoToStatus(errno, "ibv_reg_mr of the client buffer");

  rdma_wire::AttachRequest request;
  request.session_id_length = static_cast<uint8_t>(session.size());
  std::memcpy(request.session_id, session.data(),
              std::min(session.size(), sizeof(request.session_id)));
  std::memcpy(request.token, token.data(), std::min(token.size(), sizeof(request.token)));
  rdma_conn_param param;
  std::memset(&param, 0, sizeof(param));
  param.private_data = &request;
  param.private_data_len = sizeof(request);
  param.initiator_depth = 4;
  param.responder_resources = 0;
  param.retry_count = 3;
  param.rnr_retry_count = 3;
  if (rdma_connect(c->id_, &param) != 0) return ErrnoToStatus(errno, "rdma_connect");
  std::string reject;
  event = c->AwaitCmEvent(timeout, &reject);
  if (!event.ok()) return event.status();
  if (*event == RDMA_CM_EVENT_REJECTED) {
    return absl::PermissionDeniedError(absl::StrCat("rejected: ", reject));
  }
  if (*event != RDMA_CM_EVENT_ESTABLISHED) {
    return absl::UnavailableError(absl::StrCat("connect ended with ", rdma_event_str(*event)));
  }
  c->connected_ = true;
  ibv_qp_attr qp_attr;
  ibv_qp_init_attr init;
  if (ibv_query_qp(c->id_->qp, &qp_attr, IBV_QP_PATH_MTU, &init) == 0) {
    c->path_mtu_ = 128u << qp_attr.path_mtu;
  }
  return c;
}

RdmaTestClient::~RdmaTestClient() {
  Disconnect();
  queue_.Reset().IgnoreError();  // QP, CQ, completion channel.
  if (mr_ != nullptr) ibv_dereg_mr(mr_);
  if (pd_ != nullptr) ibv_dealloc_pd(pd_);
  if (id_ != nullptr) rdma_destroy_id(id_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  std::free(buffer_);
}

void RdmaTestClient::Disconnect() {
  if (!connected_) return;
  connected_ = false;
  rdma_disconnect(id_);
  (void)AwaitCmEvent(absl::Seconds(5), nullptr);  // Our DISCONNECTED.
}

absl::Status RdmaTestClient::Transfer(ibv_wr_opcode op, uint64_t remote_address, uint32_t rkey,
                                      size_t length) {
  if (length > kBufferSize) return absl::InvalidArgumentError("transfer too large");
  ibv_sge sge{reinterpret_cast<uint64_t>(buffer_), static_cast<uint32_t>(length), mr_->lkey};
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof(wr));
  wr.wr_id = next_wr_id_++;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = op;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote_address;
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  if (int err = ibv_post_send(id_->qp, &wr, &bad); err != 0) {
    return ErrnoToStatus(err, "ibv_post_send");
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (;;) {
    ibv_wc wc;
    const int n = ibv_poll_cq(queue_.cq(), 1, &wc);
    if (n < 0) return absl::InternalError("ibv_poll_cq failed");
    if (n == 1) {
      if (wc.wr_id != wr.wr_id) continue;
      if (wc.status != IBV_WC_SUCCESS) {
        return absl::PermissionDeniedError(
            absl::StrCat("completion status ", wc.status, ": ", ibv_wc_status_str(wc.status)));
      }
      return absl::OkStatus();
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("no completion within 30 s");
    sched_yield();  // The broker shares the guest's two CPUs.
  }
}

absl::Status RdmaTestClient::Write(uint64_t remote_address, uint32_t rkey,
                                   const std::string& data) {
  if (data.size() > kBufferSize) return absl::InvalidArgumentError("write too large");
  std::memcpy(buffer_, data.data(), data.size());
  return Transfer(IBV_WR_RDMA_WRITE, remote_address, rkey, data.size());
}

absl::StatusOr<std::string> RdmaTestClient::Read(uint64_t remote_address, uint32_t rkey,
                                                 size_t length) {
  if (length > kBufferSize) return absl::InvalidArgumentError("read too large");
  std::memset(buffer_, 0, length);
  if (absl::Status s = Transfer(IBV_WR_RDMA_READ, remote_address, rkey, length); !s.ok()) {
    return s;
  }
  return std::string(static_cast<const char*>(buffer_), length);
}

}  // namespace pinbroker::testing
