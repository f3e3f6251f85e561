// Connection: pinctl's channel to pinbrokerd, the PinBroker and Health stubs, per-RPC client
// contexts with deadlines, and the session credentials taken from flags or the environment.
//
// Endpoint resolution: --endpoint, else $PINBROKER_ENDPOINT, else the socket of pinbrokerd's
// embedded default (unix:<DefaultRuntimeDir()>/pinbroker.sock, the same function the daemon
// uses). A bare absolute path is taken as a Unix socket.
//
// Security: Unix sockets are plaintext (the broker knows the caller by its kernel credentials);
// TCP endpoints use TLS when --tls-ca/--tls-cert/--tls-key/--tls-server-name or their
// $PINBROKER_TLS_* variables are set (pinbroker/channel_security.h), else plaintext, which only a
// broker started with insecure_tcp accepts. The variables are ignored for Unix endpoints; the
// flags are refused there.
//
// Thread-safety: the stubs are safe to use from several threads (gRPC's guarantee); the
// Connection itself is built once on the main thread and not modified afterwards.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/pinctl/cli.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinctl {

// OK unless the default endpoint's runtime directory is not private (CheckPrivateDir).
absl::Status CheckDefaultEndpoint();
std::string DefaultEndpoint();
// "unix:/x.sock", "host:port", or "/x.sock" (made "unix:/x.sock").
std::string NormalizeEndpoint(const std::string& endpoint);

class Connection {
 public:
  // INVALID_ARGUMENT when the TLS settings are unusable (a missing file, TLS on a Unix socket).
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const GlobalOptions& global);

  const std::string& endpoint() const { return endpoint_; }
  pinbroker::v1::PinBroker::Stub& broker() { return *broker_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

  // A context whose deadline is the global --timeout plus `extra` from now.
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration extra = absl::ZeroDuration()) const;
  // A context for cleanup calls on the way out: a short deadline (at most 5 s).
  std::unique_ptr<grpc::ClientContext> CleanupContext() const;
  // A context without a deadline, for Watch streams.
  static std::unique_ptr<grpc::ClientContext> StreamContext();

  // --session/--token, else $PINBROKER_SESSION/$PINBROKER_TOKEN; nullopt if no session id.
  std::optional<pinbroker::v1::SessionCredentials> credentials() const { return credentials_; }

 private:
  Connection(const GlobalOptions& global, std::string endpoint);

  std::string endpoint_;
  absl::Duration timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pinbroker::v1::PinBroker::Stub> broker_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::optional<pinbroker::v1::SessionCredentials> credentials_;
};

}  // namespace pinctl
