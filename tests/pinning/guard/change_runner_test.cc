// ChangeRunner's pure choices: what an open needs, which lease breaker to decide, and whether
// its change goes to the arbiter; and a lease break that finds the lease already given up.
#include "pinning/guard/change_runner.h"

#include <sys/syscall.h>

#include <atomic>
#include <memory>

#include "gtest/gtest.h"
#include "tests/pinning/guard/fake_guard_engine.h"

namespace pinbroker::guard {
namespace {

using Kind = ClassifiedChange::Kind;

ClassifiedChange Change(Kind kind, uint64_t new_size = 0) {
  ClassifiedChange c;
  c.kind = kind;
  c.new_size = new_size;
  return c;
}

BreakerCandidate Breaker(pid_t tid, Kind kind, uint64_t new_size = 0) {
  BreakerCandidate b;
  b.caller.tid = tid;
  b.caller.nr = SYS_truncate;
  b.change = Change(kind, new_size);
  return b;
}

TEST(ChangeRunnerTest, ActionForOpen) {
  EXPECT_EQ(ActionForOpen(OpenIntent::Kind::kRead), OpenAction::kAllow);
  EXPECT_EQ(ActionForOpen(OpenIntent::Kind::kWrite), OpenAction::kDropLeaseAndAllow);
  EXPECT_EQ(ActionForOpen(OpenIntent::Kind::kUnknown), OpenAction::kDropLeaseAllowAndCheck);
  EXPECT_EQ(ActionForOpen(OpenIntent::Kind::kTruncate), OpenAction::kHold);
}

TEST(ChangeRunnerTest, ChooseBreakerNoneWhenNobody) { EXPECT_EQ(ChooseBreaker({}), std::nullopt); }

TEST(ChangeRunnerTest, ChooseBreakerTakesTheFirstWhenNoneChangesTheLayout) {
  EXPECT_EQ(ChooseBreaker({Breaker(1, Kind::kAccess), Breaker(2, Kind::kUnknown)}), 0u);
}

TEST(ChangeRunnerTest, ChooseBreakerPrefersALayoutChangeOverAnAccess) {
  EXPECT_EQ(ChooseBreaker({Breaker(1, Kind::kAccess), Breaker(2, Kind::kTruncate, 4096)}), 1u);
  EXPECT_EQ(ChooseBreaker({Breaker(1, Kind::kTruncate, 4096), Breaker(2, Kind::kAccess)}), 0u);
}

TEST(ChangeRunnerTest, ChooseBreakerPrefersTheLowestTruncate) {
  EXPECT_EQ(ChooseBreaker({Breaker(1, Kind::kTruncate, 8192), Breaker(2, Kind::kTruncate, 0),
                           Breaker(3, Kind::kTruncate, 4096)}),
            1u);
  // Equal sizes: the first stays.
  EXPECT_EQ(ChooseBreaker({Breaker(1, Kind::kTruncate, 0), Breaker(2, Kind::kTruncate, 0)}), 0u);
}

TEST(ChangeRunnerTest, ActionForBreak) {
  EXPECT_EQ(ActionForBreak(std::nullopt, -1, false), BreakAction::kLetGoAndCheck);
  EXPECT_EQ(ActionForBreak(Change(Kind::kAccess), SYS_openat, false), BreakAction::kLetGo);
  EXPECT_EQ(ActionForBreak(Change(Kind::kUnknown), SYS_openat, false),
            BreakAction::kLetGoAndCheckAfterCaller);
  EXPECT_EQ(ActionForBreak(Change(Kind::kTruncate), SYS_truncate, false), BreakAction::kArbitrate);
  EXPECT_EQ(ActionForBreak(Change(Kind::kTruncate), SYS_openat, true), BreakAction::kArbitrate);
  // truncate(2) was held by its fanotify event before it broke the lease: coordinated already.
  EXPECT_EQ(ActionForBreak(Change(Kind::kTruncate), SYS_truncate, true), BreakAction::kLetGo);
}

TEST(ChangeRunnerTest, LeaseBreakOfALeaseGivenUpMeanwhileOnlyClearsTheFlag) {
  testing::FakeGuardEngine engine;
  std::atomic<int> checks{0};
  ChangeRunner runner(
      &engine, ChangeRunner::Options(),
      [&](const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>) { ++checks; });
  GuardWork work;
  work.kind = GuardWork::Kind::kLeaseBreak;
  work.file = std::make_shared<GuardedFile>();
  {
    absl::MutexLock lock(&work.file->mu);
    work.file->lease = false;
    work.file->lease_break_in_flight = true;
  }
  runner.RunLeaseBreak(work);
  absl::MutexLock lock(&work.file->mu);
  EXPECT_FALSE(work.file->lease_break_in_flight);
  EXPECT_EQ(checks.load(), 0);
  EXPECT_TRUE(engine.revokes().empty());
}

}  // namespace
}  // namespace pinbroker::guard
