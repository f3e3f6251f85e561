// ConnectionCore's setup: resolve the broker's address and route over rdma_cm, create the
// verbs objects through the kit (common/verbs/), and connect with the attach request.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/rdma/attach.h"
#include "clients/rdma/cm_address.h"
#include "clients/rdma/connection_core.h"
#include "common/errno_status.h"

namespace pinbroker::client::rdma_internal {
namespace {

// As an int: the ibv_reg_mr macro mixes it with another enum type otherwise.
constexpr int kLocalWrite = IBV_ACCESS_LOCAL_WRITE;

uint32_t MtuBytes(ibv_mtu mtu) { return mtu >= IBV_MTU_256 ? 128u << mtu : 0; }

}  // namespace

absl::StatusOr<std::shared_ptr<ConnectionCore>> ConnectionCore::Connect(
    const ConnectTarget& target, const rdma_wire::AttachRequest& attach,
    const CoreOptions& options) {
  std::shared_ptr<ConnectionCore> core(new ConnectionCore());
  if (absl::Status s = core->Setup(target, attach, options); !s.ok()) return s;
  core->thread_ = std::thread([raw = core.get()] { raw->EventLoop(); });
  return core;
}

absl::StatusOr<ConnectionCore::CmEvent> ConnectionCore::NextCmEvent(absl::Time deadline) {
  for (;;) {
    rdma_cm_event* event = nullptr;
    if (rdma_get_cm_event(channel_.get(), &event) == 0) {
      CmEvent copy;
      copy.type = event->event;
      copy.status = event->status;
      const auto* data = static_cast<const uint8_t*>(event->param.conn.private_data);
      if (data != nullptr) {
        copy.private_data.assign(data, data + event->param.conn.private_data_len);
      }
      rdma_ack_cm_event(event);
      return copy;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return ErrnoToStatus(errno, "rdma_get_cm_event");
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("no answer from the broker's RDMA endpoint in time");
    }
    const int fds[] = {channel_->fd};
    absl::StatusOr<std::vector<bool>> ready =
        verbs::PollReadable(fds, std::min(left + absl::Milliseconds(1), absl::Seconds(60)));
    if (!ready.ok()) return ready.status();
  }
}

absl::Status ConnectionCore::Setup(const ConnectTarget& target,
                                   const rdma_wire::AttachRequest& attach,
                                   const CoreOptions& options) {
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  const int timeout_ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(options.connect_timeout), 100, 60000));
  sockaddr_storage dst = {};
  sockaddr_storage src = {};
  if (absl::Status s = ResolveAddress(target.address, target.port, &dst, "broker RDMA address");
      !s.ok()) {
    return s;
  }
  peer_ = AddressString(reinterpret_cast<sockaddr*>(&dst));
  const bool bind_source = !target.source_address.empty();
  if (bind_source) {
    if (absl::Status s = ResolveAddress(target.source_address, 0, &src, "source address");
        !s.ok()) {
      return s;
    }
  }
  const std::string route = absl::StrCat(
      peer_, bind_source ? absl::StrCat(" from ", target.source_address) : std::string());

  absl::StatusOr<verbs::WakeFd> wake = verbs::WakeFd::Create();
  if (!wake.ok()) return wake.status();
  wake_ = std::move(*wake);
  channel_.reset(rdma_create_event_channel());
  if (channel_ == nullptr) {
    const int err = errno;
    return absl::Status(err == ENODEV || err == ENOENT || err == ENOSYS
                            ? absl::StatusCode::kFailedPrecondition
                            : ErrnoToStatusCode(err),
                        absl::StrCat("rdma_create_event_channel: ", std::strerror(err),
                                     " (is an RDMA device and the rdma_ucm module present?)"));
  }
  if (absl::Status s = verbs::SetNonBlocking(channel_->fd); !s.ok()) return s;
  {
    rdma_cm_id* id = nullptr;
    if (rdma_create_id(channel_.get(), &id, nullptr, RDMA_PS_TCP) != 0) {
      return ErrnoToStatus(errno, "rdma_create_id");
    }
    id_.reset(id);
  }

  // Address and route.
  if (rdma_resolve_addr(id_.get(), bind_source ? reinterpret_cast<sockaddr*>(&src) : nullptr,
                        reinterpret_cast<sockaddr*>(&dst), timeout_ms) != 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat("rdma_resolve_addr to ", route, ": ",
                                               std::strerror(err),
                                               " (no RDMA device serves that address?)"));
  }
  absl::StatusOr<CmEvent> event = NextCmEvent(deadline);
  if (!event.ok()) return event.status();
  if (event->type != RDMA_CM_EVENT_ADDR_RESOLVED) {
    return absl::UnavailableError(absl::StrCat(
        "cannot resolve the RDMA address of ", route, ": ", rdma_event_str(event->type), " (",
        std::strerror(-event->status), "); is the local RDMA device up and the address routable?"));
  }
  if (rdma_resolve_route(id_.get(), timeout_ms) != 0) {
    return ErrnoToStatus(errno, "rdma_resolve_route");
  }
  event = NextCmEvent(deadline);
  if (!event.ok()) return event.status();
  if (event->type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    return absl::UnavailableError(absl::StrCat("cannot resolve an RDMA route to ", route, ": ",
                                               rdma_event_str(event->type), " (",
                                               std::strerror(-event->status), ")"));
  }
  ibv_context* verbs = id_->verbs;
  device_ = ibv_get_device_name(verbs->device);
  local_address_ = AddressString(rdma_get_local_addr(id_.get()));

  // Verbs objects.
  ibv_device_attr device_attr = {};
  if (int rc = ibv_query_device(verbs, &device_attr); rc != 0)
    return ErrnoToStatus(rc, "ibv_query_device");
  ibv_port_attr port_attr = {};
  if (int rc = ibv_query_port(verbs, id_->port_num, &port_attr); rc != 0) {
    return ErrnoToStatus(rc, "ibv_query_port");
  }
  max_message_ = port_attr.max_msg_sz;
  atomics_ = device_attr.atomic_cap != IBV_ATOMIC_NONE;
  sq_depth_ = std::max<uint32_t>(
      1,
      std::min<uint32_t>(options.send_queue_depth, static_cast<uint32_t>(device_attr.max_qp_wr)));
  absl::StatusOr<verbs::ProtectionDomain> pd = verbs::AllocPd(verbs);
  if (!pd.ok()) return pd.status();
  pd_ = std::move(*pd);
  verbs::RcQueueSpec spec;
  spec.cq_depth = static_cast<int>(
      std::min<uint32_t>(sq_depth_ + 1, static_cast<uint32_t>(device_attr.max_cqe)));
  spec.max_send_wr = sq_depth_;
  spec.what = device_;
  absl::StatusOr<verbs::RcQueue> queue = verbs::RcQueue::Create(id_.get(), pd_.get(), spec);
  if (!queue.ok()) return queue.status();
  queue_ = std::move(*queue);
  if (int rc = ibv_req_notify_cq(queue_.cq(), 0); rc != 0) {
    return ErrnoToStatus(rc, "ibv_req_notify_cq");
  }
  {
    absl::MutexLock lock(&mu_);
    qp_created_ = true;
  }

  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  scratch_ = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (scratch_ == MAP_FAILED) {
    scratch_ = nullptr;
    return ErrnoToStatus(errno, "mmap");
  }
  absl::StatusOr<verbs::MemoryRegion> mr = verbs::RegisterMr(pd_.get(), scratch_, page, kLocalWrite,
                                                             "ibv_reg_mr (atomics scratch page)");
  if (!mr.ok()) return mr.status();
  scratch_mr_ = std::move(*mr);
  {
    absl::MutexLock lock(&mu_);
    const size_t slots = std::min(kScratchSlots, page / kAtomicBytes);
    for (size_t i = slots; i > 0; --i) free_slots_.push_back(i - 1);
  }

  // Connect, with the attach request as private data.
  rdma_conn_param param = {};
  param.private_data = &attach;
  param.private_data_len = sizeof(attach);
  param.initiator_depth = static_cast<uint8_t>(std::clamp(device_attr.max_qp_init_rd_atom, 0, 16));
  param.responder_resources = static_cast<uint8_t>(std::clamp(device_attr.max_qp_rd_atom, 0, 16));
  param.retry_count = 7;
  param.rnr_retry_count = 7;
  if (rdma_connect(id_.get(), &param) != 0) return ErrnoToStatus(errno, "rdma_connect");
  event = NextCmEvent(deadline);
  if (!event.ok()) return event.status();
  switch (event->type) {
    case RDMA_CM_EVENT_ESTABLISHED:
      break;
    case RDMA_CM_EVENT_REJECTED:
      return RejectToStatus(event->private_data.data(), event->private_data.size(), event->status,
                            peer_);
    default:
      return absl::UnavailableError(absl::StrCat("RDMA connection to ", route,
                                                 " failed: ", rdma_event_str(event->type),
                                                 " (status ", event->status, ")"));
  }
  connected_ = true;
  ibv_qp_attr attr = {};
  ibv_qp_init_attr init = {};
  if (ibv_query_qp(id_->qp, &attr, IBV_QP_PATH_MTU, &init) == 0) {
    path_mtu_ = MtuBytes(attr.path_mtu);
  }
  return absl::OkStatus();
}

}  // namespace pinbroker::client::rdma_internal
