// Detect-after: which size and hole changes remove pages under a lease, and reading holes of a
// real sparse file (tmpfs, which reports holes exactly).
#include "pinning/guard/layout_snapshot.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

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

TEST_F(TmpfsHoles, AllDataNowAgreesWithLayoutOfOnEveryRange) {
  ASSERT_EQ(fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * kPage, 2 * kPage), 0);
  ASSERT_EQ(fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 12 * kPage, kPage), 0);
  ASSERT_EQ(ftruncate(fd_, 14 * kPage), 0);
  // Every page-aligned range, some past the end of the file.
  for (uint64_t first = 0; first < 16; ++first) {
    for (uint64_t pages = 0; first + pages <= 16; ++pages) {
      const ByteRange r{first * kPage, pages * kPage};
      ASSERT_OK_AND_ASSIGN(const RangeLayout layout, LayoutOf(fd_, r));
      const bool expected = r.offset + r.length <= layout.size && layout.holes.empty();
      // One SEEK_HOLE, and page by page (tmpfs holes are whole pages).
      for (const uint64_t page : {uint64_t{0}, kPage}) {
        uint64_t size = 0;
        ASSERT_OK_AND_ASSIGN(const bool all_data, AllDataNow(fd_, r, page, &size));
        EXPECT_EQ(size, 14 * kPage);
        EXPECT_EQ(all_data, expected)
            << "pages [" << first << ", " << first + pages << "), probing by " << page;
      }
    }
  }
}

// --- the per-file sweep against the per-range reference, on random layouts ---

// A random sparse file under `dir` (tmpfs or the test's temp dir): written, then holes punched
// and maybe truncated and regrown, each step chosen by `rng`. Returns its descriptor.
void Scramble(int fd, std::mt19937_64& rng, uint64_t pages) {
  std::uniform_int_distribution<uint64_t> page(0, pages - 1);
  const int punches = static_cast<int>(rng() % 6);
  for (int i = 0; i < punches; ++i) {
    const uint64_t first = page(rng);
    const uint64_t count = 1 + rng() % 4;
    ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        static_cast<off_t>(first * kPage), static_cast<off_t>(count * kPage)),
              0);
  }
  if (rng() % 3 == 0) {  // Shrink (maybe mid-page), maybe grow back sparse.
    const uint64_t size = page(rng) * kPage + (rng() % 2) * (rng() % kPage);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    if (rng() % 2 == 0) {
      ASSERT_EQ(ftruncate(fd, static_cast<off_t>(pages * kPage)), 0);
    }
  }
  if (rng() % 3 == 0) {  // Fill one page again.
    const std::string data(kPage, 'y');
    ASSERT_EQ(pwrite(fd, data.data(), data.size(), static_cast<off_t>(page(rng) * kPage)),
              static_cast<ssize_t>(kPage));
  }
}

ByteRange RandomRange(std::mt19937_64& rng, uint64_t pages) {
  const uint64_t first = rng() % (pages + 2);  // Some start at or past EOF.
  const uint64_t count = 1 + rng() % 8;
  return ByteRange{first * kPage, count * kPage};
}

class SweepModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "tmpfs") {
      struct statfs fs;
      if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994) {
        GTEST_SKIP() << "/dev/shm is not a tmpfs mount on this machine";
      }
      dir_ = std::make_unique<testing::TempDir>("/dev/shm");
    } else {
      dir_ = std::make_unique<testing::TempDir>();
    }
  }
  std::unique_ptr<testing::TempDir> dir_;
};

TEST_P(SweepModel, WithinTheSweepEqualsLayoutOfTheRangeAndGivesTheSameVerdicts) {
  constexpr uint64_t kPages = 48;
  std::mt19937_64 rng(20261202);
  int compared = 0;
  for (int round = 0; round < 60; ++round) {
    dir_->WriteFile("f", std::string(kPages * kPage, 'x'));
    const int fd = open(dir_->Join("f").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    Scramble(fd, rng, kPages);
    std::vector<ByteRange> ranges;
    for (int i = 0; i < 12; ++i) ranges.push_back(RandomRange(rng, kPages));
    std::vector<RangeLayout> before;
    ASSERT_OK_AND_ASSIGN(const FileLayout swept_before, SweepLayout(fd));
    EXPECT_TRUE(swept_before.settled);
    for (const ByteRange& r : ranges) {
      ASSERT_OK_AND_ASSIGN(RangeLayout reference, LayoutOf(fd, r));
      const RangeLayout derived = Within(swept_before, r);
      EXPECT_EQ(derived.size, reference.size);
      EXPECT_EQ(derived.holes, reference.holes) << "round " << round << " range " << r.offset;
      before.push_back(std::move(reference));
    }
    Scramble(fd, rng, kPages);
    ASSERT_OK_AND_ASSIGN(const FileLayout swept_now, SweepLayout(fd));
    for (size_t i = 0; i < ranges.size(); ++i) {
      ASSERT_OK_AND_ASSIGN(RangeLayout now, LayoutOf(fd, ranges[i]));
      EXPECT_EQ(RemovedUnder(Within(swept_before, ranges[i]), Within(swept_now, ranges[i])),
                RemovedUnder(before[i], now))
          << "round " << round << " range " << ranges[i].offset;
      ++compared;
    }
    close(fd);
  }
  EXPECT_EQ(compared, 60 * 12);
}

INSTANTIATE_TEST_SUITE_P(Filesystems, SweepModel, ::testing::Values("tmpfs", "tempdir"),
                         [](const auto& info) { return info.param; });

// Within() against a page-by-page model of the same holes, on layouts no filesystem made.
TEST(Within, MatchesAPageByPageModelOnRandomLayouts) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    const uint64_t pages = 1 + rng() % 40;
    const uint64_t size = pages * kPage - (rng() % 2) * (rng() % kPage);
    std::vector<bool> hole(pages);
    for (uint64_t p = 0; p < pages; ++p) hole[p] = rng() % 3 == 0;
    FileLayout file;
    file.size = size;
    for (uint64_t p = 0; p < pages; ++p) {
      if (!hole[p]) continue;
      const uint64_t from = p * kPage, to = std::min((p + 1) * kPage, size);
      if (!file.holes.empty() && file.holes.back().offset + file.holes.back().length == from) {
        file.holes.back().length += to - from;
      } else {
        file.holes.push_back(ByteRange{from, to - from});
      }
    }
    const ByteRange r = RandomRange(rng, pages);
    std::vector<ByteRange> want;
    const uint64_t end = std::min(r.offset + r.length, size);
    for (uint64_t p = r.offset / kPage; p * kPage < end; ++p) {
      if (!hole[p]) continue;
      const uint64_t from = p * kPage, to = std::min((p + 1) * kPage, end);
      if (!want.empty() && want.back().offset + want.back().length == from) {
        want.back().length += to - from;
      } else {
        want.push_back(ByteRange{from, to - from});
      }
    }
    const RangeLayout got = Within(file, r);
    EXPECT_EQ(got.size, size);
    EXPECT_EQ(got.holes, want) << "round " << round;
  }
}

}  // namespace
}  // namespace pinbroker::guard
