#include "common/real_clock.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker {
namespace {

using ::testing::ElementsAre;

// Safety bound for waiting on events that must happen promptly; never reached
// when passing.
constexpr absl::Duration kEventTimeout = absl::Seconds(10);
// Far enough ahead that a timer scheduled this far out cannot fire during a
// test.
constexpr absl::Duration kNever = absl::Hours(1);

TEST(RealClockTest, NowIsCloseToAbslNow) {
  RealClock clock;
  const absl::Time before = absl::Now();
  const absl::Time now = clock.Now();
  const absl::Time after = absl::Now();
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
}

TEST(RealClockTest, TimerScheduledInThePastRunsPromptly) {
  RealClock clock;
  absl::Notification ran;
  clock.Schedule(absl::Now() - absl::Seconds(1), [&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(kEventTimeout));
}

TEST(RealClockTest, TimerRunsOnAThreadOtherThanTheCaller) {
  RealClock clock;
  absl::Notification ran;
  std::thread::id runner;
  clock.Schedule(absl::Now(), [&] {
    runner = std::this_thread::get_id();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kEventTimeout));
  EXPECT_NE(runner, std::this_thread::get_id());
}

TEST(RealClockTest, TimersRunInTimeOrder) {
  RealClock clock;
  absl::Mutex mu;
  std::vector<std::string> order;
  absl::Notification all_ran;
  auto record = [&](std::string name) {
    return [&, name] {
      absl::MutexLock lock(&mu);
      order.push_back(name);
      if (order.size() == 3) all_ran.Notify();
    };
  };
  const absl::Time now = absl::Now();
  clock.Schedule(now + absl::Milliseconds(30), record("30ms"));
  clock.Schedule(now + absl::Milliseconds(10), record("10ms"));
  clock.Schedule(now + absl::Milliseconds(20), record("20ms"));
  ASSERT_TRUE(all_ran.WaitForNotificationWithTimeout(kEventTimeout));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ElementsAre("10ms", "20ms", "30ms"));
}

TEST(RealClockTest, TimersDueAtTheSameTimeRunInScheduleOrder) {
  RealClock clock;
  absl::Mutex mu;
  std::vector<std::string> order;
  absl::Notification all_ran;
  auto record = [&](std::string name) {
    return [&, name] {
      absl::MutexLock lock(&mu);
      order.push_back(name);
      if (order.size() == 3) all_ran.Notify();
    };
  };
  const absl::Time when = absl::Now() + absl::Milliseconds(5);
  clock.Schedule(when, record("a"));
  clock.Schedule(when, record("b"));
  clock.Schedule(when, record("c"));
  ASSERT_TRUE(all_ran.WaitForNotificationWithTimeout(kEventTimeout));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ElementsAre("a", "b", "c"));
}

TEST(RealClockTest, EarlierTimerScheduledLaterRunsFirst) {
  // The timer thread, waiting for a far-off timer, must notice a newly
  // scheduled earlier one.
  RealClock clock;
  std::atomic<bool> far_ran{false};
  clock.Schedule(absl::Now() + kNever, [&] { far_ran = true; });
  absl::Notification near_ran;
  clock.Schedule(absl::Now(), [&] { near_ran.Notify(); });
  EXPECT_TRUE(near_ran.WaitForNotificationWithTimeout(kEventTimeout));
  EXPECT_FALSE(far_ran.load());
}

TEST(RealClockTest, CallbackCanScheduleAnotherTimer) {
  RealClock clock;
  absl::Notification second_ran;
  clock.Schedule(absl::Now(), [&] { clock.Schedule(absl::Now(), [&] { second_ran.Notify(); }); });
  EXPECT_TRUE(second_ran.WaitForNotificationWithTimeout(kEventTimeout));
}

TEST(RealClockTest, ScheduleReturnsDistinctIds) {
  RealClock clock;
  const Clock::TimerId a = clock.Schedule(absl::Now() + kNever, [] {});
  const Clock::TimerId b = clock.Schedule(absl::Now() + kNever, [] {});
  EXPECT_NE(a, b);
}

TEST(RealClockTest, CancelBeforeRunReturnsTrueAndTheTimerNeverRuns) {
  auto ran = std::make_shared<std::atomic<bool>>(false);
  {
    RealClock clock;
    const Clock::TimerId id = clock.Schedule(absl::Now() + kNever, [ran] { *ran = true; });
    EXPECT_TRUE(clock.Cancel(id));
  }  // Destroying the clock joins its thread: nothing can run afterwards.
  EXPECT_FALSE(ran->load());
}

TEST(RealClockTest, CancelDestroysTheCallback) {
  RealClock clock;
  auto token = std::make_shared<int>(0);
  const Clock::TimerId id = clock.Schedule(absl::Now() + kNever, [token] {});
  ASSERT_EQ(token.use_count(), 2);
  ASSERT_TRUE(clock.Cancel(id));
  EXPECT_EQ(token.use_count(), 1);
}

TEST(RealClockTest, SecondCancelReturnsFalse) {
  RealClock clock;
  const Clock::TimerId id = clock.Schedule(absl::Now() + kNever, [] {});
  ASSERT_TRUE(clock.Cancel(id));
  EXPECT_FALSE(clock.Cancel(id));
}

TEST(RealClockTest, CancelAfterTheCallbackRanReturnsFalse) {
  RealClock clock;
  absl::Notification ran;
  const Clock::TimerId id = clock.Schedule(absl::Now(), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kEventTimeout));
  EXPECT_FALSE(clock.Cancel(id));
}

TEST(RealClockTest, CancelOfAnUnknownIdReturnsFalse) {
  RealClock clock;
  EXPECT_FALSE(clock.Cancel(12345));
}

TEST(RealClockTest, CancelFromAnotherThreadWaitsForTheRunningCallbackToFinish) {
  RealClock clock;
  absl::Notification callback_started;
  absl::Notification cancel_starting;
  absl::Notification release_callback;
  std::atomic<bool> callback_finished{false};
  const Clock::TimerId id = clock.Schedule(absl::Now(), [&] {
    callback_started.Notify();
    release_callback.WaitForNotification();
    callback_finished = true;
  });
  ASSERT_TRUE(callback_started.WaitForNotificationWithTimeout(kEventTimeout));

  // The callback cannot finish before `release_callback`, which the releaser
  // notifies only once the canceller is about to call Cancel(). Whichever of
  // Cancel() and the release goes first, Cancel() must not return before the
  // callback has finished.
  bool cancel_result = true;
  bool finished_when_cancel_returned = false;
  std::thread canceller([&] {
    cancel_starting.Notify();
    cancel_result = clock.Cancel(id);
    finished_when_cancel_returned = callback_finished.load();
  });
  std::thread releaser([&] {
    cancel_starting.WaitForNotification();
    release_callback.Notify();
  });
  releaser.join();
  canceller.join();
  EXPECT_FALSE(cancel_result);
  EXPECT_TRUE(finished_when_cancel_returned);
}

TEST(RealClockTest, CancelOfAnotherTimerFromACallbackReturnsTrue) {
  RealClock clock;
  std::atomic<bool> far_ran{false};
  const Clock::TimerId far = clock.Schedule(absl::Now() + kNever, [&] { far_ran = true; });
  absl::Notification done;
  bool cancelled = false;
  clock.Schedule(absl::Now(), [&] {
    cancelled = clock.Cancel(far);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kEventTimeout));
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(far_ran.load());
}

TEST(RealClockTest, DestructorDoesNotRunPendingTimers) {
  auto ran = std::make_shared<std::atomic<int>>(0);
  {
    RealClock clock;
    clock.Schedule(absl::Now() + kNever, [ran] { ++*ran; });
    clock.Schedule(absl::Now() + 2 * kNever, [ran] { ++*ran; });
  }
  EXPECT_EQ(ran->load(), 0);
}

TEST(RealClockTest, DestructorDestroysPendingCallbacks) {
  auto token = std::make_shared<int>(0);
  {
    RealClock clock;
    clock.Schedule(absl::Now() + kNever, [token] {});
    ASSERT_EQ(token.use_count(), 2);
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST(RealClockTest, AwaitWakesWhenAnotherThreadMakesTheConditionTrue) {
  RealClock clock;
  absl::Mutex mu;
  bool ready = false;
  bool result = false;
  std::thread setter;
  {
    absl::MutexLock lock(&mu);
    // The setter needs `mu`, which this thread releases only inside
    // AwaitWithDeadline().
    setter = std::thread([&] {
      absl::MutexLock lock(&mu);
      ready = true;
    });
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&ready), absl::Now() + kNever);
  }
  setter.join();
  EXPECT_TRUE(result);
}

TEST(RealClockTest, AwaitReturnsTrueImmediatelyWhenTheConditionHolds) {
  RealClock clock;
  absl::Mutex mu;
  bool ready = true;
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(clock.AwaitWithDeadline(&mu, absl::Condition(&ready), absl::Now() + kNever));
}

TEST(RealClockTest, AwaitWithAPassedDeadlineReturnsFalse) {
  RealClock clock;
  absl::Mutex mu;
  bool ready = false;
  absl::MutexLock lock(&mu);
  EXPECT_FALSE(
      clock.AwaitWithDeadline(&mu, absl::Condition(&ready), absl::Now() - absl::Seconds(1)));
}

}  // namespace
}  // namespace pinbroker
