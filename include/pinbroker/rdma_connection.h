// pinbroker RDMA client, part 1: the connection. An RdmaConnection is one reliable-connected
// queue pair to pinbrokerd (rdma_cm over RoCE or InfiniBand), attached to a gRPC session of
// the broker. The broker binds the memory windows of that session's RDMA leases on its end of
// exactly this connection, so a lease's rkey works here and nowhere else (see
// pinbroker/rdma_wire.h for the handshake, rdma_lease.h for the leases).
//
//   auto client = pinbroker::client::Client::Connect(endpoint, {.client_name = "writer"});
//   pinbroker::client::RdmaConnectOptions rdma;
//   rdma.source_address = "10.77.0.2";    // optional: picks the local RDMA device
//   auto connection = pinbroker::client::RdmaConnection::Connect(**client, rdma);
//   auto buffer = (*connection)->AllocateBuffer(1 << 20);   // page-aligned, registered
//
// What it does:
//   - Connect() finds the broker's RDMA endpoint (GetInfo's rdma_endpoints, unless an address
//     is given), resolves the address and route (binding `source_address` if set), creates
//     its own protection domain, completion channel + CQ and RC queue pair, and connects with
//     the session's AttachRequest as private data. A REJECTED answer becomes the broker's
//     reason: UNAUTHENTICATED (unknown session or wrong token), ALREADY_EXISTS (the session
//     already has a connection), UNAVAILABLE (broker shutting down or out of resources, or
//     nothing listening), INVALID_ARGUMENT (malformed request).
//   - LocalBuffer: page-aligned anonymous memory registered LOCAL_WRITE on the connection's
//     protection domain (rxe's on-demand paging needs page-aligned scatter/gather entries).
//   - An event thread reaps completions (operations are always signaled) and connection events.
//   - Broken: any error completion leaves an RC queue pair in the error state. The connection
//     records the first cause, disconnects (flushing what is in flight) and every later
//     operation fails with UNAVAILABLE naming that cause. The broker revokes the RDMA leases of
//     a connection that goes away; make a new connection (and new leases) to continue.
//   - Close() (and the destructor) stop new operations, wait for those in flight (flushing them
//     after `drain_timeout`), disconnect, and destroy the queue pair only then.
//
// Thread-safety: RdmaConnection, LocalBuffer and PendingOp are thread-safe: any method may be
// called from any thread (the bytes of a LocalBuffer are the caller's to synchronize with its
// own operations). Buffers and pending operations may outlive the RdmaConnection (operations
// on them then fail): they keep the protection domain and their registration alive. A
// pending operation keeps its buffer registered until it completes, so memory is never freed
// under the device. User code never runs on the library's event thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pinbroker/client.h"

namespace pinbroker::client {

namespace rdma_internal {
class BufferImpl;
class ConnectionCore;
class OpRecord;
}  // namespace rdma_internal

struct RdmaConnectOptions {
  // The broker's RDMA address. Empty: the first of GetInfo().rdma_endpoints (the one of
  // `broker_device` if set). Connect(credentials, ...) needs it.
  std::string address;
  uint16_t port = 0;          // 0: the endpoint's port, else rdma_wire::kDefaultPort (7471).
  std::string broker_device;  // With an empty address: the broker's device to attach to.
  // Local IP address to bind, which picks the local RDMA device (e.g. rxe1's 10.77.0.2).
  // Empty: whatever the route to the broker's address uses.
  std::string source_address;
  absl::Duration connect_timeout = absl::Seconds(10);
  // Bound of a synchronous operation's completion wait (and PendingOp::Wait's default). An
  // operation that exceeds it breaks the connection: that is the only way to make sure the
  // device no longer touches its buffer.
  absl::Duration op_timeout = absl::Seconds(30);
  // How long Close() waits for operations in flight before flushing them.
  absl::Duration drain_timeout = absl::Seconds(10);
  uint32_t send_queue_depth = 128;  // Operations in flight at once; capped by the device.
};

// Registered local memory for RDMA operations. Copyable handle (copies share the memory).
class LocalBuffer {
 public:
  LocalBuffer() = default;  // Empty; operations on it fail.
  uint8_t* data() const;
  size_t size() const;  // As asked; the registration covers whole pages.
  bool empty() const { return impl_ == nullptr; }

 private:
  friend class RdmaConnection;
  friend class RdmaLease;
  explicit LocalBuffer(std::shared_ptr<rdma_internal::BufferImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<rdma_internal::BufferImpl> impl_;
};

// An operation posted with RdmaLease::Start*(). Copyable handle.
class PendingOp {
 public:
  PendingOp() = default;
  bool done() const;
  // Waits for the completion and returns its status (see rdma_lease.h for the codes). Zero
  // timeout: the connection's op_timeout. If the timeout passes first, the connection is broken
  // (flushing the operation) and DEADLINE_EXCEEDED naming the lease is returned once the
  // device has let go of the buffer.
  absl::Status Wait(absl::Duration timeout = absl::ZeroDuration()) const;
  // FETCH_AND_ADD / COMPARE_SWAP: the remote value before the operation (valid after an OK
  // Wait()).
  uint64_t atomic_result() const;

 private:
  friend class RdmaLease;
  PendingOp(std::shared_ptr<rdma_internal::OpRecord> record,
            std::shared_ptr<rdma_internal::ConnectionCore> core, absl::Duration op_timeout)
      : record_(std::move(record)), core_(std::move(core)), op_timeout_(op_timeout) {}
  std::shared_ptr<rdma_internal::OpRecord> record_;
  std::shared_ptr<rdma_internal::ConnectionCore> core_;
  absl::Duration op_timeout_;
};

class RdmaConnection {
 public:
  // Attaches a connection to `client`'s session. FAILED_PRECONDITION if the broker offers no
  // RDMA endpoint or there is no RDMA device here; the attach rejections above; UNAVAILABLE or
  // DEADLINE_EXCEEDED when the broker cannot be reached.
  static absl::StatusOr<std::unique_ptr<RdmaConnection>> Connect(Client& client,
                                                                 RdmaConnectOptions options);
  // The same for a session opened elsewhere (options.address is required).
  static absl::StatusOr<std::unique_ptr<RdmaConnection>> Connect(
      const v1::SessionCredentials& credentials, RdmaConnectOptions options);
  // Close().
  ~RdmaConnection();
  RdmaConnection(const RdmaConnection&) = delete;
  RdmaConnection& operator=(const RdmaConnection&) = delete;

  // Page-aligned registered memory of at least `size` bytes, zero-filled.
  absl::StatusOr<LocalBuffer> AllocateBuffer(size_t size);

  // OK while usable; UNAVAILABLE naming the first cause once broken; FAILED_PRECONDITION once
  // closed.
  absl::Status status() const;
  // Operations in flight on this connection.
  size_t in_flight() const;
  // See the header comment. Idempotent; OK if everything drained, DEADLINE_EXCEEDED if
  // operations had to be flushed.
  absl::Status Close();

  const std::string& session_id() const { return session_id_; }
  const std::string& device() const;         // The local RDMA device ("rxe1").
  const std::string& local_address() const;  // "10.77.0.2:41234"
  const std::string& peer() const;           // "10.77.0.1:7471"
  uint32_t path_mtu() const;                 // Bytes; 0 if unknown.
  uint64_t max_message() const;              // The device's largest message, in bytes.
  const RdmaConnectOptions& options() const { return options_; }

 private:
  friend class RdmaLease;
  RdmaConnection(std::shared_ptr<rdma_internal::ConnectionCore> core, std::string session_id,
                 RdmaConnectOptions options);

  const std::shared_ptr<rdma_internal::ConnectionCore> core_;
  const std::string session_id_;
  const RdmaConnectOptions options_;
};

}  // namespace pinbroker::client
