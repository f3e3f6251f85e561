// lease pin (without --hold) | renew | release | list | show
#include "absl/strings/str_cat.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/views.h"

namespace pinctl {

namespace v1 = ::pinbroker::v1;

bool MakePinRequest(Invocation& inv, v1::PinRequest* request) {
  uint64_t offset = 0;
  uint64_t length = 0;
  absl::Duration ttl;
  absl::Duration wait;
  if (!inv.args.Has("length")) {
    inv.out.UsageError("lease pin needs --length N");
    return false;
  }
  if (!GetSize(inv, "offset", 0, &offset) || !GetSize(inv, "length", 0, &length) ||
      !GetDuration(inv, "ttl", absl::ZeroDuration(), &ttl) ||
      !GetDuration(inv, "wait", absl::ZeroDuration(), &wait)) {
    return false;
  }
  const std::string access = inv.args.Get("access").value_or("read");
  if (access == "read") {
    request->set_access(v1::ACCESS_READ);
  } else if (access == "rw") {
    request->set_access(v1::ACCESS_READ_WRITE);
  } else {
    inv.out.UsageError(absl::StrCat("--access must be read or rw, not '", access, "'"));
    return false;
  }
  request->set_export_name(inv.args.positional()[0]);
  request->set_path(inv.args.positional()[1]);
  request->set_offset(offset);
  request->set_length(length);
  if (ttl > absl::ZeroDuration()) ToProto(ttl, request->mutable_ttl());
  if (wait > absl::ZeroDuration()) ToProto(wait, request->mutable_wait_if_blocked());
  return true;
}

grpc::Status OpenOwnSession(Invocation& inv, v1::OpenSessionResponse* opened) {
  auto ttl = inv.args.Duration("session-ttl", absl::ZeroDuration());
  if (!ttl.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(ttl.status().message()));
  }
  v1::OpenSessionRequest request;
  request.set_client_name(inv.args.Get("name").value_or("pinctl"));
  ToProto(*ttl, request.mutable_ttl());
  return inv.connection.broker().OpenSession(inv.connection.Context().get(), request, opened);
}

void CloseOwnSession(Invocation& inv, const v1::SessionCredentials& credentials) {
  v1::CloseSessionRequest request;
  *request.mutable_credentials() = credentials;
  v1::CloseSessionResponse response;
  // Best effort: a broker shutting down or gone has ended the session anyway.
  inv.connection.broker()
      .CloseSession(inv.connection.CleanupContext().get(), request, &response)
      .ok();
}

int RunLeasePin(Invocation& inv) {
  if (inv.args.Has("hold")) return RunLeaseHold(inv);
  if (inv.args.Has("ignore-recall")) return inv.out.UsageError("--ignore-recall needs --hold");
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
  const absl::Duration wait = FromProto(request.wait_if_blocked());
  v1::PinResponse response;
  const grpc::Status status =
      inv.connection.broker().Pin(inv.connection.Context(wait).get(), request, &response);
  if (!status.ok()) {
    if (opened) CloseOwnSession(inv, opened->credentials());
    return inv.out.RpcError(status, "pin");
  }
  if (inv.out.json()) {
    std::string line = absl::StrCat("{\"lease\":", ToJson(response.lease()));
    if (opened) absl::StrAppend(&line, ",\"session\":", SessionJson(*opened));
    inv.out.Line(absl::StrCat(line, "}"));
    return kExitOk;
  }
  PrintLeaseDetail(inv.out, response.lease());
  if (opened) {
    inv.out.Line("");
    inv.out.Line(absl::StrCat("The lease belongs to a new session; it lapses after its TTL ",
                              "unless renewed. To renew or release the lease later:"));
    inv.out.Line(absl::StrCat("export PINBROKER_SESSION=", opened->credentials().session_id(),
                              " PINBROKER_TOKEN=", opened->credentials().token()));
  }
  return kExitOk;
}

int RunLeaseRenew(Invocation& inv) {
  auto credentials = RequireCredentials(inv, "lease renew");
  if (!credentials) return kExitUsage;
  absl::Duration ttl;
  if (!GetDuration(inv, "ttl", absl::ZeroDuration(), &ttl)) return kExitUsage;
  v1::RenewRequest request;
  *request.mutable_credentials() = *credentials;
  request.set_lease_id(inv.args.positional()[0]);
  if (ttl > absl::ZeroDuration()) ToProto(ttl, request.mutable_ttl());
  v1::RenewResponse response;
  const grpc::Status status =
      inv.connection.broker().Renew(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "renew");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat("lease ", response.lease().lease_id(), " expires ",
                              FormatTimestamp(response.lease().expires_at())));
  }
  return kExitOk;
}

int RunLeaseRelease(Invocation& inv) {
  auto credentials = RequireCredentials(inv, "lease release");
  if (!credentials) return kExitUsage;
  v1::ReleaseRequest request;
  *request.mutable_credentials() = *credentials;
  request.set_lease_id(inv.args.positional()[0]);
  v1::ReleaseResponse response;
  const grpc::Status status =
      inv.connection.broker().Release(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "release");
  if (inv.out.json()) {
    inv.out.Line(absl::StrCat("{\"lease_id\":", JsonQuote(request.lease_id()),
                              ",\"state\":\"LEASE_STATE_RELEASED\"}"));
  } else {
    inv.out.Line(absl::StrCat("lease ", request.lease_id(), " released"));
  }
  return kExitOk;
}

namespace {

// Every page of the listing, gathered into one response (next_page_token left empty).
grpc::Status List(Invocation& inv, const v1::ListLeasesRequest& request,
                  v1::ListLeasesResponse* response) {
  v1::ListLeasesRequest page_request = request;
  response->Clear();
  while (true) {
    v1::ListLeasesResponse page;
    const grpc::Status status =
        inv.connection.broker().ListLeases(inv.connection.Context().get(), page_request, &page);
    if (!status.ok()) return status;
    for (v1::Lease& lease : *page.mutable_leases()) *response->add_leases() = std::move(lease);
    if (page.next_page_token().empty()) return grpc::Status::OK;
    page_request.set_page_token(page.next_page_token());
  }
}

}  // namespace

int RunLeaseList(Invocation& inv) {
  v1::ListLeasesRequest request;
  request.set_export_name(inv.args.Get("export").value_or(""));
  request.set_path(inv.args.Get("path").value_or(""));
  request.set_session_id(inv.args.Get("session").value_or(""));
  if (!request.path().empty() && request.export_name().empty()) {
    return inv.out.UsageError("--path needs --export");
  }
  v1::ListLeasesResponse response;
  const grpc::Status status = List(inv, request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "list leases");
  if (inv.out.json()) {
    inv.out.Json(response);
    return kExitOk;
  }
  std::vector<const v1::Lease*> leases;
  for (const v1::Lease& l : response.leases()) leases.push_back(&l);
  PrintLeaseTable(inv.out, leases);
  return kExitOk;
}

int RunLeaseRevoke(Invocation& inv) {
  absl::Duration grace;
  if (!GetDuration(inv, "grace", absl::ZeroDuration(), &grace)) return kExitUsage;
  v1::RevokeLeaseRequest request;
  request.set_lease_id(inv.args.positional()[0]);
  ToProto(grace, request.mutable_grace());
  request.set_reason(inv.args.Get("reason").value_or(""));
  v1::RevokeLeaseResponse response;
  // The broker answers after the grace period.
  const grpc::Status status =
      inv.connection.broker().RevokeLease(inv.connection.Context(grace).get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "revoke lease");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat("lease ", request.lease_id(),
                              response.revoked() ? " revoked" : " released by its holder"));
  }
  return kExitOk;
}

int RunLeaseShow(Invocation& inv) {
  const std::string& id = inv.args.positional()[0];
  v1::ListLeasesResponse response;
  const grpc::Status status = List(inv, v1::ListLeasesRequest(), &response);
  if (!status.ok()) return inv.out.RpcError(status, "list leases");
  for (const v1::Lease& l : response.leases()) {
    if (l.lease_id() != id) continue;
    if (inv.out.json()) {
      inv.out.Json(l);
    } else {
      PrintLeaseDetail(inv.out, l);
    }
    return kExitOk;
  }
  return inv.out.RpcError(
      grpc::Status(grpc::StatusCode::NOT_FOUND,
                   absl::StrCat("no live lease ", id,
                                " (ended leases are not listed; the owner's renew or release "
                                "says how it ended)")),
      "show lease");
}

}  // namespace pinctl
