#include "pinning/rdma/connection_manager.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/verbs/fd_events.h"
#include "pinbroker/rdma_wire.h"

namespace pinbroker::rdma {
namespace {

constexpr int kBacklog = 64;
constexpr uint8_t kMaxRdAtom = 16;
// How long a queue pair the device reported failed gets to reach the error state on its own (it
// does so right after answering the failed request) before it is torn down anyway. Bounds how
// long one failed connection holds the event thread.
constexpr absl::Duration kQueuePairErrorSettle = absl::Milliseconds(200);

std::string AddressText(const sockaddr* addr) {
  if (addr == nullptr || addr->sa_family != AF_INET) return "?";
  const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
  return absl::StrCat(text, ":", ntohs(in->sin_port));
}

void Reject(rdma_cm_id* id, rdma_wire::RejectCode code, const std::string& message) {
  const rdma_wire::AttachReject reject = rdma_wire::MakeReject(code, message);
  if (rdma_reject(id, &reject, sizeof(reject)) != 0) {
    PB_LOG(WARNING) << "rdma: rdma_reject failed: " << ErrnoDescription(errno);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionManager>> ConnectionManager::Listen(
    std::vector<VerbsDevice*> devices, Options options, Authenticator authenticate,
    ClosedCallback on_closed) {
  std::unique_ptr<ConnectionManager> m(
      new ConnectionManager(std::move(authenticate), std::move(on_closed)));
  absl::StatusOr<verbs::WakeFd> wake = verbs::WakeFd::Create();
  if (!wake.ok()) return wake.status();
  m->wake_ = std::move(*wake);
  m->channel_ = rdma_create_event_channel();
  if (m->channel_ == nullptr) return ErrnoToStatus(errno, "rdma_create_event_channel");
  if (absl::Status s = verbs::SetNonBlocking(m->channel_->fd); !s.ok()) return s;
  if (rdma_create_id(m->channel_, &m->listener_, nullptr, RDMA_PS_TCP) != 0) {
    return ErrnoToStatus(errno, "rdma_create_id for the listener");
  }
  const uint16_t port = options.port != 0 ? options.port : rdma_wire::kDefaultPort;
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  const std::string address = options.address.empty() ? "0.0.0.0" : options.address;
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rdma address '", address, "' is not an IPv4 address"));
  }
  if (rdma_bind_addr(m->listener_, reinterpret_cast<sockaddr*>(&addr)) != 0) {
    const int err = errno;
    return absl::Status(
        err == EADDRINUSE ? absl::StatusCode::kUnavailable : ErrnoToStatusCode(err),
        absl::StrCat("rdma_bind_addr(", address, ":", port, ") failed: ", ErrnoDescription(err),
                     err == EADDRINUSE      ? " (another pinbrokerd? choose another rdma port)"
                     : err == EADDRNOTAVAIL ? " (no RDMA device has that address)"
                                            : ""));
  }
  if (m->listener_->verbs != nullptr) {
    // Bound to one device's address: that device only.
    auto it = std::find_if(devices.begin(), devices.end(),
                           [&](VerbsDevice* d) { return d->context() == m->listener_->verbs; });
    if (it == devices.end()) {
      return absl::NotFoundError(absl::StrCat("rdma address ", address, " belongs to device ",
                                              ibv_get_device_name(m->listener_->verbs->device),
                                              ", which is not in use (",
                                              "not configured, or it has no active port)"));
    }
    m->devices_ = {*it};
    m->endpoints_.push_back(Endpoint{(*it)->name(), address, port});
  } else {
    m->devices_ = std::move(devices);
    for (VerbsDevice* d : m->devices_) {
      for (const std::string& ip : d->caps().ipv4_addresses) {
        m->endpoints_.push_back(Endpoint{d->name(), ip, port});
      }
    }
  }
  if (rdma_listen(m->listener_, kBacklog) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rdma_listen on ", address, ":", port));
  }
  for (VerbsDevice* d : m->devices_) {
    verbs::SetNonBlocking(d->context()->async_fd).IgnoreError();
  }
  m->thread_ = std::thread([raw = m.get()] { raw->Run(); });
  PB_LOG(INFO) << "rdma: listening for RDMA connections on " << m->DescribeEndpoints();
  return m;
}

ConnectionManager::~ConnectionManager() { Shutdown(); }

std::string ConnectionManager::DescribeEndpoints() const {
  std::vector<std::string> parts;
  for (const Endpoint& e : endpoints_) {
    parts.push_back(absl::StrCat(e.device, " ", e.address, ":", e.port));
  }
  return parts.empty() ? "(no endpoint)" : absl::StrJoin(parts, ", ");
}

void ConnectionManager::Wake() {
  if (wake_.fd() >= 0) wake_.Wake();
}

void ConnectionManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  // The event thread is gone: tear the rest down here, windows before queue pairs as always.
  std::vector<std::shared_ptr<Connection>> conns;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [owner, conn] : by_owner_) conns.push_back(conn);
    teardowns_.clear();
  }
  for (auto& conn : conns) Teardown(conn, "broker shutting down", /*disconnect=*/true);
  if (listener_ != nullptr) rdma_destroy_id(listener_);
  listener_ = nullptr;
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  channel_ = nullptr;
  wake_ = verbs::WakeFd();
}

std::shared_ptr<Connection> ConnectionManager::Find(absl::string_view owner) const {
  absl::MutexLock lock(&mu_);
  auto it = by_owner_.find(owner);
  return it == by_owner_.end() ? nullptr : it->second;
}

size_t ConnectionManager::connection_count() const {
  absl::MutexLock lock(&mu_);
  return by_owner_.size();
}

void ConnectionManager::Disconnect(absl::string_view owner, std::string reason) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end() || stopping_) return;
    teardowns_.push_back(TeardownRequest{it->second, std::move(reason)});
  }
  Wake();
}

void ConnectionManager::RequestTeardown(Connection* conn, std::string reason) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_owner_.find(conn->owner());
    if (it == by_owner_.end() || it->second.get() != conn || stopping_) return;
    teardowns_.push_back(TeardownRequest{it->second, std::move(reason)});
  }
  Wake();
}

std::shared_ptr<Connection> ConnectionManager::ByIdLocked(rdma_cm_id* id) const {
  for (const auto& [owner, conn] : by_owner_) {
    if (conn->id() == id) return conn;
  }
  return nullptr;
}

std::shared_ptr<Connection> ConnectionManager::ByQpLocked(uint32_t qp_num) const {
  for (const auto& [owner, conn] : by_owner_) {
    if (conn->qp_num() == qp_num) return conn;
  }
  return nullptr;
}

VerbsDevice* ConnectionManager::DeviceFor(ibv_context* context) const {
  for (VerbsDevice* d : devices_) {
    if (d->context() == context) return d;
  }
  return nullptr;
}

void ConnectionManager::Run() {
  std::vector<pollfd> fds;
  fds.push_back(pollfd{channel_->fd, POLLIN, 0});
  fds.push_back(pollfd{wake_.fd(), POLLIN, 0});
  for (VerbsDevice* d : devices_) fds.push_back(pollfd{d->context()->async_fd, POLLIN, 0});
  for (;;) {
    for (pollfd& p : fds) p.revents = 0;
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      PB_LOG(ERROR) << "rdma: poll in the connection event thread failed: "
                    << ErrnoDescription(errno) << "; RDMA connections are no longer served";
      return;
    }
    if (fds[1].revents != 0) {
      wake_.Drain();
      std::vector<TeardownRequest> requests;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        requests.swap(teardowns_);
      }
      for (TeardownRequest& r : requests) Teardown(std::move(r.conn), r.reason, true);
    }
    if (fds[0].revents != 0) {
      rdma_cm_event* event = nullptr;
      while (rdma_get_cm_event(channel_, &event) == 0) HandleCmEvent(event);
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents != 0) HandleAsyncEvents(devices_[i - 2]);
    }
  }
}

void ConnectionManager::HandleCmEvent(rdma_cm_event* event) {
  const rdma_cm_event_type type = event->event;
  rdma_cm_id* id = event->id;
  const int status = event->status;
  if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
    const rdma_conn_param requested = event->param.conn;
    const bool adopted =
        OnConnectRequest(id, requested.private_data, requested.private_data_len, requested);
    rdma_ack_cm_event(event);  // Before destroying its id: rdma_destroy_id waits for acks.
    if (!adopted) rdma_destroy_id(id);
    return;
  }
  rdma_ack_cm_event(event);
  std::shared_ptr<Connection> conn;
  {
    absl::MutexLock lock(&mu_);
    conn = ByIdLocked(id);
  }
  if (conn == nullptr) return;  // The listener's own events, or a connection already gone.
  switch (type) {
    case RDMA_CM_EVENT_ESTABLISHED:
      PB_LOG(INFO) << "rdma: session " << conn->owner() << " attached from " << conn->peer()
                   << " on " << conn->device()->name() << " (qp " << conn->qp_num() << ", path MTU "
                   << conn->path_mtu() << ")";
      break;
    case RDMA_CM_EVENT_DISCONNECTED:
      Teardown(std::move(conn), "the client disconnected", /*disconnect=*/false);
      break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      Teardown(std::move(conn),
               absl::StrCat("rdma_cm ", rdma_event_str(type), " (status ", status, ")"),
               /*disconnect=*/type != RDMA_CM_EVENT_DEVICE_REMOVAL);
      break;
    default:
      break;
  }
}

bool ConnectionManager::OnConnectRequest(rdma_cm_id* id, const void* data, size_t length,
                                         const rdma_conn_param& requested) {
  using rdma_wire::RejectCode;
  const std::string peer = AddressText(rdma_get_peer_addr(id));
  rdma_wire::AttachRequest request;
  if (data == nullptr || length < sizeof(request)) {
    PB_LOG(WARNING) << "rdma: connect request from " << peer << " without an attach request ("
                    << length << " bytes of private data); rejected";
    Reject(id, RejectCode::kMalformed, "no pinbroker attach request in the private data");
    return false;
  }
  std::memcpy(&request, data, sizeof(request));
  if (request.magic != rdma_wire::kMagic || request.version != rdma_wire::kVersion ||
      request.session_id_length == 0 || request.session_id_length > rdma_wire::kMaxSessionIdBytes) {
    PB_LOG(WARNING) << "rdma: malformed attach request from " << peer << "; rejected";
    Reject(id, RejectCode::kMalformed,
           absl::StrCat("bad magic, version (broker speaks ", rdma_wire::kVersion,
                        ") or session id length"));
    return false;
  }
  const std::string session(request.session_id, request.session_id_length);
  const std::string token = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(request.token), sizeof(request.token)));
  VerbsDevice* device = DeviceFor(id->verbs);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      Reject(id, RejectCode::kUnavailable, "the broker is shutting down");
      return false;
    }
  }
  if (device == nullptr) {
    Reject(id, RejectCode::kUnavailable, "this RDMA device is not served by the broker");
    return false;
  }
  absl::StatusOr<std::string> owner = authenticate_(session, token);
  if (!owner.ok()) {
    PB_LOG(WARNING) << "rdma: attach of session " << absl::CHexEscape(session) << " from " << peer
                    << " rejected: " << owner.status().message();
    Reject(id, RejectCode::kUnauthenticated, std::string(owner.status().message()));
    return false;
  }
  if (Find(*owner) != nullptr) {
    Reject(id, RejectCode::kAlreadyAttached,
           absl::StrCat("session ", *owner, " already has an RDMA connection"));
    return false;
  }
  auto conn = Connection::Create(
      id, device, *owner, peer,
      [this](Connection* c, const std::string& reason) { RequestTeardown(c, reason); });
  if (!conn.ok()) {
    PB_LOG(ERROR) << "rdma: cannot set up the connection of session " << *owner << " from " << peer
                  << ": " << conn.status().message();
    Reject(id, RejectCode::kUnavailable, std::string(conn.status().message()));
    return false;
  }
  rdma_conn_param param;
  std::memset(&param, 0, sizeof(param));
  const uint8_t device_rd_atom =
      static_cast<uint8_t>(std::min<uint32_t>(device->caps().max_qp_rd_atom, kMaxRdAtom));
  // The client's RDMA READs and atomics are served by our queue pair: offer as many as its
  // initiator depth (which the connect request event reports as our responder_resources).
  param.responder_resources =
      std::max<uint8_t>(1, std::min(requested.responder_resources, device_rd_atom));
  param.initiator_depth = 0;  // The broker never reads remotely.
  param.rnr_retry_count = 7;
  {
    absl::MutexLock lock(&mu_);
    if (by_owner_.contains(*owner)) {
      (*conn)->Close();
      (*conn)->Destroy(/*destroy_id=*/false);
      Reject(id, RejectCode::kAlreadyAttached,
             absl::StrCat("session ", *owner, " already has an RDMA connection"));
      return false;
    }
    by_owner_[*owner] = *conn;
  }
  if (rdma_accept(id, &param) != 0) {
    const int err = errno;
    PB_LOG(ERROR) << "rdma: rdma_accept for session " << *owner << " from " << peer
                  << " failed: " << ErrnoDescription(err);
    {
      absl::MutexLock lock(&mu_);
      by_owner_.erase(*owner);
    }
    (*conn)->Close();
    (*conn)->Destroy(/*destroy_id=*/false);
    return false;
  }
  // rdma_accept has moved the queue pair to RTS: binds can go ahead even before ESTABLISHED
  // (the client may use its connection as soon as it sees the accept).
  (*conn)->MarkEstablished();
  return true;
}

void ConnectionManager::HandleAsyncEvents(VerbsDevice* device) {
  ibv_async_event event;
  while (ibv_get_async_event(device->context(), &event) == 0) {
    const ibv_event_type type = event.event_type;
    std::vector<std::shared_ptr<Connection>> affected;
    {
      absl::MutexLock lock(&mu_);
      switch (type) {
        case IBV_EVENT_QP_FATAL:
        case IBV_EVENT_QP_REQ_ERR:
        case IBV_EVENT_QP_ACCESS_ERR:
        case IBV_EVENT_PATH_MIG_ERR:
          if (auto conn = ByQpLocked(event.element.qp->qp_num)) affected.push_back(conn);
          break;
        case IBV_EVENT_DEVICE_FATAL:
          for (const auto& [owner, conn] : by_owner_) {
            if (conn->device() == device) affected.push_back(conn);
          }
          break;
        default:
          break;
      }
    }
    // Acked before teardown: destroying a queue pair waits for its events to be acked.
    ibv_ack_async_event(&event);
    if (type == IBV_EVENT_PORT_ERR || type == IBV_EVENT_PORT_ACTIVE) {
      PB_LOG(WARNING) << "rdma: " << device->name() << ": " << ibv_event_type_str(type);
    }
    for (auto& conn : affected) {
      if (type == IBV_EVENT_DEVICE_FATAL) {
        conn->MarkBroken();
      } else {
        // The device may still be answering the request that failed: a client whose write hit
        // a revoked window must get the remote access error NAK, not a flush because the
        // disconnect below overtook it. Moving the queue pair to the error state now (or
        // disconnecting, which does) would drop that NAK on rxe; wait for the device to do it.
        conn->MarkFailed();
        if (!conn->AwaitErrorState(kQueuePairErrorSettle)) {
          PB_LOG(WARNING) << "rdma: queue pair " << conn->qp_num() << " of session "
                          << conn->owner() << " not in the error state "
                          << absl::FormatDuration(kQueuePairErrorSettle) << " after "
                          << ibv_event_type_str(type) << "; tearing it down anyway";
        }
      }
      Teardown(conn, absl::StrCat("async event ", ibv_event_type_str(type)), true);
    }
  }
}

void ConnectionManager::Teardown(std::shared_ptr<Connection> conn, const std::string& reason,
                                 bool disconnect) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_owner_.find(conn->owner());
    if (it == by_owner_.end() || it->second != conn) return;  // Already torn down.
    by_owner_.erase(it);
  }
  const absl::Time start = absl::Now();
  const size_t windows = conn->window_count();
  std::vector<LeaseId> lost = conn->Close();  // Windows first: always before the queue pair.
  if (disconnect) rdma_disconnect(conn->id());
  conn->Destroy(/*destroy_id=*/true);
  PB_LOG(INFO) << "rdma: connection of session " << conn->owner() << " from " << conn->peer()
               << " closed (" << reason << "): " << windows << " windows invalidated, torn down in "
               << absl::FormatDuration(absl::Now() - start);
  if (on_closed_) on_closed_(conn->owner(), std::move(lost), reason);
}

}  // namespace pinbroker::rdma
