#include "clients/rdma/attach.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace pinbroker::client::rdma_internal {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// IB CM reject reasons (IBA 12.6.7.2) rdma_cm reports as the REJECTED event's status.
absl::string_view CmRejectReasonName(int reason) {
  switch (reason) {
    case 1:
      return "no QP available at the peer";
    case 2:
      return "no EEC available at the peer";
    case 3:
      return "no resources at the peer";
    case 4:
      return "timeout";
    case 8:
      return "invalid service id: nothing listens on that address and port";
    case 28:
      return "rejected by the peer application";
    default:
      return "connection rejected";
  }
}

}  // namespace

absl::Status DecodeToken(absl::string_view hex, uint8_t (&out)[rdma_wire::kTokenBytes]) {
  if (hex.size() != 2 * rdma_wire::kTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("session token has ", hex.size(),
                                                   " characters; expected ",
                                                   2 * rdma_wire::kTokenBytes, " hex digits"));
  }
  for (size_t i = 0; i < rdma_wire::kTokenBytes; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(absl::StrCat("session token is not hexadecimal (character ",
                                                     hi < 0 ? 2 * i : 2 * i + 1, ")"));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return absl::OkStatus();
}

absl::StatusOr<rdma_wire::AttachRequest> EncodeAttachRequest(absl::string_view session_id,
                                                             absl::string_view token_hex) {
  if (session_id.empty()) return absl::InvalidArgumentError("empty session id");
  if (session_id.size() > rdma_wire::kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "session id \"", session_id, "\" has ", session_id.size(),
        " bytes; the RDMA attach request carries at most ", rdma_wire::kMaxSessionIdBytes));
  }
  rdma_wire::AttachRequest request;
  if (absl::Status s = DecodeToken(token_hex, request.token); !s.ok()) return s;
  request.session_id_length = static_cast<uint8_t>(session_id.size());
  std::memcpy(request.session_id, session_id.data(), session_id.size());
  return request;
}

absl::Status RejectToStatus(const void* private_data, size_t length, int cm_status,
                            absl::string_view peer) {
  rdma_wire::AttachReject reject;
  constexpr size_t kHeader = offsetof(rdma_wire::AttachReject, message);
  uint32_t magic = 0;
  if (private_data != nullptr && length >= kHeader) {
    std::memcpy(&magic, private_data, sizeof(magic));
  }
  if (magic != rdma_wire::kMagic) {
    return absl::UnavailableError(absl::StrCat("RDMA connection to ", peer,
                                               " rejected: ", CmRejectReasonName(cm_status),
                                               " (reason ", cm_status, ")"));
  }
  std::memcpy(&reject, private_data, std::min(length, sizeof(reject)));
  reject.message[sizeof(reject.message) - 1] = '\0';  // The peer's NUL is not trusted.
  const std::string message(reject.message, strnlen(reject.message, sizeof(reject.message)));
  const std::string text =
      absl::StrCat("RDMA attach to ", peer, " rejected (", rdma_wire::RejectCodeName(reject.code),
                   ")", message.empty() ? "" : ": ", message);
  switch (static_cast<rdma_wire::RejectCode>(reject.code)) {
    case rdma_wire::RejectCode::kMalformed:
      return absl::InvalidArgumentError(text);
    case rdma_wire::RejectCode::kUnauthenticated:
      return absl::UnauthenticatedError(text);
    case rdma_wire::RejectCode::kAlreadyAttached:
      return absl::AlreadyExistsError(text);
    case rdma_wire::RejectCode::kUnavailable:
      return absl::UnavailableError(text);
  }
  return absl::UnavailableError(absl::StrCat(text, " (code ", reject.code, ")"));
}

}  // namespace pinbroker::client::rdma_internal
