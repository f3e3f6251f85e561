// The C++ client's unary RPCs: one helper for what every unary call of the library shares: the
// deadline, the call on the stub, and the conversion of gRPC's status to absl::Status
// (api/status_convert.h). It does not retry: a failed call is returned to its caller (failed
// background renewals are retried by the lease rules, lease_timing.h). Not part of the public
// API.
//
// Thread-safety: stateless; safe from any thread (gRPC stubs are thread-safe).
#pragma once

#include <grpc/support/time.h>
#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/status_convert.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker::client::internal {

// A deadline `timeout` from now; InfiniteDuration: none. Relative (a time span), so gRPC
// measures it on its own clock: no client clock is read for transport deadlines.
inline void SetRpcTimeout(grpc::ClientContext* context, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  context->set_deadline(gpr_time_from_nanos(absl::ToInt64Nanoseconds(timeout), GPR_TIMESPAN));
}

template <typename Request, typename Response>
using UnaryMethod = grpc::Status (v1::PinBroker::StubInterface::*)(grpc::ClientContext*,
                                                                   const Request&, Response*);

// Calls `method` (e.g. &v1::PinBroker::StubInterface::Renew) on `stub` with a deadline of
// `timeout`; the answer lands in `response`.
template <typename Request, typename Response>
absl::Status CallUnary(v1::PinBroker::StubInterface* stub, UnaryMethod<Request, Response> method,
                       const Request& request, Response* response, absl::Duration timeout) {
  grpc::ClientContext context;
  SetRpcTimeout(&context, timeout);
  return FromGrpcStatus((stub->*method)(&context, request, response));
}

// The same, returning the response.
template <typename Request, typename Response>
absl::StatusOr<Response> CallUnary(v1::PinBroker::StubInterface* stub,
                                   UnaryMethod<Request, Response> method, const Request& request,
                                   absl::Duration timeout) {
  Response response;
  absl::Status status = CallUnary(stub, method, request, &response, timeout);
  if (!status.ok()) return status;
  return response;
}

}  // namespace pinbroker::client::internal
