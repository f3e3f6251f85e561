#include "clients/rdma/completion_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace pinbroker::client::rdma_internal {

absl::Status CompletionStatus(ibv_wc_status status, absl::string_view lease_id, RdmaOpKind kind,
                              uint64_t length, absl::string_view broken_because) {
  if (status == IBV_WC_SUCCESS) return absl::OkStatus();
  const std::string what =
      absl::StrCat("lease ", lease_id, ": ", RdmaOpName(kind), " of ", length, " bytes");
  switch (status) {
    case IBV_WC_REM_ACCESS_ERR:
      return absl::PermissionDeniedError(
          absl::StrCat("lease ", lease_id,
                       ": remote access error \xE2\x80\x94 the lease was revoked or its key "
                       "is not valid on this connection (connection now in error state; ",
                       RdmaOpName(kind), " of ", length, " bytes)"));
    case IBV_WC_WR_FLUSH_ERR:
      return absl::UnavailableError(absl::StrCat(
          what, " was flushed: the RDMA connection broke before it ran",
          broken_because.empty() ? "" : " (", broken_because, broken_because.empty() ? "" : ")"));
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return absl::UnavailableError(
          absl::StrCat(what, " failed: the broker's end stopped answering (",
                       ibv_wc_status_str(status), "); the connection is now in error state"));
    case IBV_WC_REM_INV_REQ_ERR:
      return absl::InvalidArgumentError(
          absl::StrCat(what, " was refused by the broker's device as an invalid request (",
                       ibv_wc_status_str(status), "); the connection is now in error state"));
    case IBV_WC_REM_OP_ERR:
      return absl::InternalError(absl::StrCat(what, " failed at the broker's device (",
                                              ibv_wc_status_str(status),
                                              "); the connection is now in error state"));
    default:
      return absl::InternalError(absl::StrCat(what, " failed: ", ibv_wc_status_str(status), " (",
                                              static_cast<int>(status),
                                              "); the connection is now in error state"));
  }
}

}  // namespace pinbroker::client::rdma_internal
