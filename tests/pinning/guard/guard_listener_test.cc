// GuardListener without kernel event sources: Start() returns once the thread runs and names
// it, Stop() makes it exit and is idempotent, and nothing is dispatched meanwhile.
#include "pinning/guard/guard_listener.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "common/simulated_clock.h"
#include "gtest/gtest.h"

namespace pinbroker::guard {
namespace {

TEST(GuardListenerTest, StartsAThreadOfThisProcessAndStops) {
  SimulatedClock clock;
  ArmedFiles files;
  std::atomic<int> dispatched{0};
  GuardListener::Dispatch dispatch;
  dispatch.enqueue = [&](std::unique_ptr<GuardWork>) { ++dispatched; };
  dispatch.queue_check = [&](const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>) {
    ++dispatched;
  };
  dispatch.queue_event_check = [&](const std::shared_ptr<GuardedFile>&) { ++dispatched; };
  dispatch.queue_check_all = [&] { ++dispatched; };
  GuardListener listener(&files, nullptr, nullptr, -1, SIGRTMIN + 4, &clock, dispatch);
  EXPECT_EQ(listener.tid(), 0);
  ASSERT_TRUE(listener.Start().ok());
  EXPECT_GT(listener.tid(), 0);
  EXPECT_NE(listener.tid(), getpid());
  EXPECT_TRUE(IsOwnThread(listener.tid()));
  listener.Stop();
  listener.Stop();
  EXPECT_EQ(dispatched.load(), 0);
}

TEST(GuardListenerTest, StopWithoutStartIsANoOp) {
  SimulatedClock clock;
  ArmedFiles files;
  GuardListener listener(&files, nullptr, nullptr, -1, SIGRTMIN + 4, &clock, {});
  listener.Stop();
}

}  // namespace
}  // namespace pinbroker::guard
