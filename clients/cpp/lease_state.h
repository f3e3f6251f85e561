// Lease states of the C++ client: one LeaseSlot per lease a client knows about, and the pure
// transitions of a slot and of the table of them: a grant, a renewal's answer, a recall, the
// end of a lease, which renewals are due and when the next one is. Every time is a parameter
// (`now`): no clock is read, no thread, RPC or lock is here, so the rules are table-tested on
// explicit times (tests/clients/lease_state_test.cc). Core owns the table under its mutex and
// does what the results say (post a callback, send a renewal). Not part of the public API.
//
// Thread-safety: none of its own; callers serialize access to a table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinbroker/client.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinbroker::client::internal {

// One lease of this session that the client knows about.
struct LeaseSlot {
  Lease* handle = nullptr;  // Null once ~Lease began: no callbacks any more.
  v1::Lease info;
  LeaseState state = LeaseState::kGranted;
  std::string reason;
  absl::Time ended_at = absl::InfiniteFuture();
  absl::Time recall_deadline = absl::InfiniteFuture();
  absl::Duration ttl;                              // Requested with every renewal.
  absl::Time next_renew = absl::InfiniteFuture();  // Local time; Infinite: not renewed.
  absl::Time local_expiry = absl::InfiniteFuture();
  bool renewing = false;   // A background renewal is in flight.
  bool releasing = false;  // A Release RPC is in flight.
  uint64_t registered_seq = 0;
  bool release_on_recall = false;
  std::function<void(Lease&, absl::string_view, absl::Time)> on_recall;
  std::function<void(Lease&, absl::string_view)> on_revoked;
};
using LeaseSlots = absl::flat_hash_map<std::string, LeaseSlot>;

// The lease `granted` was registered at `now`: its TTL is what the broker granted (expiry minus
// grant time), renewed after `renew_fraction` of it (lease_timing.h).
void OnGranted(LeaseSlot& slot, const v1::Lease& granted, absl::Time now, double renew_fraction);

// The answer to a renewal (background: the library's own, else Lease::Renew()) arrived at
// `now`. On success the expiry moves and, while granted, the next renewal is planned. On
// failure: FAILED_PRECONDITION means the lease is being recalled (returns true: the caller
// recalls it); NOT_FOUND, UNAUTHENTICATED and INVALID_ARGUMENT stop renewing (the stream says
// how it ended); any other error of a background renewal is retried (NextRetryAfterFailure).
// A lease that has ended is left alone.
bool OnRenewAnswer(LeaseSlot& slot, const absl::Status& status, const v1::Lease& renewed,
                   bool background, absl::Time now, double renew_fraction);

// Recalls a granted lease (a recalling or ended one is left alone): it is not renewed any more.
// Returns whether a recall callback is due (the lease has a handle and on_recall or
// release_on_recall).
bool Recall(LeaseSlot& slot, std::string reason, absl::Time deadline);

// Ends a live lease in `state` (terminal) at `now`; an ended one is left alone. Returns whether
// on_revoked is due: `notify`, and the lease has a handle and an on_revoked.
bool End(LeaseSlot& slot, LeaseState state, std::string reason, absl::Time now, bool notify);

struct RenewJob {
  std::string id;
  absl::Duration ttl;
};
// The renewals due at `now` (granted, not in flight, next_renew reached); marks them in flight.
std::vector<RenewJob> TakeDueRenewals(LeaseSlots& slots, absl::Time now);
// When the next renewal is due (InfiniteFuture: none).
absl::Time NextRenewal(const LeaseSlots& slots);

}  // namespace pinbroker::client::internal
