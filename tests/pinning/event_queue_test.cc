#include "pinning/event_queue.h"

#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/lease.h"
#include "common/simulated_clock.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::IsOkAndHolds;
using ::pinbroker::testing::StatusIs;
using ::testing::_;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Optional;

LeaseEvent EventFor(LeaseId id, LeaseEvent::Type type = LeaseEvent::Type::kGranted) {
  LeaseEvent event;
  event.type = type;
  event.lease.id = id;
  event.lease.owner = "alice";
  return event;
}

// Matches a StatusOr<LeaseEvent> holding the event of lease `id`.
auto HoldsEventFor(LeaseId id) {
  return IsOkAndHolds(Field(&LeaseEvent::lease, Field(&LeaseInfo::id, id)));
}

TEST(EventQueueTest, DeliversEventsInPushOrder) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  ASSERT_TRUE(queue.Push(EventFor(1)));
  ASSERT_TRUE(queue.Push(EventFor(2)));
  ASSERT_TRUE(queue.Push(EventFor(3)));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(2));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(3));
}

TEST(EventQueueTest, DeliversTheEventUnchanged) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  LeaseEvent event = EventFor(7, LeaseEvent::Type::kRecalled);
  event.lease.reason = "truncate";
  event.at = clock.Now() + absl::Seconds(3);
  ASSERT_TRUE(queue.Push(event));
  ASSERT_OK_AND_ASSIGN(const LeaseEvent got, queue.Next(clock.Now()));
  EXPECT_EQ(got.type, LeaseEvent::Type::kRecalled);
  EXPECT_EQ(got.lease.id, 7u);
  EXPECT_EQ(got.lease.owner, "alice");
  EXPECT_EQ(got.lease.reason, "truncate");
  EXPECT_EQ(got.at, clock.Now() + absl::Seconds(3));
}

TEST(EventQueueTest, SizeCountsQueuedEvents) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  EXPECT_EQ(queue.size(), 0u);
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  EXPECT_EQ(queue.size(), 2u);
  ASSERT_OK(queue.Next(clock.Now()));
  EXPECT_EQ(queue.size(), 1u);
}

TEST(EventQueueTest, CapacityIsTheConstructorArgument) {
  SimulatedClock clock;
  EventQueue queue(&clock, 5);
  EXPECT_EQ(queue.capacity(), 5u);
}

TEST(EventQueueTest, NextOnAnEmptyQueueWithAPassedDeadlineFailsImmediately) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  EXPECT_THAT(queue.Next(clock.Now()), StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(EventQueueTest, NextReturnsAQueuedEventEvenWhenTheDeadlinePassed) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  queue.Push(EventFor(1));
  EXPECT_THAT(queue.Next(clock.Now() - absl::Seconds(1)), HoldsEventFor(1));
}

TEST(EventQueueTest, NextFailsWithDeadlineExceededWhenTimeReachesTheDeadline) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  std::optional<absl::StatusOr<LeaseEvent>> result;
  std::thread consumer([&] { result = queue.Next(clock.Now() + absl::Seconds(5)); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Seconds(5));
  consumer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_THAT(*result, StatusIs(absl::StatusCode::kDeadlineExceeded, _));
}

TEST(EventQueueTest, NextKeepsWaitingWhenTimeStopsShortOfTheDeadline) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  std::optional<absl::StatusOr<LeaseEvent>> result;
  std::thread consumer([&] { result = queue.Next(clock.Now() + absl::Seconds(5)); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Seconds(4));
  EXPECT_EQ(clock.waiter_count(), 1u);
  queue.Push(EventFor(1));
  consumer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_THAT(*result, HoldsEventFor(1));
}

TEST(EventQueueTest, NextWakesWhenAnotherThreadPushes) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  std::optional<absl::StatusOr<LeaseEvent>> result;
  std::thread consumer([&] { result = queue.Next(absl::InfiniteFuture()); });
  clock.WaitForWaiters(1);
  ASSERT_TRUE(queue.Push(EventFor(42)));
  consumer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_THAT(*result, HoldsEventFor(42));
}

TEST(EventQueueTest, NextWakesWithCancelledWhenAnotherThreadCloses) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  std::optional<absl::StatusOr<LeaseEvent>> result;
  std::thread consumer([&] { result = queue.Next(absl::InfiniteFuture()); });
  clock.WaitForWaiters(1);
  queue.Close();
  consumer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_THAT(*result, StatusIs(absl::StatusCode::kCancelled, _));
}

TEST(EventQueueTest, PushUpToCapacitySucceeds) {
  SimulatedClock clock;
  EventQueue queue(&clock, 3);
  EXPECT_TRUE(queue.Push(EventFor(1)));
  EXPECT_TRUE(queue.Push(EventFor(2)));
  EXPECT_TRUE(queue.Push(EventFor(3)));
  EXPECT_FALSE(queue.overflowed());
}

TEST(EventQueueTest, PushBeyondCapacityReturnsFalseAndOverflows) {
  SimulatedClock clock;
  EventQueue queue(&clock, 3);
  for (LeaseId id = 1; id <= 3; ++id) queue.Push(EventFor(id));
  EXPECT_FALSE(queue.Push(EventFor(4)));
  EXPECT_TRUE(queue.overflowed());
  EXPECT_EQ(queue.size(), 3u);
}

TEST(EventQueueTest, OverflowDeliversTheEventsQueuedBeforeItThenResourceExhausted) {
  SimulatedClock clock;
  EventQueue queue(&clock, 3);
  for (LeaseId id = 1; id <= 6; ++id) queue.Push(EventFor(id));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(2));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(3));
  EXPECT_THAT(queue.Next(clock.Now()),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("resubscribe")));
}

TEST(EventQueueTest, OverflowedQueueKeepsFailingWithResourceExhausted) {
  SimulatedClock clock;
  EventQueue queue(&clock, 1);
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  ASSERT_OK(queue.Next(clock.Now()));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(queue.Next(absl::InfiniteFuture()),
                StatusIs(absl::StatusCode::kResourceExhausted, _));
  }
  EXPECT_THAT(queue.TryNext(), Optional(StatusIs(absl::StatusCode::kResourceExhausted, _)));
}

TEST(EventQueueTest, PushAfterOverflowReturnsFalseEvenOnceDrained) {
  SimulatedClock clock;
  EventQueue queue(&clock, 1);
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  ASSERT_OK(queue.Next(clock.Now()));
  EXPECT_FALSE(queue.Push(EventFor(3)));
  EXPECT_EQ(queue.size(), 0u);
}

TEST(EventQueueTest, PushReportsWhetherItsOwnEventWasQueuedDespiteAConcurrentOverflow) {
  // The hook runs after the event is queued; another producer overflowing the
  // queue meanwhile does not undo this push.
  SimulatedClock clock;
  EventQueue* queue_ptr = nullptr;
  bool in_hook = false;
  bool other_push_result = true;
  EventQueue queue(&clock, 1, [&] {
    if (in_hook) return;
    in_hook = true;
    std::thread other([&] { other_push_result = queue_ptr->Push(EventFor(2)); });
    other.join();
    in_hook = false;
  });
  queue_ptr = &queue;
  EXPECT_TRUE(queue.Push(EventFor(1)));
  EXPECT_FALSE(other_push_result);
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
}

TEST(EventQueueTest, CloseDeliversQueuedEventsThenCancelled) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  queue.Close();
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(2));
  EXPECT_THAT(queue.Next(absl::InfiniteFuture()), StatusIs(absl::StatusCode::kCancelled, _));
}

TEST(EventQueueTest, PushAfterCloseReturnsFalseAndIsNotDelivered) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  queue.Close();
  EXPECT_FALSE(queue.Push(EventFor(1)));
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_THAT(queue.Next(clock.Now()), StatusIs(absl::StatusCode::kCancelled, _));
}

TEST(EventQueueTest, ClosedReportsClose) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  EXPECT_FALSE(queue.closed());
  queue.Close();
  EXPECT_TRUE(queue.closed());
}

TEST(EventQueueTest, OnReadyIsCalledOncePerQueuedPush) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  queue.Push(EventFor(1));
  EXPECT_EQ(calls, 1);
  queue.Push(EventFor(2));
  EXPECT_EQ(calls, 2);
}

TEST(EventQueueTest, OnReadyRunsAfterTheEventIsAvailable) {
  SimulatedClock clock;
  EventQueue* queue_ptr = nullptr;
  std::vector<size_t> sizes_seen;
  EventQueue queue(&clock, 8, [&] { sizes_seen.push_back(queue_ptr->size()); });
  queue_ptr = &queue;
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  EXPECT_THAT(sizes_seen, ::testing::ElementsAre(1u, 2u));
}

TEST(EventQueueTest, OnReadyIsCalledOnOverflow) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 1, [&] { ++calls; });
  queue.Push(EventFor(1));
  ASSERT_EQ(calls, 1);
  queue.Push(EventFor(2));  // Overflows.
  EXPECT_EQ(calls, 2);
}

TEST(EventQueueTest, OnReadyIsNotCalledForPushesDroppedAfterOverflow) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 1, [&] { ++calls; });
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));  // Overflows.
  ASSERT_EQ(calls, 2);
  queue.Push(EventFor(3));
  EXPECT_EQ(calls, 2);
}

TEST(EventQueueTest, OnReadyIsCalledOnClose) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  queue.Close();
  EXPECT_EQ(calls, 1);
}

TEST(EventQueueTest, SecondCloseDoesNotCallOnReady) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  queue.Close();
  queue.Close();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(queue.closed());
}

TEST(EventQueueTest, OnReadyIsNotCalledForPushesAfterClose) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  queue.Close();
  queue.Push(EventFor(1));
  EXPECT_EQ(calls, 1);
}

TEST(EventQueueTest, TryNextIsNulloptWhenEmpty) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  EXPECT_EQ(queue.TryNext(), std::nullopt);
}

TEST(EventQueueTest, TryNextReturnsTheOldestEvent) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  queue.Push(EventFor(1));
  queue.Push(EventFor(2));
  EXPECT_THAT(queue.TryNext(), Optional(HoldsEventFor(1)));
  EXPECT_THAT(queue.TryNext(), Optional(HoldsEventFor(2)));
  EXPECT_EQ(queue.TryNext(), std::nullopt);
}

TEST(EventQueueTest, TryNextIsCancelledWhenClosedAndEmpty) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  queue.Close();
  EXPECT_THAT(queue.TryNext(), Optional(StatusIs(absl::StatusCode::kCancelled, _)));
}

TEST(EventQueueTest, WorksWithoutAnOnReadyHook) {
  SimulatedClock clock;
  EventQueue queue(&clock, 1);
  EXPECT_TRUE(queue.Push(EventFor(1)));
  EXPECT_FALSE(queue.Push(EventFor(2)));
  queue.Close();
  EXPECT_THAT(queue.TryNext(), Optional(IsOk()));
}


// --- recalls and ends bypass the event bound; bytes bound everything ---

TEST(EventQueueTest, RecallsAndEndsBypassTheEventBound) {
  SimulatedClock clock;
  EventQueue queue(&clock, 2);
  EXPECT_TRUE(queue.Push(EventFor(1)));
  EXPECT_TRUE(queue.Push(EventFor(2)));
  // A fan-out far past the event bound: every recall and every end is queued.
  for (LeaseId id = 1; id <= 5000; ++id) {
    ASSERT_TRUE(queue.Push(EventFor(id, LeaseEvent::Type::kRecalled))) << id;
  }
  for (LeaseEvent::Type type : {LeaseEvent::Type::kReleased, LeaseEvent::Type::kRevoked,
                                LeaseEvent::Type::kExpired}) {
    EXPECT_TRUE(queue.Push(EventFor(1, type)));
  }
  EXPECT_FALSE(queue.overflowed());
  EXPECT_EQ(queue.size(), 5005u);
  EXPECT_FALSE(queue.Push(EventFor(3)));  // Grants still count.
  EXPECT_TRUE(queue.overflowed());
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
}

TEST(EventQueueTest, AGrantFitsAgainOnceGrantsAreTakenEvenWithRecallsQueued) {
  SimulatedClock clock;
  EventQueue queue(&clock, 1);
  EXPECT_TRUE(queue.Push(EventFor(1)));
  EXPECT_TRUE(queue.Push(EventFor(1, LeaseEvent::Type::kRecalled)));
  ASSERT_OK(queue.Next(clock.Now()));  // The grant.
  EXPECT_TRUE(queue.Push(EventFor(2)));
  EXPECT_FALSE(queue.overflowed());
}

TEST(EventQueueTest, EveryEventCountsAgainstTheByteBound) {
  SimulatedClock clock;
  const size_t one = EventQueue::BytesOf(EventFor(1, LeaseEvent::Type::kRecalled));
  EventQueue queue(&clock, 1000, nullptr, 3 * one);
  for (LeaseId id = 1; id <= 3; ++id) {
    EXPECT_TRUE(queue.Push(EventFor(id, LeaseEvent::Type::kRecalled)));
  }
  EXPECT_EQ(queue.bytes(), 3 * one);
  EXPECT_FALSE(queue.Push(EventFor(4, LeaseEvent::Type::kRecalled)));
  EXPECT_TRUE(queue.overflowed());
  for (LeaseId id = 1; id <= 3; ++id) EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(id));
  EXPECT_THAT(queue.Next(clock.Now()),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("bytes")));
  EXPECT_EQ(queue.bytes(), 0u);
}

TEST(EventQueueTest, LongStringsCountInFull) {
  SimulatedClock clock;
  LeaseEvent big = EventFor(1, LeaseEvent::Type::kRecalled);
  big.lease.reason = std::string(1 << 20, 'r');
  EXPECT_GE(EventQueue::BytesOf(big), size_t{1} << 20);
  EventQueue queue(&clock, 1000, nullptr, 512 << 10);
  EXPECT_FALSE(queue.Push(std::move(big)));
  EXPECT_TRUE(queue.overflowed());
  EXPECT_EQ(queue.bytes(), 0u);
}

// --- PushAll ---

TEST(EventQueueTest, PushAllQueuesABurstInOrderWithOneOnReadyCall) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  EXPECT_EQ(queue.PushAll({EventFor(1), EventFor(2), EventFor(3)}), 3u);
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(2));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(3));
}

TEST(EventQueueTest, PushAllStopsAtAnOverflowAndDeliversWhatFitFirst) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 2, [&] { ++calls; });
  EXPECT_EQ(queue.PushAll({EventFor(1), EventFor(2), EventFor(3), EventFor(4)}), 2u);
  EXPECT_TRUE(queue.overflowed());
  EXPECT_EQ(calls, 1);  // The consumer learns of the overflow.
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(1));
  EXPECT_THAT(queue.Next(clock.Now()), HoldsEventFor(2));
  EXPECT_THAT(queue.Next(clock.Now()), StatusIs(absl::StatusCode::kResourceExhausted, _));
}

TEST(EventQueueTest, PushAllToAClosedQueueQueuesNothingAndDoesNotCallOnReady) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  queue.Close();
  calls = 0;
  EXPECT_EQ(queue.PushAll({EventFor(1), EventFor(2)}), 0u);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(queue.size(), 0u);
}

TEST(EventQueueTest, PushAllOfNothingDoesNotCallOnReady) {
  SimulatedClock clock;
  int calls = 0;
  EventQueue queue(&clock, 8, [&] { ++calls; });
  EXPECT_EQ(queue.PushAll({}), 0u);
  EXPECT_EQ(calls, 0);
}

TEST(EventQueueTest, PushAllWakesAWaitingConsumer) {
  SimulatedClock clock;
  EventQueue queue(&clock, 8);
  std::thread consumer([&] {
    EXPECT_THAT(queue.Next(absl::InfiniteFuture()), HoldsEventFor(7));
    EXPECT_THAT(queue.Next(absl::InfiniteFuture()), HoldsEventFor(8));
  });
  clock.WaitForWaiters(1);
  EXPECT_EQ(queue.PushAll({EventFor(7), EventFor(8)}), 2u);
  consumer.join();
}

}  // namespace
}  // namespace pinbroker
