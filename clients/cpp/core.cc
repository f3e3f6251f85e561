#include "clients/cpp/core.h"

#include <grpcpp/client_context.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/status_convert.h"
#include "clients/cpp/lease_state.h"
#include "clients/cpp/lease_timing.h"
#include "clients/cpp/rpc.h"
#include "clients/cpp/watch_reactor.h"
#include "common/log.h"
#include "common/real_clock.h"

namespace pinbroker::client::internal {
namespace {

// Events kept for leases whose Pin response has not arrived yet; beyond this the oldest are
// dropped (only a pin that never returns could leave them behind).
constexpr size_t kMaxEarlyEvents = 4096;

// The clock of clients that were given none. Never destroyed: Clients may outlive static
// destructors' order.
Clock* ProcessRealClock() {
  static Clock* const clock = new RealClock();
  return clock;
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

Core::Core(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : ProcessRealClock()),
      channel_(std::move(channel)),
      stub_(v1::PinBroker::NewStub(channel_)) {
  absl::MutexLock lock(&mu_);
  backoff_ = options_.reconnect_backoff_min;
}

Core::~Core() {
  // Close() ran (from ~Client, or from Start() failing); threads are gone. Leases' callbacks
  // are destroyed here, without the lock.
  LeaseSlots leases;
  {
    absl::MutexLock lock(&mu_);
    leases.swap(leases_);
  }
  if (maintenance_thread_.joinable()) maintenance_thread_.join();
  // callbacks_ is destroyed after this body: it drops what is left, without the lock.
}

v1::SessionCredentials Core::Credentials() const {
  v1::SessionCredentials credentials;
  credentials.set_session_id(session_id_);
  credentials.set_token(token_);
  return credentials;
}

// --- connecting and closing ----------------------------------------------------------------

absl::Status Core::OpenSession() {
  v1::OpenSessionRequest request;
  request.set_client_name(options_.client_name);
  if (options_.session_ttl > absl::ZeroDuration())
    ToProto(options_.session_ttl, request.mutable_ttl());
  v1::OpenSessionResponse response;
  const absl::Time sent = clock_->Now();
  absl::Status status =
      Call(&v1::PinBroker::StubInterface::OpenSession, request, &response, options_.rpc_timeout);
  if (!status.ok()) return status;
  session_id_ = response.credentials().session_id();
  token_ = response.credentials().token();
  broker_epoch_ = response.broker_epoch();
  // The broker's clock is not ours; the time from sending the request to the expiry it reports
  // is a safe lower bound of the session TTL on one host, and close to it across hosts.
  session_ttl_ = std::max(FromProto(response.expires_at()) - sent, absl::Milliseconds(100));
  if (options_.session_ttl > absl::ZeroDuration()) {
    session_ttl_ = std::min(session_ttl_, options_.session_ttl);
  }
  return absl::OkStatus();
}

absl::Status Core::Start() {
  callbacks_.Start();
  maintenance_thread_ = std::thread([this] { MaintenanceLoop(); });
  absl::MutexLock lock(&mu_);
  auto first_stream_settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return watch_established_count_ > 0 || watch_failures_ > 0 || lost_;
  };
  if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&first_stream_settled),
                                 clock_->Now() + options_.rpc_timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("the broker did not start the session's Watch stream within ",
                     absl::FormatDuration(options_.rpc_timeout)));
  }
  if (lost_) return lost_status_;
  if (watch_established_count_ == 0) {
    return absl::Status(
        last_watch_status_.code(),
        absl::StrCat("opening the session's Watch stream: ", last_watch_status_.message()));
  }
  return absl::OkStatus();
}

absl::Status Core::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      // A second Close() waits for the first, unless it is a callback (which the first may be
      // waiting for).
      if (!callbacks_.OnExecutorThread()) {
        auto closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; };
        mu_.Await(absl::Condition(&closed));
      }
      return close_status_;
    }
    closing_ = true;
    stop_maintenance_ = true;
    WakeLocked();
  }
  if (maintenance_thread_.joinable()) maintenance_thread_.join();

  bool lost;
  {
    absl::MutexLock lock(&mu_);
    lost = lost_;
  }
  absl::Status status;
  if (!lost && !session_id_.empty()) {
    v1::CloseSessionRequest request;
    *request.mutable_credentials() = Credentials();
    v1::CloseSessionResponse response;
    status =
        Call(&v1::PinBroker::StubInterface::CloseSession, request, &response, options_.rpc_timeout);
    if (!status.ok()) {
      PB_LOG(WARNING) << "closing session " << session_id_ << ": " << status
                      << "; the broker ends its leases at their TTL";
    }
  }

  std::shared_ptr<WatchReactor> watch;
  {
    absl::MutexLock lock(&mu_);
    close_status_ = status;
    for (auto& [id, slot] : leases_) {
      if (!IsLive(slot.state)) continue;
      if (status.ok() && !lost) {
        EndLocked(id, slot, LeaseState::kReleased, "released when the client closed its session",
                  /*notify=*/false);
      } else {
        EndLocked(id, slot, LeaseState::kLost,
                  absl::StrCat("the client closed without reaching the broker (", status.ToString(),
                               "); the broker ends the lease at its TTL"),
                  /*notify=*/false);
      }
    }
    watch = watch_;
    watch_cancelled_ = true;
  }
  if (watch != nullptr) watch->Cancel();
  watch.reset();

  {
    absl::MutexLock lock(&mu_);
    auto no_stream = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return watch_ == nullptr && live_reactors_ == 0;
    };
    mu_.Await(absl::Condition(&no_stream));
  }
  // Drops the callbacks not yet started; waits for a running one, or, closing from a callback,
  // lets the thread finish by itself after it (the task holds a reference to the Core).
  callbacks_.Stop();
  absl::MutexLock lock(&mu_);
  closed_ = true;
  return status;
}

absl::Status Core::session_status() const {
  absl::MutexLock lock(&mu_);
  return lost_ ? lost_status_ : absl::OkStatus();
}

bool Core::watching() const {
  absl::MutexLock lock(&mu_);
  return watch_established_;
}

uint64_t Core::watch_reconnects() const {
  absl::MutexLock lock(&mu_);
  return watch_established_count_ == 0 ? 0 : watch_established_count_ - 1;
}

absl::Status Core::UsableLocked() const {
  if (lost_) return lost_status_;
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client of session ", session_id_, " is closed"));
  }
  return absl::OkStatus();
}

void Core::AfterAuthenticatedRpcLocked(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    SessionLostLocked(status);
    return;
  }
  // Any answer that is not UNAUTHENTICATED came through the broker's authentication, which
  // renewed the session.
  if (!absl::IsUnavailable(status) && !absl::IsDeadlineExceeded(status) &&
      !absl::IsCancelled(status) && !watch_established_ && !lost_) {
    session_deadline_ = std::max(session_deadline_, clock_->Now() + session_ttl_);
  }
}

void Core::SessionLostLocked(absl::Status why) {
  if (lost_) return;
  lost_ = true;
  lost_status_ =
      absl::UnauthenticatedError(absl::StrCat("session ", session_id_, " is lost (", why.message(),
                                              "); this Client can no longer pin or release: make "
                                              "a new one"));
  PB_LOG(WARNING) << lost_status_;
  for (auto& [id, slot] : leases_) {
    if (!IsLive(slot.state)) continue;
    EndLocked(id, slot, LeaseState::kLost,
              absl::StrCat("the session was lost (", why.message(),
                           "); the broker ends the lease at its TTL"),
              /*notify=*/true);
  }
  if (options_.on_session_lost) {
    callbacks_.Post("", [cb = options_.on_session_lost, status = lost_status_] { cb(status); });
  }
  WakeLocked();  // The maintenance thread cancels the stream and stops renewing.
}

// --- leases ------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Lease>> Core::Pin(const PinOptions& options) {
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = UsableLocked(); !s.ok()) return s;
    ++pins_in_flight_;
  }
  v1::PinRequest request;
  *request.mutable_credentials() = Credentials();
  request.set_export_name(options.export_name);
  request.set_path(options.path);
  request.set_offset(options.offset);
  request.set_length(options.length);
  request.set_access(options.access);
  request.set_rdma(options.rdma);
  if (options.ttl != absl::ZeroDuration()) ToProto(options.ttl, request.mutable_ttl());
  if (options.wait_if_blocked != absl::ZeroDuration()) {
    ToProto(options.wait_if_blocked, request.mutable_wait_if_blocked());
  }
  v1::PinResponse response;
  const absl::Status status =
      Call(&v1::PinBroker::StubInterface::Pin, request, &response,
           options_.rpc_timeout + std::max(options.wait_if_blocked, absl::ZeroDuration()));

  std::unique_ptr<Lease> lease;
  if (status.ok()) lease.reset(new Lease(shared_from_this(), response.lease()));
  // Copies of the user's callbacks are made (and, on failure, destroyed) without the lock.
  auto on_recall = options.on_recall;
  auto on_revoked = options.on_revoked;
  std::vector<v1::WatchEvent> early;
  {
    absl::MutexLock lock(&mu_);
    --pins_in_flight_;
    AfterAuthenticatedRpcLocked(status);
    if (status.ok()) {
      const v1::Lease& granted = response.lease();
      const std::string& id = granted.lease_id();
      LeaseSlot& slot = leases_[id];
      slot.handle = lease.get();
      OnGranted(slot, granted, clock_->Now(), options_.renew_fraction);
      slot.registered_seq = ++seq_;
      slot.release_on_recall = options.release_on_recall;
      slot.on_recall = std::move(on_recall);
      slot.on_revoked = std::move(on_revoked);
      if (lost_) {
        EndLocked(id, slot, LeaseState::kLost, "the session was lost while the pin was granted",
                  /*notify=*/false);
      } else if (closing_) {
        EndLocked(id, slot, LeaseState::kReleased, "released when the client closed its session",
                  /*notify=*/false);
      }
      // Events the Watch stream delivered before this response.
      if (auto it = early_events_.find(id); it != early_events_.end()) {
        early = std::move(it->second);
        early_event_count_ -= early.size();
        early_events_.erase(it);
        for (const v1::WatchEvent& event : early) ApplyEventLocked(event);
      }
    }
    if (pins_in_flight_ == 0) {
      early_events_.clear();
      early_event_count_ = 0;
    }
    WakeLocked();
  }
  if (!status.ok()) return status;
  return lease;
}

absl::Status Core::ReleaseLeaseId(absl::string_view lease_id) {
  const std::string id(lease_id);
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);
    // An ended lease says how it ended, even after the session is lost or closed.
    if (it != leases_.end() && !IsLive(it->second.state)) return EndedErrorLocked(id, it->second);
    if (absl::Status s = UsableLocked(); !s.ok()) return s;
    if (it != leases_.end()) it->second.releasing = true;
  }
  v1::ReleaseRequest request;
  *request.mutable_credentials() = Credentials();
  request.set_lease_id(id);
  v1::ReleaseResponse response;
  const absl::Status status =
      Call(&v1::PinBroker::StubInterface::Release, request, &response, options_.rpc_timeout);

  absl::MutexLock lock(&mu_);
  AfterAuthenticatedRpcLocked(status);
  auto it = leases_.find(id);
  if (it == leases_.end()) return status;
  LeaseSlot& slot = it->second;
  slot.releasing = false;
  if (status.ok()) {
    EndLocked(id, slot, LeaseState::kReleased, "released by the holder", /*notify=*/false);
    return status;
  }
  // The lease ended meanwhile (revoked, expired) and the stream said so already: say how.
  if (absl::IsNotFound(status) && !IsLive(slot.state)) return EndedErrorLocked(id, slot);
  if (lost_) return lost_status_;
  return status;
}

absl::Status Core::Release(const std::string& id) { return ReleaseLeaseId(id); }

absl::Status Core::Renew(const std::string& id) {
  absl::Duration ttl;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) {
      return absl::NotFoundError(absl::StrCat("lease ", id, " is not held by this client"));
    }
    const LeaseSlot& slot = it->second;
    if (!IsLive(slot.state)) return EndedErrorLocked(id, slot);
    if (absl::Status s = UsableLocked(); !s.ok()) return s;
    if (slot.state == LeaseState::kRecalling) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease ", id, " is being recalled (", slot.reason,
                       ") and cannot be renewed; stop I/O on it and release it before ",
                       TimeText(slot.recall_deadline)));
    }
    ttl = slot.ttl;
  }
  v1::RenewRequest request;
  *request.mutable_credentials() = Credentials();
  request.set_lease_id(id);
  if (ttl > absl::ZeroDuration()) ToProto(ttl, request.mutable_ttl());
  v1::RenewResponse response;
  const absl::Status status =
      Call(&v1::PinBroker::StubInterface::Renew, request, &response, options_.rpc_timeout);

  absl::MutexLock lock(&mu_);
  AfterAuthenticatedRpcLocked(status);
  RenewDoneLocked(id, status, response, /*background=*/false);
  auto it = leases_.find(id);
  if (!status.ok() && it != leases_.end() && !IsLive(it->second.state)) {
    return EndedErrorLocked(id, it->second);
  }
  if (!status.ok() && lost_) return lost_status_;
  return status;
}

void Core::RenewDoneLocked(const std::string& id, const absl::Status& status,
                           const v1::RenewResponse& response, bool background) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  LeaseSlot& slot = it->second;
  const bool live = IsLive(slot.state);
  if (OnRenewAnswer(slot, status, response.lease(), background, clock_->Now(),
                    options_.renew_fraction)) {
    // Being recalled. The RECALLED event (with the deadline) normally arrived first; if the
    // stream missed it, this is how the holder learns.
    RecallLocked(id, slot, absl::StrCat("the broker refused a renewal: ", status.message()),
                 absl::InfiniteFuture());
    return;
  }
  if (live && background && !status.ok() && !absl::IsNotFound(status) &&
      !absl::IsUnauthenticated(status) && !absl::IsInvalidArgument(status)) {
    PB_LOG(WARNING) << "renewing lease " << id << ": " << status << "; retrying";
  }
}

LeaseView Core::View(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  LeaseView view;
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    view.state = LeaseState::kReleased;
    return view;
  }
  const LeaseSlot& slot = it->second;
  view.state = slot.state;
  view.reason = slot.reason;
  view.expires_at = FromProto(slot.info.expires_at());
  view.recall_deadline = slot.recall_deadline;
  view.info = slot.info;
  return view;
}

void Core::Forget(const std::string& id) {
  LeaseSlot forgotten;  // Destroyed (with the user's callbacks) after the lock is released.
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return;
    it->second.handle = nullptr;  // No callback of this lease is posted from now on.
  }
  // Drops its queued callbacks and waits for a running one (unless this is it).
  callbacks_.Forget(id);
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);  // The table may have changed meanwhile.
    if (it == leases_.end()) return;
    if (IsLive(it->second.state) && UsableLocked().ok()) {
      release = true;
      it->second.releasing = true;
    } else {
      forgotten = std::move(it->second);
      leases_.erase(it);
    }
  }
  if (!release) return;

  v1::ReleaseRequest request;
  *request.mutable_credentials() = Credentials();
  request.set_lease_id(id);
  v1::ReleaseResponse response;
  const absl::Status status =
      Call(&v1::PinBroker::StubInterface::Release, request, &response, options_.rpc_timeout);
  if (!status.ok() && !absl::IsNotFound(status)) {
    PB_LOG(WARNING) << "releasing lease " << id << " on destruction: " << status;
  }
  absl::MutexLock lock(&mu_);
  AfterAuthenticatedRpcLocked(status);
  if (auto it = leases_.find(id); it != leases_.end()) {
    forgotten = std::move(it->second);
    leases_.erase(it);
  }
}

absl::Status Core::EndedErrorLocked(const std::string& id, const LeaseSlot& slot) const {
  const std::string why = slot.reason.empty() ? "" : absl::StrCat(" (", slot.reason, ")");
  switch (slot.state) {
    case LeaseState::kLost:
      return absl::UnauthenticatedError(
          absl::StrCat("lease ", id, " is no longer usable by this client", why));
    case LeaseState::kReleased:
    case LeaseState::kRevoked:
    case LeaseState::kExpired:
      return absl::NotFoundError(
          absl::StrCat("lease ", id, " is no longer held: ", LeaseStateName(slot.state), " at ",
                       TimeText(slot.ended_at), why, "; pin the range again if you still need it"));
    default:
      return absl::OkStatus();
  }
}

// --- events ------------------------------------------------------------------------------------

void Core::OnWatchEvent(uint64_t generation, const v1::WatchEvent& event) {
  absl::MutexLock lock(&mu_);
  if (generation != watch_generation_ || lost_) return;
  switch (event.type()) {
    case v1::WatchEvent::SNAPSHOT:
      snapshot_[event.lease().lease_id()] = event.lease();
      return;
    case v1::WatchEvent::SNAPSHOT_COMPLETE:
      ReconcileSnapshotLocked();
      watch_established_ = true;
      ++watch_established_count_;
      backoff_ = options_.reconnect_backoff_min;
      session_deadline_ = absl::InfiniteFuture();
      WakeLocked();
      return;
    default:
      ApplyEventLocked(event);
      return;
  }
}

void Core::ApplyEventLocked(const v1::WatchEvent& event) {
  const std::string& id = event.lease().lease_id();
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    // Maybe a pin whose response has not been processed yet: keep the event for it.
    if (pins_in_flight_ > 0 && early_event_count_ < kMaxEarlyEvents) {
      early_events_[id].push_back(event);
      ++early_event_count_;
    }
    return;
  }
  LeaseSlot& slot = it->second;
  const v1::Lease& lease = event.lease();
  switch (event.type()) {
    case v1::WatchEvent::GRANTED:
      return;
    case v1::WatchEvent::RECALLED:
      if (IsLive(slot.state)) slot.info = lease;
      RecallLocked(id, slot, lease.reason(),
                   lease.has_recall_deadline() ? FromProto(lease.recall_deadline())
                                               : absl::InfiniteFuture());
      return;
    case v1::WatchEvent::RELEASED:
      if (IsLive(slot.state)) slot.info = lease;
      EndLocked(id, slot, LeaseState::kReleased,
                lease.reason().empty() ? "released" : lease.reason(), /*notify=*/false);
      return;
    case v1::WatchEvent::REVOKED:
      if (IsLive(slot.state)) slot.info = lease;
      EndLocked(id, slot, LeaseState::kRevoked, lease.reason(), /*notify=*/true);
      return;
    case v1::WatchEvent::EXPIRED:
      if (IsLive(slot.state)) slot.info = lease;
      EndLocked(id, slot, LeaseState::kExpired, lease.reason(), /*notify=*/true);
      return;
    default:
      return;
  }
}

void Core::ReconcileSnapshotLocked() {
  for (auto& [id, slot] : leases_) {
    if (!IsLive(slot.state)) continue;
    auto it = snapshot_.find(id);
    if (it == snapshot_.end()) {
      // Absence means "ended" only for leases registered before this stream started; a lease
      // registered since may have been granted after the snapshot was taken.
      if (slot.registered_seq > watch_start_seq_) continue;
      if (slot.releasing) {
        EndLocked(id, slot, LeaseState::kReleased, "released by the holder", /*notify=*/false);
      } else {
        EndLocked(id, slot, LeaseState::kRevoked,
                  "ended while the Watch stream was down: the broker's snapshot no longer lists "
                  "it (revoked or expired)",
                  /*notify=*/true);
      }
      continue;
    }
    const v1::Lease& current = it->second;
    slot.info = current;
    if (current.state() == v1::LEASE_STATE_RECALLING) {
      RecallLocked(id, slot, current.reason(),
                   current.has_recall_deadline() ? FromProto(current.recall_deadline())
                                                 : absl::InfiniteFuture());
    }
  }
  snapshot_.clear();
}

void Core::RecallLocked(const std::string& id, LeaseSlot& slot, std::string reason,
                        absl::Time deadline) {
  if (!Recall(slot, reason, deadline)) return;
  // The handle stays valid while the task may run: ~Lease forgets the lease's tasks first. The
  // Core reference keeps it alive if the callback closes and drops the client.
  callbacks_.Post(id, [self = shared_from_this(), lease = slot.handle, id, cb = slot.on_recall,
                       release = slot.release_on_recall, reason = std::move(reason), deadline] {
    if (cb) cb(*lease, reason, deadline);
    // By id, not through `lease`: the callback may have destroyed it (and ~Lease released it
    // then).
    if (release) self->ReleaseIfRecalling(id);
  });
}

void Core::ReleaseIfRecalling(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.state != LeaseState::kRecalling) return;
  }
  absl::Status status = ReleaseLeaseId(id);
  if (!status.ok() && !absl::IsNotFound(status)) {
    PB_LOG(WARNING) << "releasing recalled lease " << id << ": " << status;
  }
}

void Core::EndLocked(const std::string& id, LeaseSlot& slot, LeaseState state, std::string reason,
                     bool notify) {
  if (!End(slot, state, reason, clock_->Now(), notify)) return;
  callbacks_.Post(id, [lease = slot.handle, cb = slot.on_revoked, reason = std::move(reason)] {
    cb(*lease, reason);
  });
}

void Core::OnWatchDone(uint64_t generation, const grpc::Status& grpc_status) {
  std::shared_ptr<WatchReactor> finished;
  {
    absl::MutexLock lock(&mu_);
    finished = HandleWatchDoneLocked(generation, grpc_status);
  }
  // Drop the reactor (and the channel reference of its ClientContext) while Close() still
  // waits for it, so the Core's own channel reference outlives it; only then let Close() go on.
  finished.reset();
  absl::MutexLock lock(&mu_);
  --live_reactors_;
}

std::shared_ptr<WatchReactor> Core::HandleWatchDoneLocked(uint64_t generation,
                                                          const grpc::Status& grpc_status) {
  std::shared_ptr<WatchReactor> finished;
  if (generation != watch_generation_) return finished;
  finished = std::move(watch_);
  watch_ = nullptr;
  const absl::Status status = FromGrpcStatus(grpc_status);
  const bool was_established = watch_established_;
  watch_established_ = false;
  last_watch_status_ = status;
  snapshot_.clear();
  if (!was_established) ++watch_failures_;
  WakeLocked();
  if (closing_ || lost_ || watch_cancelled_) return finished;
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    SessionLostLocked(status);
    return finished;
  }
  const absl::Time now = clock_->Now();
  if (was_established) {
    // The broker starts the session's TTL when its last stream closes.
    session_deadline_ = now + session_ttl_;
  }
  // Not at once even after an established stream: a broker that ended every stream is usually
  // shutting down, and thousands of clients should not all dial it (or its replacement) in the
  // same millisecond.
  const Backoff next =
      AfterStreamEnded(now, was_established, backoff_, options_.reconnect_backoff_min,
                       options_.reconnect_backoff_max);
  reconnect_at_ = next.reconnect_at;
  backoff_ = next.next_backoff;
  PB_LOG(WARNING) << "session " << session_id_ << ": the Watch stream ended (" << status
                  << "); reopening it";
  return finished;
}

// --- threads -----------------------------------------------------------------------------------

absl::Time Core::NextWakeLocked() const {
  absl::Time next = absl::InfiniteFuture();
  if (lost_) return next;
  if (!watch_established_) next = std::min(next, session_deadline_);
  if (watch_ == nullptr) next = std::min(next, reconnect_at_);
  return std::min(next, NextRenewal(leases_));
}

void Core::MaintenanceLoop() {
  mu_.Lock();
  session_deadline_ = clock_->Now() + session_ttl_;
  while (!stop_maintenance_) {
    const absl::Time now = clock_->Now();
    if (!lost_ && !watch_established_ && now >= session_deadline_) {
      SessionLostLocked(absl::UnavailableError(absl::StrCat(
          "no Watch stream or call reached the broker for longer than the session TTL (",
          absl::FormatDuration(session_ttl_), "); last error: ", last_watch_status_.ToString())));
    }
    std::shared_ptr<WatchReactor> cancel;
    std::shared_ptr<WatchReactor> start;
    if (lost_ && watch_ != nullptr && !watch_cancelled_) {
      cancel = watch_;
      watch_cancelled_ = true;
    }
    if (!lost_ && watch_ == nullptr && now >= reconnect_at_) {
      ++watch_generation_;
      watch_start_seq_ = seq_;
      snapshot_.clear();
      watch_cancelled_ = false;
      v1::WatchRequest request;
      *request.mutable_credentials() = Credentials();
      // The first stream (Connect()) fails fast; reopened ones wait for the broker.
      start = std::make_shared<WatchReactor>(this, watch_generation_, std::move(request),
                                             /*wait_for_ready=*/watch_generation_ > 1);
      watch_ = start;
      ++live_reactors_;
    }
    std::vector<RenewJob> jobs;
    if (!lost_) jobs = TakeDueRenewals(leases_, now);
    if (cancel != nullptr || start != nullptr || !jobs.empty()) {
      mu_.Unlock();
      if (cancel != nullptr) cancel->Cancel();
      if (start != nullptr) start->Start(stub_.get());
      cancel.reset();
      start.reset();
      for (const RenewJob& job : jobs) RunRenew(job);
      mu_.Lock();
      continue;
    }
    const absl::Time next = NextWakeLocked();
    const uint64_t seen = wake_seq_;
    auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_maintenance_ || wake_seq_ != seen;
    };
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&woken), next);
  }
  mu_.Unlock();
}

void Core::RunRenew(const RenewJob& job) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_maintenance_ || lost_) {
      if (auto it = leases_.find(job.id); it != leases_.end()) it->second.renewing = false;
      return;
    }
  }
  v1::RenewRequest request;
  *request.mutable_credentials() = Credentials();
  request.set_lease_id(job.id);
  if (job.ttl > absl::ZeroDuration()) ToProto(job.ttl, request.mutable_ttl());
  v1::RenewResponse response;
  const absl::Status status =
      Call(&v1::PinBroker::StubInterface::Renew, request, &response, options_.rpc_timeout);
  absl::MutexLock lock(&mu_);
  AfterAuthenticatedRpcLocked(status);
  RenewDoneLocked(job.id, status, response, /*background=*/true);
}

// --- RPCs without a session ------------------------------------------------------------------

absl::StatusOr<v1::ListLeasesResponse> Core::ListLeases(const v1::ListLeasesRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return UsableLocked();
  }
  return CallUnary(stub_.get(), &v1::PinBroker::StubInterface::ListLeases, request,
                   options_.rpc_timeout);
}

absl::StatusOr<v1::DescribeFileResponse> Core::DescribeFile(
    const v1::DescribeFileRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return UsableLocked();
  }
  return CallUnary(stub_.get(), &v1::PinBroker::StubInterface::DescribeFile, request,
                   options_.rpc_timeout);
}

void Core::FillLayoutOptions(const LayoutOptions& in, v1::LayoutOptions* out) const {
  out->set_policy(in.policy);
  if (in.grace.has_value()) ToProto(*in.grace, out->mutable_grace());
  if (in.timeout.has_value()) ToProto(*in.timeout, out->mutable_timeout());
  out->set_initiator(in.initiator.empty() ? options_.client_name : in.initiator);
}

absl::StatusOr<v1::LayoutChangeResponse> Core::Truncate(v1::TruncateRequest request) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return UsableLocked();
  }
  // No client deadline: the broker bounds the change by its layout timeout and grace.
  return CallUnary(stub_.get(), &v1::PinBroker::StubInterface::Truncate, request,
                   absl::InfiniteDuration());
}

absl::StatusOr<v1::LayoutChangeResponse> Core::PunchHole(v1::PunchHoleRequest request) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return UsableLocked();
  }
  return CallUnary(stub_.get(), &v1::PinBroker::StubInterface::PunchHole, request,
                   absl::InfiniteDuration());
}

absl::StatusOr<v1::GetInfoResponse> Core::GetInfo() {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return UsableLocked();
  }
  v1::GetInfoRequest request;
  return CallUnary(stub_.get(), &v1::PinBroker::StubInterface::GetInfo, request,
                   options_.rpc_timeout);
}

}  // namespace pinbroker::client::internal
