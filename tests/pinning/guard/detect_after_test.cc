// DetectAfter: the one-sweep comparison of a file's leases (pure, on hand-made layouts), and
// checks of a real file in a temporary directory against a fake engine: a truncate or punch
// under a lease revokes it, an unchanged file revokes nothing, an unlinked file's leases are
// recalled (and, under policy revoke, revoked once the grace period passed on the simulated
// clock).
#include "pinning/guard/detect_after.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/pinning/guard/fake_guard_engine.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kPage = 4096;

std::shared_ptr<const FileLayout> Layout(uint64_t size, std::vector<ByteRange> holes,
                                         uint64_t sequence) {
  auto layout = std::make_shared<FileLayout>();
  layout->size = size;
  layout->holes = std::move(holes);
  layout->sequence = sequence;
  return layout;
}

TEST(DetectAfterRemovedLeasesTest, NothingWhenTheLayoutIsTheSame) {
  auto before = Layout(16 * kPage, {}, 1);
  GuardedFile::LeaseViews leases;
  for (LeaseId id = 1; id <= 100; ++id) {
    leases[id] = GuardedFile::LeaseView{ByteRange{(id % 16) * kPage, kPage}, before.get()};
  }
  EXPECT_THAT(DetectAfter::RemovedLeases(leases, *Layout(16 * kPage, {}, 2)), IsEmpty());
}

TEST(DetectAfterRemovedLeasesTest, AShrinkRemovesTheLeasesBeyondTheNewEndAscending) {
  auto before = Layout(16 * kPage, {}, 1);
  GuardedFile::LeaseViews leases;
  leases[3] = GuardedFile::LeaseView{ByteRange{12 * kPage, kPage}, before.get()};
  leases[1] = GuardedFile::LeaseView{ByteRange{0, kPage}, before.get()};
  leases[2] = GuardedFile::LeaseView{ByteRange{8 * kPage, kPage}, before.get()};
  const auto removed = DetectAfter::RemovedLeases(leases, *Layout(4 * kPage, {}, 2));
  ASSERT_EQ(removed.size(), 2u);
  EXPECT_EQ(removed[0].first, 2u);
  EXPECT_EQ(removed[1].first, 3u);
  EXPECT_THAT(removed[0].second, HasSubstr("shrank"));
}

TEST(DetectAfterRemovedLeasesTest, AHoleRemovesOnlyTheLeasesUnderIt) {
  auto before = Layout(16 * kPage, {}, 1);
  GuardedFile::LeaseViews leases;
  leases[1] = GuardedFile::LeaseView{ByteRange{0, kPage}, before.get()};
  leases[2] = GuardedFile::LeaseView{ByteRange{5 * kPage, kPage}, before.get()};
  const auto removed =
      DetectAfter::RemovedLeases(leases, *Layout(16 * kPage, {ByteRange{4 * kPage, 4 * kPage}}, 2));
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].first, 2u);
  EXPECT_THAT(removed[0].second, HasSubstr("hole"));
}

TEST(DetectAfterRemovedLeasesTest, SkipsLeasesWithoutOrWithALaterSnapshot) {
  GuardedFile::LeaseViews leases;
  leases[1] = GuardedFile::LeaseView{ByteRange{8 * kPage, kPage}, nullptr};
  const auto later = Layout(16 * kPage, {}, 5);
  leases[2] = GuardedFile::LeaseView{ByteRange{8 * kPage, kPage}, later.get()};
  EXPECT_THAT(DetectAfter::RemovedLeases(leases, *Layout(4 * kPage, {}, 3)), IsEmpty());
}

TEST(DetectAfterRemovedLeasesTest, AGrantViewCountsOnlyAgainstSweepsBegunAfterItsGrants) {
  auto view = std::make_shared<FileLayout>();
  view->size = 16 * kPage;
  view->sequence = 3;  // Two sweeps had begun when its grants probed their bytes.
  view->grant_view = true;
  GuardedFile::LeaseViews leases;
  leases[1] = GuardedFile::LeaseView{ByteRange{8 * kPage, kPage}, view.get()};
  const auto holed = [](uint64_t sequence) {
    return Layout(16 * kPage, {ByteRange{8 * kPage, kPage}}, sequence);
  };
  // Begun before the grant: its hole may be one the grant's pin filled since.
  EXPECT_THAT(DetectAfter::RemovedLeases(leases, *holed(2)), IsEmpty());
  const auto removed = DetectAfter::RemovedLeases(leases, *holed(3));
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_THAT(removed[0].second, HasSubstr("became a hole"));
  const auto shrunk = DetectAfter::RemovedLeases(leases, *Layout(8 * kPage, {}, 4));
  ASSERT_EQ(shrunk.size(), 1u);
  EXPECT_THAT(shrunk[0].second, HasSubstr("shrank"));
}

class DetectAfterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.WriteFile("data", std::string(16 * kPage, 'd'));
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir_.path();
    exp.default_policy = LayoutPolicy::kRevoke;
    exp.grace = absl::Seconds(5);
    engine_.SetExport(exp);
    file_ = std::make_shared<GuardedFile>();
    file_->export_name = "exp";
    file_->path = "data";
    file_->fd.reset(::open(dir_.Join("data").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file_->fd.valid());
    struct stat st;
    ASSERT_EQ(::fstat(file_->fd.get(), &st), 0);
    file_->id = FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  }

  // A lease of `pages` pages from `first`, known to the engine and to the record, granted under
  // a sweep taken now.
  LeaseInfo Grant(LeaseId id, uint64_t first, uint64_t pages) {
    const LeaseInfo lease = Known(id, first, pages);
    absl::StatusOr<std::shared_ptr<const FileLayout>> swept = file_->Sweep();
    EXPECT_TRUE(swept.ok()) << swept.status();
    Record(lease, swept.ok() ? *swept : nullptr);
    return lease;
  }

  // The same, granted on the file's grant view (as FileGuard does when no sweep is reusable and
  // the lease's bytes are all data).
  LeaseInfo GrantOnView(LeaseId id, uint64_t first, uint64_t pages) {
    const LeaseInfo lease = Known(id, first, pages);
    const uint64_t begun = file_->SweepsBegun();
    uint64_t size = 0;
    absl::StatusOr<bool> all_data =
        AllDataNow(file_->fd.get(), ByteRange{lease.offset, lease.length}, 0, &size);
    EXPECT_TRUE(all_data.ok() && *all_data);
    Record(lease, file_->DenseView(begun, size));
    return lease;
  }

  // A lease the engine knows of.
  LeaseInfo Known(LeaseId id, uint64_t first, uint64_t pages) {
    LeaseInfo lease;
    lease.id = id;
    lease.file = file_->id;
    lease.export_name = "exp";
    lease.path = "data";
    lease.offset = first * kPage;
    lease.length = pages * kPage;
    lease.expires_at = engine_.sim().Now() + absl::Seconds(60);
    engine_.AddLease(lease);
    return lease;
  }
  // The guard's view of `lease`, granted under `layout`.
  void Record(const LeaseInfo& lease, std::shared_ptr<const FileLayout> layout) {
    absl::MutexLock lock(&file_->mu);
    GuardedFile::LeaseView& view = file_->leases[lease.id];
    view.bytes = ByteRange{lease.offset, lease.length};
    file_->SetBeforeLocked(view, std::move(layout));
    file_->live.store(file_->leases.size());
  }
  void Punch(uint64_t first, uint64_t pages) {
    const int fd = ::open(dir_.Join("data").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first * kPage, pages * kPage),
        0);
    ::close(fd);
  }

  pinbroker::testing::TempDir dir_;
  testing::FakeGuardEngine engine_;
  std::shared_ptr<GuardedFile> file_;
};

TEST_F(DetectAfterTest, ASweepLivesWhileAViewPointsAtIt) {
  absl::StatusOr<std::shared_ptr<const FileLayout>> swept = file_->Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status();
  std::weak_ptr<const FileLayout> watch = *swept;
  absl::MutexLock lock(&file_->mu);
  file_->SetBeforeLocked(file_->leases[1], *swept);
  file_->SetBeforeLocked(file_->leases[2], *std::move(swept));
  EXPECT_EQ(file_->leases[1].before, file_->leases[2].before);
  EXPECT_EQ(file_->held_sweeps.size(), 1u);
  EXPECT_TRUE(file_->EraseViewLocked(1));
  EXPECT_FALSE(file_->EraseViewLocked(1));
  // Owners: the file's latest sweep and the held sweep lease 2 points at.
  EXPECT_EQ(watch.use_count(), 2);
  file_->SetBeforeLocked(file_->leases[2], nullptr);
  EXPECT_EQ(watch.use_count(), 1);  // The latest sweep only.
  EXPECT_TRUE(file_->held_sweeps.empty());
  EXPECT_TRUE(file_->EraseViewLocked(2));
  EXPECT_TRUE(file_->leases.empty());
}

TEST_F(DetectAfterTest, UnchangedFileRevokesNothingAndRunsThen) {
  Grant(1, 0, 4);
  Grant(2, 8, 4);
  DetectAfter detect(&engine_);
  int then = 0;
  detect.Check(*file_, [&] { ++then; });
  EXPECT_THAT(engine_.revokes(), IsEmpty());
  EXPECT_EQ(then, 1);
}

TEST_F(DetectAfterTest, TruncateUnderALeaseRevokesItWithTheReason) {
  Grant(1, 0, 4);
  Grant(2, 8, 4);
  ASSERT_EQ(::truncate(dir_.Join("data").c_str(), 6 * kPage), 0);
  DetectAfter detect(&engine_);
  detect.Check(*file_);
  const auto revokes = engine_.revokes();
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0].ids, std::vector<LeaseId>{2});
  EXPECT_THAT(revokes[0].reason, HasSubstr("out-of-band change: "));
  EXPECT_THAT(revokes[0].reason, HasSubstr("detected afterwards; guard none"));
  EXPECT_TRUE(engine_.IsLive(1));
  EXPECT_FALSE(engine_.IsLive(2));
}

TEST_F(DetectAfterTest, ASettledCheckMovesGrantViewLeasesOntoItsSweep) {
  Grant(1, 0, 4);
  GrantOnView(2, 8, 2);
  GrantOnView(3, 10, 2);
  {
    absl::MutexLock lock(&file_->mu);
    EXPECT_EQ(file_->leases[2].before, file_->leases[3].before);  // One view for both.
    EXPECT_TRUE(file_->leases[2].before->grant_view);
    EXPECT_EQ(file_->sweeps, 1u);  // Lease 1's only.
  }
  DetectAfter detect(&engine_);
  detect.Check(*file_);
  EXPECT_THAT(engine_.revokes(), IsEmpty());
  {
    absl::MutexLock lock(&file_->mu);
    ASSERT_TRUE(file_->latest->settled);
    EXPECT_EQ(file_->leases[2].before, file_->latest.get());
    EXPECT_EQ(file_->leases[3].before, file_->latest.get());
    for (const auto& [layout, held] : file_->held_sweeps) EXPECT_FALSE(layout->grant_view);
  }
  // On the check's sweep they are still watched.
  Punch(11, 1);
  detect.Check(*file_);
  const auto revokes = engine_.revokes();
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0].ids, std::vector<LeaseId>{3});
  EXPECT_THAT(revokes[0].reason, HasSubstr("became a hole"));
  EXPECT_TRUE(engine_.IsLive(1));
  EXPECT_TRUE(engine_.IsLive(2));
}

TEST_F(DetectAfterTest, AHoleUnderAGrantViewLeaseBeforeAnyCheckRevokesIt) {
  Grant(1, 0, 4);
  GrantOnView(2, 8, 2);
  Punch(9, 1);
  DetectAfter detect(&engine_);
  detect.Check(*file_);
  const auto revokes = engine_.revokes();
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0].ids, std::vector<LeaseId>{2});
  EXPECT_THAT(revokes[0].reason,
              HasSubstr(absl::StrCat("bytes [", 9 * kPage, ", ", 10 * kPage, ") of bytes [",
                                     8 * kPage, ", ", 10 * kPage, ") became a hole")));
  EXPECT_TRUE(engine_.IsLive(1));
}

TEST_F(DetectAfterTest, LingeringFileIsNotSweptAndThenDoesNotRun) {
  DetectAfter detect(&engine_);
  int then = 0;
  detect.Check(*file_, [&] { ++then; });
  EXPECT_EQ(then, 0);
  absl::MutexLock lock(&file_->mu);
  EXPECT_EQ(file_->sweeps, 0u);
}

TEST_F(DetectAfterTest, UnlinkRecallsUnderRevokeThenRevokesAfterTheGrace) {
  Grant(1, 0, 4);
  Grant(2, 8, 4);
  ASSERT_EQ(::unlink(dir_.Join("data").c_str()), 0);
  DetectAfter detect(&engine_);
  const absl::Time now = engine_.sim().Now();
  detect.Check(*file_);
  const auto recalls = engine_.recalls();
  ASSERT_EQ(recalls.size(), 2u);
  for (const auto& r : recalls) {
    EXPECT_EQ(r.deadline, now + absl::Seconds(5));
    EXPECT_THAT(r.reason, HasSubstr("unlinked: exp/data was deleted"));
  }
  detect.Check(*file_);  // Once per file.
  EXPECT_EQ(engine_.recalls().size(), 2u);
  EXPECT_THAT(engine_.revokes(), IsEmpty());
  engine_.sim().Advance(absl::Seconds(5));
  const auto revokes = engine_.revokes();
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0].ids, (std::vector<LeaseId>{1, 2}));
  EXPECT_THAT(revokes[0].reason, HasSubstr("not released within the grace period: unlinked"));
}

TEST_F(DetectAfterTest, UnlinkUnderDeferRecallsUntilExpiryAndSchedulesNothing) {
  ExportOptions exp;
  exp.name = "exp";
  exp.root = dir_.path();
  exp.default_policy = LayoutPolicy::kDefer;
  engine_.SetExport(exp);
  const LeaseInfo lease = Grant(1, 0, 4);
  ASSERT_EQ(::unlink(dir_.Join("data").c_str()), 0);
  DetectAfter detect(&engine_);
  detect.Check(*file_);
  const auto recalls = engine_.recalls();
  ASSERT_EQ(recalls.size(), 1u);
  EXPECT_EQ(recalls[0].deadline, lease.expires_at);
  EXPECT_EQ(engine_.sim().pending_timers(), 0u);
}

TEST_F(DetectAfterTest, StopCancelsThePendingRevoke) {
  Grant(1, 0, 4);
  ASSERT_EQ(::unlink(dir_.Join("data").c_str()), 0);
  DetectAfter detect(&engine_);
  detect.Check(*file_);
  EXPECT_EQ(engine_.sim().pending_timers(), 1u);
  detect.Stop();
  EXPECT_EQ(engine_.sim().pending_timers(), 0u);
  engine_.sim().Advance(absl::Seconds(10));
  EXPECT_THAT(engine_.revokes(), IsEmpty());
}

}  // namespace
}  // namespace pinbroker::guard
