// lease pin --hold: what a cooperative lease holder does.
//
//   1. open a session (unless --session is given) and start watching it, so no event about the
//      lease can be missed (the Watch stream also keeps the session alive);
//   2. pin, print the lease, then print every event of the session as it arrives;
//   3. renew the lease every third of its TTL;
//   4. on RECALLED for the lease: release it, print the RELEASED event, exit 0
//      (--ignore-recall: keep holding, for testing revocation);
//   5. on REVOKED or EXPIRED for the lease: exit 4 (access is gone);
//   6. on SIGINT/SIGTERM: release, exit 0.
// A session pinctl opened itself is closed on the way out.
#include "absl/strings/str_cat.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/signals.h"
#include "clients/pinctl/views.h"
#include "clients/pinctl/watch_stream.h"

namespace pinctl {
namespace {

namespace v1 = ::pinbroker::v1;

// How long to wait for the broker's confirmation (the RELEASED, REVOKED or EXPIRED event)
// after releasing, or after learning that the lease is gone.
constexpr absl::Duration kConfirmWait = absl::Seconds(5);

class Holder {
 public:
  Holder(Invocation& inv, v1::PinRequest request, std::optional<v1::OpenSessionResponse> opened)
      : inv_(inv),
        request_(std::move(request)),
        opened_(std::move(opened)),
        stream_(inv.connection.broker(), request_.credentials()),
        signals_([this](int) { stream_.Interrupt(); }) {}

  ~Holder() {
    if (opened_) CloseOwnSession(inv_, opened_->credentials());
  }

  int Run() {
    std::vector<v1::WatchEvent> early;
    if (int exit = AwaitSnapshot(&early); exit >= 0) return exit;
    v1::PinResponse pinned;
    const grpc::Status status = inv_.connection.broker().Pin(
        inv_.connection.Context(FromProto(request_.wait_if_blocked())).get(), request_, &pinned);
    if (!status.ok()) return inv_.out.RpcError(status, "pin");
    lease_ = pinned.lease();
    PrintPinned();
    for (const v1::WatchEvent& e : early) Print(e);

    const absl::Duration ttl = FromProto(lease_.expires_at()) - FromProto(lease_.granted_at());
    renew_every_ = std::max(ttl / 3, absl::Milliseconds(100));
    wake_at_ = absl::Now() + renew_every_;
    for (;;) {
      auto item = stream_.Next(wake_at_);
      if (!item.has_value()) {
        if (stream_.interrupted()) return OnSignal();
        if (int exit = OnTimer(); exit >= 0) return exit;
        continue;
      }
      if (!item->event.has_value()) return OnStreamEnd(item->end);
      Print(*item->event);
      if (item->event->lease().lease_id() != lease_.lease_id()) continue;
      if (int exit = OnLeaseEvent(*item->event); exit >= 0) return exit;
    }
  }

 private:
  enum class Phase { kHolding, kIgnoringRecall, kReleased, kGone };

  // Reads up to SNAPSHOT_COMPLETE; -1 when the watch is established, else the exit status.
  int AwaitSnapshot(std::vector<v1::WatchEvent>* early) {
    const absl::Time deadline = absl::Now() + inv_.global.timeout;
    for (;;) {
      auto item = stream_.Next(deadline);
      if (!item.has_value()) {
        if (stream_.interrupted()) return kExitOk;
        return inv_.out.RpcError(
            grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no snapshot before the --timeout"),
            "watch");
      }
      if (!item->event.has_value()) return inv_.out.RpcError(item->end, "watch");
      early->push_back(*item->event);
      if (item->event->type() == v1::WatchEvent::SNAPSHOT_COMPLETE) return -1;
    }
  }

  void PrintPinned() {
    if (inv_.out.json()) {
      std::string line = absl::StrCat("{\"lease\":", ToJson(lease_));
      if (opened_) absl::StrAppend(&line, ",\"session\":", SessionJson(*opened_));
      inv_.out.Line(absl::StrCat(line, "}"));
      return;
    }
    inv_.out.Line(absl::StrCat("holding lease ", lease_.lease_id(), " on ", lease_.export_name(),
                               "/", lease_.path(), " ", FormatRange(lease_.range()), " (session ",
                               lease_.session_id(), "); Ctrl-C releases it"));
  }

  void Print(const v1::WatchEvent& e) {
    if (inv_.out.json()) {
      inv_.out.Json(e);
    } else {
      inv_.out.Line(EventLine(e));
    }
  }

  // A timer fired: renew, or give up waiting for a confirmation.
  int OnTimer() {
    switch (phase_) {
      case Phase::kReleased:
        return kExitOk;  // Released; the confirmation did not come in time. Still fine.
      case Phase::kGone:
        inv_.out.Note(absl::StrCat("lease ", lease_.lease_id(), " is gone"));
        return kExitLeaseLost;
      case Phase::kIgnoringRecall:
        wake_at_ = absl::InfiniteFuture();
        return -1;
      case Phase::kHolding:
        break;
    }
    v1::RenewRequest request;
    *request.mutable_credentials() = request_.credentials();
    request.set_lease_id(lease_.lease_id());
    if (request_.has_ttl()) *request.mutable_ttl() = request_.ttl();
    v1::RenewResponse response;
    const grpc::Status status =
        inv_.connection.broker().Renew(inv_.connection.Context().get(), request, &response);
    if (status.ok()) {
      wake_at_ = absl::Now() + renew_every_;
    } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      // Being recalled: the RECALLED event is on its way.
      wake_at_ = absl::Now() + kConfirmWait;
    } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      inv_.out.Note(absl::StrCat("renew: ", status.error_message()));
      phase_ = Phase::kGone;  // REVOKED or EXPIRED is on its way.
      wake_at_ = absl::Now() + kConfirmWait;
    } else {
      inv_.out.Note(absl::StrCat("renew failed (will retry): ", StatusCodeName(status.error_code()),
                                 ": ", status.error_message()));
      wake_at_ = absl::Now() + renew_every_;
    }
    return -1;
  }

  int OnLeaseEvent(const v1::WatchEvent& e) {
    switch (e.type()) {
      case v1::WatchEvent::RECALLED:
        if (inv_.args.Has("ignore-recall")) {
          inv_.out.Note(
              absl::StrCat("lease ", lease_.lease_id(), " recalled; --ignore-recall: keeping it"));
          phase_ = Phase::kIgnoringRecall;
          wake_at_ = absl::InfiniteFuture();
          return -1;
        }
        Release();
        return -1;
      case v1::WatchEvent::RELEASED:
        return kExitOk;
      case v1::WatchEvent::REVOKED:
      case v1::WatchEvent::EXPIRED:
        return kExitLeaseLost;
      default:
        return -1;
    }
  }

  // Releases the lease after a recall. If that fails the lease is gone or going: wait for the
  // event that says how it ended.
  void Release() {
    v1::ReleaseRequest request;
    *request.mutable_credentials() = request_.credentials();
    request.set_lease_id(lease_.lease_id());
    v1::ReleaseResponse response;
    const grpc::Status status =
        inv_.connection.broker().Release(inv_.connection.Context().get(), request, &response);
    wake_at_ = absl::Now() + kConfirmWait;
    if (status.ok()) {
      phase_ = Phase::kReleased;
      return;
    }
    inv_.out.Note(absl::StrCat("release: ", StatusCodeName(status.error_code()), ": ",
                               status.error_message()));
    phase_ = Phase::kGone;
  }

  int OnSignal() {
    if (phase_ == Phase::kReleased) return kExitOk;
    v1::ReleaseRequest request;
    *request.mutable_credentials() = request_.credentials();
    request.set_lease_id(lease_.lease_id());
    v1::ReleaseResponse response;
    const grpc::Status status = inv_.connection.broker().Release(
        inv_.connection.CleanupContext().get(), request, &response);
    if (status.ok()) {
      inv_.out.Note(absl::StrCat("interrupted: released lease ", lease_.lease_id()));
      return kExitOk;
    }
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      inv_.out.Note(absl::StrCat("interrupted: ", status.error_message()));
      return kExitOk;
    }
    return inv_.out.RpcError(status, "release");
  }

  int OnStreamEnd(const grpc::Status& end) {
    if (phase_ == Phase::kReleased) return kExitOk;
    if (phase_ == Phase::kGone) return kExitLeaseLost;
    if (end.ok()) {
      return inv_.out.RpcError(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the broker ended the watch stream"),
          "watch");
    }
    return inv_.out.RpcError(end, "watch");
  }

  Invocation& inv_;
  const v1::PinRequest request_;
  const std::optional<v1::OpenSessionResponse> opened_;
  WatchStream stream_;
  SignalWaiter signals_;  // After stream_: stopped before the stream is torn down.
  v1::Lease lease_;
  Phase phase_ = Phase::kHolding;
  absl::Duration renew_every_;
  absl::Time wake_at_ = absl::InfiniteFuture();
};

}  // namespace

int RunLeaseHold(Invocation& inv) {
  v1::PinRequest request;
  if (!MakePinRequest(inv, &request)) return kExitUsage;
  std::optional<v1::OpenSessionResponse> opened;
  if (auto credentials = inv.connection.credentials()) {
    *request.mutable_credentials() = *credentials;
  } else {
    opened.emplace();
    const grpc::Status status = OpenOwnSession(inv, &*opened);
    if (!status.ok()) return inv.out.RpcError(status, "open session");
    *request.mutable_credentials() = opened->credentials();
  }
  Holder holder(inv, std::move(request), std::move(opened));
  return holder.Run();
}

}  // namespace pinctl
