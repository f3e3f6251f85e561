// SessionTable: who may act on leases. A session is an id (not secret) plus a token (128 random
// bits, hex, secret) that proves the caller opened it.
//
// A session stays alive while a Watch stream is open on it, and otherwise until `ttl` after its
// last authenticated call (any call with its credentials renews it). When it lapses its token
// stops working; its leases are not touched and run out on their own TTL (they are revoked
// through the backend then), so a client that crashed loses its pins in bounded time.
//
// A session belongs to the identity that opened it (its Owner::key, e.g. "uid:1000", from the
// kernel or the TLS handshake, never from the request): Authenticate with another identity's key
// is refused with PERMISSION_DENIED even with the right token.
//
// Thread-safety: safe to call concurrently. Lapses are driven by the Clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pinbroker/clock.h"
#include "pinning/quota.h"

namespace pinbroker::broker {

class SessionTable {
 public:
  // Who opened a session.
  struct Owner {
    std::string key;              // Compared on every call (PeerIdentity::Key()).
    std::string description;      // For listings and messages (PeerIdentity::Describe()).
    std::optional<uint32_t> uid;  // Unix peers: uid, pid and command at connect.
    int pid = 0;
    std::string command;
  };
  struct Opened {
    std::string id;
    std::string token;
    absl::Time expires_at;
  };
  struct Info {
    std::string id;
    std::string client_name;
    Owner owner;
    absl::Time expires_at;  // InfiniteFuture while watched.
    int watchers = 0;
  };

  // `on_lapse` is called (outside the table's lock, on the clock's timer thread) with the id of
  // each session that lapsed.
  SessionTable(Clock* clock, std::string epoch, absl::Duration default_ttl, absl::Duration max_ttl,
               absl::AnyInvocable<void(const std::string&)> on_lapse);
  ~SessionTable();
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // ttl zero: the default; capped at the maximum; negative: INVALID_ARGUMENT. `quota` (the
  // owner's session reservation) is kept with the session and given back when it closes or
  // lapses, or at once if it does not open.
  absl::StatusOr<Opened> Open(std::string client_name, absl::Duration ttl, Owner owner,
                              QuotaHold quota = QuotaHold()) ABSL_LOCKS_EXCLUDED(mu_);
  // An owner-less session (tests; the token alone proves it).
  absl::StatusOr<Opened> Open(std::string client_name, absl::Duration ttl) ABSL_LOCKS_EXCLUDED(mu_);

  // Checks the credentials and renews the session. UNAUTHENTICATED, saying what to do, for a
  // missing, unknown or lapsed session or a wrong token; PERMISSION_DENIED when `caller` is
  // given and is not the session's owner (nothing is renewed then). Without `caller` the token
  // alone proves the session (RDMA connect requests, which carry no kernel identity). Returns
  // the session's new expiry.
  absl::StatusOr<absl::Time> Authenticate(absl::string_view id, absl::string_view token,
                                          const Owner* caller = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  // The session's owner; NOT_FOUND when it is not open.
  absl::StatusOr<Owner> OwnerOf(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the session now (after Authenticate()). NOT_FOUND if already gone.
  absl::Status Close(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);

  // OK if session `id` is open (neither closed nor lapsed); UNAUTHENTICATED otherwise. Does not
  // renew it. Pins call it atomically with their grant (PinRequest::admit), so a session closed
  // while its pins are in flight gets no lease after its CloseSession listed its leases.
  absl::Status CheckOpen(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);

  // A Watch stream opened / closed on the session. While any is open the session cannot lapse;
  // when the last closes, the ttl starts again.
  void AddWatcher(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveWatcher(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<Info> List() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Duration default_ttl() const { return default_ttl_; }

 private:
  struct Session {
    std::string token;
    std::string client_name;
    Owner owner;
    absl::Duration ttl;
    absl::Time expires_at;
    int watchers = 0;
    QuotaHold quota;
  };
  void ArmLocked(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimer(absl::Time due) ABSL_LOCKS_EXCLUDED(mu_);

  Clock* const clock_;
  const std::string epoch_;
  const absl::Duration default_ttl_;
  const absl::Duration max_ttl_;
  absl::AnyInvocable<void(const std::string&)> on_lapse_;

  mutable absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<absl::Time, Clock::TimerId> timers_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pinbroker::broker
