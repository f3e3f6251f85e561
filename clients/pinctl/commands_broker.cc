// info | health
#include "absl/strings/str_cat.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/views.h"

namespace pinctl {

namespace v1 = ::pinbroker::v1;

int RunInfo(Invocation& inv) {
  v1::GetInfoResponse response;
  const grpc::Status status = inv.connection.broker().GetInfo(inv.connection.Context().get(),
                                                              v1::GetInfoRequest(), &response);
  if (!status.ok()) return inv.out.RpcError(status, "info");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat("endpoint: ", inv.connection.endpoint()));
    PrintInfo(inv.out, response);
  }
  return kExitOk;
}

int RunHealth(Invocation& inv) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(inv.args.Get("service").value_or("pinbroker.v1.PinBroker"));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status =
      inv.connection.health().Check(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "health check");
  const std::string state =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    inv.out.Line(absl::StrCat(request.service(), " at ", inv.connection.endpoint(), ": ", state));
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    inv.out.Note(absl::StrCat(request.service(), " is ", state));
    return kExitNotServing;
  }
  return kExitOk;
}

}  // namespace pinctl
