#include "pinbroker/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/cpp/core.h"

namespace pinbroker::client {
namespace {

// The broker rejects keepalive pings more frequent than this (see broker/broker.cc).
constexpr absl::Duration kMinKeepaliveTime = absl::Seconds(10);

absl::Status Validate(const std::string& endpoint, const ClientOptions& o) {
  if (endpoint.empty()) return absl::InvalidArgumentError("empty endpoint");
  if (o.keepalive_time < kMinKeepaliveTime) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive_time is ", absl::FormatDuration(o.keepalive_time),
                     "; the broker rejects pings more often than every 10s"));
  }
  if (o.keepalive_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("keepalive_timeout must be positive");
  }
  if (o.rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("rpc_timeout must be positive");
  }
  if (o.session_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("session_ttl must not be negative");
  }
  if (!(o.renew_fraction > 0.0 && o.renew_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("renew_fraction is ", o.renew_fraction, "; it must be in (0, 1)"));
  }
  if (o.connect_timeout < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError("connect_timeout must be at least 100ms");
  }
  if (o.reconnect_backoff_min <= absl::ZeroDuration() ||
      o.reconnect_backoff_max < o.reconnect_backoff_min) {
    return absl::InvalidArgumentError(
        "reconnect backoff: need 0 < reconnect_backoff_min <= reconnect_backoff_max");
  }
  return absl::OkStatus();
}

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

}  // namespace

absl::string_view LeaseStateName(LeaseState state) {
  switch (state) {
    case LeaseState::kGranted:
      return "granted";
    case LeaseState::kRecalling:
      return "recalling";
    case LeaseState::kReleased:
      return "released";
    case LeaseState::kRevoked:
      return "revoked";
    case LeaseState::kExpired:
      return "expired";
    case LeaseState::kLost:
      return "lost";
  }
  return "unknown";
}

// --- Lease -------------------------------------------------------------------------------------

Lease::Lease(std::shared_ptr<internal::Core> core, const v1::Lease& granted)
    : core_(std::move(core)),
      id_(granted.lease_id()),
      export_name_(granted.export_name()),
      path_(granted.path()),
      range_{granted.range().offset(), granted.range().length()},
      access_(granted.access()),
      mode_(granted.mode()),
      granted_at_(FromProto(granted.granted_at())) {}

Lease::~Lease() { core_->Forget(id_); }

absl::Time Lease::expires_at() const { return core_->View(id_).expires_at; }
LeaseState Lease::state() const { return core_->View(id_).state; }
std::string Lease::reason() const { return core_->View(id_).reason; }
absl::Time Lease::recall_deadline() const { return core_->View(id_).recall_deadline; }
v1::Lease Lease::info() const { return core_->View(id_).info; }
absl::Status Lease::Release() { return core_->Release(id_); }
absl::Status Lease::Renew() { return core_->Renew(id_); }

// --- Client ------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(std::string endpoint,
                                                        ClientOptions options) {
  if (absl::Status s = Validate(endpoint, options); !s.ok()) return s;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // The Watch stream may stay silent for hours: keep pinging without data.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, Millis(options.reconnect_backoff_min));
  // Despite its name, gRPC uses GRPC_ARG_MIN_RECONNECT_BACKOFF_MS only as the minimum time a
  // connection attempt is given (the backoff itself is INITIAL/MAX above): set it to the
  // connect timeout, not to the backoff, or attempts are cut off after 100 ms.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, Millis(options.connect_timeout));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Millis(options.reconnect_backoff_max));
  // Each Client has its own connection: one client's broken transport is not another's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto security = ChannelSecurityFor(endpoint, options.tls, &args);
  if (!security.ok()) return security.status();
  auto channel = grpc::CreateCustomChannel(endpoint, *security, args);

  auto core = std::make_shared<internal::Core>(std::move(channel), std::move(options));
  if (absl::Status s = core->OpenSession(); !s.ok()) return s;
  if (absl::Status s = core->Start(); !s.ok()) {
    core->Close().IgnoreError();
    return s;
  }
  std::string session = core->session_id();
  std::string epoch = core->broker_epoch();
  return std::unique_ptr<Client>(new Client(std::move(core), std::move(session), std::move(epoch)));
}

Client::Client(std::shared_ptr<internal::Core> core, std::string session_id, std::string epoch)
    : core_(std::move(core)), session_id_(std::move(session_id)), broker_epoch_(std::move(epoch)) {}

Client::~Client() { core_->Close().IgnoreError(); }

absl::StatusOr<std::unique_ptr<Lease>> Client::Pin(const PinOptions& options) {
  return core_->Pin(options);
}

absl::Status Client::ReleaseLeaseId(absl::string_view lease_id) {
  return core_->ReleaseLeaseId(lease_id);
}

absl::StatusOr<v1::ListLeasesResponse> Client::ListLeases(const v1::ListLeasesRequest& filter) {
  return core_->ListLeases(filter);
}

absl::StatusOr<v1::DescribeFileResponse> Client::DescribeFile(absl::string_view export_name,
                                                              absl::string_view path) {
  v1::DescribeFileRequest request;
  request.set_export_name(std::string(export_name));
  request.set_path(std::string(path));
  return core_->DescribeFile(request);
}

absl::StatusOr<v1::LayoutChangeResponse> Client::Truncate(absl::string_view export_name,
                                                          absl::string_view path, uint64_t new_size,
                                                          const LayoutOptions& options) {
  v1::TruncateRequest request;
  request.set_export_name(std::string(export_name));
  request.set_path(std::string(path));
  request.set_new_size(new_size);
  core_->FillLayoutOptions(options, request.mutable_options());
  return core_->Truncate(std::move(request));
}

absl::StatusOr<v1::LayoutChangeResponse> Client::PunchHole(absl::string_view export_name,
                                                           absl::string_view path, uint64_t offset,
                                                           uint64_t length,
                                                           const LayoutOptions& options) {
  v1::PunchHoleRequest request;
  request.set_export_name(std::string(export_name));
  request.set_path(std::string(path));
  request.set_offset(offset);
  request.set_length(length);
  core_->FillLayoutOptions(options, request.mutable_options());
  return core_->PunchHole(std::move(request));
}

absl::StatusOr<v1::GetInfoResponse> Client::GetInfo() { return core_->GetInfo(); }

absl::Status Client::Close() { return core_->Close(); }

v1::SessionCredentials Client::credentials() const { return core_->credentials(); }
absl::Status Client::session_status() const { return core_->session_status(); }
bool Client::watching() const { return core_->watching(); }
uint64_t Client::watch_reconnects() const { return core_->watch_reconnects(); }

}  // namespace pinbroker::client
