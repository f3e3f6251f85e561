// pinbroker C++ client library: a session with a broker, leases that renew themselves, and
// callbacks for recalls and revocations.
//
//   auto client = pinbroker::client::Client::Connect("unix:/run/pinbroker/pinbroker.sock",
//                                                   {.client_name = "db-writer-7"});
//   pinbroker::client::PinOptions pin;
//   pin.export_name = "default";
//   pin.path = "data/table.db";
//   pin.length = 1 << 20;
//   pin.access = pinbroker::v1::ACCESS_READ_WRITE;
//   pin.on_recall = [](Lease& lease, absl::string_view reason, absl::Time deadline) {
//     StopDmaOn(lease.range());
//     lease.Release().IgnoreError();
//   };
//   auto lease = (*client)->Pin(pin);        // renewed in the background until released
//   ...
//   (*lease)->Release();                     // or let the Lease go out of scope
//
// What the library does for you:
//   - Connect() opens a gRPC channel (HTTP/2 keepalive pings every 30 s by default, never more
//     often than every 10 s, which is what the broker permits), opens a session and keeps it
//     alive with a Watch stream. The stream also delivers the session's lease events.
//   - If the stream breaks, it is reopened (after reconnect_backoff_min, then with exponential
//     backoff; wait-for-ready, so an unreachable broker is waited for) and the fresh snapshot
//     is reconciled with the leases the client holds: a lease missing from it ended while the
//     stream was down (reported as REVOKED), a lease shown as RECALLING is recalled.
//   - The session is lost when the broker answers UNAUTHENTICATED (it restarted, or the session
//     lapsed), or when no Watch stream or authenticated call reached the broker for longer than
//     the session TTL. Then every held lease becomes kLost (on_revoked runs for it), then
//     ClientOptions::on_session_lost runs, and every later call fails with UNAUTHENTICATED. The
//     library does not open a new session by itself: make a new Client.
//   - Leases are renewed in the background at `renew_fraction` (default 1/2) of their TTL, by
//     their own TTL. A recalled lease is never renewed (the broker would refuse).
//   - RECALLED runs PinOptions::on_recall. The library releases the lease itself only if
//     PinOptions::release_on_recall is set (after on_recall returns). REVOKED and EXPIRED run
//     on_revoked and move Lease::state() to kRevoked / kExpired; operations on such a lease fail
//     with NOT_FOUND naming the lease and saying what happened to it.
//
// The library logs what it cannot return (a failed background renewal, a broken stream); route
// or silence it with pinbroker::SetLogSink() (pinbroker/log_sink.h).
//
// Errors are absl::Status with the broker's codes (see api/pinbroker/v1/pinbroker.proto):
// OUT_OF_RANGE, PERMISSION_DENIED, NOT_FOUND, ... pass through unchanged with the broker's
// message. Errors made by the library itself use the same vocabulary: NOT_FOUND for a lease
// that has ended, FAILED_PRECONDITION for a recalling lease's Renew() or a closed client,
// UNAUTHENTICATED once the session is lost, INVALID_ARGUMENT for bad options.
//
// Threading model and thread-safety:
//   - Client and Lease are thread-safe: any method may be called from any thread, concurrently.
//     RPCs are synchronous and run on the calling thread.
//   - The library runs two threads per Client, plus gRPC's own (and, for clients on the default
//     clock, the process's one RealClock timer thread, which the library never schedules on):
//       * the callback thread runs every user callback (on_recall, on_revoked, on_session_lost),
//         one at a time, in the order the events happened, and never while a library lock is
//         held. Callbacks may call back into the Client and the Lease (Release(), Pin(), ...).
//         A slow callback delays the callbacks after it, but never renewals;
//       * the maintenance thread renews leases, reopens the Watch stream and notices a lapsed
//         session. It never runs user code.
//     The Watch stream itself is a gRPC callback-API reactor (grpc::ClientReadReactor): it only
//     records events under the client's lock and hands callbacks to the callback thread.
//   - ~Lease waits for a callback of that lease that is running on the callback thread to
//     return (unless it is called from that callback: a callback may destroy its own Lease, and
//     must not touch the reference afterwards). No callback of a lease starts after ~Lease.
//   - ~Client closes the session (the broker releases every lease it still holds), stops the
//     threads and drops callbacks not yet started; it waits for a running one. A Lease may
//     outlive its Client: it then reports kReleased (or kLost if the broker could not be
//     reached) and its operations fail. ~Client may be called from a callback.
//   - A Client must not be destroyed while another thread is still calling it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinbroker/channel_security.h"
#include "pinbroker/clock.h"
#include "pinbroker/log_sink.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinbroker::client {

namespace v1 = ::pinbroker::v1;

namespace internal {
class Core;
}  // namespace internal

class Lease;

// A lease as this client sees it. kLost: the session is gone (or the client closed without
// reaching the broker); the broker ends the lease at its TTL, and this client can no longer
// renew or release it. Stop I/O on it as for kRevoked.
enum class LeaseState { kGranted, kRecalling, kReleased, kRevoked, kExpired, kLost };
absl::string_view LeaseStateName(LeaseState state);
inline bool IsLive(LeaseState s) {
  return s == LeaseState::kGranted || s == LeaseState::kRecalling;
}

// Bytes of a file.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct ClientOptions {
  // Free text for the broker's logs and listings ("db-writer-7"); also the default initiator
  // of layout changes.
  std::string client_name;
  // How long the broker keeps the session without a Watch stream; zero: the broker's default.
  absl::Duration session_ttl = absl::ZeroDuration();
  // Deadline of each unary RPC, except Truncate and PunchHole (bounded by the broker's layout
  // timeout instead) and Pin, which adds its wait_if_blocked.
  absl::Duration rpc_timeout = absl::Seconds(30);
  // HTTP/2 keepalive pings; the broker rejects intervals under 10 s.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Renew each lease after this fraction of its TTL; in (0, 1).
  double renew_fraction = 0.5;
  // Backoff between attempts to reopen the Watch stream (also gRPC's reconnect backoff).
  absl::Duration reconnect_backoff_min = absl::Milliseconds(100);
  absl::Duration reconnect_backoff_max = absl::Seconds(5);
  // How long one connection attempt (connect plus the HTTP/2 handshake) may take before gRPC
  // gives up on it. Slow machines (a TCG-emulated VM) need well over 100 ms.
  absl::Duration connect_timeout = absl::Seconds(20);
  // TLS for a "host:port" endpoint (pinbroker/channel_security.h): the broker's CA, this client's
  // certificate and key (PEM files), and the name the broker's certificate carries if not the
  // endpoint's host. Empty: plaintext, which only a broker with insecure_tcp accepts. Must be
  // empty for "unix:" endpoints (the broker knows those callers by their kernel credentials).
  TlsClientFiles tls;
  // Runs (on the callback thread) once, when the session is lost, with the reason
  // (UNAUTHENTICATED). Every held lease has already been reported through on_revoked.
  std::function<void(const absl::Status& why)> on_session_lost;
  // The library's source of time: every "now" (renewal times, local lease lapse, the session
  // deadline, reconnect backoff) and every timed wait of its threads. Null: the real clock (one
  // RealClock shared by the process). Tests pass a SimulatedClock, shared with an in-process
  // broker, and move time with Advance(); it must outlive the Client. RPC deadlines
  // (rpc_timeout) are not on this clock: they are relative, measured by gRPC's transport.
  pinbroker::Clock* clock = nullptr;
};

struct PinOptions {
  std::string export_name;
  std::string path;  // Relative to the export root.
  uint64_t offset = 0;
  uint64_t length = 0;  // The lease holds the whole pages covering [offset, offset + length).
  v1::Access access = v1::ACCESS_READ;
  absl::Duration ttl = absl::ZeroDuration();  // Zero: the export's default; capped at its max.
  // Zero: fail with ABORTED at once if a layout change blocks the range; else wait this long.
  absl::Duration wait_if_blocked = absl::ZeroDuration();
  // Ask for RDMA access (PinRequest.rdma): the lease carries a memory window's rkey in
  // info().rdma(), valid only on this session's attached RDMA connection. Normally set by
  // RdmaLease::Pin (pinbroker/rdma_lease.h), which attaches and checks the grant.
  bool rdma = false;
  // Release the lease as soon as it is recalled (after on_recall, if any, has returned).
  bool release_on_recall = false;
  // The broker recalls the lease: stop I/O on it and release it before `deadline`
  // (InfiniteFuture if the broker did not say). Runs on the callback thread.
  std::function<void(Lease& lease, absl::string_view reason, absl::Time deadline)> on_recall;
  // The lease is gone (revoked, expired, or lost with the session); Lease::state() says which.
  // Runs on the callback thread.
  std::function<void(Lease& lease, absl::string_view reason)> on_revoked;
};

// Options of a truncate or punch hole. Unset: the export's defaults.
struct LayoutOptions {
  v1::LayoutPolicy policy = v1::LAYOUT_POLICY_UNSPECIFIED;
  std::optional<absl::Duration> grace;
  std::optional<absl::Duration> timeout;
  std::string initiator;  // Empty: ClientOptions::client_name.
};

// A lease held by this client. Renewed in the background while granted; released by Release()
// or by the destructor.
class Lease {
 public:
  // Releases the lease if it is still held (errors are logged). See the header comment for how
  // it synchronizes with a running callback of this lease.
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // "<epoch>-<sequence>", as the broker names it.
  const std::string& id() const { return id_; }
  const std::string& export_name() const { return export_name_; }
  const std::string& path() const { return path_; }
  // The page-aligned bytes actually held.
  ByteRange range() const { return range_; }
  v1::Access access() const { return access_; }
  v1::RegistrationMode mode() const { return mode_; }
  absl::Time granted_at() const { return granted_at_; }

  // When the broker will expire the lease unless renewed; moves forward with each renewal.
  absl::Time expires_at() const;
  LeaseState state() const;
  // Why it is recalling, or how it ended; empty while granted.
  std::string reason() const;
  // Set while recalling (InfiniteFuture otherwise or if unknown).
  absl::Time recall_deadline() const;
  // The broker's latest view of the lease (file id, RDMA access, ...).
  v1::Lease info() const;

  // Gives the lease back. NOT_FOUND naming the lease if it has already ended (released,
  // revoked, expired); UNAUTHENTICATED if the session is lost; the broker's errors otherwise.
  absl::Status Release();
  // Renews the lease now, by its TTL (the background renewal does this by itself).
  // FAILED_PRECONDITION while recalling; otherwise as Release().
  absl::Status Renew();

 private:
  friend class internal::Core;
  Lease(std::shared_ptr<internal::Core> core, const v1::Lease& granted);

  const std::shared_ptr<internal::Core> core_;
  const std::string id_;
  const std::string export_name_;
  const std::string path_;
  const ByteRange range_;
  const v1::Access access_;
  const v1::RegistrationMode mode_;
  const absl::Time granted_at_;
};

class Client {
 public:
  // Connects to `endpoint` ("unix:/path/to.sock", "host:port"), opens a session, opens its
  // Watch stream and waits for the stream's first snapshot. INVALID_ARGUMENT for bad options;
  // the broker's or the transport's error (e.g. UNAVAILABLE) otherwise.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(std::string endpoint,
                                                         ClientOptions options);
  // Closes the session (see Close()) and stops the library's threads.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Pins [offset, offset + length) of a file and returns the lease. The broker's errors:
  // INVALID_ARGUMENT, NOT_FOUND (export or file), OUT_OF_RANGE, PERMISSION_DENIED, ABORTED
  // (a layout change is in the way: retry), RESOURCE_EXHAUSTED, UNAVAILABLE.
  absl::StatusOr<std::unique_ptr<Lease>> Pin(const PinOptions& options);

  // Releases a lease of this session by id (for example one found with ListLeases()). A
  // foreign or ended lease is NOT_FOUND. A Lease handle for it, if any, reports kReleased.
  absl::Status ReleaseLeaseId(absl::string_view lease_id);

  // Thin wrappers over the RPCs of the same name.
  absl::StatusOr<v1::ListLeasesResponse> ListLeases(const v1::ListLeasesRequest& filter = {});
  absl::StatusOr<v1::DescribeFileResponse> DescribeFile(absl::string_view export_name,
                                                        absl::string_view path);
  absl::StatusOr<v1::LayoutChangeResponse> Truncate(absl::string_view export_name,
                                                    absl::string_view path, uint64_t new_size,
                                                    const LayoutOptions& options = {});
  absl::StatusOr<v1::LayoutChangeResponse> PunchHole(absl::string_view export_name,
                                                     absl::string_view path, uint64_t offset,
                                                     uint64_t length,
                                                     const LayoutOptions& options = {});
  absl::StatusOr<v1::GetInfoResponse> GetInfo();

  // Closes the session now: the broker releases every lease it still holds (their Lease
  // handles report kReleased). Later calls fail with FAILED_PRECONDITION. Idempotent; returns
  // CloseSession's status the first time (OK if the session was already lost).
  absl::Status Close();

  const std::string& session_id() const { return session_id_; }
  const std::string& broker_epoch() const { return broker_epoch_; }
  // The session's id and token, for attaching an RDMA connection to it
  // (pinbroker/rdma_connection.h). The token is a secret: never log or print it.
  v1::SessionCredentials credentials() const;
  // OK while the session is alive; why it was lost afterwards (UNAUTHENTICATED).
  absl::Status session_status() const;
  // Whether the Watch stream is open and has delivered its snapshot; how many times it had to
  // be reopened. For monitoring and tests.
  bool watching() const;
  uint64_t watch_reconnects() const;

 private:
  Client(std::shared_ptr<internal::Core> core, std::string session_id, std::string epoch);

  const std::shared_ptr<internal::Core> core_;
  const std::string session_id_;
  const std::string broker_epoch_;
};

}  // namespace pinbroker::client
