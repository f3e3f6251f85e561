// The gRPC edge, over 500 lines on purpose: one handler per RPC, each the same short line
// (validate -> identify the caller -> authorize -> call the engine -> convert, with the status
// converted once here). The handlers share the caller, visibility and cap helpers at the top;
// splitting them by RPC group would spread one class's checks over several files.
#include "broker/pin_broker_service.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/status_convert.h"
#include "broker/proto_convert.h"
#include "broker/request_limits.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pinbroker::broker {

using ::grpc::Status;

namespace {

// The engine's permission refusals name the credentials the kernel judged ("uid 999 gid 995
// ..."); for a TLS or anonymous caller, say whose they are.
absl::Status NamingCaller(const PeerIdentity& caller, const absl::Status& status) {
  if (!absl::IsPermissionDenied(status) || caller.kind == PeerIdentity::Kind::kUnix) {
    return status;
  }
  return absl::PermissionDeniedError(absl::StrCat(caller.Describe(), ", acting with local uid ",
                                                  caller.unix.uid,
                                                  "'s file permissions: ", status.message()));
}

SessionTable::Owner OwnerOf(const PeerIdentity& caller) {
  SessionTable::Owner owner;
  owner.key = caller.Key();
  owner.description = caller.Describe();
  if (caller.kind == PeerIdentity::Kind::kUnix) {
    owner.uid = caller.unix.uid;
    owner.pid = caller.pid;
    owner.command = caller.command;
  }
  return owner;
}

// INVALID_ARGUMENT saying the cap when `value` is above it.
absl::Status CheckCap(absl::string_view field, absl::Duration value, absl::Duration cap,
                      absl::string_view export_name) {
  if (value <= cap) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " is ", absl::FormatDuration(value), "; export ", SafeText(std::string(export_name)),
      " allows at most ", absl::FormatDuration(cap), " (its max_grace / max_layout_timeout)"));
}

}  // namespace

LayoutCaps PinBrokerService::CapsOf(const std::string& export_name) const {
  auto it = info_.layout_caps.find(export_name);
  return it == info_.layout_caps.end() ? LayoutCaps() : it->second;
}

PinBrokerService::PinBrokerService(PinService* engine, SessionTable* sessions,
                                   const LeaseIdCodec* ids, const PeerRegistry* peers,
                                   const Authorizer* authorizer, Info info)
    : engine_(engine),
      sessions_(sessions),
      ids_(ids),
      peers_(peers),
      authorizer_(authorizer),
      info_(std::move(info)) {}

PinBrokerService::~PinBrokerService() { CloseAllWatches(); }

void PinBrokerService::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
}

void PinBrokerService::CloseAllWatches() {
  absl::flat_hash_set<std::shared_ptr<EventQueue>> watches;
  {
    absl::MutexLock lock(&mu_);
    watches.swap(watches_);
  }
  for (const auto& queue : watches) queue->Close();
}

bool PinBrokerService::AwaitWatchesDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_watches_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

absl::Status PinBrokerService::CheckAccepting() const {
  absl::MutexLock lock(&mu_);
  if (!accepting_) {
    return absl::UnavailableError("the broker is shutting down; retry against its replacement");
  }
  return absl::OkStatus();
}

std::shared_ptr<QuotaAccount> PinBrokerService::AccountOf(const PeerIdentity& caller) const {
  if (info_.quotas == nullptr) return nullptr;
  return info_.quotas->AccountFor(caller.Key(), caller.Label());
}

absl::StatusOr<QuotaHold> PinBrokerService::Reserve(const PeerIdentity& caller,
                                                    QuotaKind kind) const {
  std::shared_ptr<QuotaAccount> account = AccountOf(caller);
  if (account == nullptr) return QuotaHold();
  return account->Reserve(kind);
}

absl::StatusOr<std::string> PinBrokerService::Authenticate(
    const v1::SessionCredentials& credentials, const PeerIdentity& caller) {
  const SessionTable::Owner owner = OwnerOf(caller);
  auto renewed = sessions_->Authenticate(credentials.session_id(), credentials.token(), &owner);
  if (!renewed.ok()) return renewed.status();
  return credentials.session_id();
}

PeerIdentity PinBrokerService::Caller(const ::grpc::ServerContextBase* context) const {
  return peers_->Identify(*context);
}

void PinBrokerService::LeaseToProto(const LeaseInfo& lease, v1::Lease* out) const {
  ToProto(lease, *ids_, out);
  if (auto owner = sessions_->OwnerOf(lease.owner); owner.ok()) out->set_holder(owner->description);
}

bool PinBrokerService::Visible(const PeerIdentity& caller, const LeaseInfo& lease) const {
  if (authorizer_->IsAdmin(caller, lease.export_name)) return true;
  auto owner = sessions_->OwnerOf(lease.owner);
  return owner.ok() && owner->key == caller.Key();
}

// --- sessions -----------------------------------------------------------------------------

Status PinBrokerService::OpenSession(Ctx* context, const v1::OpenSessionRequest* request,
                                     v1::OpenSessionResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckAccepting(); !s.ok()) return ToGrpcStatus(s);
  auto ttl = NonNegative(request->ttl(), "ttl");
  if (!ttl.ok()) return ToGrpcStatus(ttl.status());
  const PeerIdentity caller = Caller(context);
  auto quota = Reserve(caller, QuotaKind::kSessions);
  if (!quota.ok()) return ToGrpcStatus(quota.status());
  auto opened =
      sessions_->Open(SafeText(request->client_name()), *ttl, OwnerOf(caller), *std::move(quota));
  if (!opened.ok()) return ToGrpcStatus(opened.status());
  response->mutable_credentials()->set_session_id(opened->id);
  response->mutable_credentials()->set_token(opened->token);
  ToProto(opened->expires_at, response->mutable_expires_at());
  response->set_broker_epoch(ids_->epoch());
  PB_LOG(INFO) << "session " << opened->id << " opened by " << caller.Describe() << " as \""
               << SafeText(request->client_name()) << "\"";
  return Status::OK;
}

Status PinBrokerService::RenewSession(Ctx* context, const v1::RenewSessionRequest* request,
                                      v1::RenewSessionResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  const SessionTable::Owner owner = OwnerOf(Caller(context));
  auto renewed = sessions_->Authenticate(request->credentials().session_id(),
                                         request->credentials().token(), &owner);
  if (!renewed.ok()) return ToGrpcStatus(renewed.status());
  ToProto(*renewed, response->mutable_expires_at());
  return Status::OK;
}

Status PinBrokerService::CloseSession(Ctx* context, const v1::CloseSessionRequest* request,
                                      v1::CloseSessionResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  auto session = Authenticate(request->credentials(), Caller(context));
  if (!session.ok()) return ToGrpcStatus(session.status());
  // Close first, so no pin can join the session while its leases are being released.
  sessions_->Close(*session).IgnoreError();  // Already gone: closed concurrently.
  LeaseFilter filter;
  filter.owner = *session;
  for (const LeaseInfo& lease : engine_->ListLeases(filter)) {
    if (engine_->Release(*session, lease.id).ok()) {
      response->add_released_lease_ids(ids_->Format(lease.id));
    }
  }
  PB_LOG(INFO) << "session " << *session << " closed; released "
               << response->released_lease_ids_size() << " leases";
  return Status::OK;
}

// --- leases -------------------------------------------------------------------------------

Status PinBrokerService::Pin(Ctx* context, const v1::PinRequest* request,
                             v1::PinResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckAccepting(); !s.ok()) return ToGrpcStatus(s);
  const PeerIdentity caller = Caller(context);
  auto session = Authenticate(request->credentials(), caller);
  if (!session.ok()) return ToGrpcStatus(session.status());
  auto access = FromProto(request->access());
  if (!access.ok()) return ToGrpcStatus(access.status());
  if (absl::Status s = authorizer_->Check(caller, request->export_name(), Right::kPin); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (*access == Access::kReadWrite) {
    absl::Status s = authorizer_->Check(caller, request->export_name(), Right::kPinWritable);
    if (!s.ok()) return ToGrpcStatus(s);
  }
  auto ttl = NonNegative(request->ttl(), "ttl");
  if (!ttl.ok()) return ToGrpcStatus(ttl.status());
  auto wait = NonNegative(request->wait_if_blocked(), "wait_if_blocked");
  if (!wait.ok()) return ToGrpcStatus(wait.status());
  // A pin that may wait for a block holds this call's thread that long: one of the caller's
  // blocked calls, held until it is answered.
  QuotaHold blocked;
  if (*wait > absl::ZeroDuration()) {
    auto reserved = Reserve(caller, QuotaKind::kBlockedCalls);
    if (!reserved.ok()) return ToGrpcStatus(reserved.status());
    blocked = *std::move(reserved);
  }

  PinRequest pin;
  pin.owner = *session;
  pin.export_name = request->export_name();
  pin.path = request->path();
  pin.offset = request->offset();
  pin.length = request->length();
  pin.access = *access;
  pin.ttl = *ttl;
  pin.wait_if_blocked = *wait;
  pin.rdma = request->rdma();
  pin.caller = caller.unix;
  // A holder the export's `layout` rule refuses cannot hold off others' layout changes.
  if (!authorizer_->Check(caller, request->export_name(), Right::kLayout).ok()) {
    pin.may_guard_layout = false;
  }
  // Granted only if the session is still open then: CloseSession closes it before listing its
  // leases, so no lease can appear after that list.
  pin.admit = [sessions = sessions_, id = *session] { return sessions->CheckOpen(id); };
  pin.account = AccountOf(caller);
  pin.holder = caller.Label();
  auto lease = engine_->Pin(pin);
  if (!lease.ok()) return ToGrpcStatus(NamingCaller(caller, lease.status()));
  ToProto(*lease, *ids_, response->mutable_lease());
  return Status::OK;
}

Status PinBrokerService::Renew(Ctx* context, const v1::RenewRequest* request,
                               v1::RenewResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  auto session = Authenticate(request->credentials(), Caller(context));
  if (!session.ok()) return ToGrpcStatus(session.status());
  auto id = ids_->Parse(request->lease_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto ttl = NonNegative(request->ttl(), "ttl");
  if (!ttl.ok()) return ToGrpcStatus(ttl.status());
  auto lease = engine_->Renew(*session, *id, *ttl);
  if (!lease.ok()) return ToGrpcStatus(lease.status());
  ToProto(*lease, *ids_, response->mutable_lease());
  return Status::OK;
}

Status PinBrokerService::Release(Ctx* context, const v1::ReleaseRequest* request,
                                 v1::ReleaseResponse*) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  auto session = Authenticate(request->credentials(), Caller(context));
  if (!session.ok()) return ToGrpcStatus(session.status());
  auto id = ids_->Parse(request->lease_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ToGrpcStatus(engine_->Release(*session, *id));
}

Status PinBrokerService::ListLeases(Ctx* context, const v1::ListLeasesRequest* request,
                                    v1::ListLeasesResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  const PeerIdentity caller = Caller(context);
  LeaseFilter filter;
  if (!request->session_id().empty()) filter.owner = request->session_id();
  if (!request->export_name().empty()) filter.export_name = request->export_name();
  if (!request->path().empty()) {
    if (request->export_name().empty()) {
      return ToGrpcStatus(absl::InvalidArgumentError("a path filter needs export_name"));
    }
    auto file = engine_->DescribeFile(request->export_name(), request->path(), caller.unix);
    if (!file.ok()) return ToGrpcStatus(NamingCaller(caller, file.status()));
    filter.file = file->info.id;
  }
  // Pages in lease id order; the token is the last id of the previous page.
  LeaseId after = 0;
  if (!request->page_token().empty()) {
    auto last = ids_->Parse(request->page_token());
    if (!last.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "page_token ", QuoteClientInput(request->page_token()),
          " is not a next_page_token of this broker run; list again from the first page (empty "
          "page_token)")));
    }
    after = *last;
  }
  const int page_size = request->page_size() == 0
                            ? RequestLimits::kDefaultLeasePage
                            : std::min(request->page_size(), RequestLimits::kMaxLeasePage);
  std::vector<LeaseInfo> leases = engine_->ListLeases(filter);
  std::sort(leases.begin(), leases.end(),
            [](const LeaseInfo& a, const LeaseInfo& b) { return a.id < b.id; });
  for (const LeaseInfo& lease : leases) {
    if (lease.id <= after) continue;
    if (!Visible(caller, lease)) continue;  // Nobody else's leases or session ids.
    if (response->leases_size() == page_size) {
      response->set_next_page_token(ids_->Format(after));
      break;
    }
    LeaseToProto(lease, response->add_leases());
    after = lease.id;
  }
  return Status::OK;
}

// --- files --------------------------------------------------------------------------------

Status PinBrokerService::DescribeFile(Ctx* context, const v1::DescribeFileRequest* request,
                                      v1::DescribeFileResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  const PeerIdentity caller = Caller(context);
  auto file = engine_->DescribeFile(request->export_name(), request->path(), caller.unix);
  if (!file.ok()) return ToGrpcStatus(NamingCaller(caller, file.status()));
  if (!authorizer_->IsAdmin(caller, request->export_name())) {
    // Others' leases stay hidden; their busy ranges show (a pin there would meet them), without
    // naming the lease.
    absl::flat_hash_set<LeaseId> own;
    std::vector<LeaseInfo> leases;
    for (LeaseInfo& lease : file->leases) {
      if (!Visible(caller, lease)) continue;
      own.insert(lease.id);
      leases.push_back(std::move(lease));
    }
    file->leases = std::move(leases);
    for (auto& entry : file->busy) {
      if (!own.contains(entry.lease)) entry.lease = 0;
    }
    file->registrations.clear();
  }
  ToProto(*file, *ids_, engine_->page_size(), response);
  return Status::OK;
}

absl::StatusOr<LayoutRequest> PinBrokerService::AuthorizedLayout(const PeerIdentity& caller,
                                                                 const v1::LayoutOptions& options,
                                                                 const std::string& export_name,
                                                                 const std::string& path) const {
  auto layout = FromProto(options, export_name, path);
  if (!layout.ok()) return layout.status();
  const LayoutCaps caps = CapsOf(export_name);
  if (layout->grace.has_value()) {
    RETURN_IF_ERROR(CheckCap("options.grace", *layout->grace, caps.max_grace, export_name));
  }
  if (layout->timeout.has_value()) {
    RETURN_IF_ERROR(
        CheckCap("options.timeout", *layout->timeout, caps.max_layout_timeout, export_name));
  }
  if (absl::Status s = authorizer_->Check(caller, export_name, Right::kLayout); !s.ok()) {
    PB_LOG(WARNING) << "layout change of " << SafeText(export_name) << "/" << SafeText(path)
                    << " refused: " << s.message();
    return s;
  }
  layout->caller = caller.unix;
  // A non-admin learns of its own leases only: others' are counted, not named (docs/SECURITY.md).
  if (!authorizer_->IsAdmin(caller, export_name)) {
    layout->discloses = [sessions = sessions_, key = caller.Key()](absl::string_view owner) {
      auto identity = sessions->OwnerOf(owner);
      return identity.ok() && identity->key == key;
    };
  }
  // The initiator names the caller as the kernel or TLS says; the request's text only adds to it.
  layout->initiator =
      absl::StrCat(caller.Describe(), layout->initiator.empty() ? "" : " \"",
                   SafeText(layout->initiator), layout->initiator.empty() ? "" : "\"");
  return layout;
}

Status PinBrokerService::AnswerLayout(absl::string_view what, const PeerIdentity& caller,
                                      const std::string& export_name, const std::string& path,
                                      const absl::StatusOr<LayoutResult>& result,
                                      v1::LayoutChangeResponse* response) const {
  if (absl::IsPermissionDenied(result.status())) {
    PB_LOG(WARNING) << "layout " << what << " of " << SafeText(export_name) << "/" << SafeText(path)
                    << " refused for " << caller.Describe() << ": " << result.status().message();
  }
  if (!result.ok()) return ToGrpcStatus(NamingCaller(caller, result.status()));
  ToProto(*result, *ids_, engine_->page_size(), response);
  return Status::OK;
}

PinService::LayoutDone PinBrokerService::FinishLayout(UnaryAnswer<v1::LayoutChangeResponse> answer,
                                                      std::string what, PeerIdentity caller,
                                                      std::string export_name, std::string path,
                                                      QuotaHold blocked) const {
  return [this, answer = std::move(answer), what = std::move(what), caller = std::move(caller),
          export_name = std::move(export_name), path = std::move(path),
          blocked = std::move(blocked)](absl::StatusOr<LayoutResult> result) mutable {
    const Status status = AnswerLayout(what, caller, export_name, path, result, answer.response());
    blocked.Reset();  // Held while the change waited; nothing of the call is used after Finish.
    std::move(answer).Finish(status);
  };
}

template <typename Request, typename Start>
::grpc::ServerUnaryReactor* PinBrokerService::StartLayoutCall(CallbackCtx* context,
                                                              const Bytes* bytes, Bytes* out,
                                                              std::string what, Start start) {
  UnaryAnswer<v1::LayoutChangeResponse> answer(context, out);
  Request request;
  if (Status s = DecodeRequest(*bytes, &request); !s.ok()) return std::move(answer).Finish(s);
  if (absl::Status s = Validate(request); !s.ok()) return std::move(answer).Finish(ToGrpcStatus(s));
  const PeerIdentity caller = Caller(context);
  auto layout = AuthorizedLayout(caller, request.options(), request.export_name(), request.path());
  if (!layout.ok()) return std::move(answer).Finish(ToGrpcStatus(layout.status()));
  // Held while the change may wait (queued behind others, defer, revoke grace).
  auto blocked = Reserve(caller, QuotaKind::kBlockedCalls);
  if (!blocked.ok()) return std::move(answer).Finish(ToGrpcStatus(blocked.status()));
  ::grpc::ServerUnaryReactor* const reactor = answer.reactor();
  start(*layout, request,
        FinishLayout(std::move(answer), std::move(what), caller, request.export_name(),
                     request.path(), *std::move(blocked)));
  return reactor;
}

::grpc::ServerUnaryReactor* PinBrokerService::Truncate(CallbackCtx* context, const Bytes* bytes,
                                                       Bytes* out) {
  return StartLayoutCall<v1::TruncateRequest>(
      context, bytes, out, "truncate",
      [this](const LayoutRequest& layout, const v1::TruncateRequest& request,
             PinService::LayoutDone done) {
        engine_->TruncateAsync(layout, request.new_size(), std::move(done));
      });
}

::grpc::ServerUnaryReactor* PinBrokerService::PunchHole(CallbackCtx* context, const Bytes* bytes,
                                                        Bytes* out) {
  return StartLayoutCall<v1::PunchHoleRequest>(
      context, bytes, out, "punchhole",
      [this](const LayoutRequest& layout, const v1::PunchHoleRequest& request,
             PinService::LayoutDone done) {
        engine_->PunchHoleAsync(layout, request.offset(), request.length(), std::move(done));
      });
}

// --- admin --------------------------------------------------------------------------------

// A RevokeLease call with a grace: finished by the engine once the lease ended or the grace ran
// out; a cancelled call revokes at once, as a shutdown does.
class PinBrokerService::RevokeReactor final : public ::grpc::ServerUnaryReactor {
 public:
  // `out` is the call's response bytes; `response` what it answers, save `revoked`.
  RevokeReactor(PinService* engine, ::grpc::ByteBuffer* out, v1::RevokeLeaseResponse response,
                QuotaHold blocked)
      : engine_(engine), out_(out), response_(std::move(response)), blocked_(std::move(blocked)) {}

  // The engine may complete the wait (on its executor) before this returns; the call is
  // finished by whichever of the two comes last.
  void Start(LeaseId id, std::string reason, absl::Time deadline) {
    PinService* const engine = engine_;
    const PinService::RevokeWaitId wait = engine->RevokeAfterGraceAsync(
        id, std::move(reason), deadline, [this](bool revoked) { Complete(revoked); });
    bool finish = false;
    bool end = false;
    {
      absl::MutexLock lock(&mu_);
      wait_ = wait;
      started_ = true;
      finish = completed_;
      end = cancelled_ && !completed_;
    }
    if (finish) return FinishCall();
    if (end) engine->EndRevokeWait(wait);  // Completes (and may delete) this reactor.
  }

  void OnCancel() override {
    PinService::RevokeWaitId wait = 0;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (started_ && !completed_) wait = wait_;
    }
    if (wait != 0) engine_->EndRevokeWait(wait);  // No-op once it completed.
  }
  void OnDone() override { delete this; }

 private:
  void Complete(bool revoked) {
    {
      absl::MutexLock lock(&mu_);
      revoked_ = revoked;
      completed_ = true;
      if (!started_) return;  // Start() finishes the call.
    }
    FinishCall();
  }
  void FinishCall() {
    bool revoked;
    {
      absl::MutexLock lock(&mu_);
      revoked = revoked_;
    }
    response_.set_revoked(revoked);
    blocked_.Reset();
    Finish(EncodeMessage(response_, out_));
  }

  PinService* const engine_;
  ::grpc::ByteBuffer* const out_;
  v1::RevokeLeaseResponse response_;
  QuotaHold blocked_;
  absl::Mutex mu_;
  PinService::RevokeWaitId wait_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

::grpc::ServerUnaryReactor* PinBrokerService::RevokeLease(CallbackCtx* context, const Bytes* bytes,
                                                          Bytes* out) {
  UnaryAnswer<v1::RevokeLeaseResponse> answer(context, out);
  const auto fail = [&answer](const absl::Status& s) {
    return std::move(answer).Finish(ToGrpcStatus(s));
  };
  v1::RevokeLeaseRequest request;
  if (Status s = DecodeRequest(*bytes, &request); !s.ok()) return std::move(answer).Finish(s);
  const PeerIdentity caller = Caller(context);
  auto id = ids_->Parse(request.lease_id());
  if (!id.ok()) return fail(id.status());
  auto grace = NonNegative(request.grace(), "grace");
  if (!grace.ok()) return fail(grace.status());
  absl::StatusOr<LeaseInfo> lease = engine_->GetLease(*id);
  // Someone else's lease is NOT_FOUND for non-admins, like an unknown one.
  if (!lease.ok() || !Visible(caller, *lease)) {
    return fail(absl::NotFoundError(absl::StrCat("no live lease ", request.lease_id())));
  }
  if (absl::Status s = authorizer_->Check(caller, lease->export_name, Right::kAdmin); !s.ok()) {
    PB_LOG(WARNING) << "revoke of lease " << request.lease_id() << " refused: " << s.message();
    return fail(s);
  }
  if (absl::Status s =
          CheckCap("grace", *grace, CapsOf(lease->export_name).max_grace, lease->export_name);
      !s.ok()) {
    return fail(s);
  }
  // A revoke with a grace waits for it: it counts as a blocked call meanwhile.
  QuotaHold blocked;
  if (*grace > absl::ZeroDuration()) {
    auto reserved = Reserve(caller, QuotaKind::kBlockedCalls);
    if (!reserved.ok()) return fail(reserved.status());
    blocked = *std::move(reserved);
  }
  const std::string reason =
      absl::StrCat("revoked by ", caller.Describe(), request.reason().empty() ? "" : ": ",
                   SafeText(request.reason(), 256));
  PB_LOG(INFO) << "admin " << caller.Describe() << " revokes lease " << request.lease_id()
               << " (export " << lease->export_name << ", grace " << absl::FormatDuration(*grace)
               << "): \"" << SafeText(request.reason(), 256) << "\"";
  LeaseToProto(*lease, answer.response()->mutable_lease());
  if (*grace <= absl::ZeroDuration() || !CheckAccepting().ok()) {
    answer.response()->set_revoked(engine_->RevokeLeases({*id}, reason) == 1);
    return std::move(answer).Finish(Status::OK);
  }
  // Holders get the grace period to release; whatever is left then is revoked. The engine
  // completes the call when the lease ends, at the deadline, on cancellation or at shutdown.
  auto* reactor =
      new RevokeReactor(engine_, out, std::move(*answer.response()), std::move(blocked));
  reactor->Start(*id, reason, engine_->clock()->Now() + *grace);
  return reactor;
}

Status PinBrokerService::ListSessions(Ctx* context, const v1::ListSessionsRequest*,
                                      v1::ListSessionsResponse* response) {
  const PeerIdentity caller = Caller(context);
  const bool admin = authorizer_->IsAdminAnywhere(caller);
  for (const SessionTable::Info& info : sessions_->List()) {
    if (!admin && info.owner.key != caller.Key()) continue;
    v1::SessionInfo* out = response->add_sessions();
    out->set_session_id(info.id);
    out->set_client_name(info.client_name);
    out->set_identity(info.owner.description);
    if (info.owner.uid.has_value()) out->set_uid(*info.owner.uid);
    out->set_pid(info.owner.pid);
    out->set_command(info.owner.command);
    LeaseFilter filter;
    filter.owner = info.id;
    uint64_t bytes = 0;
    const std::vector<LeaseInfo> leases = engine_->ListLeases(filter);
    for (const LeaseInfo& lease : leases) bytes += lease.length;
    out->set_lease_count(leases.size());
    out->set_pinned_bytes(bytes);
    if (info.expires_at != absl::InfiniteFuture())
      ToProto(info.expires_at, out->mutable_expires_at());
    out->set_watchers(info.watchers);
  }
  return Status::OK;
}

// --- broker -------------------------------------------------------------------------------

Status PinBrokerService::GetInfo(Ctx* context, const v1::GetInfoRequest*,
                                 v1::GetInfoResponse* response) {
  const PeerIdentity caller = Caller(context);
  response->set_version(info_.version);
  response->set_rdma_unavailable(info_.rdma_unavailable);
  response->set_epoch(ids_->epoch());
  ToProto(info_.started_at, response->mutable_started_at());
  response->set_backend(std::string(engine_->backend().name()));
  for (const Export* exp : engine_->exports()) {
    const ExportOptions& o = exp->options();
    v1::ExportInfo* e = response->add_exports();
    e->set_name(o.name);
    if (authorizer_->IsAdmin(caller, o.name)) e->set_root(o.root);  // Admins only.
    e->set_default_policy(ToProto(o.default_policy));
    ToProto(o.grace, e->mutable_grace());
    ToProto(o.layout_timeout, e->mutable_layout_timeout());
    ToProto(o.default_ttl, e->mutable_default_ttl());
    ToProto(o.max_ttl, e->mutable_max_ttl());
    e->set_read_only(o.read_only);
  }
  response->set_page_size(engine_->page_size());
  ToProto(sessions_->default_ttl(), response->mutable_session_ttl());
  response->set_live_leases(engine_->live_lease_count());
  response->set_pinned_bytes(engine_->backend().pinned_bytes());
  const uint64_t budget = engine_->pinned_bytes_budget();
  response->set_max_pinned_bytes_total(budget == kUnlimited ? 0 : budget);
  if (std::shared_ptr<QuotaAccount> account = AccountOf(caller)) {
    v1::QuotaUsage* quota = response->mutable_quota();
    quota->set_identity(account->label());
    const auto limit = [&](QuotaKind kind) {
      return account->limit(kind) == kUnlimited ? 0 : account->limit(kind);
    };
    quota->set_sessions(account->used(QuotaKind::kSessions));
    quota->set_max_sessions(limit(QuotaKind::kSessions));
    quota->set_leases(account->used(QuotaKind::kLeases));
    quota->set_max_leases(limit(QuotaKind::kLeases));
    quota->set_pinned_bytes(account->used(QuotaKind::kPinnedBytes));
    quota->set_max_pinned_bytes(limit(QuotaKind::kPinnedBytes));
    quota->set_watches(account->used(QuotaKind::kWatches));
    quota->set_max_watches(limit(QuotaKind::kWatches));
    quota->set_blocked_calls(account->used(QuotaKind::kBlockedCalls));
    quota->set_max_blocked_calls(limit(QuotaKind::kBlockedCalls));
  }
  if (info_.host != nullptr) {
    response->set_vmas(info_.host->vma_estimate());
    response->set_max_vmas_total(info_.host->max_vmas());
    // Pins name their holder by the same label (PinRequest::holder).
    response->mutable_quota()->set_identity(caller.Label());
    response->mutable_quota()->set_vmas(info_.host->holder_vmas(caller.Label()));
    response->mutable_quota()->set_max_vmas(info_.host->max_vmas_per_holder());
  }
  if (info_.rdma) {
    const RdmaInfo rdma = info_.rdma();
    for (const RdmaDeviceInfo& device : rdma.devices) {
      v1::DeviceInfo* d = response->add_devices();
      d->set_name(device.name);
      d->set_odp(device.odp);
      for (const std::string& type : device.memory_window_types) d->add_memory_window_types(type);
      for (const std::string& quirk : device.quirks) d->add_quirks(quirk);
      d->set_active_mtu(device.active_mtu);
      d->set_max_mw(device.max_mw);
    }
    for (const RdmaEndpointInfo& e : rdma.endpoints) {
      v1::RdmaEndpoint* endpoint = response->add_rdma_endpoints();
      endpoint->set_device(e.device);
      endpoint->set_address(e.address);
      endpoint->set_port(e.port);
    }
    response->set_rdma_connections(rdma.connections);
  }
  return Status::OK;
}

Status PinBrokerService::Echo(Ctx*, const v1::EchoRequest* request, v1::EchoResponse* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  response->set_payload(request->payload());
  return Status::OK;
}

// --- watch --------------------------------------------------------------------------------

// Streams one session's snapshot, then its events. Writes are one at a time (gRPC's rule);
// events arriving while a write is in flight wait in the EventQueue. The queue's on_ready hook
// reaches the reactor through `Link`, which OnDone() cuts, so a late event cannot touch a
// finished reactor.
class PinBrokerService::WatchReactor final : public ::grpc::ServerWriteReactor<Bytes> {
 public:
  WatchReactor(PinBrokerService* service, const PeerIdentity& caller, const Bytes& bytes)
      : service_(service) {
    {
      absl::MutexLock lock(&service_->mu_);
      ++service_->live_watches_;  // Until OnDone.
    }
    v1::WatchRequest request;
    if (Status decoded = DecodeRequest(bytes, &request); !decoded.ok()) {
      absl::MutexLock lock(&mu_);
      FinishLocked(std::move(decoded));
      return;
    }
    absl::Status accepting = Validate(request);
    if (accepting.ok()) accepting = service_->CheckAccepting();
    auto session = accepting.ok() ? service_->Authenticate(request.credentials(), caller)
                                  : absl::StatusOr<std::string>(accepting);
    if (session.ok()) {
      // Held until the stream is done (OnDone deletes the reactor).
      auto quota = service_->Reserve(caller, QuotaKind::kWatches);
      if (quota.ok()) {
        quota_ = *std::move(quota);
      } else {
        session = quota.status();
      }
    }
    if (!session.ok()) {
      // Through FinishLocked: a cancellation arriving later must not finish the call twice.
      absl::MutexLock lock(&mu_);
      FinishLocked(ToGrpcStatus(session.status()));
      return;
    }
    session_ = *session;
    service_->sessions_->AddWatcher(session_);
    // The hook stays disconnected until the snapshot is queued: events pushed meanwhile wait in
    // the queue, and the hook never runs into a half-built reactor.
    link_ = std::make_shared<Link>();
    auto subscription = service_->engine_->Watch(session_, [link = link_] {
      absl::MutexLock lock(&link->mu);
      if (link->reactor != nullptr) link->reactor->OnEventReady();
    });
    bool registered;
    {
      // Registered and checked in one step, so CloseAllWatches() cannot miss this stream.
      absl::MutexLock lock(&service_->mu_);
      registered = service_->accepting_;
      if (registered) service_->watches_.insert(subscription.events);
    }
    if (!registered) subscription.events->Close();  // Ends the stream with UNAVAILABLE below.
    {
      absl::MutexLock lock(&mu_);
      queue_ = subscription.events;
      for (const LeaseInfo& lease : subscription.snapshot) {
        v1::WatchEvent event;
        event.set_type(v1::WatchEvent::SNAPSHOT);
        ToProto(lease, *service_->ids_, event.mutable_lease());
        pending_.push_back(std::move(event));
      }
      v1::WatchEvent complete;
      complete.set_type(v1::WatchEvent::SNAPSHOT_COMPLETE);
      pending_.push_back(std::move(complete));
      WriteNextLocked();
    }
    absl::MutexLock lock(&link_->mu);
    link_->reactor = this;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(::grpc::Status(::grpc::StatusCode::CANCELLED, "watch stream broken"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(::grpc::Status(::grpc::StatusCode::CANCELLED, "client cancelled the watch"));
  }

  void OnDone() override {
    if (link_ != nullptr) {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = nullptr;
    }
    std::shared_ptr<EventQueue> queue;
    {
      absl::MutexLock lock(&mu_);
      queue = queue_;
    }
    if (queue != nullptr) {
      queue->Close();
      absl::MutexLock lock(&service_->mu_);
      service_->watches_.erase(queue);
    }
    if (!session_.empty()) service_->sessions_->RemoveWatcher(session_);
    PinBrokerService* const service = service_;
    delete this;
    absl::MutexLock lock(&service->mu_);
    --service->live_watches_;
  }

  void OnEventReady() {
    absl::MutexLock lock(&mu_);
    WriteNextLocked();
  }

 private:
  struct Link {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (pending_.empty()) {
      auto next = queue_->TryNext();
      if (!next.has_value()) return;  // Idle until the next event.
      if (!next->ok()) {
        const absl::Status& s = next->status();
        FinishLocked(absl::IsCancelled(s)
                         ? ::grpc::Status(::grpc::StatusCode::UNAVAILABLE,
                                          "the broker is shutting down; every lease of this "
                                          "session has ended; reconnect to its replacement")
                         : ToGrpcStatus(s));
        return;
      }
      const LeaseEvent& e = **next;
      v1::WatchEvent event;
      event.set_type(ToProto(e.type));
      ToProto(e.lease, *service_->ids_, event.mutable_lease());
      ToProto(e.at, event.mutable_at());
      pending_.push_back(std::move(event));
    }
    const v1::WatchEvent event = std::move(pending_.front());
    pending_.pop_front();
    current_.Clear();
    if (Status encoded = EncodeMessage(event, &current_); !encoded.ok()) {
      FinishLocked(std::move(encoded));
      return;
    }
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(::grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(status));
  }

  PinBrokerService* const service_;
  QuotaHold quota_;  // The identity's Watch stream, given back with the reactor.
  std::string session_;
  std::shared_ptr<Link> link_;
  absl::Mutex mu_;
  std::shared_ptr<EventQueue> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::WatchEvent> pending_ ABSL_GUARDED_BY(mu_);
  Bytes current_ ABSL_GUARDED_BY(mu_);  // The event being written, encoded.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

::grpc::ServerWriteReactor<PinBrokerService::Bytes>* PinBrokerService::Watch(CallbackCtx* context,
                                                                             const Bytes* request) {
  return new WatchReactor(this, Caller(context), *request);
}

}  // namespace pinbroker::broker
