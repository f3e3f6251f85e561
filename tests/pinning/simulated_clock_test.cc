#include "common/simulated_clock.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker {
namespace {

using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1893456000);  // 2030-01-01T00:00:00Z.

// A condition flag guarded by a mutex, waited for through a clock's
// AwaitWithDeadline().
struct Flag {
  absl::Mutex mu;
  bool value ABSL_GUARDED_BY(mu) = false;

  void Set() {
    absl::MutexLock lock(&mu);
    value = true;
  }
  // Waits on `clock` until the flag is set or `deadline`; returns
  // AwaitWithDeadline's result.
  bool Await(Clock& clock, absl::Time deadline) {
    absl::MutexLock lock(&mu);
    return clock.AwaitWithDeadline(&mu, absl::Condition(&value), deadline);
  }
};

TEST(SimulatedClockTest, StartsAtTheFixedDefaultEpoch) {
  SimulatedClock clock;
  EXPECT_EQ(clock.Now(), kStart);
}

TEST(SimulatedClockTest, StartsAtTheGivenTime) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  SimulatedClock clock(start);
  EXPECT_EQ(clock.Now(), start);
}

TEST(SimulatedClockTest, NowDoesNotMoveWithoutAdvance) {
  SimulatedClock clock;
  const absl::Time first = clock.Now();
  EXPECT_EQ(clock.Now(), first);
}

TEST(SimulatedClockTest, AdvanceMovesNowByTheDuration) {
  SimulatedClock clock;
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(5));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(5) + absl::Milliseconds(1));
}

TEST(SimulatedClockTest, AdvanceByZeroKeepsNow) {
  SimulatedClock clock;
  clock.Advance(absl::ZeroDuration());
  EXPECT_EQ(clock.Now(), kStart);
}

TEST(SimulatedClockTest, AdvanceToMovesNowToTheTarget) {
  SimulatedClock clock;
  clock.AdvanceTo(kStart + absl::Hours(2));
  EXPECT_EQ(clock.Now(), kStart + absl::Hours(2));
}

TEST(SimulatedClockTest, AdvanceToAnEarlierTimeDoesNotMoveNowBackward) {
  SimulatedClock clock;
  clock.Advance(absl::Seconds(10));
  clock.AdvanceTo(kStart + absl::Seconds(3));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(10));
}

TEST(SimulatedClockTest, ScheduleDoesNotRunTheTimer) {
  SimulatedClock clock;
  bool ran = false;
  clock.Schedule(kStart + absl::Seconds(1), [&] { ran = true; });
  EXPECT_FALSE(ran);
}

TEST(SimulatedClockTest, TimerDoesNotFireBeforeItsTime) {
  SimulatedClock clock;
  bool ran = false;
  clock.Schedule(kStart + absl::Seconds(1), [&] { ran = true; });
  clock.Advance(absl::Seconds(1) - absl::Nanoseconds(1));
  EXPECT_FALSE(ran);
}

TEST(SimulatedClockTest, TimerFiresWhenAdvanceReachesItsTimeExactly) {
  SimulatedClock clock;
  bool ran = false;
  clock.Schedule(kStart + absl::Seconds(1), [&] { ran = true; });
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(ran);
}

TEST(SimulatedClockTest, TimerSeesNowEqualToItsDueTime) {
  SimulatedClock clock;
  absl::Time seen;
  clock.Schedule(kStart + absl::Seconds(3), [&] { seen = clock.Now(); });
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(seen, kStart + absl::Seconds(3));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(10));
}

TEST(SimulatedClockTest, TimersFireInTimeOrder) {
  SimulatedClock clock;
  std::vector<std::string> order;
  clock.Schedule(kStart + absl::Seconds(3), [&] { order.push_back("3s"); });
  clock.Schedule(kStart + absl::Seconds(1), [&] { order.push_back("1s"); });
  clock.Schedule(kStart + absl::Seconds(2), [&] { order.push_back("2s"); });
  clock.Advance(absl::Seconds(5));
  EXPECT_THAT(order, ElementsAre("1s", "2s", "3s"));
}

TEST(SimulatedClockTest, EachTimerSeesItsOwnDueTimeWhenOneAdvanceCoversSeveral) {
  SimulatedClock clock;
  std::vector<absl::Time> seen;
  clock.Schedule(kStart + absl::Seconds(2), [&] { seen.push_back(clock.Now()); });
  clock.Schedule(kStart + absl::Seconds(1), [&] { seen.push_back(clock.Now()); });
  clock.Advance(absl::Seconds(5));
  EXPECT_THAT(seen, ElementsAre(kStart + absl::Seconds(1), kStart + absl::Seconds(2)));
}

TEST(SimulatedClockTest, TimersDueAtTheSameTimeFireInScheduleOrder) {
  SimulatedClock clock;
  std::vector<std::string> order;
  const absl::Time when = kStart + absl::Seconds(1);
  clock.Schedule(when, [&] { order.push_back("a"); });
  clock.Schedule(when, [&] { order.push_back("b"); });
  clock.Schedule(when, [&] { order.push_back("c"); });
  clock.Advance(absl::Seconds(1));
  EXPECT_THAT(order, ElementsAre("a", "b", "c"));
}

TEST(SimulatedClockTest, OnlyTimersDueByTheTargetFire) {
  SimulatedClock clock;
  std::vector<std::string> order;
  clock.Schedule(kStart + absl::Seconds(1), [&] { order.push_back("1s"); });
  clock.Schedule(kStart + absl::Seconds(5), [&] { order.push_back("5s"); });
  clock.Advance(absl::Seconds(2));
  EXPECT_THAT(order, ElementsAre("1s"));
  clock.Advance(absl::Seconds(3));
  EXPECT_THAT(order, ElementsAre("1s", "5s"));
}

TEST(SimulatedClockTest, TimerFiresOnlyOnce) {
  SimulatedClock clock;
  int runs = 0;
  clock.Schedule(kStart + absl::Seconds(1), [&] { ++runs; });
  clock.Advance(absl::Seconds(1));
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(runs, 1);
}

TEST(SimulatedClockTest, TimerScheduledInThePastFiresOnTheNextAdvanceWithoutRewindingTime) {
  SimulatedClock clock;
  clock.Advance(absl::Seconds(10));
  bool ran = false;
  absl::Time seen;
  clock.Schedule(kStart, [&] {
    ran = true;
    seen = clock.Now();
  });
  EXPECT_FALSE(ran);
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(ran);
  EXPECT_GE(seen, kStart + absl::Seconds(10));
}

TEST(SimulatedClockTest, TimerScheduledByACallbackWithinTheAdvanceFiresInTheSameAdvance) {
  SimulatedClock clock;
  std::vector<std::string> order;
  absl::Time seen;
  clock.Schedule(kStart + absl::Seconds(1), [&] {
    order.push_back("first");
    clock.Schedule(clock.Now() + absl::Seconds(2), [&] {
      order.push_back("second");
      seen = clock.Now();
    });
  });
  clock.Advance(absl::Seconds(5));
  EXPECT_THAT(order, ElementsAre("first", "second"));
  EXPECT_EQ(seen, kStart + absl::Seconds(3));
}

TEST(SimulatedClockTest, TimerScheduledByACallbackForItsOwnTimeFiresInTheSameAdvance) {
  SimulatedClock clock;
  std::vector<std::string> order;
  clock.Schedule(kStart + absl::Seconds(1), [&] {
    order.push_back("first");
    clock.Schedule(clock.Now(), [&] { order.push_back("second"); });
  });
  clock.Advance(absl::Seconds(1));
  EXPECT_THAT(order, ElementsAre("first", "second"));
}

TEST(SimulatedClockTest, TimerScheduledByACallbackBeyondTheTargetStaysPending) {
  SimulatedClock clock;
  bool second_ran = false;
  clock.Schedule(kStart + absl::Seconds(1), [&] {
    clock.Schedule(clock.Now() + absl::Seconds(10), [&] { second_ran = true; });
  });
  clock.Advance(absl::Seconds(5));
  EXPECT_FALSE(second_ran);
  EXPECT_EQ(clock.pending_timers(), 1u);
}

TEST(SimulatedClockTest, TimerScheduledByACallbackRunsAfterAnEarlierPendingTimer) {
  SimulatedClock clock;
  std::vector<std::string> order;
  clock.Schedule(kStart + absl::Seconds(1), [&] {
    order.push_back("1s");
    clock.Schedule(kStart + absl::Seconds(3), [&] { order.push_back("3s"); });
  });
  clock.Schedule(kStart + absl::Seconds(2), [&] { order.push_back("2s"); });
  clock.Advance(absl::Seconds(5));
  EXPECT_THAT(order, ElementsAre("1s", "2s", "3s"));
}

TEST(SimulatedClockTest, CancelBeforeFiringReturnsTrueAndTheTimerNeverRuns) {
  SimulatedClock clock;
  bool ran = false;
  const Clock::TimerId id = clock.Schedule(kStart + absl::Seconds(1), [&] { ran = true; });
  EXPECT_TRUE(clock.Cancel(id));
  clock.Advance(absl::Seconds(10));
  EXPECT_FALSE(ran);
}

TEST(SimulatedClockTest, CancelLeavesOtherTimersScheduled) {
  SimulatedClock clock;
  std::vector<std::string> order;
  const Clock::TimerId a = clock.Schedule(kStart + absl::Seconds(1), [&] { order.push_back("a"); });
  clock.Schedule(kStart + absl::Seconds(1), [&] { order.push_back("b"); });
  ASSERT_TRUE(clock.Cancel(a));
  clock.Advance(absl::Seconds(1));
  EXPECT_THAT(order, ElementsAre("b"));
}

TEST(SimulatedClockTest, CancelAfterFiringReturnsFalse) {
  SimulatedClock clock;
  const Clock::TimerId id = clock.Schedule(kStart + absl::Seconds(1), [] {});
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(clock.Cancel(id));
}

TEST(SimulatedClockTest, SecondCancelReturnsFalse) {
  SimulatedClock clock;
  const Clock::TimerId id = clock.Schedule(kStart + absl::Seconds(1), [] {});
  ASSERT_TRUE(clock.Cancel(id));
  EXPECT_FALSE(clock.Cancel(id));
}

TEST(SimulatedClockTest, CancelOfAnUnknownIdReturnsFalse) {
  SimulatedClock clock;
  EXPECT_FALSE(clock.Cancel(12345));
}

TEST(SimulatedClockTest, CallbackCanCancelALaterTimer) {
  SimulatedClock clock;
  bool later_ran = false;
  bool cancelled = false;
  const Clock::TimerId later = clock.Schedule(kStart + absl::Seconds(2), [&] { later_ran = true; });
  clock.Schedule(kStart + absl::Seconds(1), [&] { cancelled = clock.Cancel(later); });
  clock.Advance(absl::Seconds(5));
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(later_ran);
}

TEST(SimulatedClockTest, ScheduleReturnsDistinctIds) {
  SimulatedClock clock;
  const Clock::TimerId a = clock.Schedule(kStart + absl::Seconds(1), [] {});
  const Clock::TimerId b = clock.Schedule(kStart + absl::Seconds(1), [] {});
  EXPECT_NE(a, b);
}

TEST(SimulatedClockTest, PendingTimersCountsScheduledTimers) {
  SimulatedClock clock;
  EXPECT_EQ(clock.pending_timers(), 0u);
  clock.Schedule(kStart + absl::Seconds(1), [] {});
  clock.Schedule(kStart + absl::Seconds(2), [] {});
  EXPECT_EQ(clock.pending_timers(), 2u);
}

TEST(SimulatedClockTest, PendingTimersDropsFiredTimers) {
  SimulatedClock clock;
  clock.Schedule(kStart + absl::Seconds(1), [] {});
  clock.Schedule(kStart + absl::Seconds(2), [] {});
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(clock.pending_timers(), 1u);
}

TEST(SimulatedClockTest, PendingTimersDropsCancelledTimers) {
  SimulatedClock clock;
  const Clock::TimerId id = clock.Schedule(kStart + absl::Seconds(1), [] {});
  clock.Schedule(kStart + absl::Seconds(2), [] {});
  clock.Cancel(id);
  EXPECT_EQ(clock.pending_timers(), 1u);
}

TEST(SimulatedClockTest, CancelFromAnotherThreadWaitsForTheRunningCallback) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool started = false;
  bool release = false;
  std::atomic<bool> finished{false};
  const Clock::TimerId id = clock.Schedule(kStart + absl::Seconds(1), [&] {
    absl::MutexLock lock(&mu);
    started = true;
    mu.Await(absl::Condition(&release));
    finished = true;
  });
  std::thread advancer([&] { clock.Advance(absl::Seconds(1)); });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&started));
  }
  std::atomic<bool> cancel_returned{false};
  bool cancel_result = true;
  bool finished_when_cancel_returned = false;
  std::thread canceller([&] {
    cancel_result = clock.Cancel(id);
    finished_when_cancel_returned = finished.load();
    cancel_returned = true;
  });
  // Cancel can only return once the callback has finished, which it cannot
  // before `release`.
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(cancel_returned.load());
    release = true;
  }
  canceller.join();
  advancer.join();
  EXPECT_FALSE(cancel_result);
  EXPECT_TRUE(finished_when_cancel_returned);
}

TEST(SimulatedClockTest, AwaitReturnsTrueImmediatelyWhenTheConditionAlreadyHolds) {
  SimulatedClock clock;
  Flag flag;
  flag.Set();
  EXPECT_TRUE(flag.Await(clock, kStart + absl::Seconds(10)));
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(SimulatedClockTest, AwaitReturnsTrueWhenAnotherThreadSetsTheConditionBeforeTheDeadline) {
  SimulatedClock clock;
  Flag flag;
  bool result = false;
  std::thread waiter([&] { result = flag.Await(clock, kStart + absl::Seconds(10)); });
  clock.WaitForWaiters(1);
  flag.Set();
  waiter.join();
  EXPECT_TRUE(result);
  EXPECT_EQ(clock.Now(), kStart);
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(SimulatedClockTest, AwaitReturnsFalseWhenAdvancePassesTheDeadline) {
  SimulatedClock clock;
  Flag flag;
  bool result = true;
  std::thread waiter([&] { result = flag.Await(clock, kStart + absl::Seconds(10)); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Seconds(11));
  waiter.join();
  EXPECT_FALSE(result);
}

TEST(SimulatedClockTest, AwaitReturnsFalseWhenAdvanceReachesTheDeadlineExactly) {
  SimulatedClock clock;
  Flag flag;
  bool result = true;
  std::thread waiter([&] { result = flag.Await(clock, kStart + absl::Seconds(10)); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Seconds(10));
  waiter.join();
  EXPECT_FALSE(result);
}

TEST(SimulatedClockTest, AwaitIsNotWokenByAdvanceShortOfTheDeadline) {
  SimulatedClock clock;
  Flag flag;
  bool result = false;
  std::thread waiter([&] { result = flag.Await(clock, kStart + absl::Seconds(10)); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Seconds(10) - absl::Nanoseconds(1));
  EXPECT_EQ(clock.waiter_count(), 1u);
  flag.Set();  // Lets the waiter go.
  waiter.join();
  EXPECT_TRUE(result);
}

TEST(SimulatedClockTest, AwaitWithAPassedDeadlineReturnsFalseImmediately) {
  SimulatedClock clock;
  clock.Advance(absl::Seconds(5));
  Flag flag;
  EXPECT_FALSE(flag.Await(clock, kStart));
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(SimulatedClockTest, AwaitWithADeadlineEqualToNowReturnsFalseImmediately) {
  SimulatedClock clock;
  Flag flag;
  EXPECT_FALSE(flag.Await(clock, clock.Now()));
}

TEST(SimulatedClockTest, AwaitWithInfiniteFutureIsNotWokenByAdvance) {
  SimulatedClock clock;
  Flag flag;
  bool result = false;
  std::thread waiter([&] { result = flag.Await(clock, absl::InfiniteFuture()); });
  clock.WaitForWaiters(1);
  clock.Advance(absl::Hours(24 * 365 * 100));
  EXPECT_EQ(clock.waiter_count(), 1u);
  flag.Set();
  waiter.join();
  EXPECT_TRUE(result);
}

TEST(SimulatedClockTest, AdvanceWakesOnlyTheWaitersWhoseDeadlinePassed) {
  SimulatedClock clock;
  Flag flag;
  std::atomic<bool> first_returned{false};
  std::atomic<bool> second_returned{false};
  bool first_result = true;
  bool second_result = false;
  std::thread first([&] {
    first_result = flag.Await(clock, kStart + absl::Seconds(5));
    first_returned = true;
  });
  std::thread second([&] {
    second_result = flag.Await(clock, kStart + absl::Seconds(10));
    second_returned = true;
  });
  clock.WaitForWaiters(2);
  clock.Advance(absl::Seconds(7));
  first.join();  // Returns: its deadline passed.
  EXPECT_TRUE(first_returned.load());
  EXPECT_FALSE(first_result);
  EXPECT_FALSE(second_returned.load());
  EXPECT_EQ(clock.waiter_count(), 1u);
  clock.Advance(absl::Seconds(3));
  second.join();
  EXPECT_FALSE(second_result);
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(SimulatedClockTest, OneAdvanceFiresTimersAndWakesWaitersAcrossTheWholeInterval) {
  SimulatedClock clock;
  Flag flag;
  bool result = true;
  std::thread waiter([&] { result = flag.Await(clock, kStart + absl::Seconds(2)); });
  clock.WaitForWaiters(1);
  std::vector<absl::Time> timer_times;
  clock.Schedule(kStart + absl::Seconds(1), [&] { timer_times.push_back(clock.Now()); });
  clock.Schedule(kStart + absl::Seconds(3), [&] { timer_times.push_back(clock.Now()); });
  clock.Advance(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(result);
  EXPECT_THAT(timer_times, ElementsAre(kStart + absl::Seconds(1), kStart + absl::Seconds(3)));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(5));
}

TEST(SimulatedClockTest, WaiterCountIsZeroWithoutWaiters) {
  SimulatedClock clock;
  EXPECT_EQ(clock.waiter_count(), 0u);
}

TEST(SimulatedClockTest, WaitForWaitersReturnsOnceEnoughThreadsWait) {
  SimulatedClock clock;
  Flag flag;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] { flag.Await(clock, absl::InfiniteFuture()); });
  }
  clock.WaitForWaiters(3);
  EXPECT_EQ(clock.waiter_count(), 3u);
  flag.Set();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(clock.waiter_count(), 0u);
}

// Regression: Advance() used to lock an expired waiter's mutex after the waiter could already
// have returned (its condition came true meanwhile) and its owner destroyed the mutex.
// file_guard_test then hung under TSan, in Advance() spinning on the freed mutex. Here a timer due
// at the waiter's deadline runs after Advance() has marked the waiter expired and before it wakes
// it; the timer makes the condition true and waits until the waiter has returned and freed its
// mutex. (ASan reported a heap-use-after-free here before the fix.)
TEST(SimulatedClockTest, AdvanceNeverTouchesTheMutexOfAWaiterThatHasReturned) {
  SimulatedClock clock;
  auto* mu = new absl::Mutex();
  bool set = false;
  bool result = false;
  std::atomic<bool> freed{false};
  const absl::Time deadline = clock.Now() + absl::Seconds(1);
  std::thread waiter([&] {
    {
      absl::MutexLock lock(mu);
      result = clock.AwaitWithDeadline(mu, absl::Condition(&set), deadline);
    }
    delete mu;
    freed.store(true);
  });
  clock.WaitForWaiters(1);
  { absl::MutexLock lock(mu); }  // The waiter has released `mu`: it is blocked in Await.
  clock.Schedule(deadline, [&] {
    {
      absl::MutexLock lock(mu);
      set = true;
    }
    while (!freed.load()) std::this_thread::yield();  // The waiter has returned.
  });
  clock.Advance(absl::Seconds(1));
  waiter.join();
  EXPECT_TRUE(result);
  EXPECT_EQ(clock.waiter_count(), 0u);
  EXPECT_EQ(clock.Now(), deadline);
}

}  // namespace
}  // namespace pinbroker
