// Lease timing rules of the C++ client: when a granted lease is renewed, when it lapses
// locally, how soon a renewal that failed for a transient reason is retried, and how the Watch
// stream's reconnect backoff grows. Pure functions of their arguments: no clock is read here,
// every caller passes `now`, so the rules are tested on a simulated clock
// (tests/clients/lease_timing_test.cc).
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include "absl/time/time.h"

namespace pinbroker::client::internal {

// Background renewals that failed for a transient reason are retried after this long at most.
inline constexpr absl::Duration kRenewRetry = absl::Seconds(1);
// ... and after this long at least.
inline constexpr absl::Duration kRenewRetryMin = absl::Milliseconds(10);

struct LeaseTimes {
  absl::Time next_renew = absl::InfiniteFuture();    // Infinite: not renewed.
  absl::Time local_expiry = absl::InfiniteFuture();  // The lease lapses here without renewal.
};

// After a grant or a successful renewal at `now`: renew once `renew_fraction` of the TTL has
// passed; the lease lapses locally when the whole TTL passes. A non-positive TTL never expires
// and is never renewed.
LeaseTimes AfterRenewal(absl::Time now, absl::Duration ttl, double renew_fraction);

// After a background renewal failed for a transient reason at `now`: retry after a quarter of
// the time left, clamped to [kRenewRetryMin, kRenewRetry]; once the lease has lapsed locally
// (now >= local_expiry), never.
absl::Time NextRetryAfterFailure(absl::Time now, absl::Time local_expiry);

// Reconnect backoff of the Watch stream. `backoff` is the current delay; it doubles up to
// `max` after each failed attempt.
struct Backoff {
  absl::Time reconnect_at;
  absl::Duration next_backoff;
};
// The stream ended at `now`. `was_established`: it had been open (then the client waits `min`
// and the backoff restarts from there); otherwise the attempt failed and the current backoff
// is waited.
Backoff AfterStreamEnded(absl::Time now, bool was_established, absl::Duration backoff,
                         absl::Duration min, absl::Duration max);

}  // namespace pinbroker::client::internal
