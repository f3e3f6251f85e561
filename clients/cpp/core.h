// internal::Core: the state a Client shares with its Leases and its Watch stream: the session,
// the table of leases, the maintenance thread, and the callback thread (CallbackExecutor) it
// posts user callbacks to (see client.h for the threading model). Not part of the public API.
//
// Thread-safety: every method is safe to call concurrently. All mutable state is guarded by
// one mutex, `mu_`, which is never held while calling gRPC (RPCs, StartCall, TryCancel) or user
// code, and never while destroying user callbacks. Lock order: Core::mu_, then the
// CallbackExecutor's lock (callbacks are posted under mu_); gRPC and user code are only called
// without either.
#pragma once

#include <grpcpp/channel.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/time_convert.h"
#include "clients/cpp/callback_executor.h"
#include "clients/cpp/lease_state.h"
#include "clients/cpp/rpc.h"
#include "pinbroker/clock.h"
#include "pinbroker/client.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker::client::internal {

class WatchReactor;

// What a Lease handle reads about its lease.
struct LeaseView {
  LeaseState state = LeaseState::kGranted;
  std::string reason;
  absl::Time expires_at;
  absl::Time recall_deadline = absl::InfiniteFuture();
  v1::Lease info;
};

class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(std::shared_ptr<grpc::Channel> channel, ClientOptions options);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // Connect(), step 1: OpenSession. Step 2: start the threads and wait (bounded by
  // rpc_timeout) until the Watch stream has delivered its first snapshot.
  absl::Status OpenSession() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& session_id() const { return session_id_; }
  const std::string& broker_epoch() const { return broker_epoch_; }
  v1::SessionCredentials credentials() const { return Credentials(); }

  // --- Client ---
  absl::StatusOr<std::unique_ptr<Lease>> Pin(const PinOptions& options) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status ReleaseLeaseId(absl::string_view lease_id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListLeasesResponse> ListLeases(const v1::ListLeasesRequest& request);
  absl::StatusOr<v1::DescribeFileResponse> DescribeFile(const v1::DescribeFileRequest& request);
  absl::StatusOr<v1::LayoutChangeResponse> Truncate(v1::TruncateRequest request);
  absl::StatusOr<v1::LayoutChangeResponse> PunchHole(v1::PunchHoleRequest request);
  absl::StatusOr<v1::GetInfoResponse> GetInfo();
  void FillLayoutOptions(const LayoutOptions& in, v1::LayoutOptions* out) const;
  absl::Status Close() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status session_status() const ABSL_LOCKS_EXCLUDED(mu_);
  bool watching() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t watch_reconnects() const ABSL_LOCKS_EXCLUDED(mu_);

  // --- Lease ---
  LeaseView View(const std::string& id) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Release(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Renew(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // ~Lease: no more callbacks, wait for a running one, release if still held, forget it.
  void Forget(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);

  // --- WatchReactor ---
  void OnWatchEvent(uint64_t generation, const v1::WatchEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void OnWatchDone(uint64_t generation, const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // OnWatchDone's bookkeeping; returns the finished reactor for the caller to drop unlocked.
  std::shared_ptr<WatchReactor> HandleWatchDoneLocked(uint64_t generation,
                                                      const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void MaintenanceLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void RunRenew(const RenewJob& job) ABSL_LOCKS_EXCLUDED(mu_);
  // Applies the answer to a renewal (background or Lease::Renew()) to the lease's slot.
  void RenewDoneLocked(const std::string& id, const absl::Status& status,
                       const v1::RenewResponse& response, bool background)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // release_on_recall: releases lease `id` if it is still held and recalling.
  void ReleaseIfRecalling(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // When the maintenance thread has something to do next.
  absl::Time NextWakeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // OK if RPCs on the session may be made; the loss or closed error otherwise.
  absl::Status UsableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The error for an operation on a lease that is no longer live.
  absl::Status EndedErrorLocked(const std::string& id, const LeaseSlot& slot) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bookkeeping after every authenticated RPC: keeps the session deadline, and loses the
  // session on UNAUTHENTICATED.
  void AfterAuthenticatedRpcLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One unary RPC on this client's stub (clients/cpp/rpc.h).
  template <typename Request, typename Response>
  absl::Status Call(UnaryMethod<Request, Response> method, const Request& request,
                    Response* response, absl::Duration timeout) const {
    return CallUnary(stub_.get(), method, request, response, timeout);
  }
  v1::SessionCredentials Credentials() const;

  void ApplyEventLocked(const v1::WatchEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReconcileSnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecallLocked(const std::string& id, LeaseSlot& slot, std::string reason, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a live lease to `state` (terminal); queues on_revoked if `notify`.
  void EndLocked(const std::string& id, LeaseSlot& slot, LeaseState state, std::string reason,
                 bool notify) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SessionLostLocked(absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++wake_seq_; }

  const ClientOptions options_;
  Clock* const clock_;  // options_.clock, or the process's real clock.
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::PinBroker::Stub> stub_;
  // Set by OpenSession() before any other thread exists; immutable afterwards.
  std::string session_id_;
  std::string token_;
  std::string broker_epoch_;
  absl::Duration session_ttl_ = absl::Seconds(30);

  mutable absl::Mutex mu_;
  LeaseSlots leases_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;  // Orders lease registrations and watch starts.
  // Pins whose response has not been registered yet, and the events that arrived for leases
  // not (yet) in `leases_` meanwhile; cleared whenever no pin is in flight.
  int pins_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::vector<v1::WatchEvent>> early_events_ ABSL_GUARDED_BY(mu_);
  size_t early_event_count_ ABSL_GUARDED_BY(mu_) = 0;

  // Session.
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // Close() began: no new RPCs.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;   // Close() finished.
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status lost_status_ ABSL_GUARDED_BY(mu_);
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  // Local time after which the broker has surely forgotten the session (no stream, no call).
  absl::Time session_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  // Watch stream.
  std::shared_ptr<WatchReactor> watch_ ABSL_GUARDED_BY(mu_);
  uint64_t watch_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t watch_start_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool watch_established_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // Watch reactors started and not yet through OnWatchDone()'s release of them. Close() waits
  // for zero so that no gRPC thread can drop the last reference to the channel (held by a
  // reactor's ClientContext) after the Core is gone: gRPC would then shut down its shared
  // callback completion queue from one of that queue's own threads and abort.
  int live_reactors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t watch_established_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t watch_failures_ ABSL_GUARDED_BY(mu_) = 0;  // Streams that ended before a snapshot.
  absl::Status last_watch_status_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, v1::Lease> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Time reconnect_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);

  // Threads.
  bool stop_maintenance_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wake_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Not guarded: written by Start() before any other thread can see it, then touched only by
  // the first Close() (and ~Core, after it).
  std::thread maintenance_thread_;  // Joined by Close().
  // The callback thread (internally synchronized). Tasks are keyed by lease id; a lease's
  // callbacks are posted only while it has a handle, and Forget() drops them. Stopped by
  // Close(), which detaches it if it closes the client from a callback.
  CallbackExecutor callbacks_;
};

}  // namespace pinbroker::client::internal
