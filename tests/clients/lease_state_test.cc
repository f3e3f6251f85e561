// The C++ client's lease-state rules (clients/cpp/lease_state.h) on explicit times: no clock,
// no broker, no threads.
#include "clients/cpp/lease_state.h"

#include "api/time_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::client::internal {
namespace {

using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

v1::Lease Granted(absl::Duration ttl, absl::Time at = kT0) {
  v1::Lease lease;
  ToProto(at, lease.mutable_granted_at());
  ToProto(at + ttl, lease.mutable_expires_at());
  return lease;
}

LeaseSlot GrantedSlot(absl::Duration ttl) {
  LeaseSlot slot;
  OnGranted(slot, Granted(ttl), kT0, 0.5);
  return slot;
}

TEST(LeaseStateTest, GrantPlansTheRenewalAtTheFractionAndTheLapseAtTheTtl) {
  const LeaseSlot slot = GrantedSlot(absl::Seconds(10));
  EXPECT_EQ(slot.ttl, absl::Seconds(10));
  EXPECT_EQ(slot.next_renew, kT0 + absl::Seconds(5));
  EXPECT_EQ(slot.local_expiry, kT0 + absl::Seconds(10));
  // No TTL: never renewed, never lapses.
  const LeaseSlot forever = GrantedSlot(absl::ZeroDuration());
  EXPECT_EQ(forever.next_renew, absl::InfiniteFuture());
  EXPECT_EQ(forever.local_expiry, absl::InfiniteFuture());
}

TEST(LeaseStateTest, DueRenewalsAreTakenOnceAndTheNextOneIsTheEarliest) {
  LeaseSlots slots;
  slots["a"] = GrantedSlot(absl::Seconds(10));  // Due at +5 s.
  slots["b"] = GrantedSlot(absl::Seconds(4));   // Due at +2 s.
  EXPECT_EQ(NextRenewal(slots), kT0 + absl::Seconds(2));
  EXPECT_THAT(TakeDueRenewals(slots, kT0 + absl::Seconds(1)), IsEmpty());

  std::vector<RenewJob> jobs = TakeDueRenewals(slots, kT0 + absl::Seconds(2));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, "b");
  EXPECT_EQ(jobs[0].ttl, absl::Seconds(4));
  EXPECT_TRUE(slots["b"].renewing);
  // In flight: neither taken again nor waited for.
  EXPECT_THAT(TakeDueRenewals(slots, kT0 + absl::Seconds(3)), IsEmpty());
  EXPECT_EQ(NextRenewal(slots), kT0 + absl::Seconds(5));

  // Its answer at +2.5 s plans the next renewal from then and moves the broker's expiry.
  v1::Lease renewed = Granted(absl::Seconds(4), kT0 + absl::Milliseconds(2500));
  EXPECT_FALSE(OnRenewAnswer(slots["b"], absl::OkStatus(), renewed, /*background=*/true,
                             kT0 + absl::Milliseconds(2500), 0.5));
  EXPECT_FALSE(slots["b"].renewing);
  EXPECT_EQ(slots["b"].next_renew, kT0 + absl::Milliseconds(4500));
  EXPECT_EQ(slots["b"].local_expiry, kT0 + absl::Milliseconds(6500));
  EXPECT_EQ(FromProto(slots["b"].info.expires_at()), kT0 + absl::Milliseconds(6500));
  EXPECT_EQ(NextRenewal(slots), kT0 + absl::Milliseconds(4500));
}

TEST(LeaseStateTest, RenewalFailuresByCode) {
  const absl::Time now = kT0 + absl::Seconds(5);
  const v1::Lease none;
  struct Case {
    absl::Status status;
    bool background;
    bool recalled;
    absl::Time next_renew;
  } cases[] = {
      // The broker refuses to renew a recalled lease: the caller recalls it.
      {absl::FailedPreconditionError("recalling"), true, true, absl::InfiniteFuture()},
      // Ended or the session is gone: stop renewing.
      {absl::NotFoundError("gone"), true, false, absl::InfiniteFuture()},
      {absl::UnauthenticatedError("lost"), true, false, absl::InfiniteFuture()},
      {absl::InvalidArgumentError("bad"), true, false, absl::InfiniteFuture()},
      // Transient: a background renewal is retried after a quarter of the time left, at most
      // a second; Lease::Renew() leaves the plan alone.
      {absl::UnavailableError("down"), true, false, now + absl::Seconds(1)},
      {absl::UnavailableError("down"), false, false, kT0 + absl::Seconds(5)},
  };
  for (const Case& c : cases) {
    LeaseSlot slot = GrantedSlot(absl::Seconds(10));
    slot.renewing = c.background;
    EXPECT_EQ(OnRenewAnswer(slot, c.status, none, c.background, now, 0.5), c.recalled) << c.status;
    EXPECT_EQ(slot.next_renew, c.next_renew) << c.status;
    EXPECT_FALSE(slot.renewing);
  }
  // Close to the lapse, the retry comes sooner.
  LeaseSlot slot = GrantedSlot(absl::Seconds(10));
  OnRenewAnswer(slot, absl::UnavailableError("down"), none, true, kT0 + absl::Seconds(9), 0.5);
  EXPECT_EQ(slot.next_renew, kT0 + absl::Seconds(9) + absl::Milliseconds(250));
}

TEST(LeaseStateTest, RecallStopsRenewalsAndSaysWhetherACallbackIsDue) {
  LeaseSlot slot = GrantedSlot(absl::Seconds(10));
  Lease* const handle = reinterpret_cast<Lease*>(0x1);  // Only compared, never used.
  // No handle, or nothing to call: no callback.
  EXPECT_FALSE(Recall(slot, "truncate", kT0 + absl::Seconds(3)));
  EXPECT_EQ(slot.state, LeaseState::kRecalling);
  EXPECT_EQ(slot.reason, "truncate");
  EXPECT_EQ(slot.recall_deadline, kT0 + absl::Seconds(3));
  EXPECT_EQ(slot.next_renew, absl::InfiniteFuture());
  LeaseSlots slots{{"a", slot}};
  EXPECT_THAT(TakeDueRenewals(slots, kT0 + absl::Hours(1)), IsEmpty());
  // A second recall changes nothing.
  EXPECT_FALSE(Recall(slot, "punch hole", absl::InfiniteFuture()));
  EXPECT_EQ(slot.reason, "truncate");

  LeaseSlot with_callback = GrantedSlot(absl::Seconds(10));
  with_callback.handle = handle;
  with_callback.release_on_recall = true;
  EXPECT_TRUE(Recall(with_callback, "truncate", absl::InfiniteFuture()));
  LeaseSlot forgotten = GrantedSlot(absl::Seconds(10));
  forgotten.on_recall = [](Lease&, absl::string_view, absl::Time) {};
  EXPECT_FALSE(Recall(forgotten, "truncate", absl::InfiniteFuture()));  // ~Lease began.
}

TEST(LeaseStateTest, EndIsTerminalAndNotifiesOnlyWhenAsked) {
  Lease* const handle = reinterpret_cast<Lease*>(0x1);
  LeaseSlot slot = GrantedSlot(absl::Seconds(10));
  slot.handle = handle;
  slot.on_revoked = [](Lease&, absl::string_view) {};
  EXPECT_TRUE(End(slot, LeaseState::kRevoked, "truncate", kT0 + absl::Seconds(2), true));
  EXPECT_EQ(slot.state, LeaseState::kRevoked);
  EXPECT_EQ(slot.ended_at, kT0 + absl::Seconds(2));
  EXPECT_EQ(slot.next_renew, absl::InfiniteFuture());
  // Already ended: nothing changes, no second callback.
  EXPECT_FALSE(End(slot, LeaseState::kExpired, "ttl", kT0 + absl::Seconds(3), true));
  EXPECT_EQ(slot.state, LeaseState::kRevoked);
  EXPECT_EQ(slot.ended_at, kT0 + absl::Seconds(2));
  // An ended lease ignores renewal answers.
  EXPECT_FALSE(OnRenewAnswer(slot, absl::FailedPreconditionError("x"), v1::Lease(), false,
                             kT0 + absl::Seconds(4), 0.5));

  LeaseSlot released = GrantedSlot(absl::Seconds(10));
  released.handle = handle;
  released.on_revoked = [](Lease&, absl::string_view) {};
  EXPECT_FALSE(End(released, LeaseState::kReleased, "by the holder", kT0, false));
  EXPECT_EQ(released.state, LeaseState::kReleased);
  // A recalling lease ends too.
  LeaseSlot recalling = GrantedSlot(absl::Seconds(10));
  Recall(recalling, "truncate", absl::InfiniteFuture());
  EXPECT_FALSE(End(recalling, LeaseState::kExpired, "ttl", kT0, true));  // No handle.
  EXPECT_EQ(recalling.state, LeaseState::kExpired);
}

}  // namespace
}  // namespace pinbroker::client::internal
