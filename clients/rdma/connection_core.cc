#include "clients/rdma/connection_core.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "clients/rdma/attach.h"
#include "clients/rdma/completion_status.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::client::rdma_internal {
namespace {

// How long a DISCONNECTED event from the broker lets operations in flight complete with their
// own status (a remote access error NAK can arrive after the broker's DREQ) before flushing.
constexpr absl::Duration kDisconnectSettle = absl::Milliseconds(500);
// How long Close() waits for the flush after breaking, and for the DISCONNECTED event.
constexpr absl::Duration kFlushWait = absl::Seconds(5);
constexpr absl::Duration kDisconnectWait = absl::Seconds(2);

// As an int: the ibv_reg_mr macro mixes it with another enum type otherwise.
constexpr int kLocalWrite = IBV_ACCESS_LOCAL_WRITE;

size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

absl::Status Errno(absl::string_view call, int err) {
  return absl::Status(ErrnoToStatusCode(err), absl::StrCat(call, ": ", std::strerror(err)));
}

std::string AddressString(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (sa == nullptr) return "?";
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
  } else {
    return "?";
  }
  if (port == 0) return host;
  return sa->sa_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                   : absl::StrCat(host, ":", port);
}

// Resolves `host` (numeric or a name) and `port` into `out`.
absl::Status Resolve(const std::string& host, uint16_t port, sockaddr_storage* out,
                     absl::string_view what) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = absl::StrCat(port);
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", what, " \"", host, "\": ", gai_strerror(rc)));
  }
  std::memcpy(out, result->ai_addr, result->ai_addrlen);
  freeaddrinfo(result);
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return Errno("fcntl", errno);
  return absl::OkStatus();
}

uint32_t MtuBytes(ibv_mtu mtu) { return mtu >= IBV_MTU_256 ? 128u << mtu : 0; }

}  // namespace

// --- BufferImpl ------------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<BufferImpl>> BufferImpl::Create(std::shared_ptr<ConnectionCore> core,
                                                               size_t size) {
  if (size == 0) return absl::InvalidArgumentError("a local buffer needs at least one byte");
  const size_t page = PageSize();
  if (size > SIZE_MAX - page) return absl::InvalidArgumentError("local buffer too large");
  const size_t mapped = (size + page - 1) / page * page;
  void* addr = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (addr == MAP_FAILED) return Errno(absl::StrCat("mmap of ", mapped, " bytes"), errno);
  ibv_mr* mr = ibv_reg_mr(core->pd(), addr, mapped, kLocalWrite);
  if (mr == nullptr) {
    const int err = errno;
    munmap(addr, mapped);
    return Errno(absl::StrCat("ibv_reg_mr of a ", mapped, "-byte local buffer"), err);
  }
  return std::shared_ptr<BufferImpl>(new BufferImpl(std::move(core), addr, size, mapped, mr));
}

BufferImpl::~BufferImpl() {
  if (int rc = ibv_dereg_mr(mr_); rc != 0) {
    PB_LOG(WARNING) << "ibv_dereg_mr of a local buffer: " << std::strerror(rc);
  }
  munmap(addr_, mapped_);
}

// --- OpRecord --------------------------------------------------------------------------------

bool OpRecord::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

bool OpRecord::AwaitDone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
}

absl::Status OpRecord::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

uint64_t OpRecord::atomic_result() const {
  absl::MutexLock lock(&mu_);
  return atomic_result_;
}

void OpRecord::Complete(absl::Status status, uint64_t atomic_result) {
  std::shared_ptr<BufferImpl> buffer;
  std::shared_ptr<LeaseGate> gate;
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    done_ = true;
    status_ = std::move(status);
    atomic_result_ = atomic_result;
    buffer.swap(spec_.buffer);
    gate.swap(spec_.gate);
  }
  if (gate) gate->Done();
}

// --- ConnectionCore: setup -------------------------------------------------------------------

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
    if (rdma_get_cm_event(channel_, &event) == 0) {
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
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Errno("rdma_get_cm_event", errno);
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("no answer from the broker's RDMA endpoint in time");
    }
    pollfd pfd = {channel_->fd, POLLIN, 0};
    const int ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60000));
    if (poll(&pfd, 1, ms) < 0 && errno != EINTR) return Errno("poll", errno);
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
  if (absl::Status s = Resolve(target.address, target.port, &dst, "broker RDMA address"); !s.ok()) {
    return s;
  }
  peer_ = AddressString(reinterpret_cast<sockaddr*>(&dst));
  const bool bind_source = !target.source_address.empty();
  if (bind_source) {
    if (absl::Status s = Resolve(target.source_address, 0, &src, "source address"); !s.ok()) {
      return s;
    }
  }
  const std::string route = absl::StrCat(
      peer_, bind_source ? absl::StrCat(" from ", target.source_address) : std::string());

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Errno("eventfd", errno);
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) {
    const int err = errno;
    return absl::Status(err == ENODEV || err == ENOENT || err == ENOSYS
                            ? absl::StatusCode::kFailedPrecondition
                            : ErrnoToStatusCode(err),
                        absl::StrCat("rdma_create_event_channel: ", std::strerror(err),
                                     " (is an RDMA device and the rdma_ucm module present?)"));
  }
  if (absl::Status s = SetNonBlocking(channel_->fd); !s.ok()) return s;
  if (rdma_create_id(channel_, &id_, nullptr, RDMA_PS_TCP) != 0) {
    return Errno("rdma_create_id", errno);
  }

  // Address and route.
  if (rdma_resolve_addr(id_, bind_source ? reinterpret_cast<sockaddr*>(&src) : nullptr,
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
  if (rdma_resolve_route(id_, timeout_ms) != 0) return Errno("rdma_resolve_route", errno);
  event = NextCmEvent(deadline);
  if (!event.ok()) return event.status();
  if (event->type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    return absl::UnavailableError(absl::StrCat("cannot resolve an RDMA route to ", route, ": ",
                                               rdma_event_str(event->type), " (",
                                               std::strerror(-event->status), ")"));
  }
  ibv_context* verbs = id_->verbs;
  device_ = ibv_get_device_name(verbs->device);
  local_address_ = AddressString(rdma_get_local_addr(id_));

  // Verbs objects.
  ibv_device_attr device_attr = {};
  if (int rc = ibv_query_device(verbs, &device_attr); rc != 0) return Errno("ibv_query_device", rc);
  ibv_port_attr port_attr = {};
  if (int rc = ibv_query_port(verbs, id_->port_num, &port_attr); rc != 0) {
    return Errno("ibv_query_port", rc);
  }
  max_message_ = port_attr.max_msg_sz;
  atomics_ = device_attr.atomic_cap != IBV_ATOMIC_NONE;
  sq_depth_ = std::max<uint32_t>(
      1,
      std::min<uint32_t>(options.send_queue_depth, static_cast<uint32_t>(device_attr.max_qp_wr)));
  pd_ = ibv_alloc_pd(verbs);
  if (pd_ == nullptr) return Errno("ibv_alloc_pd", errno);
  comp_channel_ = ibv_create_comp_channel(verbs);
  if (comp_channel_ == nullptr) return Errno("ibv_create_comp_channel", errno);
  if (absl::Status s = SetNonBlocking(comp_channel_->fd); !s.ok()) return s;
  const int cq_depth = static_cast<int>(
      std::min<uint32_t>(sq_depth_ + 1, static_cast<uint32_t>(device_attr.max_cqe)));
  cq_ = ibv_create_cq(verbs, cq_depth, nullptr, comp_channel_, 0);
  if (cq_ == nullptr) return Errno("ibv_create_cq", errno);
  if (int rc = ibv_req_notify_cq(cq_, 0); rc != 0) return Errno("ibv_req_notify_cq", rc);

  ibv_qp_init_attr qp_attr = {};
  qp_attr.send_cq = cq_;
  qp_attr.recv_cq = cq_;
  qp_attr.qp_type = IBV_QPT_RC;
  qp_attr.cap.max_send_wr = sq_depth_;
  qp_attr.cap.max_recv_wr = 1;
  qp_attr.cap.max_send_sge = 1;
  qp_attr.cap.max_recv_sge = 1;
  qp_attr.sq_sig_all = 0;
  if (rdma_create_qp(id_, pd_, &qp_attr) != 0) return Errno("rdma_create_qp", errno);
  {
    absl::MutexLock lock(&mu_);
    qp_created_ = true;
  }

  const size_t page = PageSize();
  scratch_ = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (scratch_ == MAP_FAILED) {
    scratch_ = nullptr;
    return Errno("mmap", errno);
  }
  scratch_mr_ = ibv_reg_mr(pd_, scratch_, page, kLocalWrite);
  if (scratch_mr_ == nullptr) return Errno("ibv_reg_mr (atomics scratch page)", errno);
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
  if (rdma_connect(id_, &param) != 0) return Errno("rdma_connect", errno);
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

// --- ConnectionCore: operations --------------------------------------------------------------

absl::StatusOr<std::shared_ptr<BufferImpl>> ConnectionCore::Allocate(size_t size) {
  if (absl::Status s = health(); !s.ok()) return s;
  return BufferImpl::Create(shared_from_this(), size);
}

absl::StatusOr<std::shared_ptr<OpRecord>> ConnectionCore::Post(OpSpec spec) {
  const bool atomic = IsAtomic(spec.kind);
  if (atomic && !atomics_) {
    return absl::FailedPreconditionError(absl::StrCat("lease ", spec.lease_id, ": device ", device_,
                                                      " does not support atomic operations"));
  }
  auto record = std::make_shared<OpRecord>(spec);
  ibv_sge sge = {};
  ibv_send_wr wr = {};
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  switch (spec.kind) {
    case RdmaOpKind::kWrite:
    case RdmaOpKind::kRead:
      wr.opcode = spec.kind == RdmaOpKind::kWrite ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
      wr.wr.rdma.remote_addr = spec.remote_address;
      wr.wr.rdma.rkey = spec.rkey;
      sge.addr = reinterpret_cast<uintptr_t>(spec.buffer->data() + spec.local_offset);
      sge.length = static_cast<uint32_t>(spec.length);
      sge.lkey = spec.buffer->lkey();
      break;
    case RdmaOpKind::kFetchAdd:
    case RdmaOpKind::kCompareSwap:
      wr.opcode = spec.kind == RdmaOpKind::kFetchAdd ? IBV_WR_ATOMIC_FETCH_AND_ADD
                                                     : IBV_WR_ATOMIC_CMP_AND_SWP;
      wr.wr.atomic.remote_addr = spec.remote_address;
      wr.wr.atomic.rkey = spec.rkey;
      wr.wr.atomic.compare_add = spec.compare_add;
      wr.wr.atomic.swap = spec.swap;
      sge.length = kAtomicBytes;
      sge.lkey = scratch_mr_->lkey;
      break;
  }

  absl::MutexLock lock(&mu_);
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", spec.lease_id, ": the RDMA connection to ", peer_, " is closed"));
  }
  if (!broken_.ok()) {
    return absl::Status(broken_.code(),
                        absl::StrCat("lease ", spec.lease_id, ": ", broken_.message()));
  }
  if (outstanding_.size() >= sq_depth_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("lease ", spec.lease_id, ": the send queue is full (", sq_depth_,
                     " operations in flight); wait for some to complete"));
  }
  size_t slot = 0;
  if (atomic) {
    if (free_slots_.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("lease ", spec.lease_id, ": too many atomics in flight"));
    }
    slot = free_slots_.back();
    free_slots_.pop_back();
    sge.addr = reinterpret_cast<uintptr_t>(scratch_) + slot * kAtomicBytes;
  }
  const uint64_t wr_id = ++next_wr_id_;
  wr.wr_id = wr_id;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, &wr, &bad); rc != 0) {
    if (atomic) free_slots_.push_back(slot);
    return Errno(absl::StrCat("lease ", spec.lease_id, ": ibv_post_send"), rc);
  }
  outstanding_.emplace(wr_id, record);
  if (atomic) atomic_slot_.emplace(wr_id, slot);
  return record;
}

void ConnectionCore::Break(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (broken_.ok()) {
    broken_ = absl::UnavailableError(absl::StrCat("the RDMA connection to ", peer_, " is broken: ",
                                                  why.message(), "; open a new connection"));
    PB_LOG(WARNING) << "RDMA connection " << local_address_ << " -> " << peer_
                    << " broken: " << why.message();
  }
  if (!disconnect_sent_ && qp_created_ && connected_) {
    disconnect_sent_ = true;
    // Moves the QP to the error state (flushing what is in flight) and sends a DREQ.
    if (rdma_disconnect(id_) != 0) {
      PB_LOG(WARNING) << "rdma_disconnect: " << std::strerror(errno);
    }
  }
}

absl::Status ConnectionCore::health() const {
  absl::MutexLock lock(&mu_);
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the RDMA connection to ", peer_, " is closed"));
  }
  return broken_;
}

size_t ConnectionCore::outstanding() const {
  absl::MutexLock lock(&mu_);
  return outstanding_.size();
}

// --- ConnectionCore: event thread ------------------------------------------------------------

void ConnectionCore::Wake() {
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) {
    PB_LOG(WARNING) << "eventfd write: " << std::strerror(errno);
  }
}

void ConnectionCore::EventLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    pollfd fds[3] = {
        {comp_channel_->fd, POLLIN, 0}, {channel_->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      PB_LOG(ERROR) << "RDMA event thread: poll: " << std::strerror(errno);
      return;
    }
    if (fds[2].revents & POLLIN) {
      uint64_t value;
      while (read(wake_fd_, &value, sizeof(value)) > 0) {
      }
    }
    if (fds[0].revents & POLLIN) ReapCompletions();
    if (fds[1].revents & POLLIN) HandleCmEvents();
  }
}

void ConnectionCore::ReapCompletions() {
  ibv_cq* ev_cq = nullptr;
  void* ev_ctx = nullptr;
  while (ibv_get_cq_event(comp_channel_, &ev_cq, &ev_ctx) == 0) ++cq_events_unacked_;
  if (cq_events_unacked_ >= 64) {
    ibv_ack_cq_events(cq_, cq_events_unacked_);
    cq_events_unacked_ = 0;
  }
  if (int rc = ibv_req_notify_cq(cq_, 0); rc != 0) {
    PB_LOG(ERROR) << "ibv_req_notify_cq: " << std::strerror(rc);
  }
  ibv_wc wcs[16];
  for (;;) {
    const int n = ibv_poll_cq(cq_, 16, wcs);
    if (n <= 0) {
      if (n < 0) {
        PB_LOG(ERROR) << "ibv_poll_cq failed";
      }
      return;
    }
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      std::shared_ptr<OpRecord> record;
      uint64_t atomic_value = 0;
      bool first_error = false;
      std::string broken_because;
      {
        absl::MutexLock lock(&mu_);
        auto it = outstanding_.find(wc.wr_id);
        if (it == outstanding_.end()) continue;  // Not ours (e.g. a flushed receive).
        record = std::move(it->second);
        outstanding_.erase(it);
        if (auto slot = atomic_slot_.find(wc.wr_id); slot != atomic_slot_.end()) {
          std::memcpy(&atomic_value, static_cast<uint8_t*>(scratch_) + slot->second * kAtomicBytes,
                      sizeof(atomic_value));
          free_slots_.push_back(slot->second);
          atomic_slot_.erase(slot);
        }
        if (wc.status != IBV_WC_SUCCESS) {
          first_error = broken_.ok();
          broken_because = std::string(broken_.message());
        }
      }
      const OpSpec& spec = record->spec();
      absl::Status status =
          CompletionStatus(wc.status, spec.lease_id, spec.kind, spec.length, broken_because);
      if (first_error) Break(status);
      record->Complete(std::move(status), atomic_value);
    }
  }
}

void ConnectionCore::AwaitInFlightCompletions(absl::Duration bound) {
  const absl::Time give_up = absl::Now() + bound;
  for (;;) {
    ReapCompletions();
    if (outstanding() == 0) return;
    const absl::Duration left = give_up - absl::Now();
    if (left <= absl::ZeroDuration()) return;
    pollfd fd = {comp_channel_->fd, POLLIN, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    if (poll(&fd, 1, std::min(ms, 20)) < 0 && errno != EINTR) return;
  }
}

void ConnectionCore::HandleCmEvents() {
  rdma_cm_event* event = nullptr;
  while (rdma_get_cm_event(channel_, &event) == 0) {
    const rdma_cm_event_type type = event->event;
    rdma_ack_cm_event(event);
    switch (type) {
      case RDMA_CM_EVENT_DISCONNECTED: {
        bool closing;
        {
          absl::MutexLock lock(&mu_);
          disconnected_ = true;
          closing = closing_;
        }
        // A disconnect this side asked for by closing is not a failure.
        if (closing) break;
        // The broker tears a connection down as soon as its queue pair fails, e.g. after it
        // refused one of our operations with a remote access error. Its DREQ can overtake our
        // processing of that NAK: let what is in flight complete with its own status first
        // (bounded), so the refusal surfaces as the remote access error it is, not as a flush.
        AwaitInFlightCompletions(kDisconnectSettle);
        Break(absl::UnavailableError("the broker closed the RDMA connection"));
        break;
      }
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        Break(absl::UnavailableError(absl::StrCat("RDMA device ", device_, " was removed")));
        break;
      default:
        break;  // TIMEWAIT_EXIT and the like.
    }
  }
}

// --- ConnectionCore: teardown ----------------------------------------------------------------

absl::Status ConnectionCore::Close(absl::Duration drain_timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      mu_.Await(absl::Condition(&closed_));
      return close_status_;
    }
    closing_ = true;
  }
  absl::Status result;
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outstanding_.empty(); };
  bool ok;
  size_t left;
  {
    absl::MutexLock lock(&mu_);
    ok = mu_.AwaitWithTimeout(absl::Condition(&drained), drain_timeout);
    left = outstanding_.size();
  }
  if (!ok) {
    result = absl::DeadlineExceededError(
        absl::StrCat(left, " RDMA operations did not complete within ",
                     absl::FormatDuration(drain_timeout), " of closing; they were flushed"));
    Break(result);
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&drained), kFlushWait);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!disconnect_sent_ && qp_created_ && connected_) {
      disconnect_sent_ = true;
      if (rdma_disconnect(id_) != 0) {
        PB_LOG(WARNING) << "rdma_disconnect: " << std::strerror(errno);
      }
    }
    // The event thread sees the DISCONNECTED event (it only runs once connected).
    if (connected_ && thread_.joinable()) {
      mu_.AwaitWithTimeout(absl::Condition(&disconnected_), kDisconnectWait);
    }
    stop_ = true;
  }
  Wake();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // Cannot happen through the public API; never join oneself.
    } else {
      thread_.join();
    }
  }
  // The event thread is gone: complete whatever was not flushed (its memory stays registered
  // through the record until the QP is destroyed below).
  absl::flat_hash_map<uint64_t, std::shared_ptr<OpRecord>> orphans;
  {
    absl::MutexLock lock(&mu_);
    orphans.swap(outstanding_);
    atomic_slot_.clear();
    if (qp_created_) {
      rdma_destroy_qp(id_);
      qp_created_ = false;
    }
  }
  for (auto& [wr_id, record] : orphans) {
    record->Complete(absl::UnavailableError(absl::StrCat("lease ", record->spec().lease_id,
                                                         ": the RDMA connection was closed")),
                     0);
  }
  if (cq_ != nullptr) {
    if (cq_events_unacked_ > 0) ibv_ack_cq_events(cq_, cq_events_unacked_);
    cq_events_unacked_ = 0;
    if (int rc = ibv_destroy_cq(cq_); rc != 0) {
      PB_LOG(WARNING) << "ibv_destroy_cq: " << std::strerror(rc);
    }
    cq_ = nullptr;
  }
  if (comp_channel_ != nullptr) {
    ibv_destroy_comp_channel(comp_channel_);
    comp_channel_ = nullptr;
  }
  absl::MutexLock lock(&mu_);
  close_status_ = result;
  closed_ = true;
  return result;
}

ConnectionCore::~ConnectionCore() {
  bool need_close;
  {
    absl::MutexLock lock(&mu_);
    need_close = !closed_;
  }
  if (need_close) Close(absl::ZeroDuration()).IgnoreError();
  if (scratch_mr_ != nullptr) ibv_dereg_mr(scratch_mr_);
  if (scratch_ != nullptr) munmap(scratch_, PageSize());
  if (pd_ != nullptr) {
    if (int rc = ibv_dealloc_pd(pd_); rc != 0) {
      PB_LOG(WARNING) << "ibv_dealloc_pd: " << std::strerror(rc);
    }
  }
  if (id_ != nullptr) rdma_destroy_id(id_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

}  // namespace pinbroker::client::rdma_internal
