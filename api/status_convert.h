// Conversion between absl::Status (everything below the gRPC edge) and grpc::Status (the edge).
//
// gRPC 1.51 has no such adapter. The numeric codes are the same (abseil's canonical codes are
// gRPC's), so conversion keeps code and message. Thread-safety: stateless.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace pinbroker {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace pinbroker
