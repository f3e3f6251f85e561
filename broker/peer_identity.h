// PeerIdentity and PeerRegistry: who is calling, as the kernel or the TLS handshake says.
//
// gRPC 1.51 does not expose a Unix peer's credentials, so the broker accepts Unix connections
// itself (UnixListener), reads SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS (the peer's own
// supplementary groups at connect time) from each, records them here under the connection's
// descriptor number, and only then hands the descriptor to the gRPC server
// (grpc::AddInsecureChannelFromFd). gRPC names such a connection's peer "fd:N" (chttp2_server.cc,
// grpc_server_add_channel_from_fd: the endpoint's peer string is absl::StrCat("fd:", fd)), so
// a call's ServerContext::peer() leads back to the record.
//
// Why a descriptor number cannot be stale while a call looks it up: the descriptor is closed
// only when its endpoint is destroyed, and the chttp2 transport destroys its endpoint in
// destruct_transport(), which runs when the transport's last reference goes. Every stream holds
// a transport reference from init_stream() to destroy_stream(), and a call's stream is destroyed
// only after the call is (a synchronous handler has returned; a callback reactor's OnDone has
// run). So while a handler runs, its connection's descriptor is open, the kernel cannot have
// given the number to a newer connection, and the record under it is this connection's: records
// are written before the descriptor is handed over, and a newer connection with the same number
// overwrites the record before any of its calls can start. (Records of closed connections stay
// until their number is reused; nothing can look them up, as no call can carry that peer.)
//
// Peers not accepted here have no record: TLS peers are named by their certificate (the URI
// SAN, else the subject CN, from the AuthContext); anything else is anonymous and is given the
// credentials of nobody (a TLS principal may be mapped to a local user's credentials).
//
// Thread-safety: PeerRegistry is safe to call concurrently. PeerIdentity is a value type.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pinning/credentials.h"

namespace grpc {
class ServerContextBase;
}  // namespace grpc

namespace pinbroker::broker {

struct PeerIdentity {
  enum class Kind { kUnix, kTls, kAnonymous };
  Kind kind = Kind::kAnonymous;
  // kUnix: the peer's; kTls and kAnonymous: nobody's (see the header comment).
  UnixCredentials unix = NobodyCredentials();
  pid_t pid = 0;          // kUnix: the connecting process.
  std::string command;    // kUnix: its /proc/PID/comm at connect time, escaped.
  std::string principal;  // kTls: URI SAN or subject CN, escaped.
  std::string peer;       // gRPC's peer string.

  // What a session is bound to: "uid:1000", "tls:spiffe://example.org/job", "anonymous".
  std::string Key() const;
  // The identity alone, as quota messages name it: "uid 1000", "tls spiffe://...", "anonymous"
  // (one per Key()).
  std::string Label() const;
  // For messages and audit lines: "uid 1000 (pid 42 pinctl)", "tls spiffe://...",
  // "anonymous (ipv4:127.0.0.1:5555)".
  std::string Describe() const;
  bool IsRoot() const { return kind == Kind::kUnix && unix.uid == 0; }
};

// Reads the kernel's credentials of the peer of the connected Unix socket `fd`.
absl::StatusOr<PeerIdentity> UnixPeerOf(int fd);

// The credentials of local user `uid`: its primary group and the groups the user database
// gives it (nobody's groups when it has no entry).
UnixCredentials CredentialsOfUser(uid_t uid);

class PeerRegistry {
 public:
  // TLS principals that act with a local user's file permissions (TlsConfig.principal_uids).
  // Call before serving.
  void MapPrincipals(absl::flat_hash_map<std::string, uid_t> principal_uids);
  // Records the identity of the connection on descriptor `fd` (before gRPC gets it).
  void Register(int fd, PeerIdentity identity) ABSL_LOCKS_EXCLUDED(mu_);
  // The caller of the call `context` belongs to.
  PeerIdentity Identify(const grpc::ServerContextBase& context) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, PeerIdentity> by_fd_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, UnixCredentials> principals_ ABSL_GUARDED_BY(mu_);
};

// `text` made safe for one log line: control characters and non-ASCII bytes C-escaped, at most
// `max` bytes of input kept (the rest replaced by "...").
std::string SafeText(absl::string_view text, size_t max = 128);

}  // namespace pinbroker::broker
