#include "tests/vm/bench/plain_target.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace pinbroker::vmbench {

absl::StatusOr<std::unique_ptr<PlainTarget>> PlainTarget::Listen(const std::string& address,
                                                                 uint16_t port) {
  std::unique_ptr<PlainTarget> t(new PlainTarget());
  t->channel_.reset(rdma_create_event_channel());
  if (t->channel_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("rdma_create_event_channel: ", std::strerror(errno)));
  }
  if (absl::Status s = verbs::SetNonBlocking(t->channel_->fd); !s.ok()) return s;
  rdma_cm_id* listener = nullptr;
  if (rdma_create_id(t->channel_.get(), &listener, nullptr, RDMA_PS_TCP) != 0) {
    return absl::InternalError(absl::StrCat("rdma_create_id: ", std::strerror(errno)));
  }
  t->listener_.reset(listener);
  sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  if (inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", address));
  }
  if (rdma_bind_addr(listener, reinterpret_cast<sockaddr*>(&sin)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("rdma_bind_addr ", address, ":", port, ": ", std::strerror(errno)));
  }
  if (listener->verbs == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(address, " is not an RDMA device's"));
  }
  auto pd = verbs::AllocPd(listener->verbs);
  if (!pd.ok()) return pd.status();
  t->pd_ = *std::move(pd);
  auto wake = verbs::WakeFd::Create();
  if (!wake.ok()) return wake.status();
  t->wake_ = *std::move(wake);
  if (rdma_listen(listener, 4) != 0) {
    return absl::InternalError(absl::StrCat("rdma_listen: ", std::strerror(errno)));
  }
  t->port_ = ntohs(rdma_get_src_port(listener));
  t->thread_ = std::thread([raw = t.get()] { raw->Loop(); });
  return t;
}

std::string PlainTarget::device() const {
  return listener_ != nullptr && listener_->verbs != nullptr
             ? ibv_get_device_name(listener_->verbs->device)
             : "?";
}

void PlainTarget::Loop() {
  const int fds[] = {channel_->fd, wake_.fd()};
  while (!stop_) {
    auto ready = verbs::PollReadable(fds, absl::InfiniteDuration());
    if (!ready.ok() || !(*ready)[0]) continue;  // Woken to stop, or EINTR.
    rdma_cm_event* event = nullptr;
    while (rdma_get_cm_event(channel_.get(), &event) == 0) {
      rdma_cm_id* id = event->id;
      if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
        verbs::CmId owned(id);
        auto queue = verbs::RcQueue::Create(
            id, pd_.get(),
            {.cq_depth = 16, .max_send_wr = 4, .max_recv_wr = 4, .what = "the plain target"});
        rdma_conn_param param = {};
        param.responder_resources = event->param.conn.initiator_depth;
        param.initiator_depth = event->param.conn.responder_resources;
        if (queue.ok() && rdma_accept(id, &param) == 0) {
          absl::MutexLock lock(&mu_);
          accepted_.push_back({std::move(owned), *std::move(queue)});
        } else {
          rdma_reject(id, nullptr, 0);
          // Acked below before the id (and its queue) go away.
          rdma_ack_cm_event(event);
          event = nullptr;
          continue;  // `owned` and `queue` are destroyed here: queue first, as declared last.
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
  if (wake_.fd() >= 0) wake_.Wake();
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  for (Accepted& a : accepted_) rdma_disconnect(a.id.get());
  accepted_.clear();  // Each queue before its id.
}

}  // namespace pinbroker::vmbench
