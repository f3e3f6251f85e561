// BusyRangeMap: reservations, commits, blocks and drain waits. The randomized comparison with a
// brute-force model lives in busy_range_map_model_test.cc.
#include "pinning/busy_range_map.h"

#include <thread>

#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Time kNoWait = absl::InfinitePast();

class BusyRangeMapTest : public ::testing::Test {
 protected:
  // Reserve + Commit.
  void Hold(LeaseId lease, PageRange range) {
    ASSERT_OK(map_.Reserve(lease, range, kNoWait));
    ASSERT_OK(map_.Commit(lease, [] {}));
  }
  std::vector<LeaseId> OverlappingIds(PageRange range) {
    std::vector<LeaseId> ids;
    for (const auto& e : map_.Overlapping(range)) ids.push_back(e.lease);
    return ids;
  }

  SimulatedClock clock_;
  BusyRangeMap map_{&clock_};
};

TEST_F(BusyRangeMapTest, OverlappingIsHalfOpenAndOrderedByStart) {
  Hold(1, {10, 20});
  Hold(2, {0, 10});
  Hold(3, {15, 16});
  EXPECT_THAT(OverlappingIds({10, 11}), ElementsAre(1));
  EXPECT_THAT(OverlappingIds({9, 15}), ElementsAre(2, 1));
  EXPECT_THAT(OverlappingIds({0, kPageRangeToInfinity}), ElementsAre(2, 1, 3));
  EXPECT_THAT(OverlappingIds({20, 30}), IsEmpty());
}

TEST_F(BusyRangeMapTest, ReserveRejectsEmptyRangeAndDuplicateLease) {
  EXPECT_THAT(map_.Reserve(1, {5, 5}, kNoWait),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  Hold(1, {0, 1});
  EXPECT_THAT(map_.Reserve(1, {3, 4}, kNoWait),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("lease 1")));
  EXPECT_EQ(map_.size(), 1u);
}

TEST_F(BusyRangeMapTest, ReservationCountsAsBusyBeforeCommit) {
  ASSERT_OK(map_.Reserve(1, {0, 4}, kNoWait));
  ASSERT_EQ(map_.Overlapping({2, 3}).size(), 1u);
  EXPECT_FALSE(map_.Overlapping({2, 3})[0].held);
  ASSERT_OK(map_.Commit(1, [] {}));
  EXPECT_TRUE(map_.Overlapping({2, 3})[0].held);
}

TEST_F(BusyRangeMapTest, CommitRunsCallbackOnlyOnSuccess) {
  ASSERT_OK(map_.Reserve(1, {0, 4}, kNoWait));
  int calls = 0;
  ASSERT_OK(map_.Commit(1, [&] { ++calls; }));
  EXPECT_THAT(map_.Commit(1, [&] { ++calls; }),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already held")));
  EXPECT_THAT(map_.Commit(9, [&] { ++calls; }),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("9")));
  EXPECT_EQ(calls, 1);
}

TEST_F(BusyRangeMapTest, ReserveInsideBlockFailsAtOnceWithAborted) {
  map_.Block({10, 20}, "truncate to 40960 bytes");
  EXPECT_THAT(map_.Reserve(1, {19, 25}, kNoWait),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("truncate to 40960 bytes")));
  EXPECT_EQ(map_.size(), 0u);
  // Outside the block nothing is held up.
  EXPECT_OK(map_.Reserve(2, {20, 25}, kNoWait));
}

TEST_F(BusyRangeMapTest, BlockDoomsPendingReservationsButNotHeldPins) {
  Hold(1, {0, 4});
  ASSERT_OK(map_.Reserve(2, {2, 6}, kNoWait));
  const auto block = map_.Block({3, 5}, "punch");
  EXPECT_THAT(block.held, ElementsAre(1));
  EXPECT_THAT(block.pending, ElementsAre(2));
  bool called = false;
  EXPECT_THAT(map_.Commit(2, [&] { called = true; }),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("punch")));
  EXPECT_FALSE(called);
}

TEST_F(BusyRangeMapTest, ReservationMadeAfterUnblockCommits) {
  const auto block = map_.Block({0, 10}, "truncate");
  map_.Unblock(block.id);
  ASSERT_OK(map_.Reserve(1, {0, 10}, kNoWait));
  EXPECT_OK(map_.Commit(1, [] {}));
}

TEST_F(BusyRangeMapTest, BlockWithNothingInsideIsDrainedAtOnce) {
  Hold(1, {0, 4});
  const auto block = map_.Block({4, 8}, "truncate");
  EXPECT_TRUE(map_.IsDrained(block.id));
  EXPECT_TRUE(map_.AwaitDrained(block.id, kNoWait));
}

TEST_F(BusyRangeMapTest, DrainCompletesWhenLastOverlappingEntryIsRemoved) {
  Hold(1, {0, 4});
  Hold(2, {3, 8});
  Hold(3, {20, 30});
  const auto block = map_.Block({2, 10}, "truncate");
  ASSERT_OK(map_.Remove(1));
  EXPECT_FALSE(map_.IsDrained(block.id));
  ASSERT_OK(map_.Remove(3));  // Outside the block: does not count.
  EXPECT_FALSE(map_.IsDrained(block.id));
  ASSERT_OK(map_.Remove(2));
  EXPECT_TRUE(map_.IsDrained(block.id));
}

TEST_F(BusyRangeMapTest, AwaitDrainedIsWokenByTheLastRemove) {
  Hold(1, {0, 4});
  const auto block = map_.Block({0, 4}, "truncate");
  bool drained = false;
  std::thread waiter([&] { drained = map_.AwaitDrained(block.id, absl::InfiniteFuture()); });
  clock_.WaitForWaiters(1);
  ASSERT_OK(map_.Remove(1));
  waiter.join();
  EXPECT_TRUE(drained);
}

TEST_F(BusyRangeMapTest, AwaitDrainedGivesUpAtTheDeadline) {
  Hold(1, {0, 4});
  const auto block = map_.Block({0, 4}, "truncate");
  bool drained = true;
  std::thread waiter(
      [&] { drained = map_.AwaitDrained(block.id, clock_.Now() + absl::Seconds(3)); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(3));
  waiter.join();
  EXPECT_FALSE(drained);
  EXPECT_EQ(map_.size(), 1u);
}

TEST_F(BusyRangeMapTest, AwaitDrainedOfUnknownBlockIsFalse) {
  EXPECT_FALSE(map_.AwaitDrained(42, absl::InfiniteFuture()));
  EXPECT_FALSE(map_.IsDrained(42));
}

TEST_F(BusyRangeMapTest, WaitingReserveProceedsWhenBlockIsLifted) {
  const auto block = map_.Block({0, 8}, "truncate");
  absl::Status reserved = absl::UnknownError("not run");
  std::thread pinner([&] { reserved = map_.Reserve(1, {2, 3}, absl::InfiniteFuture()); });
  clock_.WaitForWaiters(1);
  map_.Unblock(block.id);
  pinner.join();
  EXPECT_OK(reserved);
  EXPECT_EQ(map_.size(), 1u);
}

TEST_F(BusyRangeMapTest, WaitingReserveFailsWithAbortedAtItsDeadline) {
  map_.Block({0, 8}, "punch hole [0, 32768)");
  absl::Status reserved;
  std::thread pinner([&] {
    reserved = map_.Reserve(1, {2, 3}, clock_.Now() + absl::Milliseconds(500));
  });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Milliseconds(500));
  pinner.join();
  EXPECT_THAT(reserved, StatusIs(absl::StatusCode::kAborted, HasSubstr("punch hole")));
  EXPECT_EQ(map_.size(), 0u);
}

TEST_F(BusyRangeMapTest, RemoveOfUnknownLeaseIsNotFound) {
  EXPECT_THAT(map_.Remove(7), StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease 7")));
}

TEST_F(BusyRangeMapTest, IdleOnlyWithoutEntriesAndBlocks) {
  EXPECT_TRUE(map_.idle());
  Hold(1, {0, 1});
  EXPECT_FALSE(map_.idle());
  ASSERT_OK(map_.Remove(1));
  const auto block = map_.Block({0, 1}, "x");
  EXPECT_FALSE(map_.idle());
  map_.Unblock(block.id);
  EXPECT_TRUE(map_.idle());
}

TEST_F(BusyRangeMapTest, BlocksReportReasonAndRemainingEntries) {
  Hold(1, {0, 4});
  Hold(2, {2, 6});
  const auto block = map_.Block({3, kPageRangeToInfinity}, "truncate to 12288 bytes");
  ASSERT_OK(map_.Remove(1));
  const auto blocks = map_.Blocks();
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].id, block.id);
  EXPECT_EQ(blocks[0].range, (PageRange{3, kPageRangeToInfinity}));
  EXPECT_EQ(blocks[0].reason, "truncate to 12288 bytes");
  EXPECT_EQ(blocks[0].remaining, 1u);
}

// --- OnDrained ---

TEST_F(BusyRangeMapTest, OnDrainedRunsOnceFromTheRemoveThatDrainsTheBlock) {
  Hold(1, {0, 4});
  Hold(2, {2, 6});
  const BusyRangeMap::BlockId block = map_.Block({0, 8}, "punch").id;
  int calls = 0;
  EXPECT_NE(map_.OnDrained(block, [&] { ++calls; }), 0u);
  ASSERT_OK(map_.Remove(1));
  EXPECT_EQ(calls, 0);  // One entry is still there.
  ASSERT_OK(map_.Remove(2));
  EXPECT_EQ(calls, 1);
  Hold(3, {8, 9});  // Not part of the block's drain: never runs it again.
  ASSERT_OK(map_.Remove(3));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(map_.IsDrained(block));
}

TEST_F(BusyRangeMapTest, OnDrainedRunsAtOnceWhenAlreadyDrainedAndNeverForUnknownBlocks) {
  const BusyRangeMap::BlockId block = map_.Block({0, 4}, "punch").id;
  int calls = 0;
  EXPECT_EQ(map_.OnDrained(block, [&] { ++calls; }), 0u);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(map_.OnDrained(block + 100, [&] { ++calls; }), 0u);
  EXPECT_EQ(calls, 1);
}

TEST_F(BusyRangeMapTest, OnDrainedCallbackRunsOutsideTheLockAndMayCallBack) {
  Hold(1, {0, 4});
  const BusyRangeMap::BlockId block = map_.Block({0, 4}, "truncate").id;
  bool unblocked = false;
  map_.OnDrained(block, [&] {
    map_.Unblock(block);  // Would deadlock if run under the map's lock.
    unblocked = map_.Blocks().empty();
  });
  ASSERT_OK(map_.Remove(1));
  EXPECT_TRUE(unblocked);
}

TEST_F(BusyRangeMapTest, CancelledAndUnblockedDrainCallbacksNeverRun) {
  Hold(1, {0, 4});
  const BusyRangeMap::BlockId block = map_.Block({0, 4}, "truncate").id;
  int cancelled_calls = 0;
  int unblocked_calls = 0;
  const BusyRangeMap::DrainWaitId wait = map_.OnDrained(block, [&] { ++cancelled_calls; });
  EXPECT_TRUE(map_.CancelOnDrained(block, wait));
  EXPECT_FALSE(map_.CancelOnDrained(block, wait));
  map_.OnDrained(block, [&] { ++unblocked_calls; });
  map_.Unblock(block);
  ASSERT_OK(map_.Remove(1));
  EXPECT_EQ(cancelled_calls, 0);
  EXPECT_EQ(unblocked_calls, 0);
}

}  // namespace
}  // namespace pinbroker
