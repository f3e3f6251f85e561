// The RDMA connection handshake between a client and pinbrokerd (rdma_cm, RC, RoCE/IB).
//
// A client attaches one RDMA connection to its gRPC session: the rdma_cm connect request carries
// an AttachRequest as private data (at most 56 bytes fit in a RoCE/IB connect request). The
// broker authenticates it against the session table and accepts, or rejects with an
// AttachReject as the reject's private data. Leases pinned with PinRequest.rdma then get
// memory windows bound on the broker's end of exactly this connection: their rkeys work on no
// other connection. One connection per session; a second attach is rejected (kAlreadyAttached)
// until the first disconnects. Disconnecting (or the client dying) revokes the session's RDMA
// leases: their windows are invalidated before the broker destroys its queue pair.
//
// Byte order: multi-byte integers are little-endian (both ends are x86-64/aarch64 Linux here;
// the magic catches a mismatch). Header-only, no dependencies; thread-safety: plain data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace pinbroker::rdma_wire {

inline constexpr uint32_t kMagic = 0x50425231;  // "PBR1"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kTokenBytes = 16;  // The session token, hex-decoded.
inline constexpr size_t kMaxSessionIdBytes = 32;
inline constexpr uint16_t kDefaultPort = 7471;

#pragma pack(push, 1)
struct AttachRequest {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint8_t session_id_length = 0;
  uint8_t reserved = 0;
  uint8_t token[kTokenBytes] = {};
  char session_id[kMaxSessionIdBytes] = {};  // Not NUL-terminated; session_id_length bytes.
};
static_assert(sizeof(AttachRequest) == 56, "must fit a RoCE connect request's private data");

enum class RejectCode : uint16_t {
  kMalformed = 1,        // Wrong magic/version/length.
  kUnauthenticated = 2,  // Unknown or lapsed session, or wrong token.
  kAlreadyAttached = 3,  // The session already has an RDMA connection.
  kUnavailable = 4,      // The broker is shutting down or out of resources (retry later).
};

struct AttachReject {
  uint32_t magic = kMagic;
  uint16_t code = 0;      // RejectCode.
  char message[90] = {};  // NUL-terminated human-readable reason.
};
static_assert(sizeof(AttachReject) <= 148, "must fit a reject's private data");
#pragma pack(pop)

inline const char* RejectCodeName(uint16_t code) {
  switch (static_cast<RejectCode>(code)) {
    case RejectCode::kMalformed:
      return "malformed attach request";
    case RejectCode::kUnauthenticated:
      return "unauthenticated";
    case RejectCode::kAlreadyAttached:
      return "session already has an RDMA connection";
    case RejectCode::kUnavailable:
      return "broker unavailable";
  }
  return "unknown reject code";
}

inline AttachReject MakeReject(RejectCode code, const std::string& message) {
  AttachReject r;
  r.code = static_cast<uint16_t>(code);
  std::strncpy(r.message, message.c_str(), sizeof(r.message) - 1);
  return r;
}

}  // namespace pinbroker::rdma_wire
