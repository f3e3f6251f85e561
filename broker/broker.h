// Broker: a running pinbroker: the engine (PinService), sessions, and a gRPC server with the
// PinBroker service, the standard health service and server reflection. pinbrokerd's main() and
// the in-process tests both start one.
//
// Health: the service "pinbroker.v1.PinBroker" (and "") is SERVING once exports and backend
// are ready, NOT_SERVING from the start of shutdown.
//
// Thread-safety: Start/Shutdown/destructor from one thread; accessors are safe to call
// concurrently with gRPC traffic.
#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/lease_id_codec.h"
#include "broker/peer_identity.h"
#include "broker/pin_broker_service.h"
#include "broker/session_table.h"
#include "broker/unix_listener.h"
#include "pinbroker/clock.h"
#include "pinbroker/v1/config.pb.h"
#include "pinning/guard/file_guard.h"
#include "pinning/host_backend.h"
#include "pinning/pin_backend.h"
#include "pinning/pin_service.h"
#include "pinning/quota.h"

namespace pinbroker::rdma {
class VerbsBackend;
}  // namespace pinbroker::rdma

namespace pinbroker::broker {

class Broker {
 public:
  // Opens the exports, picks the backend (`backend` if given, else by config.backend(): RDMA
  // pins to the verbs backend when a usable RDMA device exists, every other pin to the host
  // backend), binds every listen address (and the rdma_cm listener) and starts serving. Errors
  // name what failed: a bad export, an address in use, a backend that is not available.
  static absl::StatusOr<std::unique_ptr<Broker>> Start(
      const v1::BrokerConfig& config, Clock* clock, std::unique_ptr<PinBackend> backend = nullptr);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Addresses as a client dials them ("unix:/run/pinbroker/pinbroker.sock", "127.0.0.1:41234").
  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::string& epoch() const { return ids_->epoch(); }
  PinService& engine() { return *engine_; }
  const PinBackend& backend() const { return *backend_; }
  // The host backend inside backend(), or nullptr when the broker was given a backend without
  // one.
  const HostBackend* host_backend() const { return host_; }
  // The RDMA backend inside backend(), or nullptr when RDMA pins are not served.
  rdma::VerbsBackend* verbs() const { return verbs_; }
  SessionTable& sessions() { return *sessions_; }
  QuotaLedger& quotas() { return *quotas_; }
  // The file guard (docs/GUARD.md), or nullptr when the configuration disables it.
  guard::FileGuard* file_guard() const { return guard_.get(); }

  // Graceful shutdown: NOT_SERVING; new pins, sessions and watches get UNAVAILABLE; every lease
  // is recalled with `grace`, the rest revoked; RDMA connections are torn down (windows before
  // queue pairs) and the rdma_cm listener closed; watch streams deliver those events and close;
  // the server stops. Idempotent. Returns how many leases had to be revoked.
  size_t Shutdown(absl::Duration grace);

 private:
  Broker() = default;

  Clock* clock_ = nullptr;
  std::unique_ptr<PinBackend> backend_;
  HostBackend* host_ = nullptr;          // Inside backend_, if it has one.
  rdma::VerbsBackend* verbs_ = nullptr;  // Inside backend_, if RDMA is served.
  std::unique_ptr<LeaseIdCodec> ids_;
  std::unique_ptr<QuotaLedger> quotas_;  // Accounts outlive it through their holds.
  std::unique_ptr<PinService> engine_;
  std::unique_ptr<guard::FileGuard> guard_;  // Before engine_ in destruction order.
  std::unique_ptr<SessionTable> sessions_;
  PeerRegistry peers_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<PinBrokerService> service_;
  std::unique_ptr<grpc::Server> server_;
  // Unix sockets are the broker's own (peer credentials); they hand connections to server_.
  std::vector<std::unique_ptr<UnixListener>> unix_listeners_;
  std::vector<std::string> addresses_;
  bool shut_down_ = false;
};

}  // namespace pinbroker::broker
