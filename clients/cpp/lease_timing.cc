#include "clients/cpp/lease_timing.h"

#include <algorithm>

namespace pinbroker::client::internal {

LeaseTimes AfterRenewal(absl::Time now, absl::Duration ttl, double renew_fraction) {
  LeaseTimes times;
  if (ttl > absl::ZeroDuration()) {
    times.next_renew = now + ttl * renew_fraction;
    times.local_expiry = now + ttl;
  }
  return times;
}

absl::Time NextRetryAfterFailure(absl::Time now, absl::Time local_expiry) {
  if (now >= local_expiry) return absl::InfiniteFuture();
  return now + std::clamp((local_expiry - now) / 4, kRenewRetryMin, kRenewRetry);
}

Backoff AfterStreamEnded(absl::Time now, bool was_established, absl::Duration backoff,
                         absl::Duration min, absl::Duration max) {
  if (was_established) return Backoff{now + min, std::min(min * 2, max)};
  return Backoff{now + backoff, std::min(backoff * 2, max)};
}

}  // namespace pinbroker::client::internal
