// PinBrokerService: the pinbroker.v1.PinBroker gRPC service over a PinService.
//
// Each handler authenticates (where the RPC needs a session), converts the request, calls the
// engine once and converts the result; absl::Status becomes grpc::Status only here. The RPCs
// that may wait use gRPC's callback API so that a waiting call costs no thread: Truncate,
// PunchHole and RevokeLease check, authorize and validate in the handler, start the engine's
// asynchronous form and return; the engine's completion (on its small executor) finishes the
// call. Watch streams are callback-based too, so an idle stream costs no thread. These four
// decode their own requests (broker/raw_call.h), so a malformed one is answered as on the
// synchronous API. The other unary RPCs return promptly and use the synchronous API.
// Shutdown: the engine's RecallAll() completes every pending layout change and revoke wait,
// which finishes their calls.
//
// Identity: every call's caller is the PeerIdentity its connection has (PeerRegistry: the
// kernel's SO_PEERCRED for Unix peers, the certificate for TLS peers, nobody otherwise), never
// anything the request says. Sessions are bound to the identity that opened them, and files are
// opened with the caller's filesystem credentials (PinRequest::caller, LayoutRequest::caller),
// so the kernel decides what the caller may read and write.
//
// Quotas: every session, lease, Watch stream and possibly blocking call (Truncate, PunchHole,
// RevokeLease with a grace) counts against its identity's quotas (Info::quotas), reserved before
// it is created and given back by whatever holds it when it ends.
//
// Thread-safety: safe for gRPC's concurrent calls. The PinService, SessionTable and clock must
// outlive the service.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "broker/authorizer.h"
#include "broker/config.h"
#include "broker/lease_id_codec.h"
#include "broker/peer_identity.h"
#include "broker/raw_call.h"
#include "broker/session_table.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "pinning/backend_info.h"
#include "pinning/host_backend.h"
#include "pinning/pin_service.h"
#include "pinning/quota.h"

namespace pinbroker::broker {

namespace v1 = ::pinbroker::v1;

class PinBrokerService final
    : public ::pinbroker::v1::PinBroker::WithRawCallbackMethod_Truncate<
          ::pinbroker::v1::PinBroker::WithRawCallbackMethod_PunchHole<
              ::pinbroker::v1::PinBroker::WithRawCallbackMethod_RevokeLease<
                  ::pinbroker::v1::PinBroker::WithRawCallbackMethod_Watch<
                      ::pinbroker::v1::PinBroker::Service>>>> {
 public:
  struct Info {
    std::string version;
    absl::Time started_at;
    // Reads the RDMA backend's state, if RDMA pins are served (GetInfo's devices, endpoints,
    // connections); null otherwise.
    RdmaInfoProvider rdma;
    // Why RDMA access is not served (GetInfo's rdma_unavailable); empty when `rdma` is set.
    std::string rdma_unavailable;
    // Per export: the longest grace and layout timeout a caller may ask for (absent: defaults).
    absl::flat_hash_map<std::string, LayoutCaps> layout_caps;
    // Each identity's quotas (sessions, leases, pinned bytes, Watch streams, blocked calls);
    // null: none. Must outlive the service.
    QuotaLedger* quotas = nullptr;
    // The host backend, for GetInfo's VMA counts (the broker's and each identity's); null: none.
    // Must outlive the service.
    const HostBackend* host = nullptr;
  };

  // `peers` names each call's caller, `authorizer` decides its rights; both must outlive the
  // service.
  PinBrokerService(PinService* engine, SessionTable* sessions, const LeaseIdCodec* ids,
                   const PeerRegistry* peers, const Authorizer* authorizer, Info info);
  ~PinBrokerService() override;

  // Shutdown, step 1: new pins, sessions and watches fail with UNAVAILABLE.
  void StopAccepting();
  // Shutdown, step 2 (after the engine recalled and revoked everything): ends every Watch
  // stream once it has delivered what is queued, with UNAVAILABLE.
  void CloseAllWatches();
  // Shutdown, step 3: waits (real time, at most `timeout`) until every Watch stream is done;
  // false if some were not by then.
  bool AwaitWatchesDone(absl::Duration timeout);

  using Ctx = ::grpc::ServerContext;
  using Status = ::grpc::Status;
  Status OpenSession(Ctx*, const v1::OpenSessionRequest*, v1::OpenSessionResponse*) override;
  Status RenewSession(Ctx*, const v1::RenewSessionRequest*, v1::RenewSessionResponse*) override;
  Status CloseSession(Ctx*, const v1::CloseSessionRequest*, v1::CloseSessionResponse*) override;
  Status Pin(Ctx*, const v1::PinRequest*, v1::PinResponse*) override;
  Status Renew(Ctx*, const v1::RenewRequest*, v1::RenewResponse*) override;
  Status Release(Ctx*, const v1::ReleaseRequest*, v1::ReleaseResponse*) override;
  Status ListLeases(Ctx*, const v1::ListLeasesRequest*, v1::ListLeasesResponse*) override;
  Status DescribeFile(Ctx*, const v1::DescribeFileRequest*, v1::DescribeFileResponse*) override;
  // The callback RPCs take their request and give their response as bytes (broker/raw_call.h
  // says why); each decodes a TruncateRequest, PunchHoleRequest, RevokeLeaseRequest or
  // WatchRequest and answers a LayoutChangeResponse, RevokeLeaseResponse or WatchEvents.
  using CallbackCtx = ::grpc::CallbackServerContext;
  using Bytes = ::grpc::ByteBuffer;
  ::grpc::ServerUnaryReactor* Truncate(CallbackCtx*, const Bytes* request,
                                       Bytes* response) override;
  ::grpc::ServerUnaryReactor* PunchHole(CallbackCtx*, const Bytes* request,
                                        Bytes* response) override;
  ::grpc::ServerUnaryReactor* RevokeLease(CallbackCtx*, const Bytes* request,
                                          Bytes* response) override;
  Status ListSessions(Ctx*, const v1::ListSessionsRequest*, v1::ListSessionsResponse*) override;
  Status GetInfo(Ctx*, const v1::GetInfoRequest*, v1::GetInfoResponse*) override;
  Status Echo(Ctx*, const v1::EchoRequest*, v1::EchoResponse*) override;
  ::grpc::ServerWriteReactor<Bytes>* Watch(CallbackCtx* context, const Bytes* request) override;

 private:
  // Truncate and PunchHole: the request's options as the engine's LayoutRequest, on behalf of
  // `caller` (whose file permissions apply and who is named as the initiator), or
  // PERMISSION_DENIED when the export's layout rule refuses the caller (logged).
  absl::StatusOr<LayoutRequest> AuthorizedLayout(const PeerIdentity& caller,
                                                 const v1::LayoutOptions& options,
                                                 const std::string& export_name,
                                                 const std::string& path) const;
  // The engine's answer to a layout change as the RPC's; the kernel's refusals are logged.
  Status AnswerLayout(absl::string_view what, const PeerIdentity& caller,
                      const std::string& export_name, const std::string& path,
                      const absl::StatusOr<LayoutResult>& result,
                      v1::LayoutChangeResponse* response) const;

  class WatchReactor;
  friend class WatchReactor;
  class RevokeReactor;

  // Truncate and PunchHole: decodes and validates the Request, authorizes the caller, counts
  // the call as blocked, then has `start(layout, request, done)` begin the engine's change,
  // whose completion answers the call.
  template <typename Request, typename Start>
  ::grpc::ServerUnaryReactor* StartLayoutCall(CallbackCtx* context, const Bytes* bytes, Bytes* out,
                                              std::string what, Start start);
  // The engine's completion of a layout change: answers the call, giving the blocked-calls
  // quota back first.
  PinService::LayoutDone FinishLayout(UnaryAnswer<v1::LayoutChangeResponse> answer,
                                      std::string what, PeerIdentity caller,
                                      std::string export_name, std::string path,
                                      QuotaHold blocked) const;

  // The session id for `credentials` presented by `caller`, renewing the session;
  // UNAUTHENTICATED for bad credentials, PERMISSION_DENIED when the session is not the caller's.
  absl::StatusOr<std::string> Authenticate(const v1::SessionCredentials& credentials,
                                           const PeerIdentity& caller);
  PeerIdentity Caller(const ::grpc::ServerContextBase* context) const;
  // `lease` as a client sees it, with its holder's identity.
  void LeaseToProto(const LeaseInfo& lease, v1::Lease* out) const;
  // Whether `caller` may see `lease` in full: an admin of its export, or its session's owner.
  bool Visible(const PeerIdentity& caller, const LeaseInfo& lease) const;
  // The export's layout caps (defaults for an unknown export).
  LayoutCaps CapsOf(const std::string& export_name) const;
  absl::Status CheckAccepting() const;
  // `caller`'s quota account (null without quotas), and one unit of `kind` reserved on it
  // (an empty hold without quotas).
  std::shared_ptr<QuotaAccount> AccountOf(const PeerIdentity& caller) const;
  absl::StatusOr<QuotaHold> Reserve(const PeerIdentity& caller, QuotaKind kind) const;

  PinService* const engine_;
  SessionTable* const sessions_;
  const LeaseIdCodec* const ids_;
  const PeerRegistry* const peers_;
  const Authorizer* const authorizer_;
  const Info info_;

  mutable absl::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  // Queues of open Watch streams, closed by CloseAllWatches().
  absl::flat_hash_set<std::shared_ptr<EventQueue>> watches_ ABSL_GUARDED_BY(mu_);
  // Watch streams not done yet (from their handler to their OnDone), for AwaitWatchesDone().
  size_t live_watches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pinbroker::broker
