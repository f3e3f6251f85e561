// Asynchronous layout changes (PinService::TruncateAsync/PunchHoleAsync, RevokeAfterGraceAsync)
// on SimulatedClock: they wait without a thread (drain callbacks and clock timers), complete
// exactly as the synchronous forms, keep the per-file queue in order with per-change
// deadlines, and are all completed by shutdown. A change is known to be parked when its
// deadline timer is on the clock (SimulatedClock::pending_timers()), so time only moves once it
// waits; completions are awaited with a generous safety bound, never timed.

#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_fixture.h"
#include "tests/testing/waiting.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::Eventually;
using ::pinbroker::testing::ThreadCount;
using ::pinbroker::testing::FakeBackend;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = FakeBackend::Call::Kind;

constexpr absl::Duration kSafety = absl::Seconds(60);  // Never reached unless broken.

// One change's outcome, set on the executor.
struct Outcome {
  absl::Notification done;
  absl::StatusOr<LayoutResult> result;

  PinService::LayoutDone Callback() {
    return [this](absl::StatusOr<LayoutResult> r) {
      result = std::move(r);
      done.Notify();
    };
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(kSafety); }
};

class LayoutAsyncTest : public ::pinbroker::testing::EngineTest {
 protected:
  LayoutRequest Request(LayoutPolicy policy, absl::Duration timeout) const {
    LayoutRequest r = Layout(policy);
    r.timeout = timeout;
    return r;
  }
  // Waits until `n` more timers than `base` are on the clock: that many changes are parked.
  bool Parked(size_t base, size_t n) {
    return Eventually([&] { return clock_.pending_timers() >= base + n; });
  }
  bool Live(LeaseId id) { return service_->IsLive(id); }
};

TEST_F(LayoutAsyncTest, DeferCompletesWhenTheLeaseIsReleased) {
  LeaseInfo lease = PinPages(4, 1);
  const size_t timers = clock_.pending_timers();
  Outcome truncate;
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(30)), page_,
                          truncate.Callback());
  ASSERT_TRUE(Parked(timers, 1));
  EXPECT_FALSE(truncate.done.HasBeenNotified());
  EXPECT_EQ(FileSize(), kPages * page_);
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_TRUE(truncate.Wait());
  ASSERT_OK(truncate.result.status());
  EXPECT_THAT(truncate.result->released, ElementsAre(lease.id));
  EXPECT_THAT(truncate.result->recalled, IsEmpty());
  EXPECT_EQ(truncate.result->size_before, kPages * page_);
  EXPECT_EQ(truncate.result->size_after, page_);
  EXPECT_EQ(FileSize(), page_);
  EXPECT_EQ(clock_.pending_timers(), timers);  // The deadline timer was withdrawn.
  // Counted until just after `done` returned.
  EXPECT_TRUE(Eventually([&] { return service_->pending_async() == 0; }));
}

TEST_F(LayoutAsyncTest, DeferFailsAtTheDeadlineWithTheFileUntouchedAndTheRangeUnblocked) {
  LeaseInfo lease = PinPages(4, 1);
  const size_t timers = clock_.pending_timers();
  Outcome truncate;
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(10)), page_,
                          truncate.Callback());
  ASSERT_TRUE(Parked(timers, 1));
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(truncate.Wait());
  EXPECT_THAT(truncate.result,
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr(absl::StrCat("lease ", lease.id)), HasSubstr("unchanged"))));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_TRUE(Live(lease.id));
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  EXPECT_THAT(d.blocked, IsEmpty());
  // A later release drains nothing stale: no callback of the failed change runs.
  ASSERT_OK(service_->Release("s1", lease.id));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(LayoutAsyncTest, RevokeRevokesWhatTheGraceLeftAndApplies) {
  LeaseInfo lease = PinPages(4, 1);
  auto watch = service_->Watch("s1");
  const size_t timers = clock_.pending_timers();
  Outcome punch;
  service_->PunchHoleAsync(Request(LayoutPolicy::kRevoke, absl::Seconds(30)), 4 * page_, page_,
                           punch.Callback());
  ASSERT_TRUE(Parked(timers, 1));  // The grace timer.
  ASSERT_OK_AND_ASSIGN(LeaseEvent recall, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(recall.type, LeaseEvent::Type::kRecalled);
  EXPECT_EQ(recall.lease.recall_deadline, clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(punch.Wait());
  ASSERT_OK(punch.result.status());
  EXPECT_THAT(punch.result->recalled, ElementsAre(lease.id));
  EXPECT_THAT(punch.result->revoked, ElementsAre(lease.id));
  EXPECT_EQ(punch.result->waited, absl::Seconds(5));
  EXPECT_EQ(backend_.count(Kind::kRevoke), 1u);
  EXPECT_FALSE(Live(lease.id));
}

TEST_F(LayoutAsyncTest, RefuseAndBadArgumentsCompleteWithoutWaiting) {
  LeaseInfo lease = PinPages(4, 1);
  Outcome refused;
  service_->TruncateAsync(Request(LayoutPolicy::kRefuse, absl::Seconds(30)), page_,
                          refused.Callback());
  ASSERT_TRUE(refused.Wait());
  EXPECT_THAT(refused.result, StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr(absl::StrCat("lease ", lease.id))));
  Outcome zero;
  service_->PunchHoleAsync(Request(LayoutPolicy::kRevoke, absl::Seconds(30)), 0, 0,
                           zero.Callback());
  ASSERT_TRUE(zero.Wait());
  EXPECT_THAT(zero.result,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("length must be positive")));
  Outcome missing;
  LayoutRequest request = Request(LayoutPolicy::kRevoke, absl::Seconds(30));
  request.path = "no-such-file";
  service_->TruncateAsync(request, 0, missing.Callback());
  ASSERT_TRUE(missing.Wait());
  EXPECT_THAT(missing.result, StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-file")));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_TRUE(Live(lease.id));
}

TEST_F(LayoutAsyncTest, QueuedChangesRunInArrivalOrderAndOneLeavesAtItsDeadline) {
  LeaseInfo lease = PinPages(6, 1);
  const size_t timers = clock_.pending_timers();
  Outcome first, second, late, third;
  // `first` waits for the lease; the others queue behind it, one at a time so their order is
  // known.
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), 5 * page_,
                          first.Callback());
  ASSERT_TRUE(Parked(timers, 1));
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), 3 * page_,
                          second.Callback());
  ASSERT_TRUE(Parked(timers, 2));
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(10)), 7 * page_,
                          late.Callback());
  ASSERT_TRUE(Parked(timers, 3));
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), 2 * page_,
                          third.Callback());
  ASSERT_TRUE(Parked(timers, 4));

  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(late.Wait());
  EXPECT_THAT(late.result, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                    HasSubstr("another layout change on the file")));
  EXPECT_FALSE(first.done.HasBeenNotified());
  EXPECT_EQ(FileSize(), kPages * page_);

  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_TRUE(first.Wait());
  ASSERT_TRUE(second.Wait());
  ASSERT_TRUE(third.Wait());
  ASSERT_OK(first.result.status());
  ASSERT_OK(second.result.status());
  ASSERT_OK(third.result.status());
  // Each saw the size its predecessor left; `late` never ran.
  EXPECT_EQ(first.result->size_before, kPages * page_);
  EXPECT_EQ(second.result->size_before, 5 * page_);
  EXPECT_EQ(third.result->size_before, 3 * page_);
  EXPECT_EQ(FileSize(), 2 * page_);
  // Counted until just after `done` returned.
  EXPECT_TRUE(Eventually([&] { return service_->pending_async() == 0; }));
}

TEST_F(LayoutAsyncTest, RecallAllFailsPendingChangesAndUnblocksTheirRanges) {
  LeaseInfo lease = PinPages(4, 1);
  const size_t timers = clock_.pending_timers();
  Outcome waiting, queued;
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), page_,
                          waiting.Callback());
  ASSERT_TRUE(Parked(timers, 1));
  service_->PunchHoleAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), 0, page_,
                           queued.Callback());
  ASSERT_TRUE(Parked(timers, 2));
  testing::Async<size_t> recall([&] { return service_->RecallAll("shutdown", absl::Seconds(2)); });
  // Both fail at once, before the recall's grace even starts to run out.
  ASSERT_TRUE(waiting.Wait());
  ASSERT_TRUE(queued.Wait());
  EXPECT_THAT(waiting.result,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("the broker is shutting down")));
  EXPECT_THAT(queued.result,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("the broker is shutting down")));
  EXPECT_EQ(FileSize(), kPages * page_);
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  EXPECT_THAT(d.blocked, IsEmpty());
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(recall.get(), 1u);
  // Later asynchronous changes fail at once.
  Outcome after;
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), page_,
                          after.Callback());
  ASSERT_TRUE(after.Wait());
  EXPECT_THAT(after.result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(LayoutAsyncTest, DestroyingTheServiceCompletesPendingChanges) {
  PinPages(4, 1);
  const size_t timers = clock_.pending_timers();
  Outcome waiting;
  service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Seconds(100)), page_,
                          waiting.Callback());
  ASSERT_TRUE(Parked(timers, 1));
  service_.reset();
  ASSERT_TRUE(waiting.done.HasBeenNotified());  // Before the destructor returned.
  EXPECT_THAT(waiting.result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_EQ(clock_.pending_timers(), 0u);  // No timer left to touch freed state.
}

TEST_F(LayoutAsyncTest, AThousandPendingChangesHoldNoThreadEach) {
  constexpr int kChanges = 1000;
  LeaseInfo lease = PinPages(4, 1);
  const size_t threads_before = ThreadCount();
  const size_t timers = clock_.pending_timers();
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int i = 0; i < kChanges; ++i) {
    outcomes.push_back(std::make_unique<Outcome>());
    service_->TruncateAsync(Request(LayoutPolicy::kDefer, absl::Hours(1)), 2 * page_,
                            outcomes.back()->Callback());
  }
  // One waits for the lease, the others for their turn: every one has its deadline timer.
  ASSERT_TRUE(Parked(timers, kChanges));
  // At most the executor's threads are new, plus any the runtime starts meanwhile (TSan's
  // background thread starts lazily); a thread per waiting change would be a thousand more.
  const size_t threads_waiting = ThreadCount();
  EXPECT_LT(threads_waiting, threads_before + LayoutCoordinator::kExecutorThreads + 16);
  EXPECT_EQ(service_->pending_async(), static_cast<size_t>(kChanges));
  EXPECT_EQ(FileSize(), kPages * page_);
  ASSERT_OK(service_->Release("s1", lease.id));
  for (auto& outcome : outcomes) {
    ASSERT_TRUE(outcome->Wait());
    EXPECT_OK(outcome->result.status());
  }
  EXPECT_EQ(FileSize(), 2 * page_);
  // Counted until just after `done` returned.
  EXPECT_TRUE(Eventually([&] { return service_->pending_async() == 0; }));
}

// --- RevokeAfterGraceAsync ---

TEST_F(LayoutAsyncTest, RevokeAfterGraceCompletesWhenTheHolderReleases) {
  LeaseInfo lease = PinPages(4, 1);
  auto watch = service_->Watch("s1");
  absl::Notification done;
  bool revoked = true;
  service_->RevokeAfterGraceAsync(lease.id, "admin", clock_.Now() + absl::Seconds(30), [&](bool r) {
    revoked = r;
    done.Notify();
  });
  ASSERT_OK_AND_ASSIGN(LeaseEvent recall, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(recall.type, LeaseEvent::Type::kRecalled);
  EXPECT_FALSE(done.HasBeenNotified());
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kSafety));
  EXPECT_FALSE(revoked);
  EXPECT_EQ(backend_.count(Kind::kRevoke), 0u);
  // Counted until just after `done` returned.
  EXPECT_TRUE(Eventually([&] { return service_->pending_async() == 0; }));
}

TEST_F(LayoutAsyncTest, RevokeAfterGraceRevokesAtTheDeadline) {
  LeaseInfo lease = PinPages(4, 1);
  absl::Notification done;
  bool revoked = false;
  service_->RevokeAfterGraceAsync(lease.id, "admin", clock_.Now() + absl::Seconds(30), [&](bool r) {
    revoked = r;
    done.Notify();
  });
  clock_.Advance(absl::Seconds(29));
  EXPECT_FALSE(done.HasBeenNotified());
  EXPECT_TRUE(Live(lease.id));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kSafety));
  EXPECT_TRUE(revoked);
  EXPECT_FALSE(Live(lease.id));
  EXPECT_EQ(backend_.count(Kind::kRevoke), 1u);
}

TEST_F(LayoutAsyncTest, RevokeAfterGraceOfAnEndedLeaseCompletesAtOnce) {
  LeaseInfo lease = PinPages(4, 1);
  ASSERT_OK(service_->Release("s1", lease.id));
  absl::Notification done;
  bool revoked = true;
  service_->RevokeAfterGraceAsync(lease.id, "admin", clock_.Now() + absl::Seconds(30), [&](bool r) {
    revoked = r;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kSafety));
  EXPECT_FALSE(revoked);
}

TEST_F(LayoutAsyncTest, ShutdownEndsRevokeWaitsByRevoking) {
  LeaseInfo lease = PinPages(4, 1);
  absl::Notification done;
  bool revoked = false;
  service_->RevokeAfterGraceAsync(lease.id, "admin", clock_.Now() + absl::Seconds(30), [&](bool r) {
    revoked = r;
    done.Notify();
  });
  service_.reset();
  ASSERT_TRUE(done.HasBeenNotified());
  EXPECT_TRUE(revoked);
  EXPECT_EQ(clock_.pending_timers(), 0u);
}

}  // namespace
}  // namespace pinbroker
