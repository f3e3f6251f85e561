// The client's half of the RDMA attach handshake (include/pinbroker/rdma_wire.h): encoding the
// AttachRequest carried by the rdma_cm connect request, and turning the broker's answer (a
// REJECTED event with an AttachReject, or a transport failure) into an absl::Status.
//
// No verbs calls: pure functions, tested on hosts without RDMA.
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinbroker/rdma_wire.h"

namespace pinbroker::client::rdma_internal {

// The session token (32 hex digits, as OpenSession returns it) as its 16 raw bytes.
// INVALID_ARGUMENT if it is not exactly 32 hex digits; the message never contains the token.
absl::Status DecodeToken(absl::string_view hex, uint8_t (&out)[rdma_wire::kTokenBytes]);

// The private data of the connect request. INVALID_ARGUMENT for an empty session id or one
// longer than rdma_wire::kMaxSessionIdBytes, or a malformed token.
absl::StatusOr<rdma_wire::AttachRequest> EncodeAttachRequest(absl::string_view session_id,
                                                             absl::string_view token_hex);

// The status for a REJECTED connect. `private_data`/`length` are the reject's private data (may
// be null/0 or zero-padded; a transport may report more bytes than the broker sent), and
// `cm_status` the event's status (the CM's reject reason). `peer` ("10.77.0.1:7471") goes into
// the message. An AttachReject maps as:
//   kMalformed -> INVALID_ARGUMENT, kUnauthenticated -> UNAUTHENTICATED,
//   kAlreadyAttached -> ALREADY_EXISTS, kUnavailable (and unknown codes) -> UNAVAILABLE,
// with the broker's message. A reject without an AttachReject (no listener on that port, a
// CM-level refusal) is UNAVAILABLE naming the reject reason.
absl::Status RejectToStatus(const void* private_data, size_t length, int cm_status,
                            absl::string_view peer);

}  // namespace pinbroker::client::rdma_internal
