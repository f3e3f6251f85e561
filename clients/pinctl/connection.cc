#include "clients/pinctl/connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "pinbroker/channel_security.h"
#include "common/runtime_paths.h"

namespace pinctl {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

}  // namespace

std::string DefaultEndpoint() {
  const std::string env = Env("PINBROKER_ENDPOINT");
  if (!env.empty()) return NormalizeEndpoint(env);
  auto endpoint = pinbroker::DefaultClientEndpoint();
  // A squatted runtime directory: no endpoint; Connection refuses with the reason.
  return endpoint.ok() ? *endpoint : "";
}

absl::Status CheckDefaultEndpoint() {
  if (!Env("PINBROKER_ENDPOINT").empty()) return absl::OkStatus();
  return pinbroker::DefaultClientEndpoint().status();
}

std::string NormalizeEndpoint(const std::string& endpoint) {
  if (absl::StartsWith(endpoint, "/")) return absl::StrCat("unix:", endpoint);
  return endpoint;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const GlobalOptions& global) {
  std::unique_ptr<Connection> connection(new Connection(
      global, global.endpoint.empty() ? DefaultEndpoint() : NormalizeEndpoint(global.endpoint)));
  pinbroker::TlsClientFiles tls{global.tls_ca, global.tls_cert, global.tls_key,
                                global.tls_server_name};
  if (tls.empty() && !pinbroker::IsUnixEndpoint(connection->endpoint_)) {
    tls = pinbroker::TlsClientFilesFromEnvironment();
  }
  grpc::ChannelArguments args;
  // Watch streams and held leases live long: ping every 20 s (the broker permits >= 10 s) so a
  // dead connection is noticed.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  auto security = pinbroker::ChannelSecurityFor(connection->endpoint_, tls, &args);
  if (!security.ok()) return security.status();
  connection->channel_ = grpc::CreateCustomChannel(connection->endpoint_, *security, args);
  connection->broker_ = pinbroker::v1::PinBroker::NewStub(connection->channel_);
  connection->health_ = grpc::health::v1::Health::NewStub(connection->channel_);
  return connection;
}

Connection::Connection(const GlobalOptions& global, std::string endpoint)
    : endpoint_(std::move(endpoint)), timeout_(global.timeout) {
  const std::string session = global.session.empty() ? Env("PINBROKER_SESSION") : global.session;
  const std::string token = global.token.empty() ? Env("PINBROKER_TOKEN") : global.token;
  if (!session.empty()) {
    pinbroker::v1::SessionCredentials c;
    c.set_session_id(session);
    c.set_token(token);
    credentials_ = c;
  }
}

std::unique_ptr<grpc::ClientContext> Connection::Context(absl::Duration extra) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(DeadlineIn(timeout_ + extra));
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::CleanupContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(DeadlineIn(std::min(timeout_, absl::Seconds(5))));
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::StreamContext() {
  return std::make_unique<grpc::ClientContext>();
}

}  // namespace pinctl
