// ConnectionManager: the broker's rdma_cm listener and the RDMA connections clients attach to
// their sessions (see include/pinbroker/rdma_wire.h for the handshake).
//
// One listener (the configured address, or 0.0.0.0, and port) and one event thread. The thread
// handles, in order of arrival:
//   * connect requests: parse the AttachRequest, authenticate it (the injected Authenticator,
//     backed by the session table), refuse a second connection per session, create the
//     connection's completion queue and queue pair on the device's protection domain, accept
//     (the queue pair is then ready to bind windows) - or reject with an AttachReject saying why;
//   * ESTABLISHED: logged;
//   * DISCONNECTED, connection errors, fatal queue-pair/CQ/device async events (each device's
//     ibv_get_async_event), broken posts and Disconnect() requests: teardown. After a queue
//     pair's own async event, teardown waits (at most 200 ms) for the device to move it to the
//     error state itself, so that the device's answer to the failed request (the remote access
//     error a client's write to a revoked window must get) is not overtaken by the disconnect.
// Teardown always deallocates the connection's windows before destroying its queue pair (a
// bound type-2 window makes rxe's queue-pair destruction hang for ~50 s), then destroys the
// rest, then - with no lock held - calls the ClosedCallback with the leases that lost access.
//
// Thread-safety: Find/Disconnect/accessors are safe from any thread; Shutdown (also run by the
// destructor) from one thread, not the event thread.
#pragma once

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/verbs/fd_events.h"
#include "pinning/lease.h"
#include "pinning/rdma/connection.h"
#include "pinning/rdma/verbs_device.h"

namespace pinbroker::rdma {

// Where clients attach: a device, one of its IPv4 addresses, the port.
struct Endpoint {
  std::string device;
  std::string address;
  uint16_t port = 0;
};

class ConnectionManager {
 public:
  // The session a connect request names, if its token (lowercase hex) is right: returns the
  // owner its leases are held by. Errors are sent back to the client in the reject.
  using Authenticator = std::function<absl::StatusOr<std::string>(const std::string& session_id,
                                                                  const std::string& token_hex)>;
  // A connection is gone: `lost` are the leases whose windows (or per-lease regions) went with
  // it. Called on the event thread (or Shutdown's) with no lock held.
  using ClosedCallback = std::function<void(const std::string& owner, std::vector<LeaseId> lost,
                                            const std::string& reason)>;

  struct Options {
    std::string address;  // Empty: 0.0.0.0, every device.
    uint16_t port = 0;    // 0: rdma_wire::kDefaultPort.
  };

  // Binds and listens. With an address, only the device it belongs to is used (NOT_FOUND if that
  // is not among `devices`). Errors name the rdma_cm call that failed.
  static absl::StatusOr<std::unique_ptr<ConnectionManager>> Listen(
      std::vector<VerbsDevice*> devices, Options options, Authenticator authenticate,
      ClosedCallback on_closed);
  ~ConnectionManager();
  ConnectionManager(const ConnectionManager&) = delete;
  ConnectionManager& operator=(const ConnectionManager&) = delete;

  // Stops the event thread, tears every connection down (windows first, telling the
  // ClosedCallback), and closes the listener. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // The connection attached for `owner`, or nullptr.
  std::shared_ptr<Connection> Find(absl::string_view owner) const ABSL_LOCKS_EXCLUDED(mu_);
  // Tears down `owner`'s connection (if any) on the event thread, e.g. when its session ends.
  void Disconnect(absl::string_view owner, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);

  size_t connection_count() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::vector<VerbsDevice*>& devices() const { return devices_; }
  const std::vector<Endpoint>& endpoints() const { return endpoints_; }
  // "rxe0 10.77.0.1:7471, rxe1 10.77.0.2:7471" for messages.
  std::string DescribeEndpoints() const;

 private:
  ConnectionManager(Authenticator authenticate, ClosedCallback on_closed)
      : authenticate_(std::move(authenticate)), on_closed_(std::move(on_closed)) {}

  void Run();
  void HandleCmEvent(rdma_cm_event* event);
  // Accepts or rejects; returns true if `id` was handed to a connection (else destroy it).
  bool OnConnectRequest(rdma_cm_id* id, const void* data, size_t length,
                        const rdma_conn_param& requested);
  void HandleAsyncEvents(VerbsDevice* device);
  void RequestTeardown(Connection* conn, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);
  // Unregisters `conn`, closes it (windows first), disconnects (unless the peer did), destroys
  // it, and tells on_closed_.
  void Teardown(std::shared_ptr<Connection> conn, const std::string& reason, bool disconnect)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<Connection> ByIdLocked(rdma_cm_id* id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Connection> ByQpLocked(uint32_t qp_num) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  VerbsDevice* DeviceFor(ibv_context* context) const;
  void Wake();

  const Authenticator authenticate_;
  const ClosedCallback on_closed_;
  std::vector<VerbsDevice*> devices_;
  std::vector<Endpoint> endpoints_;
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* listener_ = nullptr;
  verbs::WakeFd wake_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::shared_ptr<Connection>> by_owner_ ABSL_GUARDED_BY(mu_);
  struct TeardownRequest {
    std::shared_ptr<Connection> conn;
    std::string reason;
  };
  std::vector<TeardownRequest> teardowns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::rdma
