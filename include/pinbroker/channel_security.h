// Client-side channel security: the credentials a client uses to reach pinbrokerd at an
// endpoint, from a CA, a client certificate and its key given as PEM files.
//
// pinbrokerd serves Unix sockets in plaintext (it knows each caller by the kernel's credentials
// of the connection) and TCP with TLS, requiring a client certificate by default (mTLS; the
// certificate's URI SAN, else its subject CN, is the caller's identity). A TCP endpoint is
// plaintext only against a broker started with `insecure_tcp`, which serves loopback only.
//
// Rules (ChannelSecurityFor):
//   - a "unix:" endpoint with any TLS setting is INVALID_ARGUMENT: TLS is for TCP endpoints;
//   - TCP with no TLS setting: plaintext;
//   - TCP with any TLS setting: TLS. `ca_file` verifies the broker's certificate (empty: gRPC's
//     default roots); `cert_file` and `key_file` (both or neither) are the client certificate;
//     `server_name` overrides the name the broker's certificate must carry (empty: the
//     endpoint's host). An unreadable or empty file is INVALID_ARGUMENT naming it.
//
// Thread-safety: stateless functions.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pinbroker {

struct TlsClientFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;

  bool empty() const {
    return ca_file.empty() && cert_file.empty() && key_file.empty() && server_name.empty();
  }
};

// $PINBROKER_TLS_CA, $PINBROKER_TLS_CERT, $PINBROKER_TLS_KEY, $PINBROKER_TLS_SERVER_NAME.
TlsClientFiles TlsClientFilesFromEnvironment();

// True for "unix:..." and "unix-abstract:..." endpoints.
bool IsUnixEndpoint(absl::string_view endpoint);

// The credentials for `endpoint`; sets the target-name override on `args` when asked.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelSecurityFor(
    absl::string_view endpoint, const TlsClientFiles& tls, grpc::ChannelArguments* args);

}  // namespace pinbroker
