// Core, continued: the lease operations (pin, release, renew, forget) and the Watch
// stream's events. The session, the threads and the session-less RPCs are in core.cc.
#include <grpcpp/client_context.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/status_convert.h"
#include "clients/cpp/core.h"
#include "clients/cpp/lease_state.h"
#include "clients/cpp/lease_timing.h"
#include "clients/cpp/rpc.h"
#include "clients/cpp/watch_reactor.h"
#include "common/log.h"

namespace pinbroker::client::internal {
namespace {

// Events kept for leases whose Pin response has not arrived yet; beyond this the oldest are
// dropped (only a pin that never returns could leave them behind).
constexpr size_t kMaxEarlyEvents = 4096;

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

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

}  // namespace pinbroker::client::internal
