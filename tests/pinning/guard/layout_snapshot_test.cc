// Detect-after: which size and hole changes remove pages under a lease, and reading holes of a
// real sparse file (tmpfs, which reports holes exactly).
#include "pinning/guard/layout_snapshot.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr uint64_t kPage = 4096;

RangeLayout Layout(ByteRange bytes, uint64_t size, std::vector<ByteRange> holes = {}) {
  return RangeLayout{bytes, size, std::move(holes)};
}

TEST(RemovedUnder, ShrinkingBelowTheEndOfTheRangeIsAChange) {
  const RangeLayout before = Layout({4 * kPage, 2 * kPage}, 16 * kPage);
  EXPECT_THAT(RemovedUnder(before, Layout({4 * kPage, 2 * kPage}, 5 * kPage + 100)),
              Optional(HasSubstr("shrank from 65536 to 20580 bytes, below the end of bytes "
                                 "[16384, 24576)")));
  // Shrinking that stops at or after the range is not.
  EXPECT_EQ(RemovedUnder(before, Layout({4 * kPage, 2 * kPage}, 6 * kPage)), std::nullopt);
  EXPECT_EQ(RemovedUnder(before, Layout({4 * kPage, 2 * kPage}, 32 * kPage)), std::nullopt);
}

TEST(RemovedUnder, ALeaseOnAPartialLastPageCountsOnlyBytesThatExisted) {
  // File of 5 pages + 100 bytes; the lease holds the whole last page.
  const RangeLayout before = Layout({5 * kPage, kPage}, 5 * kPage + 100);
  EXPECT_EQ(RemovedUnder(before, Layout({5 * kPage, kPage}, 5 * kPage + 100)), std::nullopt);
  EXPECT_EQ(RemovedUnder(before, Layout({5 * kPage, kPage}, 6 * kPage)), std::nullopt);
  EXPECT_NE(RemovedUnder(before, Layout({5 * kPage, kPage}, 5 * kPage + 50)), std::nullopt);
}

TEST(RemovedUnder, DataTurningIntoAHoleIsAChangeHolesFillingAreNot) {
  const ByteRange r{0, 8 * kPage};
  const RangeLayout sparse = Layout(r, 8 * kPage, {{2 * kPage, 2 * kPage}});
  EXPECT_EQ(RemovedUnder(sparse, Layout(r, 8 * kPage, {{2 * kPage, 2 * kPage}})), std::nullopt);
  EXPECT_EQ(RemovedUnder(sparse, Layout(r, 8 * kPage)), std::nullopt);  // Written: fine.
  EXPECT_EQ(RemovedUnder(sparse, Layout(r, 8 * kPage, {{2 * kPage, kPage}})), std::nullopt);
  EXPECT_THAT(RemovedUnder(sparse, Layout(r, 8 * kPage, {{kPage, 4 * kPage}})),
              Optional(HasSubstr("bytes [4096, 8192) of bytes [0, 32768) became a hole")));
  EXPECT_THAT(
      RemovedUnder(sparse, Layout(r, 8 * kPage, {{2 * kPage, 2 * kPage}, {6 * kPage, kPage}})),
      Optional(HasSubstr("bytes [24576, 28672)")));
}

class TmpfsHoles : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs fs;
    if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994) {
      GTEST_SKIP() << "/dev/shm is not a tmpfs mount on this machine";
    }
    dir_ = std::make_unique<testing::TempDir>("/dev/shm");
    dir_->WriteFile("f", std::string(16 * kPage, 'x'));
    fd_ = open(dir_->Join("f").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
  }
  std::unique_ptr<testing::TempDir> dir_;
  int fd_ = -1;
};

TEST_F(TmpfsHoles, ReadsPunchedHolesWithinTheRange) {
  ASSERT_OK_AND_ASSIGN(RangeLayout before, LayoutOf(fd_, {2 * kPage, 8 * kPage}));
  EXPECT_EQ(before.size, 16 * kPage);
  EXPECT_TRUE(before.holes.empty());
  ASSERT_EQ(fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * kPage), 0);
  ASSERT_EQ(fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 9 * kPage, 4 * kPage), 0);
  ASSERT_OK_AND_ASSIGN(RangeLayout now, LayoutOf(fd_, {2 * kPage, 8 * kPage}));
  EXPECT_THAT(now.holes, ElementsAre(ByteRange{2 * kPage, 2 * kPage}, ByteRange{9 * kPage, kPage}));
  EXPECT_NE(RemovedUnder(before, now), std::nullopt);
  // Punches outside the range are not its business.
  ASSERT_OK_AND_ASSIGN(RangeLayout other, LayoutOf(fd_, {5 * kPage, 3 * kPage}));
  EXPECT_TRUE(other.holes.empty());
}

TEST_F(TmpfsHoles, ATruncateShowsAsASmallerSizeAndNoHolesPastIt) {
  ASSERT_OK_AND_ASSIGN(RangeLayout before, LayoutOf(fd_, {12 * kPage, 4 * kPage}));
  ASSERT_EQ(ftruncate(fd_, 10 * kPage), 0);
  ASSERT_OK_AND_ASSIGN(RangeLayout now, LayoutOf(fd_, {12 * kPage, 4 * kPage}));
  EXPECT_EQ(now.size, 10 * kPage);
  EXPECT_TRUE(now.holes.empty());
  EXPECT_THAT(RemovedUnder(before, now), Optional(HasSubstr("shrank")));
  // Truncated and grown back: the range is all hole now.
  ASSERT_EQ(ftruncate(fd_, 16 * kPage), 0);
  ASSERT_OK_AND_ASSIGN(RangeLayout regrown, LayoutOf(fd_, {12 * kPage, 4 * kPage}));
  EXPECT_THAT(regrown.holes, ElementsAre(ByteRange{12 * kPage, 4 * kPage}));
  EXPECT_THAT(RemovedUnder(before, regrown), Optional(HasSubstr("became a hole")));
}

}  // namespace
}  // namespace pinbroker::guard
