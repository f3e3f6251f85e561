#include "broker/broker.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "broker/config.h"
#include "broker/proto_convert.h"
#include "broker/protobuf_log.h"
#include "common/build_info.h"
#include "common/log.h"
#include "pinning/host_backend.h"
#include "pinning/rdma/verbs_backend.h"
#include "pinning/routing_backend.h"

namespace pinbroker::broker {
namespace {

constexpr char kServiceName[] = "pinbroker.v1.PinBroker";

// GetInfo's view of `verbs` (which must outlive the service that calls it).
RdmaInfoProvider RdmaInfoOf(const rdma::VerbsBackend* verbs) {
  if (verbs == nullptr) return nullptr;
  return [verbs] {
    const rdma::VerbsStatus status = verbs->Status();
    RdmaInfo info;
    for (const rdma::DeviceCaps& caps : status.devices) {
      info.devices.push_back({.name = caps.name,
                              .odp = caps.odp.supported && caps.odp.read && caps.odp.write,
                              .memory_window_types = rdma::MemoryWindowTypeNames(caps),
                              .quirks = rdma::DeviceQuirks(caps),
                              .active_mtu = caps.active_mtu,
                              .max_mw = caps.max_mw});
    }
    for (const rdma::Endpoint& e : status.endpoints) {
      info.endpoints.push_back({.device = e.device, .address = e.address, .port = e.port});
    }
    info.connections = status.connections;
    return info;
  };
}

absl::Duration Or(const google::protobuf::Duration& d, bool set, absl::Duration fallback) {
  return set ? FromProto(d) : fallback;
}

struct MadeBackend {
  std::unique_ptr<PinBackend> backend;
  HostBackend* host = nullptr;  // Inside backend.
  rdma::VerbsBackend* verbs = nullptr;
  std::string no_rdma;  // Why there is no RDMA backend; empty when there is one.
};

// Host pins always go to a HostBackend; RDMA pins to a VerbsBackend when the configuration and
// the machine allow one ("auto" without a usable device quietly serves host pins only).
absl::StatusOr<MadeBackend> MakeBackend(const v1::BrokerConfig& config) {
  auto choice = BackendFromConfig(config);
  if (!choice.ok()) return choice.status();
  auto options = RdmaOptionsFromConfig(config);
  if (!options.ok()) return options.status();
  auto host_options = HostOptionsFromConfig(config);
  if (!host_options.ok()) return host_options.status();
  std::unique_ptr<rdma::VerbsBackend> verbs;
  std::string no_rdma = "backend \"host\" is configured";
  if (*choice != BackendChoice::kHost) {
    auto opened = rdma::VerbsBackend::Open(*options);
    if (opened.ok()) {
      verbs = *std::move(opened);
    } else if (*choice == BackendChoice::kRdma) {
      return absl::Status(opened.status().code(),
                          absl::StrCat("backend \"rdma\": ", opened.status().message()));
    } else {
      no_rdma = std::string(opened.status().message());
      PB_LOG(INFO) << "backend auto: host pins only (" << no_rdma << ")";
    }
  }
  MadeBackend made;
  made.verbs = verbs.get();
  if (verbs == nullptr) made.no_rdma = no_rdma;
  auto host = std::make_unique<HostBackend>(*host_options);
  made.host = host.get();
  made.backend = std::make_unique<RoutingBackend>(std::move(host), std::move(verbs), no_rdma);
  return made;
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.", what, " '", path, "' cannot be read or is empty"));
  }
  return text.str();
}

bool IsLoopbackHost(absl::string_view address) {
  const size_t colon = address.rfind(':');
  const absl::string_view host = address.substr(0, colon == absl::string_view::npos ? 0 : colon);
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

// TCP serves TLS (mTLS unless configured otherwise); plaintext only when asked for, on loopback.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentialsFor(
    const std::string& address, const v1::BrokerConfig& config) {
  const v1::TlsConfig& tls = config.tls();
  if (tls.cert_file().empty()) {
    if (!config.insecure_tcp()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TCP address ", address,
          " needs TLS: set tls.cert_file, tls.key_file and tls.client_ca_file (or, on a "
          "loopback address only, insecure_tcp for plaintext)"));
    }
    if (!IsLoopbackHost(address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "insecure_tcp is allowed only on loopback addresses (127.0.0.0/8, [::1], localhost); ",
          address, " is not one: configure tls"));
    }
    PB_LOG(WARNING) << "serving plaintext TCP on " << address
                    << " (insecure_tcp): its callers are anonymous, with nobody's file "
                       "permissions; anyone on this host can connect";
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(
      tls.no_client_certificates() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  auto cert = ReadPem(tls.cert_file(), "cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file(), "key_file");
  if (!key.ok()) return key.status();
  if (!tls.no_client_certificates()) {
    if (tls.client_ca_file().empty()) {
      return absl::InvalidArgumentError(
          "tls.client_ca_file is required to verify client certificates (or set "
          "tls.no_client_certificates: TCP callers are then anonymous)");
    }
    auto ca = ReadPem(tls.client_ca_file(), "client_ca_file");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  options.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  return grpc::SslServerCredentials(options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Broker>> Broker::Start(const v1::BrokerConfig& config, Clock* clock,
                                                      std::unique_ptr<PinBackend> backend) {
  if (config.listen().empty()) {
    return absl::InvalidArgumentError("no listen address: set listen in the config or --listen");
  }
  if (config.exports().empty()) {
    return absl::InvalidArgumentError("no exports: add one to the config or use --export");
  }
  // Before any request arrives: protobuf's complaint about a request's non-UTF-8 string is
  // answered to the client, not logged once per request.
  RouteProtobufLogs();
  std::unique_ptr<Broker> broker(new Broker());
  broker->clock_ = clock;
  std::string no_rdma = "the broker was started with a backend that has no RDMA";
  if (backend == nullptr) {
    auto made = MakeBackend(config);
    if (!made.ok()) return made.status();
    backend = std::move(made->backend);
    broker->host_ = made->host;
    broker->verbs_ = made->verbs;
    no_rdma = made->no_rdma;
  } else if (auto* host = dynamic_cast<HostBackend*>(backend.get())) {
    broker->host_ = host;
  } else if (auto* routing = dynamic_cast<RoutingBackend*>(backend.get())) {
    broker->host_ = dynamic_cast<HostBackend*>(routing->host());
  }
  broker->backend_ = std::move(backend);
  broker->ids_ = std::make_unique<LeaseIdCodec>(LeaseIdCodec::NewEpoch());

  auto exports = ExportsFromConfig(config);
  if (!exports.ok()) return exports.status();
  auto budget = PinnedBytesBudgetFromConfig(config);
  if (!budget.ok()) return budget.status();
  auto quotas = QuotaOptionsFromConfig(config, *budget);
  if (!quotas.ok()) return quotas.status();
  broker->quotas_ = std::make_unique<QuotaLedger>(*std::move(quotas));
  PinService::Options engine_options;
  engine_options.table.id_prefix = broker->ids_->epoch() + "-";
  engine_options.pinned_bytes_budget = *budget;
  auto engine =
      PinService::Create(clock, broker->backend_.get(), *std::move(exports), engine_options);
  if (!engine.ok()) return engine.status();
  broker->engine_ = *std::move(engine);

  auto guard_options = GuardOptionsFromConfig(config);
  if (!guard_options.ok()) return guard_options.status();
  if (guard_options->has_value()) {
    auto guard = guard::FileGuard::Start(broker->engine_.get(), **guard_options);
    if (!guard.ok()) return guard.status();
    broker->guard_ = *std::move(guard);
  } else {
    PB_LOG(WARNING) << "file guard disabled by configuration: truncates, hole punches, O_TRUNC "
                       "opens and unlinks that other processes make to leased files are not "
                       "caught";
  }

  broker->sessions_ = std::make_unique<SessionTable>(
      clock, broker->ids_->epoch(),
      Or(config.session_ttl(), config.has_session_ttl(), kDefaultSessionTtl),
      Or(config.max_session_ttl(), config.has_max_session_ttl(), kDefaultMaxSessionTtl),
      [raw = broker.get()](const std::string& session) {
        PB_LOG(INFO) << "session " << session
                     << " lapsed (no watch, no renewal); its leases end at their TTL";
        if (raw->verbs_ != nullptr) raw->verbs_->Disconnect(session, "its session lapsed");
      });
  absl::flat_hash_map<std::string, uid_t> root_owners;
  for (const Export* e : broker->engine_->exports()) {
    struct stat st;
    if (fstat(e->root_fd(), &st) == 0) root_owners[e->name()] = st.st_uid;
  }
  broker->authorizer_ = std::make_unique<Authorizer>(config, std::move(root_owners));
  auto layout_caps = LayoutCapsFromConfig(config);
  if (!layout_caps.ok()) return layout_caps.status();
  broker->service_ = std::make_unique<PinBrokerService>(
      broker->engine_.get(), broker->sessions_.get(), broker->ids_.get(), &broker->peers_,
      broker->authorizer_.get(),
      PinBrokerService::Info{std::string(GetBuildInfo().version), clock->Now(),
                             RdmaInfoOf(broker->verbs_), broker->verbs_ == nullptr ? no_rdma : "",
                             *std::move(layout_caps), broker->quotas_.get(), broker->host_});
  if (broker->verbs_ != nullptr) {
    // A connect request names a session and carries its token: the session is the owner.
    SessionTable* sessions = broker->sessions_.get();
    PinService* engine = broker->engine_.get();
    absl::Status listening = broker->verbs_->Start(
        [sessions](const std::string& session,
                   const std::string& token) -> absl::StatusOr<std::string> {
          auto renewed = sessions->Authenticate(session, token);
          if (!renewed.ok()) return renewed.status();
          return session;
        },
        [engine](std::vector<LeaseId> ids, std::string reason) {
          engine->RevokeLeases(ids, reason);
        });
    if (!listening.ok()) return listening;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<int>> ports;
  for (const std::string& address : config.listen()) {
    if (absl::Status s = PrepareListenAddress(address); !s.ok()) return s;
    ports.push_back(std::make_unique<int>(0));
    if (absl::StartsWith(address, "unix:")) {
      // Bound and listening now (mode and group applied before listen); connections are
      // accepted once the server runs.
      auto options = UnixListenOptionsFor(address, config);
      if (!options.ok()) return options.status();
      auto listener = UnixListener::Bind(*std::move(options));
      if (!listener.ok()) return listener.status();
      broker->unix_listeners_.push_back(*std::move(listener));
      continue;
    }
    auto credentials = TcpCredentialsFor(address, config);
    if (!credentials.ok()) return credentials.status();
    builder.AddListeningPort(address, *credentials, ports.back().get());
  }
  {
    absl::flat_hash_map<std::string, uid_t> principal_uids;
    for (const auto& [principal, uid] : config.tls().principal_uids()) {
      principal_uids[principal] = static_cast<uid_t>(uid);
    }
    broker->peers_.MapPrincipals(std::move(principal_uids));
  }
  // Watch streams are long-lived: let clients keep them alive with pings every 10 s or more.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.RegisterService(broker->service_.get());
  broker->server_ = builder.BuildAndStart();
  if (broker->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("could not start the gRPC server on ",
                                               absl::StrJoin(config.listen(), ", "),
                                               " (address in use, or no permission to bind)"));
  }
  for (const auto& listener : broker->unix_listeners_) {
    listener->Start(broker->server_.get(), &broker->peers_);
  }
  for (int i = 0; i < config.listen_size(); ++i) {
    const std::string& address = config.listen(i);
    if (absl::StartsWith(address, "unix")) {
      broker->addresses_.push_back(address);
    } else {
      const size_t colon = address.rfind(':');
      broker->addresses_.push_back(absl::StrCat(address.substr(0, colon), ":", *ports[i]));
    }
  }
  auto* health = broker->server_->GetHealthCheckService();
  health->SetServingStatus(kServiceName, true);
  health->SetServingStatus("", true);
  PB_LOG(INFO) << VersionLine("pinbroker") << " epoch " << broker->epoch() << " serving on "
               << absl::StrJoin(broker->addresses_, ", ") << " with backend "
               << broker->backend_->name()
               << (broker->verbs_ != nullptr
                       ? absl::StrCat(" (RDMA pins; host pins on host; RDMA endpoints ",
                                      broker->verbs_->DescribeEndpoints(), ")")
                       : "");
  return broker;
}

size_t Broker::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return 0;
  shut_down_ = true;
  PB_LOG(INFO) << "shutting down: recalling every lease with " << absl::FormatDuration(grace)
               << " grace";
  auto* health = server_->GetHealthCheckService();
  health->SetServingStatus(kServiceName, false);
  health->SetServingStatus("", false);
  service_->StopAccepting();
  for (const auto& listener : unix_listeners_) listener->Stop();
  const size_t revoked = engine_->RecallAll("broker shutting down", grace);
  // Every lease has ended: the guard answers anything still held and lets go of the files.
  if (guard_ != nullptr) guard_->Stop();
  // Every lease has ended: close the RDMA connections (windows before queue pairs) and the
  // rdma_cm listener.
  if (verbs_ != nullptr) verbs_->Shutdown();
  service_->CloseAllWatches();
  // Streams finish once their last events are written: wait for them (at most 2 s), then give
  // the calls still finishing half a second and cut. gRPC would also wait for every idle
  // connection until the deadline (a client with no call open answers the server's GOAWAY
  // only when it next polls), so the deadline is short once the streams are done.
  if (!service_->AwaitWatchesDone(absl::Seconds(2))) {
    PB_LOG(WARNING) << "shutting down: some Watch streams did not finish within 2 s; cutting them";
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server_->Wait();
  PB_LOG(INFO) << "shut down; " << revoked << " leases were revoked after the grace period";
  return revoked;
}

Broker::~Broker() {
  Shutdown(absl::ZeroDuration());
  // Also when Start() failed half-way: the rdma_cm thread calls into the sessions and engine.
  if (verbs_ != nullptr) verbs_->Shutdown();
  // Order: nothing may call into the service, sessions or engine once the server is gone.
  for (const auto& listener : unix_listeners_) listener->Stop();
  server_.reset();
  unix_listeners_.clear();
  service_.reset();
  sessions_.reset();
  guard_.reset();
  engine_.reset();
}

}  // namespace pinbroker::broker
