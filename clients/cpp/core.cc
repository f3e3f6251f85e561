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

// The clock of clients that were given none. Never destroyed: Clients may outlive static
// destructors' order.
Clock* ProcessRealClock() {
  static Clock* const clock = new RealClock();
  return clock;
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
