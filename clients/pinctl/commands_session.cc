// session open | renew | close | list
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/views.h"

namespace pinctl {

namespace v1 = ::pinbroker::v1;

int RunSessionOpen(Invocation& inv) {
  absl::Duration ttl;
  if (!GetDuration(inv, "ttl", absl::ZeroDuration(), &ttl)) return kExitUsage;
  v1::OpenSessionRequest request;
  request.set_client_name(inv.args.Get("name").value_or("pinctl"));
  ToProto(ttl, request.mutable_ttl());
  v1::OpenSessionResponse response;
  const grpc::Status status =
      inv.connection.broker().OpenSession(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "open session");
  if (inv.out.json()) {
    inv.out.Line(SessionJson(response));
    return kExitOk;
  }
  Table t({"session:", response.credentials().session_id()});
  t.Add({"token:", response.credentials().token()});
  t.Add({"expires:", FormatTimestamp(response.expires_at())});
  t.Add({"broker epoch:", response.broker_epoch()});
  t.PrintTo(inv.out);
  inv.out.Line(absl::StrCat("export PINBROKER_SESSION=", response.credentials().session_id(),
                            " PINBROKER_TOKEN=", response.credentials().token()));
  return kExitOk;
}

int RunSessionRenew(Invocation& inv) {
  auto credentials = RequireCredentials(inv, "session renew");
  if (!credentials) return kExitUsage;
  v1::RenewSessionRequest request;
  *request.mutable_credentials() = *credentials;
  v1::RenewSessionResponse response;
  const grpc::Status status =
      inv.connection.broker().RenewSession(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "renew session");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat("session ", credentials->session_id(), " expires ",
                              FormatTimestamp(response.expires_at())));
  }
  return kExitOk;
}

int RunSessionClose(Invocation& inv) {
  auto credentials = RequireCredentials(inv, "session close");
  if (!credentials) return kExitUsage;
  v1::CloseSessionRequest request;
  *request.mutable_credentials() = *credentials;
  v1::CloseSessionResponse response;
  const grpc::Status status =
      inv.connection.broker().CloseSession(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "close session");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat("session ", credentials->session_id(), " closed; released: ",
                              response.released_lease_ids().empty()
                                  ? "-"
                                  : absl::StrJoin(response.released_lease_ids(), ", ")));
  }
  return kExitOk;
}

int RunSessionList(Invocation& inv) {
  v1::ListSessionsResponse response;
  const grpc::Status status = inv.connection.broker().ListSessions(
      inv.connection.Context().get(), v1::ListSessionsRequest(), &response);
  if (!status.ok()) return inv.out.RpcError(status, "list sessions");
  if (inv.out.json()) {
    inv.out.Json(response);
    return kExitOk;
  }
  Table t({"SESSION", "UID", "PID", "COMMAND", "CLIENT", "LEASES", "PINNED", "TTL"});
  const absl::Time now = absl::Now();
  for (const v1::SessionInfo& s : response.sessions()) {
    std::string ttl = "watched";
    if (s.has_expires_at()) {
      const absl::Duration left = FromProto(s.expires_at()) - now;
      ttl = absl::FormatDuration(
          absl::Trunc(std::max(left, absl::ZeroDuration()), absl::Seconds(1)));
    }
    t.Add({s.session_id(), s.pid() != 0 ? absl::StrCat(s.uid()) : s.identity(),
           s.pid() != 0 ? absl::StrCat(s.pid()) : "-", s.command().empty() ? "-" : s.command(),
           s.client_name(), absl::StrCat(s.lease_count()), absl::StrCat(s.pinned_bytes()), ttl});
  }
  if (t.empty()) {
    inv.out.Line("no sessions");
    return kExitOk;
  }
  t.PrintTo(inv.out);
  return kExitOk;
}

}  // namespace pinctl
