// How a work completion's status becomes an absl::Status naming the lease and the operation.
//
//   IBV_WC_SUCCESS           OK
//   IBV_WC_REM_ACCESS_ERR    PERMISSION_DENIED "lease <id>: remote access error — the lease was
//                            revoked or its key is not valid on this connection (connection now
//                            in error state)"
//   IBV_WC_WR_FLUSH_ERR      UNAVAILABLE: the connection broke before the operation ran (the
//                            message carries why it broke)
//   IBV_WC_RETRY_EXC_ERR,
//   IBV_WC_RNR_RETRY_EXC_ERR UNAVAILABLE: the broker's end stopped answering
//   IBV_WC_REM_INV_REQ_ERR   INVALID_ARGUMENT: the broker's device refused the request
//   IBV_WC_REM_OP_ERR        INTERNAL: the broker's device failed the operation
//   local errors, others     INTERNAL, with ibv_wc_status_str
// Any error completion leaves an RC queue pair in the error state: the connection is broken.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pinbroker/rdma_transfer_checks.h"

namespace pinbroker::client::rdma_internal {

// `broken_because`: why the connection broke, for flushed operations (may be empty).
absl::Status CompletionStatus(ibv_wc_status status, absl::string_view lease_id, RdmaOpKind kind,
                              uint64_t length, absl::string_view broken_because = {});

}  // namespace pinbroker::client::rdma_internal
