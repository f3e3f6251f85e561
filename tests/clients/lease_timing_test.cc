// Table tests of the client's lease timing rules (clients/cpp/lease_timing.h) on a simulated
// clock: every `now` is a fixed point in time passed in, nothing waits.
#include "clients/cpp/lease_timing.h"

#include <gtest/gtest.h>

namespace pinbroker::client::internal {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

TEST(AfterRenewal, RenewsAtTheFractionOfTheTtl) {
  const LeaseTimes t = AfterRenewal(kT0, absl::Seconds(30), 0.5);
  EXPECT_EQ(t.next_renew, kT0 + absl::Seconds(15));
}

TEST(AfterRenewal, LapsesWhenTheWholeTtlPasses) {
  const LeaseTimes t = AfterRenewal(kT0, absl::Seconds(30), 0.5);
  EXPECT_EQ(t.local_expiry, kT0 + absl::Seconds(30));
}

TEST(AfterRenewal, RenewalIsBeforeLapse) {
  for (double fraction : {0.1, 0.5, 0.9}) {
    const LeaseTimes t = AfterRenewal(kT0, absl::Seconds(1), fraction);
    EXPECT_LT(t.next_renew, t.local_expiry) << fraction;
    EXPECT_GT(t.next_renew, kT0) << fraction;
  }
}

TEST(AfterRenewal, ARenewalLaterMovesBothTimesByTheSameAmount) {
  const LeaseTimes first = AfterRenewal(kT0, absl::Seconds(10), 0.5);
  const LeaseTimes later = AfterRenewal(kT0 + absl::Seconds(4), absl::Seconds(10), 0.5);
  EXPECT_EQ(later.next_renew - first.next_renew, absl::Seconds(4));
  EXPECT_EQ(later.local_expiry - first.local_expiry, absl::Seconds(4));
}

TEST(AfterRenewal, NoTtlNeverRenewsNorLapses) {
  for (absl::Duration ttl : {absl::ZeroDuration(), absl::Seconds(-1)}) {
    const LeaseTimes t = AfterRenewal(kT0, ttl, 0.5);
    EXPECT_EQ(t.next_renew, absl::InfiniteFuture());
    EXPECT_EQ(t.local_expiry, absl::InfiniteFuture());
  }
}

TEST(NextRetryAfterFailure, RetriesAfterAQuarterOfTheTimeLeft) {
  EXPECT_EQ(NextRetryAfterFailure(kT0, kT0 + absl::Seconds(2)), kT0 + absl::Milliseconds(500));
}

TEST(NextRetryAfterFailure, WaitsAtMostTheRetryCap) {
  EXPECT_EQ(NextRetryAfterFailure(kT0, kT0 + absl::Seconds(60)), kT0 + kRenewRetry);
}

TEST(NextRetryAfterFailure, WaitsAtLeastTheRetryFloor) {
  EXPECT_EQ(NextRetryAfterFailure(kT0, kT0 + absl::Milliseconds(1)), kT0 + kRenewRetryMin);
}

TEST(NextRetryAfterFailure, NeverRetriesOnceLapsed) {
  EXPECT_EQ(NextRetryAfterFailure(kT0, kT0), absl::InfiniteFuture());
  EXPECT_EQ(NextRetryAfterFailure(kT0 + absl::Seconds(1), kT0), absl::InfiniteFuture());
}

TEST(NextRetryAfterFailure, RepeatedFailuresStopAtTheLapse) {
  // Each retry fails; the retries come closer together and end once the TTL has passed.
  const absl::Time expiry = kT0 + absl::Seconds(10);
  absl::Time now = kT0;
  int retries = 0;
  while (true) {
    const absl::Time next = NextRetryAfterFailure(now, expiry);
    if (next == absl::InfiniteFuture()) break;
    ASSERT_GT(next, now);
    ASSERT_LE(next - now, kRenewRetry);
    now = next;
    ASSERT_LT(++retries, 10'000);
  }
  EXPECT_GE(now, expiry);
  EXPECT_GT(retries, 0);
}

const absl::Duration kMin = absl::Milliseconds(100);
const absl::Duration kMax = absl::Seconds(5);

TEST(AfterStreamEnded, AnEstablishedStreamWaitsTheMinimum) {
  const Backoff b = AfterStreamEnded(kT0, /*was_established=*/true, absl::Seconds(3), kMin, kMax);
  EXPECT_EQ(b.reconnect_at, kT0 + kMin);
  EXPECT_EQ(b.next_backoff, kMin * 2);
}

TEST(AfterStreamEnded, AFailedAttemptWaitsTheCurrentBackoffAndDoublesIt) {
  const Backoff b = AfterStreamEnded(kT0, /*was_established=*/false, kMin * 4, kMin, kMax);
  EXPECT_EQ(b.reconnect_at, kT0 + kMin * 4);
  EXPECT_EQ(b.next_backoff, kMin * 8);
}

TEST(AfterStreamEnded, BackoffIsCappedAtTheMaximum) {
  absl::Duration backoff = kMin;
  for (int i = 0; i < 20; ++i) {
    backoff = AfterStreamEnded(kT0, /*was_established=*/false, backoff, kMin, kMax).next_backoff;
    ASSERT_LE(backoff, kMax);
  }
  EXPECT_EQ(backoff, kMax);
}

TEST(AfterStreamEnded, MinimumAboveHalfTheMaximumIsCapped) {
  const Backoff b =
      AfterStreamEnded(kT0, /*was_established=*/true, kMin, absl::Seconds(4), absl::Seconds(5));
  EXPECT_EQ(b.next_backoff, absl::Seconds(5));
}

}  // namespace
}  // namespace pinbroker::client::internal
