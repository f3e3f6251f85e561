// WorkPool: runs what is queued on at most max_workers threads, counts layout changes in flight
// per file, refuses changes once stopping (checks still run), and drains on Join().
#include "pinning/guard/work_pool.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace pinbroker::guard {
namespace {

std::unique_ptr<GuardWork> Item(GuardWork::Kind kind, uint64_t ino) {
  auto work = std::make_unique<GuardWork>();
  work->kind = kind;
  work->file = std::make_shared<GuardedFile>();
  work->file->id = FileId{1, ino};
  return work;
}

TEST(WorkPoolTest, RunsEveryItemAndAwaitsIdle) {
  std::atomic<int> ran{0};
  WorkPool pool(4, [&](GuardWork&) { ++ran; });
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(pool.Enqueue(Item(GuardWork::Kind::kCheck, 1)), nullptr);
  }
  pool.AwaitIdle();
  EXPECT_EQ(ran.load(), 100);
  EXPECT_LE(pool.workers(), 4u);
  EXPECT_GE(pool.workers(), 1u);
}

TEST(WorkPoolTest, NeverStartsMoreThanMaxWorkersAndQueuesTheRest) {
  absl::Notification release;
  std::atomic<int> running{0}, peak{0}, ran{0};
  WorkPool pool(2, [&](GuardWork&) {
    const int now = ++running;
    for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
    }
    release.WaitForNotification();
    --running;
    ++ran;
  });
  for (int i = 0; i < 6; ++i) pool.Enqueue(Item(GuardWork::Kind::kPreContent, i));
  EXPECT_EQ(pool.workers(), 2u);
  release.Notify();
  pool.AwaitIdle();
  EXPECT_EQ(ran.load(), 6);
  EXPECT_LE(peak.load(), 2);
}

TEST(WorkPoolTest, CountsChangesInFlightPerFileUntilTheyFinish) {
  absl::Notification release;
  WorkPool pool(4, [&](GuardWork&) { release.WaitForNotification(); });
  pool.Enqueue(Item(GuardWork::Kind::kPreContent, 7));
  pool.Enqueue(Item(GuardWork::Kind::kLeaseBreak, 7));
  pool.Enqueue(Item(GuardWork::Kind::kCheck, 8));  // A check is not a change.
  std::vector<FileId> files = pool.FilesWithChangesInFlight();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], (FileId{1, 7}));
  release.Notify();
  pool.AwaitIdle();
  EXPECT_TRUE(pool.FilesWithChangesInFlight().empty());
}

TEST(WorkPoolTest, AfterBeginStopChangesComeBackAndChecksStillRun) {
  std::atomic<int> ran{0};
  WorkPool pool(2, [&](GuardWork&) { ++ran; });
  pool.BeginStop();
  std::unique_ptr<GuardWork> back = pool.Enqueue(Item(GuardWork::Kind::kPreContent, 1));
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->kind, GuardWork::Kind::kPreContent);
  EXPECT_NE(pool.Enqueue(Item(GuardWork::Kind::kLeaseBreak, 1)), nullptr);
  EXPECT_EQ(pool.Enqueue(Item(GuardWork::Kind::kCheck, 1)), nullptr);
  pool.AwaitIdle();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_TRUE(pool.FilesWithChangesInFlight().empty());
}

TEST(WorkPoolTest, JoinRunsWhatIsQueuedThenStartsNoThread) {
  std::atomic<int> ran{0};
  WorkPool pool(1, [&](GuardWork&) { ++ran; });
  for (int i = 0; i < 10; ++i) pool.Enqueue(Item(GuardWork::Kind::kCheck, 1));
  pool.Join();
  EXPECT_EQ(ran.load(), 10);
  EXPECT_EQ(pool.workers(), 0u);
  pool.Join();  // Idempotent.
}

}  // namespace
}  // namespace pinbroker::guard
