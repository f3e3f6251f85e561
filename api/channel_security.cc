#include "pinbroker/channel_security.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pinbroker {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

absl::StatusOr<std::string> ReadPem(absl::string_view what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the TLS ", what, " file '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad() || text.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS ", what, " file '", path, "' is empty or unreadable"));
  }
  return text.str();
}

}  // namespace

TlsClientFiles TlsClientFilesFromEnvironment() {
  TlsClientFiles tls;
  tls.ca_file = Env("PINBROKER_TLS_CA");
  tls.cert_file = Env("PINBROKER_TLS_CERT");
  tls.key_file = Env("PINBROKER_TLS_KEY");
  tls.server_name = Env("PINBROKER_TLS_SERVER_NAME");
  return tls;
}

bool IsUnixEndpoint(absl::string_view endpoint) {
  return absl::StartsWith(endpoint, "unix:") || absl::StartsWith(endpoint, "unix-abstract:");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelSecurityFor(
    absl::string_view endpoint, const TlsClientFiles& tls, grpc::ChannelArguments* args) {
  if (tls.empty()) return grpc::InsecureChannelCredentials();
  if (IsUnixEndpoint(endpoint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS settings apply to TCP endpoints only; '", endpoint,
        "' is a Unix socket, where the broker knows callers by their kernel credentials"));
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs both its certificate and its key file");
  }
  grpc::SslCredentialsOptions options;
  if (!tls.ca_file.empty()) {
    auto ca = ReadPem("CA", tls.ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  if (!tls.cert_file.empty()) {
    auto cert = ReadPem("certificate", tls.cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadPem("key", tls.key_file);
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  if (!tls.server_name.empty()) args->SetSslTargetNameOverride(tls.server_name);
  return grpc::SslCredentials(options);
}

}  // namespace pinbroker
