#include "pinbroker/rdma_connection.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/rdma/attach.h"
#include "clients/rdma/connection_core.h"

namespace pinbroker::client {

// --- LocalBuffer, PendingOp ------------------------------------------------------------------

uint8_t* LocalBuffer::data() const { return impl_ ? impl_->data() : nullptr; }
size_t LocalBuffer::size() const { return impl_ ? impl_->size() : 0; }

bool PendingOp::done() const { return record_ == nullptr || record_->done(); }

absl::Status PendingOp::Wait(absl::Duration timeout) const {
  if (record_ == nullptr) return absl::FailedPreconditionError("empty PendingOp");
  if (timeout <= absl::ZeroDuration()) timeout = op_timeout_;
  if (record_->AwaitDone(absl::Now() + timeout)) return record_->status();
  const rdma_internal::OpSpec& spec = record_->spec();
  absl::Status late = absl::DeadlineExceededError(
      absl::StrCat("lease ", spec.lease_id, ": ", RdmaOpName(spec.kind), " of ", spec.length,
                   " bytes did not complete within ", absl::FormatDuration(timeout),
                   "; the connection was broken to stop it"));
  core_->Break(late);
  // The flush completes it; its buffer stays registered through the record until then.
  record_->AwaitDone(absl::Now() + absl::Seconds(10));
  return late;
}

uint64_t PendingOp::atomic_result() const {
  return record_ == nullptr ? 0 : record_->atomic_result();
}

// --- RdmaConnection --------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RdmaConnection>> RdmaConnection::Connect(
    Client& client, RdmaConnectOptions options) {
  if (options.address.empty()) {
    absl::StatusOr<v1::GetInfoResponse> info = client.GetInfo();
    if (!info.ok()) return info.status();
    const v1::RdmaEndpoint* chosen = nullptr;
    std::vector<std::string> offered;
    for (const v1::RdmaEndpoint& e : info->rdma_endpoints()) {
      offered.push_back(absl::StrCat(e.device(), "=", e.address(), ":", e.port()));
      if (chosen == nullptr &&
          (options.broker_device.empty() || e.device() == options.broker_device)) {
        chosen = &e;
      }
    }
    if (chosen == nullptr) {
      if (offered.empty()) {
        if (!info->rdma_unavailable().empty()) {
          return absl::FailedPreconditionError(
              absl::StrCat("the broker offers no RDMA endpoint: it serves no RDMA (",
                           info->rdma_unavailable(), ")"));
        }
        return absl::FailedPreconditionError(
            absl::StrCat("the broker offers no RDMA endpoint (backend \"", info->backend(), "\")"));
      }
      return absl::NotFoundError(absl::StrCat("the broker has no RDMA endpoint on device ",
                                              options.broker_device, "; it offers ",
                                              absl::StrJoin(offered, ", ")));
    }
    options.address = chosen->address();
    if (options.port == 0) options.port = static_cast<uint16_t>(chosen->port());
  }
  return Connect(client.credentials(), std::move(options));
}

absl::StatusOr<std::unique_ptr<RdmaConnection>> RdmaConnection::Connect(
    const v1::SessionCredentials& credentials, RdmaConnectOptions options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("RdmaConnectOptions.address is required here");
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.op_timeout <= absl::ZeroDuration() || options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "connect_timeout and op_timeout must be positive, drain_timeout not negative");
  }
  if (options.send_queue_depth == 0) {
    return absl::InvalidArgumentError("send_queue_depth must be positive");
  }
  if (options.port == 0) options.port = rdma_wire::kDefaultPort;
  absl::StatusOr<rdma_wire::AttachRequest> attach =
      rdma_internal::EncodeAttachRequest(credentials.session_id(), credentials.token());
  if (!attach.ok()) return attach.status();
  rdma_internal::ConnectTarget target;
  target.address = options.address;
  target.port = options.port;
  target.source_address = options.source_address;
  rdma_internal::CoreOptions core_options;
  core_options.connect_timeout = options.connect_timeout;
  core_options.send_queue_depth = options.send_queue_depth;
  auto core = rdma_internal::ConnectionCore::Connect(target, *attach, core_options);
  if (!core.ok()) return core.status();
  return std::unique_ptr<RdmaConnection>(
      new RdmaConnection(*std::move(core), credentials.session_id(), std::move(options)));
}

RdmaConnection::RdmaConnection(std::shared_ptr<rdma_internal::ConnectionCore> core,
                               std::string session_id, RdmaConnectOptions options)
    : core_(std::move(core)), session_id_(std::move(session_id)), options_(std::move(options)) {}

RdmaConnection::~RdmaConnection() { Close().IgnoreError(); }

absl::StatusOr<LocalBuffer> RdmaConnection::AllocateBuffer(size_t size) {
  auto impl = core_->Allocate(size);
  if (!impl.ok()) return impl.status();
  return LocalBuffer(*std::move(impl));
}

absl::Status RdmaConnection::status() const { return core_->health(); }
size_t RdmaConnection::in_flight() const { return core_->outstanding(); }
absl::Status RdmaConnection::Close() { return core_->Close(options_.drain_timeout); }
const std::string& RdmaConnection::device() const { return core_->device(); }
const std::string& RdmaConnection::local_address() const { return core_->local_address(); }
const std::string& RdmaConnection::peer() const { return core_->peer(); }
uint32_t RdmaConnection::path_mtu() const { return core_->path_mtu(); }
uint64_t RdmaConnection::max_message() const { return core_->max_message(); }

}  // namespace pinbroker::client
