#include "clients/pinrdma/session.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/runtime_paths.h"

namespace pinrdma {

namespace client = ::pinbroker::client;

absl::StatusOr<std::string> ResolveEndpoint(const std::string& flag) {
  std::string endpoint = flag;
  if (endpoint.empty()) {
    const char* env = std::getenv("PINBROKER_ENDPOINT");
    if (env != nullptr) endpoint = env;
  }
  // Per-user socket (in a private directory), else the system one.
  if (endpoint.empty()) return pinbroker::DefaultClientEndpoint();
  if (absl::StartsWith(endpoint, "/")) return absl::StrCat("unix:", endpoint);
  return endpoint;
}

int OpenSession(const Options& options, Printer& out, bool rdma, Session* session) {
  client::ClientOptions client_options;
  client_options.client_name = options.client_name;
  client_options.rpc_timeout = options.timeout;
  const absl::StatusOr<std::string> resolved = ResolveEndpoint(options.endpoint);
  if (!resolved.ok()) return out.Error("find the broker", resolved.status());
  const std::string& endpoint = *resolved;
  auto connected = client::Client::Connect(endpoint, client_options);
  if (!connected.ok()) return out.Error(absl::StrCat("connect to ", endpoint), connected.status());
  session->client = *std::move(connected);
  if (!rdma) return kExitOk;

  client::RdmaConnectOptions rdma_options;
  rdma_options.address = options.rdma_address;
  rdma_options.port = options.rdma_port;
  rdma_options.broker_device = options.broker_device;
  rdma_options.source_address = options.source_address;
  rdma_options.connect_timeout = options.connect_timeout;
  rdma_options.op_timeout = options.op_timeout;
  auto attached = client::RdmaConnection::Connect(*session->client, rdma_options);
  if (!attached.ok()) return out.Error("attach RDMA connection", attached.status());
  session->connection = *std::move(attached);
  const client::RdmaConnection& c = *session->connection;
  out.Emit("connected", Fields()
                            .Str("endpoint", endpoint)
                            .Str("session_id", c.session_id())
                            .Str("device", c.device())
                            .Str("local_address", c.local_address())
                            .Str("peer", c.peer())
                            .Num("path_mtu", c.path_mtu()));
  return kExitOk;
}

Fields LeaseFields(const client::RdmaLease& lease) {
  const client::ByteRange range = lease.lease().range();
  const pinbroker::v1::RdmaAccess& rdma = lease.rdma();
  Fields f;
  f.Str("lease_id", lease.id())
      .Str("export", lease.lease().export_name())
      .Str("path", lease.lease().path())
      .Num("file_offset", range.offset)
      .Num("file_length", range.length)
      .Str("access", pinbroker::v1::Access_Name(lease.lease().access()))
      .Str("mode", pinbroker::v1::RegistrationMode_Name(lease.lease().mode()))
      .Str("device", rdma.device())
      .Num("rkey", rdma.rkey())
      .Num("remote_address", rdma.remote_address())
      .Num("length", rdma.length())
      .Num("required_alignment", rdma.required_alignment())
      .Num("max_transfer_size", rdma.max_transfer_size())
      .Str("constraint_reason", rdma.constraint_reason());
  return f;
}

int PinLease(const Options& options, Printer& out, Session& session, client::RdmaPinOptions pin,
             std::unique_ptr<client::RdmaLease>* lease) {
  pin.export_name = options.export_name;
  pin.path = options.path;
  pin.offset = options.offset;
  pin.length = options.length;
  pin.access = options.access;
  pin.ttl = options.ttl;
  auto pinned = client::RdmaLease::Pin(*session.client, *session.connection, std::move(pin));
  if (!pinned.ok()) return out.Error("pin", pinned.status());
  *lease = *std::move(pinned);
  out.Emit("pinned", LeaseFields(**lease));
  return kExitOk;
}

}  // namespace pinrdma
